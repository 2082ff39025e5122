//! The connector's tables and columns in a Dataverse environment, read and created through the
//! Web API's metadata (docs/dataverse.md, "Metadata"): a publisher with the configured prefix,
//! an unmanaged solution holding everything created, the columns on `opportunity` and `lead`,
//! the solution-link and catalog tables, change tracking on `opportunity`, and the On Hold
//! status reason.

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::config::{ConfigError, DataverseConfig, DataverseFields, VisibilityEncoding};
use super::http::{Http, Request, values};
use crate::crm::schema::{ColumnType, CrmSchema, Identity, ItemKind, ItemState, SchemaItem, Spec};
use crate::crm::{CrmError, CrmResult};
use crate::http::odata_string;

/// The opportunity status reason the connector's hold stage is (docs/dataverse.md,
/// "Opportunity and lead states": Open / On Hold).
const HOLD_STATE: i64 = 0;
const HOLD_STATUS: i64 = 2;

/// English labels: the connector's users read them in the apps.
const LANGUAGE: i64 = 1033;

/// A column as the metadata API lists it.
#[derive(Debug, Clone)]
struct Column {
    kind: String,
    max_length: Option<usize>,
    writable: bool,
}

/// A table as the metadata API describes it.
#[derive(Debug, Clone)]
struct Table {
    logical: String,
    change_tracking: bool,
    columns: HashMap<String, Column>,
}

/// The schema side of the Dataverse adapter.
pub struct DataverseSchema {
    http: Http,
    fields: DataverseFields,
    solution: String,
    prefix: String,
}

impl DataverseSchema {
    pub fn new(config: DataverseConfig) -> Result<DataverseSchema, ConfigError> {
        config.validate()?;
        Ok(DataverseSchema {
            http: Http::new(&config)?,
            fields: config.fields,
            solution: config.solution,
            prefix: config.publisher_prefix,
        })
    }

    async fn get(&self, path: &str) -> CrmResult<Value> {
        Ok(self
            .http
            .call(&Request::get(self.http.url(path)))
            .await?
            .body)
    }

    /// The table behind an entity set, or `None` when there is none.
    async fn table_by_set(&self, set: &str) -> CrmResult<Option<Table>> {
        let body = self
            .get(&format!(
                "EntityDefinitions?$select=LogicalName,EntitySetName,ChangeTrackingEnabled&$filter=EntitySetName eq {}",
                odata_string(set)
            ))
            .await?;
        match values(&body).first() {
            None => Ok(None),
            Some(def) => {
                let logical = text(def, "LogicalName")?;
                self.table(&logical).await.map(Some)
            }
        }
    }

    async fn table(&self, logical: &str) -> CrmResult<Table> {
        let base = format!("EntityDefinitions(LogicalName={})", odata_string(logical));
        let def = self
            .get(&format!("{base}?$select=LogicalName,ChangeTrackingEnabled"))
            .await?;
        let mut columns = HashMap::new();
        let list = self
            .get(&format!(
                "{base}/Attributes?$select=LogicalName,AttributeType,IsValidForCreate,IsValidForUpdate"
            ))
            .await?;
        for a in values(&list) {
            let name = text(&a, "LogicalName")?;
            columns.insert(
                name,
                Column {
                    kind: a
                        .get("AttributeType")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    max_length: None,
                    writable: a.get("IsValidForUpdate").and_then(Value::as_bool) != Some(false),
                },
            );
        }
        for cast in ["StringAttributeMetadata", "MemoAttributeMetadata"] {
            let lengths = self
                .get(&format!(
                    "{base}/Attributes/Microsoft.Dynamics.CRM.{cast}?$select=LogicalName,MaxLength"
                ))
                .await?;
            for a in values(&lengths) {
                if let (Some(name), Some(len)) = (
                    a.get("LogicalName").and_then(Value::as_str),
                    a.get("MaxLength").and_then(Value::as_u64),
                ) && let Some(c) = columns.get_mut(name)
                {
                    c.max_length = usize::try_from(len).ok();
                }
            }
        }
        Ok(Table {
            logical: text(&def, "LogicalName")?,
            change_tracking: def.get("ChangeTrackingEnabled").and_then(Value::as_bool)
                == Some(true),
            columns,
        })
    }

