//! The CRM → Partner Center rules against the sandbox over real HTTP: a new referral of each
//! deal type is accepted and reads back as intended, merged edits and every status move are
//! accepted as JSON Patch under `If-Match` and leave the intended referral, and a move after a
//! terminal state is refused before any call.

use cosell_e2e::sandbox_control as control;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use cosell_e2e::fast_retries;
use cosell_sandbox::{Sandbox, SandboxConfig};
use cosell_shared::crm::{
    AccountFields, ContactFields, OpportunityFields, OpportunityState, Visibility,
};
use cosell_shared::domain::inbound::referral_projection;
use cosell_shared::domain::merge::{Side, merge, normalised};
use cosell_shared::domain::outbound::{
    DealType, crm_projection, deal_type, new_referral, patch_ops, validate,
};
use cosell_shared::domain::projection::Projection;
use cosell_shared::domain::stage::{StatusAction, sends_edits, status_action};
use cosell_shared::partner_center::http::{PartnerCenterClient, PartnerCenterConfig};
use cosell_shared::partner_center::{PartnerCenter, PartnerCenterError, PatchOp};
use cosell_shared::referral::{
    AssistanceRequestCode, Direction, Referral, ReferralType, Status, Substatus,
};
use serde_json::{Value, json};

const PATCH: &str = "PATCH /v1.0/engagements/referrals/{id}";

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxConfig::default())
        .await
        .unwrap_or_else(|e| panic!("cannot start the sandbox: {e}"))
}

async fn client(sandbox: &Sandbox) -> PartnerCenterClient {
    let auth = cosell_e2e::sandbox_admin_auth(sandbox.base_url()).await;
    let config = PartnerCenterConfig {
        api_base_url: sandbox.base_url().to_string(),
        webhooks_base_url: sandbox.base_url().to_string(),
        timeout: Duration::from_secs(10),
        retry: fast_retries(2),
    };
    PartnerCenterClient::new(config, auth).unwrap_or_else(|e| panic!("client: {e}"))
}

async fn patch_calls(sandbox: &Sandbox) -> u64 {
    let stats = control(
        sandbox,
        reqwest::Method::GET,
        "/_sandbox/stats",
        Value::Null,
    )
    .await;
    stats.get(PATCH).and_then(Value::as_u64).unwrap_or(0)
}

/// Microsoft shares a co-sell referral with the partner: `New/Pending`, incoming.
async fn incoming(sandbox: &Sandbox) -> Referral {
    let doc = control(
        sandbox,
        reqwest::Method::POST,
        "/_sandbox/partner-center/incoming?kind=co-sell",
        json!({}),
    )
    .await;
    serde_json::from_value(doc).unwrap_or_else(|e| panic!("incoming referral: {e}"))
}

fn id(r: &Referral) -> &str {
    r.id.as_deref()
        .unwrap_or_else(|| panic!("referral without id: {r:?}"))
}

async fn read(client: &PartnerCenterClient, r: &Referral) -> Referral {
    client
        .get_referral(id(r))
        .await
        .unwrap_or_else(|e| panic!("get: {e}"))
        .unwrap_or_else(|| panic!("referral {} is gone", id(r)))
}

