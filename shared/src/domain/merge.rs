//! The three-way merge of the synced fields: the projection both sides agreed on at the last
//! sync (the base), the CRM's projection now and Partner Center's projection now.
//!
//! Comparing each side with the base, not the two sides with each other, is what tells an edit
//! from an echo: a field the connector wrote at the last sync equals the base on both sides, so
//! it is never sent again, and a field only one side changed always reaches the other, whatever
//! the other side did to its other fields.
//!
//! Only the fields both sides edit are merged: name, deal value, currency, close date, notes,
//! Microsoft help and visibility. The referral's status moves by explicit actions (see
//! `stage::status_action`), and the Microsoft status and Microsoft CRM id are Microsoft's:
//! those three flow from Partner Center to the CRM only, and whatever the CRM holds in them is
//! never sent.

use chrono::{DateTime, Utc};

use super::inbound::{Changed, opportunity_update};
use super::projection::Projection;
use crate::domain::records::OpportunityFields;

/// One of the fields the merge reconciles in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Name,
    DealValue,
    Currency,
    CloseDate,
    Notes,
    MicrosoftHelp,
    Visible,
}

impl Field {
    /// Every two-way field, in the order Audit lines list them.
    pub const ALL: [Field; 7] = [
        Field::Name,
        Field::DealValue,
        Field::Currency,
        Field::CloseDate,
        Field::Notes,
        Field::MicrosoftHelp,
        Field::Visible,
    ];

    /// The field as sellers read it in Audit; the same words as [`Changed::names`].
    pub fn label(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::DealValue => "deal value",
            Field::Currency => "currency",
            Field::CloseDate => "close date",
            Field::Notes => "notes",
            Field::MicrosoftHelp => "Microsoft help",
            Field::Visible => "visibility",
        }
    }

    /// Whether `a` and `b` hold different values of this field, as they are (not normalised).
    pub fn differs(self, a: &Projection, b: &Projection) -> bool {
        match self {
            Field::Name => a.name != b.name,
            Field::DealValue => a.deal_value != b.deal_value,
            Field::Currency => a.currency != b.currency,
            Field::CloseDate => a.close_date != b.close_date,
            Field::Notes => a.notes != b.notes,
            Field::MicrosoftHelp => a.microsoft_help != b.microsoft_help,
            Field::Visible => a.visible != b.visible,
        }
    }

    fn flag(self, changed: &mut Changed, on: bool) {
        let slot = match self {
            Field::Name => &mut changed.name,
            Field::DealValue => &mut changed.deal_value,
            Field::Currency => &mut changed.currency,
            Field::CloseDate => &mut changed.close_date,
            Field::Notes => &mut changed.notes,
            Field::MicrosoftHelp => &mut changed.microsoft_help,
            Field::Visible => &mut changed.visible,
        };
        *slot = on;
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Where a change was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Crm,
    PartnerCenter,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Crm => "the CRM",
            Side::PartnerCenter => "Partner Center",
        })
    }
}

/// Which side's change is kept when both changed a field to different values: the later one.
///
/// When either time is unknown, or both are equal, Partner Center wins. The Audit line that
/// reports the conflict is written in the CRM, so the person whose edit was replaced is the
/// seller, who sees it and can make the edit again; had the CRM won, the Microsoft seller or
/// partner whose Partner Center edit was overwritten would never be told.
pub fn winner(crm_changed_at: Option<DateTime<Utc>>, pc_changed_at: Option<DateTime<Utc>>) -> Side {
    match (crm_changed_at, pc_changed_at) {
        (Some(crm), Some(pc)) if crm > pc => Side::Crm,
        _ => Side::PartnerCenter,
    }
}

/// What to write to one side: the flagged `fields`, with the values in `values` (the merged
/// projection). A flagged field whose value is `None` is to be emptied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    pub fields: Changed,
    pub values: Projection,
}

impl Update {
    pub fn is_empty(&self) -> bool {
        !self.fields.any()
    }