    /// What is wrong with `found` for a column the connector uses as `wanted`, if anything.
    fn fit(found: &Column, wanted: &ColumnType, written: bool) -> Option<String> {
        let kind = found.kind.as_str();
        let long_enough = |min: usize| match found.max_length {
            Some(len) if len < min => Some(format!(
                "is only {len} characters long; the connector needs at least {min}"
            )),
            _ => None,
        };
        let problem = match wanted {
            ColumnType::YesNo => (kind != "Boolean").then(|| format!("is {kind}, not Yes/No")),
            ColumnType::Choice { .. } => {
                (kind != "Picklist").then(|| format!("is {kind}, not a choice"))
            }
            ColumnType::Text { min, .. } | ColumnType::LongText { min, .. } => {
                if matches!(kind, "String" | "Memo") {
                    long_enough(*min)
                } else {
                    Some(format!("is {kind}, not text"))
                }
            }
            ColumnType::ExternalId { length } => {
                if kind == "String" {
                    long_enough(*length)
                } else {
                    Some(format!("is {kind}, not text"))
                }
            }
            ColumnType::Url => {
                (!matches!(kind, "String" | "Memo")).then(|| format!("is {kind}, not text"))
            }
            ColumnType::Lookup { .. } => {
                (!matches!(kind, "Lookup" | "Customer")).then(|| format!("is {kind}, not a lookup"))
            }
            ColumnType::Any => None,
        };
        problem.or_else(|| {
            (written && !found.writable)
                .then(|| "cannot be written through the API (IsValidForUpdate is false)".into())
        })
    }

    /// The column items of one table: missing when the table or the column is.
    fn columns(
        &self,
        items: &mut Vec<SchemaItem>,
        table_logical: &str,
        found: Option<&Table>,
        wanted: &[Wanted],
    ) {
        for w in wanted {
            let name = format!("{table_logical}.{}", w.name);
            let mut item = SchemaItem::new(
                if matches!(w.column, ColumnType::Lookup { .. }) {
                    ItemKind::Relationship
                } else {
                    ItemKind::Column
                },
                name,
                w.column.describe(),
            )
            .spec(Spec::Column {
                table: table_logical.to_string(),
                name: w.name.clone(),
                column: w.column.clone(),
            });
            let existing = found.and_then(|t| t.columns.get(&w.name));
            item.state = match existing {
                Some(c) => match Self::fit(c, &w.column, w.written) {
                    None => ItemState::InPlace,
                    Some(problem) => ItemState::Unusable(format!(
                        "{problem} (change the column, or name another in {})",
                        w.setting
                    )),
                },
                None if !w.creatable => ItemState::Manual(format!(
                    "the environment has no column {}: it is a standard one, so check the name in {}",
                    w.name, w.setting
                )),
                None => match self.creatable_name(&w.name) {
                    Ok(()) => ItemState::Missing,
                    Err(why) => ItemState::Manual(format!("{why} (or rename it in {})", w.setting)),
                },
            };
            items.push(item);
        }
    }

    /// Setup creates only names with the publisher's prefix, as Dataverse requires inside
    /// the solution.
    fn creatable_name(&self, name: &str) -> Result<(), String> {
        let prefix = format!("{}_", self.prefix);
        if name.starts_with(&prefix) && name.len() > prefix.len() {
            Ok(())
        } else {
            Err(format!(
                "{name} lacks the publisher prefix {prefix} (COSELL_DATAVERSE_PUBLISHER_PREFIX), so setup cannot create it; create it by hand"
            ))
        }
    }