fn updated_at(r: &Referral) -> Option<DateTime<Utc>> {
    r.updated_date_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn opportunity(help: Option<&str>, visibility: Visibility) -> OpportunityFields {
    OpportunityFields {
        name: Some("✔ Contoso cloud migration".into()),
        deal_value: Some(30000.0),
        currency: Some("eur".into()),
        close_date: NaiveDate::from_ymd_opt(2026, 6, 30),
        description: Some("Move the ERP to the cloud".into()),
        state: Some(OpportunityState::Active),
        sync_with_partner_center: Some(true),
        microsoft_help: help.map(str::to_string),
        visibility: Some(visibility),
        ..OpportunityFields::default()
    }
}

fn account() -> AccountFields {
    AccountFields {
        name: "Contoso".into(),
        street: Some("1 Harbour Road".into()),
        city: Some("Oslo".into()),
        state: None,
        postal_code: Some("0150".into()),
        // Lower case as sellers type it; the referral gets it in capitals.
        country: Some("no".into()),
    }
}

fn contact() -> ContactFields {
    ContactFields {
        first_name: Some("Kari".into()),
        last_name: "Nordmann".into(),
        email: None,
        phone: Some("+47 22 00 00 00".into()),
        account_id: None,
    }
}

fn solutions() -> Vec<String> {
    vec!["SOL-SANDBOX-0001".into()]
}

/// Validates and creates, as the sync does for a new deal.
async fn share(client: &PartnerCenterClient, o: &OpportunityFields, crm_id: &str) -> Referral {
    validate(o, Some(&account()), Some(&contact()), &solutions())
        .unwrap_or_else(|problems| panic!("{crm_id} does not validate: {problems:?}"));
    let body = new_referral(o, Some(&account()), Some(&contact()), &solutions(), crm_id);
    client
        .create_referral(&body)
        .await
        .unwrap_or_else(|e| panic!("create {crm_id}: {e}"))
}

fn two_way(p: &Projection) -> Projection {
    Projection {
        status: None,
        microsoft_status: None,
        microsoft_crm_id: None,
        // Synced for its removal only, and the opportunities here name no contact of their own.
        has_contact: None,
        ..normalised(p)
    }
}

#[tokio::test]
async fn each_deal_type_is_created_and_reads_back_as_intended() {
    let sandbox = sandbox().await;
    let client = client(&sandbox).await;
    let cases = [
        (
            Some("ProofOfConceptOrDemo"),
            Visibility::Visible,
            DealType::CoSell,
            ReferralType::Shared,
            true,
            AssistanceRequestCode::ProofOfConceptOrDemo,
        ),
        (
            Some("none"),
            Visibility::Visible,
            DealType::PartnerLed,
            ReferralType::Independent,
            true,
            AssistanceRequestCode::Unknown,
        ),
        (
            None,
            Visibility::Private,
            DealType::Private,
            ReferralType::Independent,
            false,
            AssistanceRequestCode::Unknown,
        ),
    ];
    for (n, (help, visibility, deal, ty, shared, code)) in cases.into_iter().enumerate() {
        let o = opportunity(help, visibility);
        assert_eq!(deal_type(&o), deal);
        let crm_id = format!("crm-{deal}-{n}");
        let created = share(&client, &o, &crm_id).await;
        let r = read(&client, &created).await;
        assert_eq!(r.r#type, Some(ty), "{deal}");
        assert_eq!(
            r.consent
                .as_ref()
                .and_then(|c| c.consent_to_share_referral_with_microsoft_sellers),
            Some(shared),
            "{deal}"
        );
        assert_eq!(
            r.invite_context
                .as_ref()
                .and_then(|c| c.assistance_request_code.clone()),
            Some(code),
            "{deal}"
        );
        assert_eq!(r.external_reference_id.as_deref(), Some(crm_id.as_str()));
        assert_eq!(r.name.as_deref(), Some("Contoso cloud migration"));
        assert_eq!(r.direction, Some(Direction::Outgoing));
        assert_eq!(
            (r.status.clone(), r.substatus.clone()),
            (Some(Status::Active), Some(Substatus::Accepted))
        );
        let profile = r.customer_profile.clone().unwrap_or_default();
        assert_eq!(
            profile.address.and_then(|a| a.country).as_deref(),
            Some("NO")
        );
        let team = profile.team.unwrap_or_default();
        assert_eq!(team.len(), 1);
        assert_eq!(team[0].phone_number.as_deref(), Some("+47 22 00 00 00"));
        // The new link's base: what Partner Center holds is what the opportunity says.
        assert_eq!(
            two_way(&referral_projection(&r, None)),
            two_way(&crm_projection(&o)),
            "{deal}"
        );
        // So the first merge has nothing to send either way, only the status to record.
        let m = merge(
            &crm_projection(&o),
            &crm_projection(&o),
            &referral_projection(&r, None),
            None,
            None,
        );
        assert!(m.to_pc.is_empty(), "{deal}: {:?}", m.to_pc.names());
        assert_eq!(m.to_crm.names(), vec!["status"], "{deal}");
    }
}

#[tokio::test]
async fn a_co_sell_deal_left_private_in_the_crm_is_shared_and_the_crm_told() {
    let sandbox = sandbox().await;
    let client = client(&sandbox).await;
    let o = opportunity(Some("QuotesOrLicensing"), Visibility::Private);
    let r = read(&client, &share(&client, &o, "crm-co-sell-private").await).await;
    assert_eq!(
        r.consent
            .as_ref()
            .and_then(|c| c.consent_to_share_referral_with_microsoft_sellers),
        Some(true),
        "Microsoft cannot help on a deal its sellers cannot see"
    );
    let m = merge(
        &crm_projection(&o),
        &crm_projection(&o),
        &referral_projection(&r, None),
        None,
        None,
    );
    assert_eq!(m.to_crm.names(), vec!["status", "visibility"]);
    assert_eq!(m.crm_update().visibility, Some(Visibility::Visible));
}

#[tokio::test]
async fn a_merged_change_is_sent_under_if_match_and_echoes_nothing() {
    let sandbox = sandbox().await;
    let client = client(&sandbox).await;
    let o = OpportunityFields {
        description: None,
        ..opportunity(None, Visibility::Visible)
    };
    let created = share(&client, &o, "crm-merge").await;
    let base = referral_projection(&created, None);

    // Partner Center: someone changes the currency and the deal value.
    control(
        &sandbox,
        reqwest::Method::PATCH,
        &format!("/_sandbox/partner-center/referrals/{}", id(&created)),
        json!({"details": {"currency": "NOK", "dealValue": 41000}}),
    )
    .await;
    let pc_now = read(&client, &created).await;

    // The seller, later: renames, changes the deal value and the close date, adds notes (absent
    // on the referral so far), and asks Microsoft for help.
    let edited = OpportunityFields {
        name: Some("✖ Contoso phase 2".into()),
        deal_value: Some(45000.0),
        close_date: NaiveDate::from_ymd_opt(2026, 7, 15),
        description: Some("Now with a data platform".into()),
        microsoft_help: Some("CustomerTechnicalArchitecture".into()),
        ..o.clone()
    };
    let crm_later = updated_at(&pc_now).map(|t| t + chrono::Duration::minutes(5));
    let m = merge(
        &base,
        &crm_projection(&edited),
        &referral_projection(&pc_now, None),
        crm_later,
        updated_at(&pc_now),
    );
    assert_eq!(
        m.to_pc.names(),
        vec![
            "name",
            "deal value",
            "close date",
            "notes",
            "Microsoft help"
        ]
    );
    assert_eq!(m.to_crm.names(), vec!["currency"]);
    assert_eq!(m.conflicts.len(), 1);
    assert_eq!(m.conflicts[0].winner, Side::Crm);

    let ops = patch_ops(&pc_now, &m.to_pc);
    let notes = ops
        .iter()
        .find(|op| op.path == "/details/notes")
        .unwrap_or_else(|| panic!("no notes op in {ops:?}"));
    assert_eq!(notes.op, "add", "the referral had no notes");

    // The eTag from before Partner Center's change is stale: the write is refused whole.
    assert_eq!(
        client
            .patch_referral(id(&created), created.e_tag.as_deref(), &ops)
            .await,
        Err(PartnerCenterError::PreconditionFailed)
    );
    client
        .patch_referral(id(&created), pc_now.e_tag.as_deref(), &ops)
        .await
        .unwrap_or_else(|e| panic!("patch under the current eTag: {e}"));

    let after = read(&client, &pc_now).await;
    assert_eq!(
        two_way(&referral_projection(&after, None)),
        two_way(&m.merged)
    );
    assert_eq!(after.name.as_deref(), Some("Contoso phase 2"));
    assert_eq!(
        after
            .invite_context
            .as_ref()
            .and_then(|c| c.assistance_request_code.clone()),
        Some(AssistanceRequestCode::CustomerTechnicalArchitecture)
    );

    // The next sync sees both writes and sends nothing back.
    let crm_after = m.to_crm.apply_to(&crm_projection(&edited));
    let again = merge(
        &m.merged,
        &crm_after,
        &referral_projection(&after, None),
        crm_later,
        updated_at(&after),
    );
    assert!(
        again.writes_nothing(),
        "{:?} / {:?}",
        again.to_pc.names(),
        again.to_crm.names()
    );
    assert!(patch_ops(&after, &again.to_pc).is_empty());
}

/// Sends the status move (and the edits when they go) in one PATCH under the current eTag.
async fn send(
    client: &PartnerCenterClient,
    r: &Referral,
    action: &StatusAction,
    edits: Vec<PatchOp>,
) {
    let mut ops = edits;
    ops.extend(action.patch_ops());
    assert!(!ops.is_empty(), "{action:?} sends something");
    client
        .patch_referral(id(r), r.e_tag.as_deref(), &ops)
        .await
        .unwrap_or_else(|e| panic!("{action:?}: {e}"));
}

fn status_of(r: &Referral) -> (Status, Substatus) {
    (
        r.status.clone().unwrap_or(Status::None),
        r.substatus.clone().unwrap_or(Substatus::None),
    )
}

#[tokio::test]
async fn moving_an_incoming_referral_to_active_accepts_it_with_the_edits() {
    let sandbox = sandbox().await;
    let client = client(&sandbox).await;
    let r = incoming(&sandbox).await;
    let (status, substatus) = status_of(&r);
    assert_eq!((&status, &substatus), (&Status::New, &Substatus::Pending));

    // On hold: nothing goes, not even an edit.
    assert_eq!(
        status_action(OpportunityState::OnHold, &status, &substatus, true),
        StatusAction::None
    );
    assert!(!sends_edits(
        OpportunityState::OnHold,
        &status,
        &substatus,
        true
    ));

    let action = status_action(OpportunityState::Active, &status, &substatus, true);
    assert_eq!(action, StatusAction::Accept);
    assert!(sends_edits(
        OpportunityState::Active,
        &status,
        &substatus,
        true
    ));
    let base = referral_projection(&r, None);
    let crm = Projection {
        deal_value: Some(36000.0),
        ..base.clone()
    };
    let m = merge(&base, &crm, &base, None, None);
    send(&client, &r, &action, patch_ops(&r, &m.to_pc)).await;

    let after = read(&client, &r).await;
    assert_eq!(status_of(&after), (Status::Active, Substatus::Accepted));
    assert_eq!(
        referral_projection(&after, None).status,
        Some(action.status_after(&status, &substatus))
    );
    assert_eq!(referral_projection(&after, None).deal_value, Some(36000.0));
}

#[tokio::test]
async fn closing_a_pending_referral_declines_it_with_a_reason() {
    let sandbox = sandbox().await;
    let client = client(&sandbox).await;
    let r = incoming(&sandbox).await;
    let (status, substatus) = status_of(&r);
    let action = status_action(OpportunityState::Lost, &status, &substatus, true);
    let StatusAction::Decline { reason } = &action else {
        panic!("expected a decline, got {action:?}");
    };
    assert!(!sends_edits(
        OpportunityState::Lost,
        &status,
        &substatus,
        true
    ));
    send(&client, &r, &action, Vec::new()).await;

    let after = read(&client, &r).await;
    assert_eq!(status_of(&after), (Status::Closed, Substatus::Declined));
    assert_eq!(after.status_reason.as_deref(), Some(reason.as_str()));
}

#[tokio::test]
async fn won_and_lost_close_an_accepted_deal_and_then_nothing_is_sent() {
    let sandbox = sandbox().await;
    let client = client(&sandbox).await;
    for (state, want, substatus) in [
        (OpportunityState::Won, StatusAction::Won, Substatus::Won),
        (OpportunityState::Lost, StatusAction::Lost, Substatus::Lost),
    ] {
        let o = opportunity(None, Visibility::Private);
        let r = share(&client, &o, &format!("crm-{substatus}")).await;
        let (from, from_sub) = status_of(&r);
        let action = status_action(state, &from, &from_sub, false);
        assert_eq!(action, want);
        // The last edit goes with the close: Partner Center takes none after it.
        assert!(sends_edits(state, &from, &from_sub, false));
        let base = referral_projection(&r, None);
        let crm = crm_projection(&OpportunityFields {
            deal_value: Some(31500.0),
            ..o.clone()
        });
        let m = merge(&base, &crm, &base, None, None);
        send(&client, &r, &action, patch_ops(&r, &m.to_pc)).await;
        let closed = read(&client, &r).await;
        assert_eq!(status_of(&closed), (Status::Closed, substatus.clone()));
        assert_eq!(referral_projection(&closed, None).deal_value, Some(31500.0));

        // The seller reopens the deal and edits it: refused before any call.
        let calls = patch_calls(&sandbox).await;
        let (status, sub) = status_of(&closed);
        let reopened = status_action(OpportunityState::Active, &status, &sub, false);
        let StatusAction::Refused { message } = &reopened else {
            panic!("expected a refusal, got {reopened:?}");
        };
        assert!(message.contains("already closed"), "{message}");
        assert!(reopened.patch_ops().is_empty());
        assert!(!sends_edits(OpportunityState::Active, &status, &sub, false));
        let edit = merge(
            &referral_projection(&closed, None),
            &crm_projection(&OpportunityFields {
                name: Some("Contoso, reopened".into()),
                ..o.clone()
            }),
            &referral_projection(&closed, None),
            None,
            None,
        );
        assert!(!edit.to_pc.is_empty());
        assert!(patch_ops(&closed, &edit.to_pc).is_empty());
        assert_eq!(patch_calls(&sandbox).await, calls, "no call was made");

        // And the refusal is Partner Center's own rule: the move sent anyway is rejected.
        let forced = client
            .patch_referral(
                id(&closed),
                closed.e_tag.as_deref(),
                &StatusAction::Accept.patch_ops(),
            )
            .await;
        assert!(
            matches!(forced, Err(PartnerCenterError::Rejected { .. })),
            "{forced:?}"
        );
    }
}
