use serde_json::{Number, Value, json};

use super::*;
use crate::referral::{
    AssistanceRequestCode, Direction, Qualification, ReferralType, Status, Substatus, TargetType,
};

const INBOUND: &str = include_str!("../../../tests/fixtures/inbound_cosell.json");
const OUTGOING: &str = include_str!("../../../tests/fixtures/outgoing_created.json");
const UNKNOWN: &str = include_str!("../../../tests/fixtures/unknown_fields.json");

fn parse(text: &str) -> Referral {
    serde_json::from_str(text).expect("fixture parses as a referral")
}

fn json_value(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

/// The fixture as we expect to write it back: the listed known fields were `null`
/// and come back absent. Asserting that each was null keeps this helper from
/// hiding a field that really got lost.
fn without_known_nulls(mut value: Value, pointers: &[&str]) -> Value {
    for pointer in pointers {
        let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
        let removed = value
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .and_then(|object| object.shift_remove(key));
        assert_eq!(
            removed,
            Some(Value::Null),
            "{pointer} should be a known null"
        );
    }
    value
}

fn number(text: &str) -> Number {
    serde_json::from_str(text).expect("a JSON number")
}

fn assert_round_trip(text: &str, known_nulls: &[&str]) {
    let referral = parse(text);
    let written = serde_json::to_value(&referral).expect("serialise");
    assert_eq!(written, without_known_nulls(json_value(text), known_nulls));
    // A second pass is a fixed point: what we write, we read back identically.
    let again: Referral = serde_json::from_value(written).expect("reparse");
    assert_eq!(again, referral);
}

#[test]
fn inbound_co_sell_referral_reads_every_documented_field() {
    let referral = parse(INBOUND);
    assert_eq!(
        referral.id.as_deref(),
        Some("5dd4a8e1-3f0c-4b5e-9a51-0c6f2d7b8e90")
    );
    assert_eq!(
        referral.engagement_id.as_deref(),
        Some("6592c3f4-7e21-4d8a-b0c5-91e3f4a6d2b7")
    );
    assert_eq!(referral.name.as_deref(), Some("Contoso M365"));
    assert_eq!(referral.external_reference_id, None);
    assert_eq!(referral.status, Some(Status::New));
    assert_eq!(referral.substatus, Some(Substatus::Pending));
    assert_eq!(referral.status_reason, None);
    assert_eq!(referral.qualification, Some(Qualification::SalesQualified));
    assert_eq!(referral.r#type, Some(ReferralType::Shared));
    assert_eq!(referral.direction, Some(Direction::Incoming));
    assert_eq!(
        referral.e_tag.as_deref(),
        Some("\"8500e212-0000-0100-0000-6225cdc90000\"")
    );
    assert_eq!(
        referral.created_date_time.as_deref(),
        Some("2022-03-07T05:08:23.810144Z")
    );
    assert_eq!(
        referral.updated_date_time.as_deref(),
        Some("2022-03-07T09:18:01.6076542Z")
    );
    assert!(!referral.is_closed());

    let customer = referral.customer_profile.as_ref().expect("customer");
    assert_eq!(customer.name.as_deref(), Some("Fabrikam"));
    let address = customer.address.as_ref().expect("address");
    assert_eq!(address.city.as_deref(), Some("Bellevue"));
    assert_eq!(address.postal_code.as_deref(), Some("98004"));
    assert_eq!(address.country.as_deref(), Some("US"));
    assert_eq!(address.region.as_deref(), Some("WA"));
    assert_eq!(address.address_line1, None);
    let contacts = customer.team.as_deref().expect("customer team");
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].first_name.as_deref(), Some("Sue"));
    assert_eq!(contacts[0].last_name.as_deref(), Some("Smith"));
    assert_eq!(contacts[0].email.as_deref(), Some("sue@fabrikam.com"));
    assert_eq!(customer.ids, None);

    let consent = referral.consent.as_ref().expect("consent");
    assert_eq!(consent.consent_to_to_share_info_with_others, Some(true));
    assert_eq!(consent.consent_to_contact, Some(true));
    assert_eq!(
        consent.consent_to_share_referral_with_microsoft_sellers,
        Some(true)
    );
    assert_eq!(
        consent.consent_to_microsoft_to_contact_specific_partners,
        None
    );

    let details = referral.details.as_ref().expect("details");
    assert_eq!(details.deal_value, Some(number("30000")));
    assert_eq!(details.currency.as_deref(), Some("USD"));
    assert_eq!(
        details.closing_date_time.as_deref(),
        Some("2022-03-24T18:30:00Z")
    );
    assert!(
        details
            .notes
            .as_deref()
            .is_some_and(|n| n.contains("mailboxes"))
    );
    let solutions = details
        .requirements
        .as_ref()
        .and_then(|r| r.solutions.as_deref())
        .expect("solutions");
    assert_eq!(solutions[0].id.as_deref(), Some("SOL-6115380-IPC"));
    assert_eq!(solutions[0].r#type.as_deref(), Some("Name"));

    let invite = referral.invite_context.as_ref().expect("invite context");
    assert_eq!(
        invite.assistance_request_code,
        Some(AssistanceRequestCode::Unknown)
    );
    let invited_by = invite.invited_by.as_ref().expect("invited by");
    assert_eq!(invited_by.organization_id.as_deref(), Some("msft"));
    assert_eq!(invited_by.organization_name.as_deref(), Some("Microsoft"));

    let target = referral.target.as_deref().expect("target");
    assert_eq!(target[0].r#type, Some(TargetType::SolutionProfile));
    assert_eq!(target[0].id.as_deref(), Some("SOL-6115380-IPC"));

    let links = referral.links.as_ref().expect("links");
    let related = links.related_referrals.as_ref().expect("related");
    assert!(related.uri.as_deref().is_some_and(|u| {
        u.ends_with("engagementId eq '6592c3f4-7e21-4d8a-b0c5-91e3f4a6d2b7'")
    }));
    assert_eq!(related.method.as_deref(), Some("GET"));
    assert!(
        links
            .self_
            .as_ref()
            .and_then(|l| l.uri.as_deref())
            .is_some()
    );

    assert!(referral.extra.is_empty(), "{:?}", referral.extra);
}

#[test]
fn inbound_co_sell_referral_round_trips() {
    assert_round_trip(INBOUND, &["/externalReferenceId", "/statusReason"]);
}

#[test]
fn partner_created_referral_reads_every_documented_field() {
    let referral = parse(OUTGOING);
    assert_eq!(referral.status, Some(Status::Active));
    assert_eq!(referral.substatus, Some(Substatus::Accepted));
    assert_eq!(referral.direction, Some(Direction::Outgoing));
    assert_eq!(referral.r#type, Some(ReferralType::Independent));
    assert_eq!(
        referral.external_reference_id.as_deref(),
        Some("opp-000123")
    );
    assert_eq!(
        referral.organization_name.as_deref(),
        Some("Northwind Consulting")
    );
    assert_eq!(referral.accepted_date_time, referral.created_date_time);
    assert_eq!(
        referral.expiration_date_time.as_deref(),
        Some("2025-10-01T12:30:45.1234567Z")
    );

    let customer = referral.customer_profile.as_ref().expect("customer");
    assert_eq!(customer.size.as_deref(), Some("51to250employees"));
    let address = customer.address.as_ref().expect("address");
    assert_eq!(address.address_line1.as_deref(), Some("12 Harbour Road"));
    assert_eq!(address.address_line2.as_deref(), Some("Unit 4"));
    assert_eq!(address.state.as_deref(), Some("WA"));
    let contact = &customer.team.as_deref().expect("contacts")[0];
    assert_eq!(contact.title.as_deref(), Some("Head of Operations"));
    assert_eq!(contact.phone_number.as_deref(), Some("2065550100"));
    let preference = contact.contact_preference.as_ref().expect("preference");
    assert_eq!(preference.locale.as_deref(), Some("en-US"));
    assert_eq!(preference.disable_notifications, Some(true));
    let ids = customer.ids.as_deref().expect("ids");
    assert_eq!(ids[0].profile_type.as_deref(), Some("External"));
    assert_eq!(ids[0].id.as_deref(), Some("CRM-ACC-778"));

    let consent = referral.consent.as_ref().expect("consent");
    assert_eq!(
        consent.consent_to_share_referral_with_microsoft_sellers,
        Some(false)
    );
    assert_eq!(
        consent.consent_to_microsoft_to_contact_specific_partners,
        Some(true)
    );

    let details = referral.details.as_ref().expect("details");
    assert_eq!(details.deal_value, Some(number("1234.50")));
    assert_eq!(details.customer_requested_contact, None);
    let requirements = details.requirements.as_ref().expect("requirements");
    assert_eq!(requirements.industries.as_deref(), Some(&[][..]));
    assert_eq!(requirements.offers.as_deref(), Some(&[][..]));
    let solution = &requirements.solutions.as_deref().expect("solutions")[0];
    assert_eq!(
        solution.publisher_name.as_deref(),
        Some("Northwind Consulting")
    );
    assert_eq!(solution.solution_type.as_deref(), Some("3P"));
    assert_eq!(solution.quantity, Some(number("25")));
    assert_eq!(solution.price, None);
    let additional = requirements
        .additional_requirements
        .as_ref()
        .expect("additional requirements");
    assert_eq!(additional.iot, Some(json!({})));
    let attribute = &additional.attributes.as_deref().expect("attributes")[0];
    assert_eq!(
        attribute.r#type.as_deref(),
        Some("CustomerMarketplaceIntent")
    );
    assert_eq!(attribute.id.as_deref(), Some("HaveNotDecided"));

    let team = referral.team.as_deref().expect("team");
    assert_eq!(team[0].email.as_deref(), Some("john.doe@northwind.example"));
    assert_eq!(referral.target.as_deref(), Some(&[][..]));

    let tracking = referral.tracking_info.as_ref().expect("tracking info");
    assert_eq!(tracking.microsoft_msx_id.as_deref(), Some("7-ABCDEF1234"));
    assert_eq!(tracking.migrated_psc_deal_id.as_deref(), Some("PSC-1"));
    assert_eq!(tracking.microsoft_us_fed_opportunity_id, None);
    assert!(referral.extra.is_empty(), "{:?}", referral.extra);
}

#[test]
fn partner_created_referral_round_trips() {
    assert_round_trip(
        OUTGOING,
        &[
            "/statusReason",
            "/details/customerRequestedContact",
            "/details/customerAction",
            "/details/incentiveLevel",
            "/details/requirements/solutions/0/price",
            "/details/requirements/solutions/0/currency",
            "/inviteContext/notes",
            "/trackingInfo/microsoftUSFedOpportunityId",
        ],
    );
}

#[test]
fn fields_we_do_not_model_are_kept_where_they_were() {
    let referral = parse(UNKNOWN);
    assert_eq!(referral.status, Some(Status::Other("Archived".into())));
    assert_eq!(referral.substatus, Some(Substatus::Other("Merged".into())));
    assert_eq!(
        referral.qualification,
        Some(Qualification::Other("PartnerQualified".into()))
    );
    assert_eq!(referral.extra["futureField"], json!({"a": [1, null]}));
    assert_eq!(referral.extra.get("futureNull"), Some(&Value::Null));
    assert_eq!(referral.extra["mpnId"], json!(1234567));
    assert_eq!(referral.extra["isSpam"], json!(false));
    assert!(referral.extra.contains_key("@odata.context"));

    let customer = referral.customer_profile.as_ref().expect("customer");
    assert_eq!(customer.name.as_deref(), Some("Contoso"));
    assert_eq!(customer.extra["newThing"], json!(1));
    assert_eq!(customer.extra["isMatchingComplete"], json!(true));
    let address = customer.address.as_ref().expect("address");
    assert_eq!(address.country.as_deref(), Some("DE"));
    assert_eq!(address.extra.get("district"), Some(&Value::Null));
    assert_eq!(
        customer.team.as_deref().expect("team")[0].extra["pronouns"],
        "she/her"
    );
    let id = &customer.ids.as_deref().expect("ids")[0];
    assert_eq!(id.profile_type.as_deref(), Some("VatId"));
    assert_eq!(id.extra["verified"], json!(true));

    // The PascalCase spelling is not the documented key: kept apart, not merged.
    let consent = referral.consent.as_ref().expect("consent");
    assert_eq!(consent.consent_to_contact, Some(false));
    assert_eq!(consent.extra["ConsentToContact"], json!(true));

    let details = referral.details.as_ref().expect("details");
    assert_eq!(details.deal_value, Some(number("99.990")));
    assert_eq!(details.extra["fxRate"], Value::Number(number("1.0800")));
    let requirements = details.requirements.as_ref().expect("requirements");
    assert_eq!(requirements.extra["futureList"], json!([]));
    let solution = &requirements.solutions.as_deref().expect("solutions")[0];
    assert_eq!(solution.r#type.as_deref(), Some("Category"));
    assert_eq!(
        solution.extra["unknownKey"],
        json!({"nested": [true, null, Value::Number(number("1.50"))]})
    );
    let additional = requirements
        .additional_requirements
        .as_ref()
        .expect("additional");
    assert_eq!(additional.extra["extra"], json!("x"));
    assert_eq!(
        additional.attributes.as_deref().expect("attributes")[0].extra["weight"],
        json!(2)
    );

    let invite = referral.invite_context.as_ref().expect("invite");
    assert_eq!(
        invite.assistance_request_code,
        Some(AssistanceRequestCode::Other("DealAcceleration".into()))
    );
    assert_eq!(
        invite.invited_by.as_ref().expect("invited by").extra["tier"],
        "gold"
    );
    let target = &referral.target.as_deref().expect("target")[0];
    assert_eq!(
        target.r#type,
        Some(TargetType::Other("MarketplaceOffer".into()))
    );
    assert_eq!(target.extra.len(), 1);
    assert_eq!(
        referral.tracking_info.as_ref().expect("tracking").extra["microsoftNextGenId"],
        "NG-1"
    );
    let links = referral.links.as_ref().expect("links");
    assert_eq!(links.extra["next"], json!({"uri": "x"}));
    assert_eq!(links.self_.as_ref().expect("self").extra["rel"], "self");
    assert!(!referral.is_closed());
}

#[test]
fn unknown_fields_round_trip_exactly() {
    assert_round_trip(UNKNOWN, &[]);
}

#[test]
fn read_modify_write_changes_only_what_we_changed() {
    let mut referral = parse(UNKNOWN);
    referral.external_reference_id = Some("crm-42".into());
    if let Some(details) = referral.details.as_mut() {
        details.deal_value = Some(number("1500.00"));
    }
    let written = serde_json::to_value(&referral).expect("serialise");

    let mut expected = json_value(UNKNOWN);
    expected["externalReferenceId"] = json!("crm-42");
    expected["details"]["dealValue"] = Value::Number(number("1500.00"));
    assert_eq!(written, expected);
}

#[test]
fn timestamps_keep_their_text_and_amounts_their_value() {
    let text = r#"{"createdDateTime":"2019-02-23T02:05:23.2931817Z","closedDateTime":"2024-01-31T23:59:59.0000000Z","details":{"dealValue":1234.5,"closingDateTime":"2024-12-15T00:00:00.1000000Z","requirements":{"solutions":[{"price":0.1,"quantity":30000}]}},"team":[],"futureMoney":12.3}"#;
    let referral = parse(text);
    assert_eq!(
        referral.created_date_time.as_deref(),
        Some("2019-02-23T02:05:23.2931817Z")
    );
    assert_eq!(
        serde_json::to_string(&referral).expect("serialise"),
        text,
        "a referral whose keys are in model order is written back byte for byte"
    );

    for (input, expected) in [("30000", "30000"), ("1234.50", "1234.5"), ("-0.0", "-0.0")] {
        let referral = parse(&format!(r#"{{"details":{{"dealValue":{input}}}}}"#));
        let written = serde_json::to_string(&referral).expect("serialise");
        assert_eq!(
            written,
            format!(r#"{{"details":{{"dealValue":{expected}}}}}"#)
        );
    }
}

#[test]
fn absent_empty_and_null_lists_are_told_apart_where_it_matters() {
    let absent = parse("{}");
    assert_eq!(absent.team, None);
    assert_eq!(serde_json::to_string(&absent).expect("serialise"), "{}");

    let empty = parse(r#"{"team":[],"target":[]}"#);
    assert_eq!(empty.team.as_deref(), Some(&[][..]));
    assert_eq!(
        serde_json::to_string(&empty).expect("serialise"),
        r#"{"team":[],"target":[]}"#
    );

    // Null on a known field reads like absence and is written as absence.
    let null = parse(r#"{"team":null,"status":null,"details":{"dealValue":null}}"#);
    assert_eq!(null.team, None);
    assert_eq!(null.status, None);
    assert_eq!(
        serde_json::to_string(&null).expect("serialise"),
        r#"{"details":{}}"#
    );
}

#[test]
fn a_wrong_type_on_a_known_field_is_an_error_naming_the_problem() {
    let error = serde_json::from_str::<Referral>(r#"{"details":{"dealValue":"lots"}}"#)
        .expect_err("a string is no deal value");
    assert!(error.to_string().contains("invalid type"), "{error}");
    assert!(serde_json::from_str::<Referral>(r#"{"team":{"email":"x"}}"#).is_err());
    assert!(serde_json::from_str::<Referral>("[]").is_err());
}

#[test]
fn closed_is_read_from_the_status_alone() {
    let closed = |status: Option<Status>| {
        Referral {
            status,
            ..Referral::default()
        }
        .is_closed()
    };
    assert!(closed(Some(Status::Closed)));
    assert!(closed(Some(Status::from("closed"))));
    assert!(!closed(Some(Status::Active)));
    assert!(!closed(Some(Status::Other("Archived".into()))));
    assert!(!closed(None));
}

#[test]
fn a_built_referral_serialises_only_what_was_set() {
    let referral = Referral {
        name: Some("Deal".into()),
        r#type: Some(ReferralType::Independent),
        consent: Some(Consent {
            consent_to_to_share_info_with_others: Some(true),
            ..Consent::default()
        }),
        links: Some(Links {
            self_: Some(Link {
                uri: Some("u".into()),
                ..Link::default()
            }),
            ..Links::default()
        }),
        e_tag: Some("\"1\"".into()),
        ..Referral::default()
    };
    assert_eq!(
        serde_json::to_value(&referral).expect("serialise"),
        json!({
            "name": "Deal",
            "type": "Independent",
            "consent": {"consentToToShareInfoWithOthers": true},
            "eTag": "\"1\"",
            "links": {"self": {"uri": "u"}}
        })
    );
}