    /// A table the connector keeps its own rows in, and its columns.
    async fn own_table(
        &self,
        items: &mut Vec<SchemaItem>,
        set: &str,
        setting_key: &str,
        primary_name: &str,
        key: Option<(&str, &str)>,
        wanted: &[Wanted],
    ) -> CrmResult<()> {
        let found = self.table_by_set(set).await?;
        let logical = match &found {
            Some(t) => t.logical.clone(),
            // Dataverse names a table's entity set after its logical name plus "s".
            None => set.strip_suffix('s').unwrap_or(set).to_string(),
        };
        let mut item = SchemaItem::new(
            ItemKind::Table,
            set,
            format!("{logical}, name column {primary_name}"),
        )
        .spec(Spec::Table {
            set: set.to_string(),
            logical: logical.clone(),
            primary_name: primary_name.to_string(),
        });
        if found.is_none() {
            let primary_key = format!("{logical}id");
            let clash = wanted.iter().find(|w| w.name == primary_key);
            item.state = if !set.ends_with('s') {
                ItemState::Manual(format!(
                    "setup names a new table's entity set after its logical name plus s; choose such a name in COSELL_DATAVERSE_FIELDS {setting_key}"
                ))
            } else if let Some(w) = clash {
                ItemState::Manual(format!(
                    "a table {logical} has the primary key {primary_key}, which {} also names; choose another entity set in COSELL_DATAVERSE_FIELDS {setting_key}",
                    w.setting
                ))
            } else if let Some((key, key_setting)) = key.filter(|(k, _)| *k != primary_key) {
                ItemState::Manual(format!(
                    "a new table {logical} gets the primary key {primary_key}, not {key}; set {key_setting} to {primary_key}"
                ))
            } else {
                match self.creatable_name(&logical) {
                    Ok(()) => ItemState::Missing,
                    Err(why) => ItemState::Manual(why),
                }
            };
        }
        items.push(item);
        let mut all = vec![Wanted::text(
            primary_name,
            200,
            1,
            "COSELL_DATAVERSE_FIELDS",
        )];
        all.extend(wanted.iter().cloned());
        let mut cols = Vec::new();
        self.columns(&mut cols, &logical, found.as_ref(), &all);
        // A new table comes with its name column.
        if found.is_none() {
            cols.remove(0);
        }
        items.extend(cols);
        Ok(())
    }

    fn opportunity_columns(&self) -> Vec<Wanted> {
        let f = &self.fields;
        let set = "COSELL_DATAVERSE_FIELDS";
        let mut w = vec![
            Wanted::new(&f.sync_with_partner_center, ColumnType::YesNo, set),
            Wanted::text(&f.referral_id, 100, 36, set),
            Wanted::text(&f.referral_link, 500, 100, set),
            Wanted::text(&f.microsoft_help, 100, 40, set),
            match &f.visibility_encoding {
                VisibilityEncoding::Boolean => Wanted::new(&f.visibility, ColumnType::YesNo, set),
                VisibilityEncoding::Choice { .. } => {
                    let mut v = Wanted::new(
                        &f.visibility,
                        ColumnType::Choice {
                            values: vec!["private".into(), "visible".into()],
                            restricted: true,
                        },
                        set,
                    );
                    // The option values are the partner's; setup cannot guess them.
                    v.creatable = false;
                    v
                }
            },
            Wanted::text(&f.microsoft_crm_id, 100, 20, set),
            Wanted::text(&f.microsoft_status, 100, 20, set),
            Wanted::new(
                &f.audit,
                ColumnType::LongText {
                    length: 100_000,
                    min: 2000,
                },
                set,
            ),
        ];
        for (name, length) in [
            (&f.solution_area, 200),
            (&f.solution_play, 200),
            (&f.partner_role, 100),
        ] {
            if let Some(name) = name {
                w.push(Wanted::text(name, length, 50, set));
            }
        }
        if let Some(name) = &f.marketplace_intent {
            let mut v = Wanted::text(name, 50, 16, set);
            v.written = false;
            w.push(v);
        }
        w.push(Wanted::standard(&f.deal_value, ColumnType::Any, set));
        w.push(Wanted::standard(
            &f.currency,
            ColumnType::Lookup {
                target: "transactioncurrency".into(),
                required: false,
            },
            set,
        ));
        w
    }
}

