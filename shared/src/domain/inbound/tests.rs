use serde_json::json;

use super::*;
use crate::domain::records::{LeadState, OpportunityState, Visibility};
use crate::domain::stage::{lead_state, opportunity_state};

fn referral(v: serde_json::Value) -> Referral {
    serde_json::from_value(v).expect("referral")
}

fn incoming() -> Referral {
    referral(json!({
        "id": "r1", "name": "✔ Fabrikam migration", "status": "New", "substatus": "Pending",
        "type": "Shared", "qualification": "SalesQualified", "direction": "Incoming",
        "customerProfile": {
            "name": "Fabrikam", "address": {"addressLine1": "1 Main St", "city": "Bellevue",
                "region": "WA", "postalCode": "98004", "country": "US"},
            "team": [
                {"firstName": "Sue", "lastName": "Smith", "email": "sue@fabrikam.example"},
                {"firstName": "No", "lastName": "Mail"},
                {"firstName": "Kim", "email": "kim@fabrikam.example"}
            ]
        },
        "consent": {"consentToShareReferralWithMicrosoftSellers": true},
        "details": {"dealValue": 30000, "currency": "usd", "closingDateTime": "2022-03-24T18:30:00Z",
            "notes": "n", "requirements": {"solutions": [{"id": "SOL-1"}, {"id": "sol-1"}, {"id": "SOL-2"}]}},
        "inviteContext": {"assistanceRequestCode": "Unknown", "invitedBy": {"organizationId": "msft"}}
    }))
}

#[test]
fn projection_of_an_incoming_referral() {
    let microsoft = referral(json!({"status": "Active", "substatus": "Accepted",
        "trackingInfo": {"microsoftMsxId": "7-ABC"}}));
    let p = referral_projection(&incoming(), Some(&microsoft));
    assert_eq!(
        p.name.as_deref(),
        Some("Fabrikam migration"),
        "marker stripped"
    );
    assert_eq!(p.deal_value, Some(30000.0));
    assert_eq!(p.currency.as_deref(), Some("USD"));
    assert_eq!(p.close_date, NaiveDate::from_ymd_opt(2022, 3, 24));
    assert_eq!(p.status.as_deref(), Some("New/Pending"));
    assert_eq!(p.microsoft_help, None, "Unknown asks for no help");
    assert_eq!(p.visible, Some(true));
    assert_eq!(p.microsoft_status.as_deref(), Some("Active/Accepted"));
    assert_eq!(p.microsoft_crm_id.as_deref(), Some("7-ABC"));
    let alone = referral_projection(&incoming(), None);
    assert_eq!(
        (alone.microsoft_status, alone.microsoft_crm_id),
        (None, None)
    );
}

#[test]
fn states_follow_the_referral_status() {
    use OpportunityState::*;
    let cases = [
        (Status::New, Substatus::Pending, OnHold, LeadState::Open),
        (Status::New, Substatus::Received, OnHold, LeadState::Open),
        (
            Status::Active,
            Substatus::Accepted,
            Active,
            LeadState::Qualified,
        ),
        (Status::Closed, Substatus::Won, Won, LeadState::Qualified),
        (
            Status::Closed,
            Substatus::Lost,
            Lost,
            LeadState::Disqualified,
        ),
        (
            Status::Closed,
            Substatus::Declined,
            Lost,
            LeadState::Disqualified,
        ),
        (
            Status::Closed,
            Substatus::Expired,
            Lost,
            LeadState::Disqualified,
        ),
    ];
    for (s, sub, opp, lead) in cases {
        assert_eq!(opportunity_state(&s, &sub), opp, "{s}/{sub}");
        assert_eq!(lead_state(&s, &sub), lead, "{s}/{sub}");
    }
}

#[test]
fn an_update_writes_exactly_the_changed_fields() {
    let base = referral_projection(&incoming(), None);
    let mut now = base.clone();
    now.deal_value = Some(45000.0);
    now.status = Some("Closed/Won".into());
    let changed = Changed::between(&base, &now);
    assert_eq!(changed.names(), vec!["deal value", "status"]);
    let update = opportunity_update(&now, &changed);
    assert_eq!(
        update,
        OpportunityFields {
            deal_value: Some(45000.0),
            state: Some(OpportunityState::Won),
            ..OpportunityFields::default()
        }
    );
    assert!(!Changed::between(&base, &base).any());
    let all = opportunity_update(&now, &Changed::all());
    assert_eq!(all.name.as_deref(), Some("Fabrikam migration"));
    assert_eq!(all.visibility, Some(Visibility::Visible));
}

#[test]
fn accounts_match_on_name_and_postal_code_ignoring_case_and_spaces() {
    let wanted = account_fields(&incoming()).expect("account");
    assert_eq!(wanted.street.as_deref(), Some("1 Main St"));
    assert_eq!(
        wanted.state.as_deref(),
        Some("WA"),
        "region stands in for state"
    );
}

#[test]
fn contacts_need_an_email_and_solutions_are_deduplicated() {
    let contacts = contact_fields(&incoming(), Some("acc"));
    let emails: Vec<_> = contacts.iter().filter_map(|c| c.email.as_deref()).collect();
    assert_eq!(emails, ["sue@fabrikam.example", "kim@fabrikam.example"]);
    assert_eq!(
        contacts[1].last_name, "kim@fabrikam.example",
        "a last name is required"
    );
    assert_eq!(contacts[0].account_id.as_deref(), Some("acc"));
    assert_eq!(solution_ids(&incoming()), ["SOL-1", "SOL-2"]);
}

#[test]
fn a_lead_carries_the_customer_and_the_link() {
    let lead = lead_fields(&incoming(), "https://pc/r1");
    assert_eq!(lead.company.as_deref(), Some("Fabrikam"));
    assert_eq!(lead.last_name.as_deref(), Some("Smith"));
    assert_eq!(lead.state, Some(LeadState::Open));
    assert_eq!(lead.referral_id.as_deref(), Some("r1"));
    assert_eq!(lead.referral_link.as_deref(), Some("https://pc/r1"));
}
