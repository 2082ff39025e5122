//! The JSON Patch that sends merged fields to a referral.

use serde_json::{Map, Value, json};

use super::referral_body::{closing_date_time, deal_value_number};
use super::{help_code, non_blank};
use crate::domain::merge::Update;
use crate::referral::{AssistanceRequestCode, Referral};

/// One JSON Patch operation; Partner Center takes `replace` and `add` only.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PatchOp {
    pub op: &'static str,
    pub path: String,
    pub value: serde_json::Value,
}

impl PatchOp {
    pub fn replace(path: impl Into<String>, value: serde_json::Value) -> PatchOp {
        PatchOp {
            op: "replace",
            path: path.into(),
            value,
        }
    }
}

/// Empties the referral's customer contacts (`customerProfile.team`): the seller removed the
/// opportunity's contact. `add` sets the member whether or not the referral has it.
pub fn empty_team_op(referral: &Referral) -> PatchOp {
    if referral.customer_profile.is_some() {
        PatchOp {
            op: "add",
            path: "/customerProfile/team".into(),
            value: json!([]),
        }
    } else {
        PatchOp {
            op: "add",
            path: "/customerProfile".into(),
            value: json!({"team": []}),
        }
    }
}

/// Where a referral keeps each merged field: (parent object, member); no parent for top level.
fn location(field: &str) -> (Option<&'static str>, &'static str) {
    match field {
        "name" => (None, "name"),
        "deal value" => (Some("details"), "dealValue"),
        "currency" => (Some("details"), "currency"),
        "close date" => (Some("details"), "closingDateTime"),
        "notes" => (Some("details"), "notes"),
        "Microsoft help" => (Some("inviteContext"), "assistanceRequestCode"),
        _ => (
            Some("consent"),
            "consentToShareReferralWithMicrosoftSellers",
        ),
    }
}

fn same_value(current: Option<&Value>, new: &Value, member: &str) -> bool {
    let current = current.unwrap_or(&Value::Null);
    match member {
        "dealValue" => match (current.as_f64(), new.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => current == new,
        },
        // The same day at another time of day is the same close date to a seller.
        "closingDateTime" => match (current.as_str(), new.as_str()) {
            (Some(a), Some(b)) => a.get(..10).is_some() && a.get(..10) == b.get(..10),
            _ => current == new,
        },
        _ => current == new,
    }
}