/// A column the connector needs, and where its name is set.
#[derive(Debug, Clone)]
struct Wanted {
    name: String,
    column: ColumnType,
    setting: &'static str,
    /// The connector writes it.
    written: bool,
    /// Setup may create it (the connector's own columns, not standard ones).
    creatable: bool,
}

impl Wanted {
    fn new(name: &str, column: ColumnType, setting: &'static str) -> Wanted {
        Wanted {
            name: name.to_string(),
            column,
            setting,
            written: true,
            creatable: true,
        }
    }

    fn text(name: &str, length: usize, min: usize, setting: &'static str) -> Wanted {
        Wanted::new(name, ColumnType::Text { length, min }, setting)
    }

    /// A standard column: it must exist, of the type given (often [`ColumnType::Any`]).
    fn standard(name: &str, column: ColumnType, setting: &'static str) -> Wanted {
        Wanted {
            creatable: false,
            written: false,
            ..Wanted::new(name, column, setting)
        }
    }
}

fn text(v: &Value, key: &str) -> CrmResult<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| CrmError::Transient {
            status: None,
            retry_after: None,
            message: format!("Dataverse's metadata answered without {key}"),
        })
}

fn label(text: &str) -> Value {
    json!({
        "@odata.type": "Microsoft.Dynamics.CRM.Label",
        "LocalizedLabels": [{
            "@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel",
            "Label": text,
            "LanguageCode": LANGUAGE,
        }],
    })
}

/// A person's name for a column: `cosell_microsoftcrmid` → `Microsoftcrmid`; good enough
/// for a label an admin may rename, and never empty.
fn display_name(name: &str) -> String {
    let bare = name.split_once('_').map_or(name, |(_, rest)| rest);
    let mut chars = bare.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => name.to_string(),
    }
}

fn required_level(required: bool) -> Value {
    json!({"Value": if required { "ApplicationRequired" } else { "None" }})
}

/// The metadata body of a column that is not a lookup.
fn attribute(name: &str, column: &ColumnType) -> Value {
    let common = json!({
        "SchemaName": name,
        "DisplayName": label(&display_name(name)),
        "RequiredLevel": required_level(false),
    });
    let specific = match column {
        ColumnType::YesNo => json!({
            "@odata.type": "Microsoft.Dynamics.CRM.BooleanAttributeMetadata",
            "DefaultValue": false,
            "OptionSet": {
                "TrueOption": {"Value": 1, "Label": label("Yes")},
                "FalseOption": {"Value": 0, "Label": label("No")},
            },
        }),
        ColumnType::LongText { length, .. } => json!({
            "@odata.type": "Microsoft.Dynamics.CRM.MemoAttributeMetadata",
            "MaxLength": length,
            "Format": "TextArea",
        }),
        ColumnType::Text { length, .. } | ColumnType::ExternalId { length } => json!({
            "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
            "MaxLength": length,
            "FormatName": {"Value": "Text"},
        }),
        ColumnType::Url => json!({
            "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
            "MaxLength": 500,
            "FormatName": {"Value": "Url"},
        }),
        // Never created: see `Wanted::creatable`.
        ColumnType::Choice { .. } | ColumnType::Lookup { .. } | ColumnType::Any => json!({}),
    };
    let mut body = common;
    if let (Some(b), Some(s)) = (body.as_object_mut(), specific.as_object()) {
        b.extend(s.clone());
    }
    body
}