    /// The flagged fields for an Audit line, in a fixed order.
    pub fn names(&self) -> Vec<&'static str> {
        self.fields.names()
    }

    /// What a side holding `side` holds after this update was written to it.
    pub fn apply_to(&self, side: &Projection) -> Projection {
        let (f, v) = (&self.fields, &self.values);
        let mut out = side.clone();
        if f.name {
            out.name.clone_from(&v.name);
        }
        if f.deal_value {
            out.deal_value = v.deal_value;
        }
        if f.currency {
            out.currency.clone_from(&v.currency);
        }
        if f.close_date {
            out.close_date = v.close_date;
        }
        if f.notes {
            out.notes.clone_from(&v.notes);
        }
        if f.status {
            out.status.clone_from(&v.status);
        }
        if f.microsoft_help {
            out.microsoft_help.clone_from(&v.microsoft_help);
        }
        if f.visible {
            out.visible = v.visible;
        }
        if f.microsoft_status {
            out.microsoft_status.clone_from(&v.microsoft_status);
        }
        if f.microsoft_crm_id {
            out.microsoft_crm_id.clone_from(&v.microsoft_crm_id);
        }
        out
    }

    /// The opportunity fields to write for this update (everything not flagged stays `None`,
    /// i.e. untouched in the CRM).
    pub fn opportunity_fields(&self) -> OpportunityFields {
        opportunity_update(&self.values, &self.fields)
    }
}

/// A field both sides changed to different values.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub field: Field,
    /// The CRM's value, as a seller reads it.
    pub crm: String,
    /// Partner Center's value, as a seller reads it.
    pub pc: String,
    pub winner: Side,
    /// Whether the two change times decided it; otherwise Partner Center won by default.
    pub by_time: bool,
}

impl Conflict {
    /// The Audit line that tells the seller which value was kept and which was replaced.
    pub fn audit_line(&self) -> String {
        let kept = if self.by_time {
            format!("the later change, in {}, was kept", self.winner)
        } else {
            format!(
                "the value in {} was kept, as which change came last is not known",
                self.winner
            )
        };
        format!(
            "{} was changed on both sides ({} in the CRM, {} in Partner Center): {kept}",
            capitalised(self.field.label()),
            self.crm,
            self.pc,
        )
    }
}

/// A CRM change the connector does not send, with the reason for the seller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: Field,
    pub message: String,
}

/// The outcome of a three-way merge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Merge {
    /// What both sides hold once both writes succeeded: the next sync's base.
    pub merged: Projection,
    /// Fields to write to Partner Center.
    pub to_pc: Update,
    /// Fields to write to the CRM (including the Microsoft-only fields and the status, which
    /// flow from Partner Center only).
    pub to_crm: Update,
    pub conflicts: Vec<Conflict>,
    pub refusals: Vec<Refusal>,
    /// The seller removed the customer contact: Partner Center's team is to be emptied.
    pub contact_removed_to_pc: bool,
    /// Partner Center's team was emptied: the opportunity's contact is to be removed.
    pub contact_removed_to_crm: bool,
}

impl Merge {
    /// Nothing to write to either side.
    pub fn writes_nothing(&self) -> bool {
        self.to_pc.is_empty()
            && self.to_crm.is_empty()
            && !self.contact_removed_to_pc
            && !self.contact_removed_to_crm
    }

    /// The opportunity fields to write (see [`Update::opportunity_fields`]).
    pub fn crm_update(&self) -> OpportunityFields {
        let mut fields = self.to_crm.opportunity_fields();
        if self.contact_removed_to_crm {
            fields
                .clear
                .push(crate::domain::records::ClearField::Contact);
        }
        fields
    }

