//! `cosell crm setup`: everything the connector needs in the partner's CRM, created through the
//! CRM's own metadata API with the configured names: the columns or fields, the solution-link
//! and catalog tables, the hold stage, change tracking, and (Salesforce) the permission set that
//! lets the integration user see them. What is there already is left as it is, so a second run
//! changes nothing; `--dry-run` only prints the plan.

use std::io::Write;

use comfy_table::{Table, presets};
use cosell_shared::crm::CrmKind;
use cosell_shared::crm::schema::{CrmSchema, ItemKind, ItemState, SchemaItem};
use cosell_shared::wiring;

use crate::resolve::{Sources, resolve};
use crate::settings::Settings;

/// What `cosell crm setup` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct SetupOptions {
    pub dry_run: bool,
    pub sources: Sources,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Setting(String),
    #[error("cannot read the CRM's metadata: {0}")]
    Inspect(String),
    #[error("the new items were created but could not be published: {0}")]
    Finish(String),
    #[error("{0} items are not in place (listed above)")]
    Incomplete(usize),
}

impl SetupError {
    /// 2 for settings the command could not use, 1 when the CRM is not set up.
    pub fn exit_code(&self) -> u8 {
        match self {
            SetupError::Setting(_) => 2,
            _ => 1,
        }
    }
}

/// How an item came out of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    AlreadyInPlace,
    /// Not in place, and why, with what to do.
    NotInPlace(String),
}

/// One line of the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemOutcome {
    pub item: SchemaItem,
    pub outcome: Outcome,
}

/// What a run found (and, unless it was a dry run, did).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupReport {
    pub items: Vec<ItemOutcome>,
}

impl SetupReport {
    pub fn created(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Created))
    }

    pub fn not_in_place(&self) -> usize {
        self.count(|o| matches!(o, Outcome::NotInPlace(_)))
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.items.iter().filter(|i| f(&i.outcome)).count()
    }
}

pub fn crm_name(kind: CrmKind) -> &'static str {
    match kind {
        CrmKind::Dynamics => "Dynamics 365 (Dataverse)",
        CrmKind::Salesforce => "Salesforce",
    }
}

/// A shape short enough for one table cell (a picklist lists all its values otherwise);
/// `cosell doctor` prints it whole.
fn short(detail: &str) -> String {
    const MAX: usize = 60;
    if detail.chars().count() <= MAX {
        detail.to_string()
    } else {
        let cut: String = detail.chars().take(MAX - 1).collect();
        format!("{}…", cut.trim_end())
    }
}

/// What the plan says of an item's state.
pub fn state_label(state: &ItemState) -> String {
    match state {
        ItemState::InPlace => "in place".into(),
        ItemState::Missing => "to create".into(),
        ItemState::Unusable(why) => format!("✖ unusable: {why}"),
        ItemState::Manual(why) => format!("✖ setup cannot create it: {why}"),
    }
}

pub async fn run(
    options: SetupOptions,
    settings: Settings,
    out: &mut (dyn Write + Send),
) -> Result<SetupReport, SetupError> {
    let resolved = resolve(settings, &options.sources)
        .await
        .map_err(|e| SetupError::Setting(e.to_string()))?;
    let schema =
        wiring::crm_schema(&resolved.config).map_err(|e| SetupError::Setting(e.to_string()))?;
    let crm = crm_name(resolved.config.crm.kind());
    let found = schema
        .inspect()
        .await
        .map_err(|e| SetupError::Inspect(e.to_string()))?;
    let missing = found.iter().filter(|i| i.is_missing()).count();
    let _ = writeln!(
        out,
        "{crm}: {} items, {} in place, {missing} to create",
        found.len(),
        found.iter().filter(|i| i.in_place()).count()
    );
    let mut plan = Table::new();
    plan.load_style(presets::ASCII_FULL_CONDENSED);
    plan.set_header(["Kind", "Name", "Shape", "State"]);
    for item in &found {
        plan.add_row([
            item.kind.label().to_string(),
            item.name.clone(),
            short(&item.detail),
            state_label(&item.state),
        ]);
    }
    let _ = writeln!(out, "{plan}");

    if options.dry_run {
        let report = SetupReport {
            items: found
                .into_iter()
                .map(|item| {
                    let outcome = match &item.state {
                        ItemState::InPlace => Outcome::AlreadyInPlace,
                        ItemState::Missing => Outcome::NotInPlace("to create".into()),
                        other => Outcome::NotInPlace(state_label(other)),
                    };
                    ItemOutcome { item, outcome }
                })
                .collect(),
        };
        let by_hand = report
            .items
            .iter()
            .filter(|i| matches!(i.item.state, ItemState::Unusable(_) | ItemState::Manual(_)))
            .count();
        let _ = writeln!(
            out,
            "Dry run: nothing was changed. {}",
            match (missing, by_hand) {
                (0, 0) => "Everything is in place.".to_string(),
                (n, 0) => format!("`cosell crm setup` would create the {n} items to create."),
                (n, h) => format!(
                    "`cosell crm setup` would create the {n} items to create; {h} need a person first (marked ✖)."
                ),
            }
        );
        return if by_hand == 0 {
            Ok(report)
        } else {
            Err(SetupError::Incomplete(by_hand))
        };
    }

    let (created, failure) = create_missing(schema.as_ref(), &found).await;
    if !created.is_empty() {
        schema
            .finish(&created)
            .await
            .map_err(|e| SetupError::Finish(e.to_string()))?;
    }
    let after = schema
        .inspect()
        .await
        .map_err(|e| SetupError::Inspect(e.to_string()))?;
    let report = SetupReport {
        items: outcomes(&found, after, &created, failure.as_ref()),
    };
    let mut result = Table::new();
    result.load_style(presets::ASCII_FULL_CONDENSED);
    result.set_header(["Kind", "Name", "Result"]);
    for line in &report.items {
        result.add_row([
            line.item.kind.label().to_string(),
            line.item.name.clone(),
            match &line.outcome {
                Outcome::Created => "created".to_string(),
                Outcome::AlreadyInPlace => "already in place".to_string(),
                Outcome::NotInPlace(why) => format!("✖ {why}"),
            },
        ]);
    }
    let _ = writeln!(out, "{result}");
    if report
        .items
        .iter()
        .any(|i| i.item.kind == ItemKind::Stage && i.outcome == Outcome::Created)
    {
        // The picklist has the stage now, but a sales process offers only the stages it lists,
        // and neither the Tooling API's value set nor setup touches the processes.
        let _ = writeln!(
            out,
            "The hold stage is in the stage picklist. An org with sales processes offers it only where it is added: add it to each process the connector's opportunities use (Setup → Sales Processes)."
        );
    }
    let left = report.not_in_place();
    let _ = writeln!(
        out,
        "Created {}; {} of {} in place.",
        report.created(),
        report.items.len() - left,
        report.items.len()
    );
    if left == 0 {
        Ok(report)
    } else {
        Err(SetupError::Incomplete(left))
    }
}