#[async_trait]
impl CrmSchema for DataverseSchema {
    async fn inspect(&self) -> CrmResult<Vec<SchemaItem>> {
        let mut items = Vec::new();
        let prefix = &self.prefix;
        let publishers = self
            .get(&format!(
                "publishers?$select=publisherid,uniquename&$filter=customizationprefix eq {}",
                odata_string(prefix)
            ))
            .await?;
        items.push(
            SchemaItem::new(
                ItemKind::Publisher,
                prefix.as_str(),
                format!("customization prefix {prefix}"),
            )
            .state(if values(&publishers).is_empty() {
                ItemState::Missing
            } else {
                ItemState::InPlace
            })
            .spec(Spec::Publisher),
        );
        let ours: Vec<String> = values(&publishers)
            .iter()
            .filter_map(|p| p.get("publisherid").and_then(Value::as_str))
            .map(str::to_ascii_lowercase)
            .collect();
        let solutions = self
            .get(&format!(
                "solutions?$select=solutionid,ismanaged,_publisherid_value&$filter=uniquename eq {}",
                odata_string(&self.solution)
            ))
            .await?;
        let solution = values(&solutions).into_iter().next();
        // Dataverse refuses a component whose name lacks the prefix of the solution's own
        // publisher, so a solution of another publisher would fail every create later on.
        let foreign = solution.as_ref().is_some_and(|s| {
            s.get("_publisherid_value")
                .and_then(Value::as_str)
                .is_some_and(|p| !ours.contains(&p.to_ascii_lowercase()))
        });
        items.push(
            SchemaItem::new(ItemKind::Solution, self.solution.as_str(), "unmanaged")
                .state(match &solution {
                    None => ItemState::Missing,
                    Some(s) if s.get("ismanaged").and_then(Value::as_bool) == Some(true) => {
                        ItemState::Unusable(
                            "is a managed solution, which cannot take new components; name an unmanaged one in COSELL_DATAVERSE_SOLUTION".into(),
                        )
                    }
                    Some(_) if foreign => ItemState::Unusable(format!(
                        "belongs to a publisher whose prefix is not {prefix}; set COSELL_DATAVERSE_PUBLISHER_PREFIX to its publisher's prefix, or name another solution in COSELL_DATAVERSE_SOLUTION"
                    )),
                    Some(_) => ItemState::InPlace,
                })
                .spec(Spec::Solution),
        );

        let opportunity = self.table("opportunity").await?;
        let wanted = self.opportunity_columns();
        self.columns(&mut items, "opportunity", Some(&opportunity), &wanted);
        let f = &self.fields;
        let set = "COSELL_DATAVERSE_FIELDS";
        let lead = self.table("lead").await?;
        self.columns(
            &mut items,
            "lead",
            Some(&lead),
            &[
                Wanted::text(&f.lead_referral_id, 100, 36, set),
                Wanted::text(&f.lead_referral_link, 500, 100, set),
                Wanted::new(
                    &f.lead_audit,
                    ColumnType::LongText {
                        length: 100_000,
                        min: 2000,
                    },
                    set,
                ),
                Wanted::standard(&f.lead_country, ColumnType::Text { length: 0, min: 2 }, set),
            ],
        );
        let account = self.table("account").await?;
        let mut account_wanted = vec![Wanted::standard(
            &f.account_country,
            ColumnType::Text { length: 0, min: 2 },
            set,
        )];
        if let Some(state) = &f.account_state {
            account_wanted.push(Wanted::standard(state, ColumnType::Any, set));
        }
        self.columns(&mut items, "account", Some(&account), &account_wanted);

        let link_name = f
            .solution_link_name
            .clone()
            .unwrap_or_else(|| format!("{prefix}_name"));
        self.own_table(
            &mut items,
            &f.solution_link_set,
            "solutionLinkSet",
            &link_name,
            None,
            &[
                Wanted::text(&f.solution_id, 100, 36, set),
                Wanted::new(
                    &f.solution_link_opportunity,
                    ColumnType::Lookup {
                        target: "opportunity".into(),
                        required: true,
                    },
                    set,
                ),
            ],
        )
        .await?;
        let mut catalog = vec![Wanted::text(&f.catalog_solution_id, 100, 36, set)];
        if let Some(d) = &f.catalog_description {
            catalog.push(Wanted::new(
                d,
                ColumnType::LongText {
                    length: 2000,
                    min: 200,
                },
                set,
            ));
        }
        self.own_table(
            &mut items,
            &f.catalog_set,
            "catalogSet",
            &f.catalog_name,
            Some((&f.catalog_key, "COSELL_DATAVERSE_FIELDS catalogKey")),
            &catalog,
        )
        .await?;

        items.push(
            SchemaItem::new(
                ItemKind::ChangeTracking,
                "opportunity",
                "the poller reads the change feed",
            )
            .state(if opportunity.change_tracking {
                ItemState::InPlace
            } else {
                ItemState::Missing
            })
            .spec(Spec::ChangeTracking {
                table: "opportunity".into(),
            }),
        );
        let status = self
            .get("EntityDefinitions(LogicalName='opportunity')/Attributes(LogicalName='statuscode')/Microsoft.Dynamics.CRM.StatusAttributeMetadata?$select=LogicalName&$expand=OptionSet")
            .await?;
        let options = status
            .pointer("/OptionSet/Options")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let hold = options
            .iter()
            .find(|o| o.get("Value").and_then(Value::as_i64) == Some(HOLD_STATUS));
        items.push(
            SchemaItem::new(
                ItemKind::StatusReason,
                "opportunity.statuscode",
                format!("{HOLD_STATUS} On Hold, in Open"),
            )
            .state(match hold {
                None => ItemState::Missing,
                Some(o) if o.get("State").and_then(Value::as_i64) != Some(HOLD_STATE) => {
                    ItemState::Unusable(format!(
                        "status reason {HOLD_STATUS} belongs to another state than Open; the connector holds referrals in Open / {HOLD_STATUS}"
                    ))
                }
                Some(_) => ItemState::InPlace,
            })
            .spec(Spec::StatusReason {
                table: "opportunity".into(),
                state: HOLD_STATE,
                value: HOLD_STATUS,
                label: "On Hold".into(),
            }),
        );
        Ok(items)
    }