    /// The fields sent to Partner Center, for an Audit line.
    pub fn pc_field_names(&self) -> Vec<&'static str> {
        self.to_pc.names()
    }

    /// One Audit line per conflict.
    pub fn conflict_lines(&self) -> Vec<String> {
        self.conflicts.iter().map(Conflict::audit_line).collect()
    }

    /// One Audit line per refused change.
    pub fn refusal_lines(&self) -> Vec<String> {
        self.refusals.iter().map(|r| r.message.clone()).collect()
    }
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Texts compare without their surrounding blanks, and a blank text is no value: a CRM reads
/// an emptied field back as null and may trim what it stores, Partner Center may keep `""` or
/// a trailing space, and none of that must look like an edit to the other side (each would
/// be written back at every sync).
fn text(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The projection as the merge compares it: texts trimmed, blank texts `None`, and no
/// visibility the same as private (a referral without the consent is not shared).
pub fn normalised(p: &Projection) -> Projection {
    Projection {
        name: text(&p.name),
        deal_value: p.deal_value,
        currency: text(&p.currency),
        close_date: p.close_date,
        notes: text(&p.notes),
        status: text(&p.status),
        microsoft_help: text(&p.microsoft_help),
        visible: Some(p.visible == Some(true)),
        microsoft_status: text(&p.microsoft_status),
        microsoft_crm_id: text(&p.microsoft_crm_id),
        has_contact: Some(p.has_contact == Some(true)),
    }
}

/// One field through the three-way rule.
struct FieldMerge<T> {
    value: Option<T>,
    to_pc: bool,
    to_crm: bool,
    conflict: Option<Side>,
}

fn three_way<T: Clone + PartialEq>(
    base: &Option<T>,
    crm: &Option<T>,
    pc: &Option<T>,
    winner: Side,
) -> FieldMerge<T> {
    let (crm_changed, pc_changed) = (crm != base, pc != base);
    let keep = |value: &Option<T>, to_pc, to_crm, conflict| FieldMerge {
        value: value.clone(),
        to_pc,
        to_crm,
        conflict,
    };
    match (crm_changed, pc_changed) {
        (false, false) => keep(base, false, false, None),
        (true, false) => keep(crm, true, false, None),
        (false, true) => keep(pc, false, true, None),
        // The same edit on both sides is agreement, not a conflict.
        (true, true) if crm == pc => keep(pc, false, false, None),
        (true, true) => match winner {
            Side::Crm => keep(crm, true, false, Some(Side::Crm)),
            Side::PartnerCenter => keep(pc, false, true, Some(Side::PartnerCenter)),
        },
    }
}

/// How a field's value reads in an Audit line.
trait Shown {
    fn shown(&self) -> String;
}

impl Shown for String {
    fn shown(&self) -> String {
        format!("'{self}'")
    }
}

impl Shown for f64 {
    fn shown(&self) -> String {
        self.to_string()
    }
}

impl Shown for chrono::NaiveDate {
    fn shown(&self) -> String {
        self.format("%Y-%m-%d").to_string()
    }
}

impl Shown for bool {
    fn shown(&self) -> String {
        (if *self { "visible" } else { "private" }).to_string()
    }
}

fn shown<T: Shown>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "(empty)".to_string(), Shown::shown)
}

/// When each side changed a field: `(CRM, Partner Center)`, `None` where not known.
pub type ChangeTimes<'a> = &'a dyn Fn(Field) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Each two-way field's value as an Audit line shows it, after the merge's normalising: what a
/// side's change of a field is recognised by from one sync to the next.
pub fn shown_values(p: &Projection) -> Vec<(Field, String)> {
    let p = normalised(p);
    Field::ALL
        .iter()
        .map(|f| {
            let v = match f {
                Field::Name => shown(&p.name),
                Field::DealValue => shown(&p.deal_value),
                Field::Currency => shown(&p.currency),
                Field::CloseDate => shown(&p.close_date),
                Field::Notes => shown(&p.notes),
                Field::MicrosoftHelp => shown(&p.microsoft_help),
                Field::Visible => shown(&p.visible),
            };
            (*f, v)
        })
        .collect()
}

/// Collects the per-field outcomes into a [`Merge`].
struct Builder<'a> {
    times: ChangeTimes<'a>,
    out: Merge,
}

impl Builder<'_> {
    fn winner(&self, field: Field) -> (Side, bool) {
        let (crm, pc) = (self.times)(field);
        let by_time = matches!((crm, pc), (Some(c), Some(p)) if c != p);
        (winner(crm, pc), by_time)
    }

    fn three_way<T: Clone + PartialEq>(
        &self,
        field: Field,
        base: &Option<T>,
        crm: &Option<T>,
        pc: &Option<T>,
    ) -> FieldMerge<T> {
        three_way(base, crm, pc, self.winner(field).0)
    }

    /// Refuses the CRM's value of `field`: Partner Center keeps its value and the CRM is set
    /// back to it, so both sides agree again and the refusal is reported once, not at every
    /// sync.
    fn refuse<T: Clone + PartialEq>(
        &mut self,
        field: Field,
        m: &mut FieldMerge<T>,
        crm: &Option<T>,
        pc: &Option<T>,
        message: &str,
    ) {
        m.value = pc.clone();
        m.to_pc = false;
        m.to_crm = crm != pc;
        m.conflict = None;
        self.out.refusals.push(Refusal {
            field,
            message: message.to_string(),
        });
    }

    /// Records the field's writes and conflict; returns its merged value.
    fn take<T: Shown>(
        &mut self,
        field: Field,
        m: FieldMerge<T>,
        crm: &Option<T>,
        pc: &Option<T>,
    ) -> Option<T> {
        field.flag(&mut self.out.to_pc.fields, m.to_pc);
        field.flag(&mut self.out.to_crm.fields, m.to_crm);
        if let Some(winner) = m.conflict {
            self.out.conflicts.push(Conflict {
                field,
                crm: shown(crm),
                pc: shown(pc),
                winner,
                by_time: self.winner(field).1,
            });
        }
        m.value
    }

    fn plain<T: Clone + PartialEq + Shown>(
        &mut self,
        field: Field,
        base: &Option<T>,
        crm: &Option<T>,
        pc: &Option<T>,
    ) -> Option<T> {
        let m = self.three_way(field, base, crm, pc);
        self.take(field, m, crm, pc)
    }
}