/// A missing item setup tried to create and could not, with the CRM's answer.
#[derive(Debug, Clone)]
struct Failure {
    name: String,
    message: String,
}

/// Creates the missing items in the order listed, stopping at the first the CRM refuses: a later
/// item may rely on it (a column on a new table, a permission on a new field).
async fn create_missing(
    schema: &dyn CrmSchema,
    found: &[SchemaItem],
) -> (Vec<SchemaItem>, Option<Failure>) {
    let mut created = Vec::new();
    for item in found.iter().filter(|i| i.is_missing()) {
        match schema.create(item).await {
            Ok(()) => created.push(item.clone()),
            Err(e) => {
                return (
                    created,
                    Some(Failure {
                        name: item.name.clone(),
                        message: e.to_string(),
                    }),
                );
            }
        }
    }
    (created, None)
}

/// Each item as it stands after the run, by what it was before and what setup did.
fn outcomes(
    before: &[SchemaItem],
    after: Vec<SchemaItem>,
    created: &[SchemaItem],
    failure: Option<&Failure>,
) -> Vec<ItemOutcome> {
    let was = |item: &SchemaItem| {
        before
            .iter()
            .find(|b| b.kind == item.kind && b.name == item.name)
    };
    after
        .into_iter()
        .map(|item| {
            let made = created
                .iter()
                .any(|c| c.kind == item.kind && c.name == item.name);
            let outcome = match &item.state {
                ItemState::InPlace if made || was(&item).is_some_and(|b| !b.in_place()) => {
                    Outcome::Created
                }
                ItemState::InPlace => Outcome::AlreadyInPlace,
                ItemState::Missing => match failure {
                    Some(f) if f.name == item.name => {
                        Outcome::NotInPlace(format!("could not be created: {}", f.message))
                    }
                    Some(f) => Outcome::NotInPlace(format!(
                        "not created: setup stopped at {}; fix that and run it again",
                        f.name
                    )),
                    None if made => Outcome::NotInPlace(
                        "created, but the CRM does not show it yet: run setup again".into(),
                    ),
                    None => Outcome::NotInPlace("not created".into()),
                },
                other => Outcome::NotInPlace(state_label(other)),
            };
            ItemOutcome { item, outcome }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, state: ItemState) -> SchemaItem {
        SchemaItem::new(ItemKind::Column, name, "text (100)").state(state)
    }

    #[test]
    fn an_item_after_the_refused_one_says_setup_stopped_there() {
        let before = vec![
            item("a", ItemState::InPlace),
            item("b", ItemState::Missing),
            item("c", ItemState::Missing),
            item("d", ItemState::Missing),
        ];
        let after = vec![
            item("a", ItemState::InPlace),
            item("b", ItemState::InPlace),
            item("c", ItemState::Missing),
            item("d", ItemState::Missing),
        ];
        let failure = Failure {
            name: "c".into(),
            message: "the CRM refused the change: no".into(),
        };
        let got = outcomes(&before, after, &before[1..2], Some(&failure));
        let outcome: Vec<&Outcome> = got.iter().map(|o| &o.outcome).collect();
        assert_eq!(outcome[0], &Outcome::AlreadyInPlace);
        assert_eq!(outcome[1], &Outcome::Created);
        assert!(
            matches!(outcome[2], Outcome::NotInPlace(m) if m.contains("could not be created") && m.contains("no"))
        );
        assert!(matches!(outcome[3], Outcome::NotInPlace(m) if m.contains("stopped at c")));
    }
}