    async fn create(&self, item: &SchemaItem) -> CrmResult<()> {
        let in_solution = || vec![("MSCRM.SolutionUniqueName", self.solution.clone())];
        match &item.spec {
            Spec::Publisher => {
                let body = json!({
                    "uniquename": format!("{}Publisher", self.solution),
                    "friendlyname": "Co-sell connector",
                    "customizationprefix": self.prefix,
                    "customizationoptionvalueprefix": option_value_prefix(&self.prefix),
                });
                self.http
                    .call(&Request::post(self.http.url("publishers"), &body))
                    .await?;
            }
            Spec::Solution => {
                let publishers = self
                    .get(&format!(
                        "publishers?$select=publisherid&$filter=customizationprefix eq {}",
                        odata_string(&self.prefix)
                    ))
                    .await?;
                let id = values(&publishers)
                    .first()
                    .map(|p| text(p, "publisherid"))
                    .transpose()?
                    .ok_or_else(|| CrmError::Rejected {
                        message: format!("no publisher has the prefix {}", self.prefix),
                        field: None,
                    })?;
                let body = json!({
                    "uniquename": self.solution,
                    "friendlyname": "Co-sell connector",
                    "version": "1.0.0.0",
                    "publisherid@odata.bind": format!("/publishers({id})"),
                });
                self.http
                    .call(&Request::post(self.http.url("solutions"), &body))
                    .await?;
            }
            Spec::Table {
                set,
                logical,
                primary_name,
            } => {
                let name = display_name(logical);
                let mut primary = attribute(
                    primary_name,
                    &ColumnType::Text {
                        length: 200,
                        min: 1,
                    },
                );
                primary["IsPrimaryName"] = json!(true);
                let body = json!({
                    "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
                    "SchemaName": logical,
                    "EntitySetName": set,
                    "DisplayName": label(&name),
                    "DisplayCollectionName": label(&format!("{name}s")),
                    "OwnershipType": "OrganizationOwned",
                    "IsActivity": false,
                    "HasActivities": false,
                    "HasNotes": false,
                    "Attributes": [primary],
                });
                let mut req = Request::post(self.http.url("EntityDefinitions"), &body);
                req.headers = in_solution();
                self.http.call(&req).await?;
            }
            Spec::Column {
                table,
                name,
                column: ColumnType::Lookup { target, required },
            } => {
                let body = json!({
                    "@odata.type": "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
                    "SchemaName": format!("{}_{target}_{table}", self.prefix),
                    "ReferencedEntity": target,
                    "ReferencedAttribute": format!("{target}id"),
                    "ReferencingEntity": table,
                    "CascadeConfiguration": {
                        "Assign": "NoCascade",
                        "Delete": "Cascade",
                        "Merge": "NoCascade",
                        "Reparent": "NoCascade",
                        "Share": "NoCascade",
                        "Unshare": "NoCascade",
                    },
                    "Lookup": {
                        "@odata.type": "Microsoft.Dynamics.CRM.LookupAttributeMetadata",
                        "AttributeType": "Lookup",
                        "AttributeTypeName": {"Value": "LookupType"},
                        // Lower case: the navigation property clients bind with is the
                        // schema name, and the connector binds with the logical name.
                        "SchemaName": name,
                        "DisplayName": label(&display_name(target)),
                        "RequiredLevel": required_level(*required),
                    },
                });
                let mut req = Request::post(self.http.url("RelationshipDefinitions"), &body);
                req.headers = in_solution();
                self.http.call(&req).await?;
            }
            Spec::Column {
                table,
                name,
                column,
            } => {
                let body = attribute(name, column);
                let mut req = Request::post(
                    self.http.url(&format!(
                        "EntityDefinitions(LogicalName={})/Attributes",
                        odata_string(table)
                    )),
                    &body,
                );
                req.headers = in_solution();
                self.http.call(&req).await?;
            }
            Spec::ChangeTracking { table } => {
                // A PUT replaces the whole definition, so it sends back all of it as read.
                let mut def = self
                    .get(&format!(
                        "EntityDefinitions(LogicalName={})",
                        odata_string(table)
                    ))
                    .await?;
                let id = text(&def, "MetadataId")?;
                if let Some(o) = def.as_object_mut() {
                    o.retain(|k, _| !k.starts_with("@odata."));
                    o.insert("ChangeTrackingEnabled".into(), json!(true));
                }
                let mut req =
                    Request::post(self.http.url(&format!("EntityDefinitions({id})")), &def);
                req.method = reqwest::Method::PUT;
                // In the solution too, so the setting travels with an export of it.
                let mut headers = vec![("MSCRM.MergeLabels", "true".to_string())];
                headers.extend(in_solution());
                req.headers = headers;
                self.http.call(&req).await?;
            }
            Spec::StatusReason {
                table,
                state,
                value,
                label: text,
            } => {
                let body = json!({
                    "EntityLogicalName": table,
                    "AttributeLogicalName": "statuscode",
                    "StateCode": state,
                    "Value": value,
                    "Label": label(text),
                    "SolutionUniqueName": self.solution,
                });
                self.http
                    .call(&Request::post(self.http.url("InsertStatusValue"), &body))
                    .await?;
            }
            other => {
                return Err(CrmError::Rejected {
                    message: format!("Dataverse has no {other:?} to create"),
                    field: None,
                });
            }
        }
        Ok(())
    }