const NAME_EMPTIED: &str = "The opportunity's name was emptied; Partner Center needs a name, so the referral keeps its name and the opportunity gets it back";
const BACK_TO_PRIVATE: &str = "The referral is already visible to Microsoft sellers and cannot be made private again; the opportunity's visibility was set back to visible";

/// The three-way merge of the two-way fields (see the module docs), with the Microsoft-only
/// fields and the status carried from Partner Center.
///
/// Rules, per field: changed on one side only → written to the other; changed on both to the
/// same value → nothing to write; changed on both to different values → the later change wins
/// (see [`winner`]) and a [`Conflict`] reports both values. Refused, and set back in the CRM:
/// a visibility that goes back to private once the referral was visible, and an emptied name.
/// Asking Microsoft for help in the CRM makes the referral visible as well, since a co-sell deal
/// is always shared with Microsoft's sellers.
pub fn merge(
    base: &Projection,
    crm: &Projection,
    pc: &Projection,
    crm_changed_at: Option<DateTime<Utc>>,
    pc_changed_at: Option<DateTime<Utc>>,
) -> Merge {
    merge_by_field(base, crm, pc, &|_| (crm_changed_at, pc_changed_at))
}

/// [`merge`] with each field's own change times: a conflict goes to the side that changed
/// *that field* later, whatever else either side changed since.
pub fn merge_by_field(
    base: &Projection,
    crm: &Projection,
    pc: &Projection,
    times: ChangeTimes<'_>,
) -> Merge {
    let (base, crm, pc) = (normalised(base), normalised(crm), normalised(pc));
    let mut b = Builder {
        times,
        out: Merge::default(),
    };

    // Partner Center needs a name: an opportunity whose name was emptied keeps the referral's.
    let mut m = b.three_way(Field::Name, &base.name, &crm.name, &pc.name);
    if m.to_pc && m.value.is_none() {
        b.refuse(Field::Name, &mut m, &crm.name, &pc.name, NAME_EMPTIED);
    }
    let name = b.take(Field::Name, m, &crm.name, &pc.name);
    let deal_value = b.plain(
        Field::DealValue,
        &base.deal_value,
        &crm.deal_value,
        &pc.deal_value,
    );
    let currency = b.plain(Field::Currency, &base.currency, &crm.currency, &pc.currency);
    let close_date = b.plain(
        Field::CloseDate,
        &base.close_date,
        &crm.close_date,
        &pc.close_date,
    );
    let notes = b.plain(Field::Notes, &base.notes, &crm.notes, &pc.notes);
    let microsoft_help = b.plain(
        Field::MicrosoftHelp,
        &base.microsoft_help,
        &crm.microsoft_help,
        &pc.microsoft_help,
    );

    // Once visible (as last synced, or in Partner Center now), never private again.
    let mut m = b.three_way(Field::Visible, &base.visible, &crm.visible, &pc.visible);
    let ever_visible = base.visible == Some(true) || pc.visible == Some(true);
    if m.to_pc && ever_visible && m.value != Some(true) {
        b.refuse(
            Field::Visible,
            &mut m,
            &crm.visible,
            &pc.visible,
            BACK_TO_PRIVATE,
        );
    }
    let mut visible = b.take(Field::Visible, m, &crm.visible, &pc.visible);

    let mut out = b.out;
    if out.to_pc.fields.microsoft_help && microsoft_help.is_some() && visible != Some(true) {
        // Co-sell means shared with Microsoft's sellers: without it Microsoft cannot help.
        visible = Some(true);
        out.to_pc.fields.visible = pc.visible != Some(true);
        out.to_crm.fields.visible = crm.visible != Some(true);
        out.conflicts.retain(|c| c.field != Field::Visible);
    }

    // One way only, Partner Center → CRM: the CRM's copy of these is display only.
    let one_way =
        |get: fn(&Projection) -> &Option<String>| (get(&pc) != get(&base), get(&pc).clone());
    let (status_changed, status) = one_way(|p| &p.status);
    let (ms_status_changed, microsoft_status) = one_way(|p| &p.microsoft_status);
    let (ms_id_changed, microsoft_crm_id) = one_way(|p| &p.microsoft_crm_id);
    out.to_crm.fields.status = status_changed;
    out.to_crm.fields.microsoft_status = ms_status_changed;
    out.to_crm.fields.microsoft_crm_id = ms_id_changed;

    // The customer contact: a removal on one side is a removal on the other; a contact added
    // on one side is that side's to keep (the other gets no contact made up from a yes/no),
    // and the base stays as it was so that the addition is never read as the other side's
    // removal.
    let had = base.has_contact == Some(true);
    let (crm_has, pc_has) = (crm.has_contact == Some(true), pc.has_contact == Some(true));
    out.contact_removed_to_pc = had && !crm_has && pc_has;
    out.contact_removed_to_crm = had && crm_has && !pc_has;
    let has_contact = Some(if had { crm_has && pc_has } else { false });

    out.merged = Projection {
        name,
        deal_value,
        currency,
        close_date,
        notes,
        status,
        microsoft_help,
        visible,
        microsoft_status,
        microsoft_crm_id,
        has_contact,
    };
    out.to_pc.values = out.merged.clone();
    out.to_crm.values = out.merged.clone();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};
    use proptest::prelude::*;

    fn at(minute: u32) -> Option<DateTime<Utc>> {
        Utc.with_ymd_and_hms(2026, 3, 1, 10, minute, 0).single()
    }

    fn base() -> Projection {
        Projection {
            name: Some("Contoso migration".into()),
            deal_value: Some(30000.0),
            currency: Some("USD".into()),
            close_date: NaiveDate::from_ymd_opt(2026, 6, 30),
            notes: Some("Phase 1".into()),
            status: Some("Active/Accepted".into()),
            microsoft_help: None,
            visible: Some(false),
            microsoft_status: None,
            microsoft_crm_id: None,
            has_contact: None,
        }
    }

    fn with(f: impl FnOnce(&mut Projection)) -> Projection {
        let mut p = base();
        f(&mut p);
        p
    }

    #[test]
    fn table_of_single_field_outcomes() {
        struct Case {
            what: &'static str,
            crm: Projection,
            pc: Projection,
            times: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
            to_pc: Vec<&'static str>,
            to_crm: Vec<&'static str>,
            merged_name: Option<&'static str>,
            conflict: Option<Side>,
        }
        let renamed = |n: &'static str| with(|p| p.name = Some(n.into()));
        let cases = [
            Case {
                what: "nothing changed",
                crm: base(),
                pc: base(),
                times: (at(1), at(2)),
                to_pc: vec![],
                to_crm: vec![],
                merged_name: Some("Contoso migration"),
                conflict: None,
            },
            Case {
                what: "CRM only",
                crm: renamed("CRM name"),
                pc: base(),
                times: (at(1), at(2)),
                to_pc: vec!["name"],
                to_crm: vec![],
                merged_name: Some("CRM name"),
                conflict: None,
            },
            Case {
                what: "Partner Center only",
                crm: base(),
                pc: renamed("PC name"),
                times: (at(2), at(1)),
                to_pc: vec![],
                to_crm: vec!["name"],
                merged_name: Some("PC name"),
                conflict: None,
            },
            Case {
                what: "both, same value",
                crm: renamed("Same"),
                pc: renamed("Same"),
                times: (at(2), at(1)),
                to_pc: vec![],
                to_crm: vec![],
                merged_name: Some("Same"),
                conflict: None,
            },
            Case {
                what: "both, CRM later",
                crm: renamed("CRM name"),
                pc: renamed("PC name"),
                times: (at(2), at(1)),
                to_pc: vec!["name"],
                to_crm: vec![],
                merged_name: Some("CRM name"),
                conflict: Some(Side::Crm),
            },
            Case {
                what: "both, Partner Center later",
                crm: renamed("CRM name"),
                pc: renamed("PC name"),
                times: (at(1), at(2)),
                to_pc: vec![],
                to_crm: vec!["name"],
                merged_name: Some("PC name"),
                conflict: Some(Side::PartnerCenter),
            },
            Case {
                what: "both, same time",
                crm: renamed("CRM name"),
                pc: renamed("PC name"),
                times: (at(1), at(1)),
                to_pc: vec![],
                to_crm: vec!["name"],
                merged_name: Some("PC name"),
                conflict: Some(Side::PartnerCenter),
            },
            Case {
                what: "both, CRM time unknown",
                crm: renamed("CRM name"),
                pc: renamed("PC name"),
                times: (None, at(1)),
                to_pc: vec![],
                to_crm: vec!["name"],
                merged_name: Some("PC name"),
                conflict: Some(Side::PartnerCenter),
            },
            Case {
                what: "different fields on each side",
                crm: renamed("CRM name"),
                pc: with(|p| p.deal_value = Some(45000.0)),
                times: (at(1), at(2)),
                to_pc: vec!["name"],
                to_crm: vec!["deal value"],
                merged_name: Some("CRM name"),
                conflict: None,
            },
            Case {
                what: "blank notes in Partner Center equal empty notes in the CRM",
                crm: with(|p| p.notes = None),
                pc: with(|p| p.notes = Some("  ".into())),
                times: (at(1), at(2)),
                to_pc: vec![],
                to_crm: vec![],
                merged_name: Some("Contoso migration"),
                conflict: None,
            },
        ];
        for c in cases {
            let m = merge(&base(), &c.crm, &c.pc, c.times.0, c.times.1);
            assert_eq!(m.to_pc.names(), c.to_pc, "{}: to Partner Center", c.what);
            assert_eq!(m.to_crm.names(), c.to_crm, "{}: to the CRM", c.what);
            assert_eq!(m.merged.name.as_deref(), c.merged_name, "{}", c.what);
            assert_eq!(
                m.conflicts.first().map(|x| x.winner),
                c.conflict,
                "{}: conflict",
                c.what
            );
            assert!(m.refusals.is_empty(), "{}", c.what);
        }
    }

    #[test]
    fn a_conflict_reports_both_values_and_the_winner() {
        let crm = with(|p| p.deal_value = Some(40000.0));
        let pc = with(|p| p.deal_value = Some(50000.0));
        let m = merge(&base(), &crm, &pc, at(5), at(3));
        assert_eq!(
            m.conflicts,
            vec![Conflict {
                field: Field::DealValue,
                crm: "40000".into(),
                pc: "50000".into(),
                winner: Side::Crm,
                by_time: true,
            }]
        );
        assert_eq!(
            m.conflict_lines(),
            vec![
                "Deal value was changed on both sides (40000 in the CRM, 50000 in Partner Center): the later change, in the CRM, was kept"
            ]
        );
        assert_eq!(m.to_pc.values.deal_value, Some(40000.0));

        let unknown = merge(&base(), &crm, &pc, None, None);
        assert_eq!(
            unknown.conflict_lines(),
            vec![
                "Deal value was changed on both sides (40000 in the CRM, 50000 in Partner Center): the value in Partner Center was kept, as which change came last is not known"
            ]
        );
        let emptied = merge(
            &base(),
            &with(|p| p.notes = None),
            &with(|p| p.notes = Some("New".into())),
            at(1),
            at(2),
        );
        assert_eq!(emptied.conflicts[0].crm, "(empty)");
        assert_eq!(emptied.conflicts[0].pc, "'New'");
    }

    #[test]
    fn visibility_never_goes_back_to_private() {
        let visible = with(|p| p.visible = Some(true));
        let cases = [
            (
                "CRM private after visible",
                visible.clone(),
                with(|p| p.visible = Some(false)),
                visible.clone(),
            ),
            (
                "CRM emptied after visible",
                visible.clone(),
                with(|p| p.visible = None),
                visible.clone(),
            ),
        ];
        for (what, base, crm, pc) in cases {
            let m = merge(&base, &crm, &pc, at(9), at(1));
            assert!(!m.to_pc.fields.visible, "{what}: nothing sent");
            assert_eq!(m.merged.visible, Some(true), "{what}");
            assert!(m.to_crm.fields.visible, "{what}: the CRM is set back");
            assert_eq!(m.refusals.len(), 1, "{what}");
            assert_eq!(m.refusals[0].field, Field::Visible);
            assert!(
                m.refusals[0]
                    .message
                    .contains("cannot be made private again"),
                "{what}"
            );
            assert!(m.conflicts.is_empty(), "{what}");
        }
        // Private → visible is the allowed direction, and a missing consent reads as private.
        let m = merge(&base(), &visible, &base(), at(1), at(2));
        assert!(m.to_pc.fields.visible && m.refusals.is_empty());
        let unset = with(|p| p.visible = None);
        let m = merge(&base(), &unset, &base(), at(1), at(2));
        assert!(m.writes_nothing() && m.refusals.is_empty());
        let m = merge(&unset, &base(), &visible, at(1), at(2));
        assert_eq!(m.to_crm.names(), vec!["visibility"]);
        assert!(m.refusals.is_empty());
    }

    #[test]
    fn an_emptied_name_is_refused_and_restored() {
        let m = merge(
            &base(),
            &with(|p| p.name = Some(" ".into())),
            &base(),
            at(2),
            at(1),
        );
        assert!(!m.to_pc.fields.name);
        assert!(m.to_crm.fields.name);
        assert_eq!(m.merged.name.as_deref(), Some("Contoso migration"));
        assert_eq!(m.refusals[0].field, Field::Name);
    }

    #[test]
    fn asking_for_help_makes_the_referral_visible() {
        let crm = with(|p| p.microsoft_help = Some("ProofOfConceptOrDemo".into()));
        let m = merge(&base(), &crm, &base(), at(2), at(1));
        assert_eq!(m.to_pc.names(), vec!["Microsoft help", "visibility"]);
        assert_eq!(m.to_crm.names(), vec!["visibility"]);
        assert_eq!(m.merged.visible, Some(true));
        // Help withdrawn: the deal stays visible, nothing else moves.
        let m = merge(
            &m.merged,
            &with(|p| p.visible = Some(true)),
            &m.merged,
            at(2),
            at(1),
        );
        assert_eq!(m.to_pc.names(), vec!["Microsoft help"]);
        assert_eq!(m.merged.microsoft_help, None);
        assert_eq!(m.merged.visible, Some(true));
    }

    #[test]
    fn status_and_microsoft_fields_flow_from_partner_center_only() {
        let crm = with(|p| {
            p.status = None;
            p.microsoft_crm_id = Some("typed in the CRM".into());
        });
        let pc = with(|p| {
            p.status = Some("Closed/Won".into());
            p.microsoft_status = Some("Active/Accepted".into());
        });
        let m = merge(&base(), &crm, &pc, at(5), at(1));
        assert!(m.to_pc.is_empty(), "{:?}", m.to_pc.names());
        assert_eq!(m.to_crm.names(), vec!["status", "Microsoft status"]);
        assert_eq!(m.merged.status.as_deref(), Some("Closed/Won"));
        assert_eq!(m.merged.microsoft_crm_id, None);
        assert_eq!(
            m.crm_update().microsoft_status.as_deref(),
            Some("Active/Accepted")
        );
    }

    fn text_value() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            Just(Some(String::new())),
            "[a-zA-Z ]{1,8}".prop_map(Some)
        ]
    }

    fn projection() -> impl Strategy<Value = Projection> {
        (
            (text_value(), proptest::option::of(0u32..5), text_value()),
            (
                proptest::option::of(0u32..3),
                text_value(),
                prop_oneof![
                    Just(None),
                    Just(Some("ProofOfConceptOrDemo".to_string())),
                    Just(Some("QuotesOrLicensing".to_string()))
                ],
                proptest::option::of(any::<bool>()),
            ),
            (text_value(), text_value(), text_value()),
        )
            .prop_map(
                |((name, value, currency), (date, notes, help, visible), (status, ms, msid))| {
                    Projection {
                        name,
                        deal_value: value.map(|v| f64::from(v) * 1000.0),
                        currency,
                        close_date: date.and_then(|d| NaiveDate::from_ymd_opt(2026, 1, 1 + d)),
                        notes,
                        status,
                        microsoft_help: help,
                        visible,
                        microsoft_status: ms,
                        microsoft_crm_id: msid,
                        has_contact: None,
                    }
                },
            )
    }

    /// A side derived from `base`: each field either kept or taken from `other`.
    fn edited(base: &Projection, other: &Projection, mask: u16) -> Projection {
        let bit = |i: u16| mask & (1 << i) != 0;
        let mut p = base.clone();
        if bit(0) {
            p.name.clone_from(&other.name);
        }
        if bit(1) {
            p.deal_value = other.deal_value;
        }
        if bit(2) {
            p.currency.clone_from(&other.currency);
        }
        if bit(3) {
            p.close_date = other.close_date;
        }
        if bit(4) {
            p.notes.clone_from(&other.notes);
        }
        if bit(5) {
            p.status.clone_from(&other.status);
        }
        if bit(6) {
            p.microsoft_help.clone_from(&other.microsoft_help);
        }
        if bit(7) {
            p.visible = other.visible;
        }
        if bit(8) {
            p.microsoft_status.clone_from(&other.microsoft_status);
        }
        if bit(9) {
            p.microsoft_crm_id.clone_from(&other.microsoft_crm_id);
        }
        p
    }

    fn two_way(p: &Projection) -> Projection {
        let n = normalised(p);
        Projection {
            status: None,
            microsoft_status: None,
            microsoft_crm_id: None,
            ..n
        }
    }

    fn time() -> impl Strategy<Value = Option<DateTime<Utc>>> {
        proptest::option::of(0u32..3).prop_map(|m| m.and_then(at))
    }

    proptest! {
        #[test]
        fn no_change_on_either_side_writes_nothing(base in projection(), t1 in time(), t2 in time()) {
            let m = merge(&base, &base, &base, t1, t2);
            prop_assert!(m.writes_nothing());
            prop_assert!(m.conflicts.is_empty() && m.refusals.is_empty());
            prop_assert_eq!(m.merged, normalised(&base));
        }

        #[test]
        fn a_one_sided_change_reaches_the_other_side(
            base in projection(), other in projection(), mask in 0u16..1024,
            crm_side: bool, t1 in time(), t2 in time(),
        ) {
            let changed = edited(&base, &other, mask);
            let what = Changed::between(&normalised(&base), &normalised(&changed)).names();
            let (crm, pc) = if crm_side { (&changed, &base) } else { (&base, &changed) };
            let m = merge(&base, crm, pc, t1, t2);
            prop_assert!(m.conflicts.is_empty());
            if crm_side {
                let sent = m.to_pc.names();
                for field in Field::ALL {
                    let refused = m.refusals.iter().any(|r| r.field == field);
                    if what.contains(&field.label()) {
                        prop_assert!(sent.contains(&field.label()) || refused, "{} was not sent", field);
                    }
                }
                // The CRM's copies of the status and the Microsoft fields are never sent.
                prop_assert!(!m.to_pc.fields.status);
                prop_assert!(!m.to_pc.fields.microsoft_status && !m.to_pc.fields.microsoft_crm_id);
            } else {
                // Everything Partner Center changed reaches the CRM, the one-way fields too.
                prop_assert_eq!(m.to_crm.names(), what);
                prop_assert!(m.refusals.is_empty());
                prop_assert!(m.to_pc.is_empty());
                prop_assert_eq!(&m.merged, &normalised(&changed));
            }
        }

        #[test]
        fn both_sides_hold_the_merged_projection_and_merging_again_writes_nothing(
            base in projection(), a in projection(), b in projection(),
            crm_mask in 0u16..1024, pc_mask in 0u16..1024, t1 in time(), t2 in time(),
        ) {
            let crm = edited(&base, &a, crm_mask);
            let pc = edited(&base, &b, pc_mask);
            let m = merge(&base, &crm, &pc, t1, t2);
            let crm_after = m.to_crm.apply_to(&crm);
            let pc_after = m.to_pc.apply_to(&pc);
            prop_assert_eq!(two_way(&crm_after), two_way(&m.merged));
            prop_assert_eq!(normalised(&pc_after), m.merged.clone());
            // No echo: the next sync, seeing both writes, writes nothing.
            let again = merge(&m.merged, &crm_after, &pc_after, t1, t2);
            prop_assert!(again.writes_nothing(), "to PC {:?}, to CRM {:?}", again.to_pc.names(), again.to_crm.names());
            prop_assert!(again.conflicts.is_empty() && again.refusals.is_empty());
            prop_assert_eq!(again.merged, m.merged);
        }

        #[test]
        fn once_visible_nothing_private_is_sent(
            base in projection(), a in projection(), b in projection(),
            crm_mask in 0u16..1024, pc_mask in 0u16..1024, t1 in time(), t2 in time(),
        ) {
            let crm = edited(&base, &a, crm_mask);
            let pc = edited(&base, &b, pc_mask);
            let m = merge(&base, &crm, &pc, t1, t2);
            if base.visible == Some(true) || pc.visible == Some(true) {
                prop_assert!(!m.to_pc.fields.visible || m.merged.visible == Some(true));
            }
        }
    }
}