/// JSON Patch operations that send the `to_pc` fields of a merge to `referral` (as last read),
/// skipping fields whose value Partner Center already holds.
///
/// A member the referral has is `replace`d; a missing one is `add`ed, because `replace` fails on
/// a missing member while `add` sets it either way; a missing parent object (`details`,
/// `consent`, `inviteContext`) is added whole. An emptied deal value, currency, close date or
/// notes is sent as `null`, which Partner Center treats as absent; an empty name is never sent
/// (the merge refuses it). Help withdrawn is sent as `Unknown`. Nothing is sent to a closed
/// referral.
pub fn patch_ops(referral: &Referral, to_pc: &Update) -> Vec<PatchOp> {
    if referral.is_closed() {
        return Vec::new();
    }
    let current = serde_json::to_value(referral).unwrap_or(Value::Null);
    let v = &to_pc.values;
    let mut ops: Vec<PatchOp> = Vec::new();
    for field in to_pc.names() {
        let new = match field {
            "name" => match non_blank(v.name.as_deref()) {
                Some(n) => json!(n),
                None => continue,
            },
            "deal value" => v
                .deal_value
                .and_then(deal_value_number)
                .map_or(Value::Null, Value::Number),
            "currency" => v.currency.as_deref().map_or(Value::Null, |c| json!(c)),
            "close date" => v
                .close_date
                .map_or(Value::Null, |d| json!(closing_date_time(d))),
            "notes" => v.notes.as_deref().map_or(Value::Null, |n| json!(n)),
            "Microsoft help" => json!(
                help_code(v.microsoft_help.as_deref())
                    .unwrap_or(AssistanceRequestCode::Unknown)
                    .as_str()
            ),
            "visibility" => match v.visible {
                Some(b) => json!(b),
                None => continue,
            },
            // The status and the Microsoft fields never go to Partner Center.
            _ => continue,
        };
        let (parent, member) = location(field);
        let parent_path = parent.map_or(String::new(), |p| format!("/{p}"));
        let path = format!("{parent_path}/{member}");
        let existing = current.pointer(&path);
        if same_value(existing, &new, member) {
            continue;
        }
        let parent_exists =
            parent.is_none() || current.pointer(&parent_path).is_some_and(Value::is_object);
        if parent_exists {
            ops.push(PatchOp {
                op: if existing.is_some() { "replace" } else { "add" },
                path,
                value: new,
            });
            continue;
        }
        // The parent is missing: one `add` of the whole object, collecting its members.
        match ops.iter_mut().find(|op| op.path == parent_path) {
            Some(PatchOp {
                value: Value::Object(members),
                ..
            }) => {
                members.insert(member.to_string(), new);
            }
            _ => {
                let mut members = Map::new();
                members.insert(member.to_string(), new);
                ops.push(PatchOp {
                    op: "add",
                    path: parent_path,
                    value: Value::Object(members),
                });
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::inbound::{Changed, opportunity_update, referral_projection};
    use crate::domain::merge::{merge, normalised};
    use crate::domain::outbound::fixtures::*;
    use crate::domain::outbound::new_referral;
    use crate::domain::projection::Projection;
    use crate::referral::{Status, Substatus};
    use chrono::NaiveDate;
    use proptest::prelude::*;

    fn linked() -> Referral {
        referral(json!({
            "id": "r1", "name": "Contoso", "status": "Active", "substatus": "Accepted",
            "consent": {"consentToShareReferralWithMicrosoftSellers": false},
            "details": {"dealValue": 30000, "currency": "EUR", "closingDateTime": "2026-06-30T18:00:00Z"},
            "inviteContext": {"assistanceRequestCode": "Unknown"}
        }))
    }

    fn update_for(referral: &Referral, edit: impl FnOnce(&mut Projection)) -> Update {
        let base = referral_projection(referral, None);
        let mut crm = base.clone();
        edit(&mut crm);
        merge(&base, &crm, &base, None, None).to_pc
    }

    #[test]
    fn patch_ops_send_only_what_changes_with_add_where_a_member_is_missing() {
        let r = linked();
        let ops = |edit: fn(&mut Projection)| {
            serde_json::to_value(patch_ops(&r, &update_for(&r, edit))).expect("json")
        };
        assert_eq!(
            ops(|p| p.name = Some("Contoso phase 2".into())),
            json!([{"op": "replace", "path": "/name", "value": "Contoso phase 2"}])
        );
        assert_eq!(
            ops(|p| {
                p.deal_value = Some(45000.5);
                p.notes = Some("Now with AI".into());
            }),
            json!([{"op": "replace", "path": "/details/dealValue", "value": 45000.5},
                   {"op": "add", "path": "/details/notes", "value": "Now with AI"}])
        );
        assert_eq!(
            ops(|p| p.visible = Some(true)),
            json!([{"op": "replace", "path": "/consent/consentToShareReferralWithMicrosoftSellers", "value": true}])
        );
        assert_eq!(
            ops(|p| p.close_date = NaiveDate::from_ymd_opt(2026, 7, 1)),
            json!([{"op": "replace", "path": "/details/closingDateTime", "value": "2026-07-01T00:00:00Z"}])
        );
        assert_eq!(
            ops(|p| p.currency = None),
            json!([{"op": "replace", "path": "/details/currency", "value": null}])
        );
        assert_eq!(
            ops(|p| p.microsoft_help = Some("GeneralOrOther".into())),
            json!([{"op": "replace", "path": "/inviteContext/assistanceRequestCode", "value": "GeneralOrOther"},
                   {"op": "replace", "path": "/consent/consentToShareReferralWithMicrosoftSellers", "value": true}])
        );
    }

    #[test]
    fn patch_ops_add_missing_parents_whole_and_skip_what_partner_center_holds() {
        let bare = referral(
            json!({"id": "r2", "name": "Bare", "status": "Active", "substatus": "Accepted"}),
        );
        let mut values = referral_projection(&bare, None);
        values.deal_value = Some(1000.0);
        values.currency = Some("USD".into());
        values.notes = None;
        values.visible = Some(true);
        values.status = Some("Closed/Won".into());
        let update = Update {
            fields: Changed::all(),
            values,
        };
        assert_eq!(
            serde_json::to_value(patch_ops(&bare, &update)).expect("json"),
            json!([{"op": "add", "path": "/details", "value": {"dealValue": 1000, "currency": "USD"}},
                   {"op": "add", "path": "/inviteContext", "value": {"assistanceRequestCode": "Unknown"}},
                   {"op": "add", "path": "/consent", "value": {"consentToShareReferralWithMicrosoftSellers": true}}])
        );

        // Already there (the same day at another hour, the same amount as a float): nothing.
        let r = linked();
        let mut same = referral_projection(&r, None);
        same.close_date = NaiveDate::from_ymd_opt(2026, 6, 30);
        let update = Update {
            fields: Changed::all(),
            values: same,
        };
        assert_eq!(patch_ops(&r, &update), vec![]);

        let closed =
            referral(json!({"id": "r3", "name": "Old", "status": "Closed", "substatus": "Won"}));
        let update = update_for(&closed, |p| p.name = Some("New".into()));
        assert!(!update.is_empty());
        assert_eq!(
            patch_ops(&closed, &update),
            vec![],
            "nothing after a terminal state"
        );
    }

    /// Just enough JSON Patch (`add`/`replace` on object members) to see what Partner Center
    /// would hold.
    fn apply(doc: &mut Value, ops: &[PatchOp]) {
        for op in ops {
            let (parent, member) = op.path.rsplit_once('/').expect("a path");
            let target = doc
                .pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .expect("parent");
            if op.op == "replace" {
                assert!(
                    target.contains_key(member),
                    "replace of a missing {}",
                    op.path
                );
            }
            target.insert(member.to_string(), op.value.clone());
        }
    }

    fn referral_from(p: &Projection) -> Referral {
        let mut fields = opportunity_update(p, &Changed::all());
        fields.name = Some(p.name.clone().unwrap_or_else(|| "Deal".into()));
        let mut r = new_referral(
            &fields,
            Some(&account()),
            Some(&contact()),
            &solutions(),
            "crm",
        );
        r.status = Some(Status::Active);
        r.substatus = Some(Substatus::Accepted);
        r
    }

    proptest! {
            /// After the patch, Partner Center projects to the merged values of every field sent.
            #[test]
            fn patched_referral_holds_the_merged_values(
                start in two_way_projection(), edit in two_way_projection(), mask in 0u8..128, drop_details: bool,
            ) {
                let mut r = referral_from(&start);
                if drop_details {
                    r.details = None;
                    r.consent = None;
                }
                let base = referral_projection(&r, None);
                let mut crm = base.clone();
                let bit = |i: u8| mask & (1 << i) != 0;
                if bit(0) && edit.name.is_some() { crm.name.clone_from(&edit.name); }
                if bit(1) { crm.deal_value = edit.deal_value; }
                if bit(2) { crm.currency.clone_from(&edit.currency); }
                if bit(3) { crm.close_date = edit.close_date; }
                if bit(4) { crm.notes.clone_from(&edit.notes); }
                if bit(5) { crm.microsoft_help.clone_from(&edit.microsoft_help); }
                if bit(6) { crm.visible = edit.visible; }
                let m = merge(&base, &crm, &base, None, None);
                let ops = patch_ops(&r, &m.to_pc);
                let mut doc = serde_json::to_value(&r).expect("json");
                apply(&mut doc, &ops);
                let after = referral_projection(&serde_json::from_value(doc).expect("referral"), None);
                prop_assert_eq!(Projection { status: None, ..normalised(&after) }, Projection { status: None, ..m.merged.clone() });
                // Sending again changes nothing.
                let mut patched: Referral = serde_json::to_value(&r)
                    .ok()
                    .and_then(|mut d| { apply(&mut d, &ops); serde_json::from_value(d).ok() })
                    .expect("patched");
                patched.e_tag = None;
                prop_assert!(patch_ops(&patched, &m.to_pc).is_empty());
            }
    }
}