    async fn finish(&self, created: &[SchemaItem]) -> CrmResult<()> {
        let mut tables: Vec<&str> = created
            .iter()
            .filter_map(|i| match &i.spec {
                Spec::Table { logical, .. } => Some(logical.as_str()),
                Spec::Column { table, .. } | Spec::StatusReason { table, .. } => {
                    Some(table.as_str())
                }
                _ => None,
            })
            .collect();
        tables.sort_unstable();
        tables.dedup();
        if tables.is_empty() {
            return Ok(());
        }
        let entities: String = tables
            .iter()
            .map(|t| format!("<entity>{t}</entity>"))
            .collect();
        let body = json!({
            "ParameterXml": format!("<importexportxml><entities>{entities}</entities></importexportxml>"),
        });
        self.http
            .call(&Request::post(self.http.url("PublishXml"), &body))
            .await?;
        Ok(())
    }

    async fn identity(&self) -> CrmResult<Identity> {
        let who = self.get("WhoAmI").await?;
        Ok(Identity {
            user_id: text(&who, "UserId")?,
            organization: who
                .get("OrganizationId")
                .and_then(Value::as_str)
                .map(str::to_string),
            daily_api_requests: None,
        })
    }

    async fn currencies(&self) -> CrmResult<Vec<String>> {
        let rows = self
            .http
            .list(
                self.http
                    .url("transactioncurrencies?$select=isocurrencycode"),
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.get("isocurrencycode").and_then(Value::as_str))
            .map(str::to_ascii_uppercase)
            .collect())
    }
}

/// A publisher's option value prefix (10000–99999), derived from its customization prefix so
/// the same prefix always gets the same one.
fn option_value_prefix(prefix: &str) -> u32 {
    let hash = prefix
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    10_000 + hash % 90_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_value_prefixes_are_in_the_documented_range_and_stable() {
        for p in ["cosell", "new", "ab", "zzzzzzzz"] {
            let v = option_value_prefix(p);
            assert!((10_000..=99_999).contains(&v), "{p}: {v}");
            assert_eq!(v, option_value_prefix(p));
        }
    }

    #[test]
    fn a_column_too_short_or_of_another_type_is_named_unusable() {
        let col = |kind: &str, len: Option<usize>, writable: bool| Column {
            kind: kind.into(),
            max_length: len,
            writable,
        };
        let text = ColumnType::Text {
            length: 100,
            min: 36,
        };
        assert_eq!(
            DataverseSchema::fit(&col("String", Some(100), true), &text, true),
            None
        );
        let short = DataverseSchema::fit(&col("String", Some(20), true), &text, true);
        assert!(short.is_some_and(|s| s.contains("20")));
        let wrong = DataverseSchema::fit(&col("Integer", None, true), &ColumnType::YesNo, true);
        assert!(wrong.is_some_and(|s| s.contains("Integer")));
        let read_only =
            DataverseSchema::fit(&col("Boolean", None, false), &ColumnType::YesNo, true);
        assert!(read_only.is_some_and(|s| s.contains("IsValidForUpdate")));
        assert_eq!(
            DataverseSchema::fit(&col("Boolean", None, false), &ColumnType::YesNo, false),
            None
        );
    }

    #[test]
    fn column_bodies_carry_the_documented_metadata_types() {
        let b = attribute("cosell_syncwithpartnercenter", &ColumnType::YesNo);
        assert_eq!(
            b["@odata.type"],
            "Microsoft.Dynamics.CRM.BooleanAttributeMetadata"
        );
        assert_eq!(b["SchemaName"], "cosell_syncwithpartnercenter");
        assert_eq!(b["OptionSet"]["TrueOption"]["Value"], 1);
        let m = attribute(
            "cosell_audit",
            &ColumnType::LongText {
                length: 100_000,
                min: 2000,
            },
        );
        assert_eq!(
            m["@odata.type"],
            "Microsoft.Dynamics.CRM.MemoAttributeMetadata"
        );
        assert_eq!(m["MaxLength"], 100_000);
        assert_eq!(display_name("cosell_audit"), "Audit");
    }
}
