//! The Dataverse adapter against the sandbox's Dataverse Web API over real HTTP: what the sync
//! engine sees through the `Crm` port, checked against the rows as a seller would see them
//! (the sandbox's control API).
//!
//! The sandbox's standard schema has no state/province column on accounts and no connector
//! columns on leads; a partner's environment has them, so [`Env::start`] adds them through the
//! schema control API, as an admin would.

use std::time::Duration;

use cosell_sandbox::config::{CLIENT_ID, CLIENT_SECRET};
use cosell_sandbox::{Sandbox, SandboxConfig};
use cosell_shared::crm::dataverse::{DataverseConfig, DataverseCrm, Secret, VisibilityEncoding};
use cosell_shared::crm::{
    AccountFields, ContactFields, Crm, CrmError, CrmKind, LeadFields, LeadState, OpportunityFields,
    OpportunityState, Visibility,
};
use cosell_shared::retry::RetryPolicy;
use reqwest::Method;
use serde_json::{Value, json};

const TOKEN_ROUTE: &str = "POST /{tenant}/oauth2/v2.0/token";
const GET_OPPORTUNITY: &str = "GET /api/data/v9.2/opportunities({id})";
const PATCH_OPPORTUNITY: &str = "PATCH /api/data/v9.2/opportunities({id})";

struct Env {
    sandbox: Sandbox,
    http: reqwest::Client,
}

/// Retries quickly, and waits out a `Retry-After` of at most two seconds.
fn fast() -> RetryPolicy {
    RetryPolicy {
        retries: 3,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(10),
        max_retry_after: Duration::from_secs(2),
    }
}

impl Env {
    async fn start() -> Env {
        let sandbox = Sandbox::start(SandboxConfig::default())
            .await
            .expect("sandbox starts");
        Env {
            sandbox,
            http: reqwest::Client::new(),
        }
    }

    fn config(&self) -> DataverseConfig {
        let mut c = DataverseConfig::new(
            self.sandbox.base_url(),
            "contoso-tenant",
            CLIENT_ID,
            Secret::new(CLIENT_SECRET),
        );
        c.authority_url = self.sandbox.base_url().to_string();
        c.retry = fast();
        c.timeout = Duration::from_secs(10);
        c
    }

    fn crm(&self) -> DataverseCrm {
        DataverseCrm::new(self.config()).expect("valid config")
    }

    async fn control(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, self.sandbox.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("control request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("control body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn add_field(&self, set: &str, field: Value) {
        let (status, body) = self
            .control(
                Method::POST,
                &format!("/_sandbox/dataverse/schema/{set}/fields"),
                Some(field),
            )
            .await;
        assert!(status < 300, "add field to {set}: {status} {body}");
    }

    /// A row as a seller sees it.
    async fn row(&self, set: &str, id: &str) -> Value {
        let (status, body) = self
            .control(
                Method::GET,
                &format!("/_sandbox/dataverse/{set}({id})"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{set}({id}): {body}");
        body
    }

    async fn rows(&self, set: &str) -> Vec<Value> {
        let (status, body) = self
            .control(Method::GET, &format!("/_sandbox/dataverse/{set}"), None)
            .await;
        assert_eq!(status, 200, "{set}: {body}");
        body["value"].as_array().cloned().unwrap_or_default()
    }

    async fn stat(&self, key: &str) -> u64 {
        let (_, body) = self.control(Method::GET, "/_sandbox/stats", None).await;
        body[key].as_u64().unwrap_or(0)
    }

    async fn fault(&self, rule: Value) {
        let (status, body) = self
            .control(Method::POST, "/_sandbox/faults", Some(rule))
            .await;
        assert!(status < 300, "fault: {status} {body}");
    }

    async fn closes(&self) -> Vec<Value> {
        let (_, body) = self
            .control(Method::GET, "/_sandbox/dataverse/opportunitycloses", None)
            .await;
        body["value"].as_array().cloned().unwrap_or_default()
    }
}

fn codes(row: &Value) -> (i64, i64) {
    (
        row["statecode"].as_i64().unwrap_or(-1),
        row["statuscode"].as_i64().unwrap_or(-1),
    )
}

async fn account(crm: &DataverseCrm, name: &str) -> String {
    crm.create_account(&AccountFields {
        name: name.into(),
        ..Default::default()
    })
    .await
    .expect("account created")
}

/// The least an opportunity needs: a name and a customer.
async fn basic(crm: &DataverseCrm, name: &str) -> OpportunityFields {
    OpportunityFields {
        name: Some(name.into()),
        account_id: Some(account(crm, &format!("{name} Ltd")).await),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_opportunity_reads_back_as_it_was_written_and_is_found_by_referral() {
    let env = Env::start().await;
    let crm = env.crm();
    assert_eq!(crm.kind(), CrmKind::Dynamics);
    let account = crm
        .create_account(&AccountFields {
            name: "Fabrikam Nederland".into(),
            street: Some("Damrak 1".into()),
            city: Some("Amsterdam".into()),
            state: Some("NH".into()),
            postal_code: Some("1011 AB".into()),
            country: Some("NL".into()),
        })
        .await
        .expect("account");
    let contact = crm
        .create_contact(&ContactFields {
            first_name: Some("Ada".into()),
            last_name: "Lovelace".into(),
            email: Some("ada@fabrikam.example".into()),
            phone: Some("+31 20 000 0000".into()),
            account_id: Some(account.clone()),
        })
        .await
        .expect("contact");
    let fields = OpportunityFields {
        name: Some("Fabrikam – Azure migration".into()),
        deal_value: Some(125_000.5),
        currency: Some("EUR".into()),
        close_date: chrono::NaiveDate::from_ymd_opt(2026, 3, 31),
        description: Some("Lift and shift of 40 VMs".into()),
        state: Some(OpportunityState::OnHold),
        account_id: Some(account.clone()),
        contact_id: Some(contact.clone()),
        sync_with_partner_center: Some(true),
        referral_id: Some("b2c1e7a4-0000-4000-8000-000000000001".into()),
        referral_link: Some("https://partner.microsoft.com/referrals/b2c1e7a4".into()),
        microsoft_help: Some("Proof of concept or demo".into()),
        visibility: Some(Visibility::Visible),
        microsoft_crm_id: Some("7-ABCDEF".into()),
        microsoft_status: Some("Active".into()),
        audit: Some("2026-01-05 created from Partner Center".into()),
    };
    let id = crm.create_opportunity(&fields).await.expect("created");

    let read = crm
        .get_opportunity(&id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.id, id);
    assert_eq!(read.fields, fields);
    assert!(read.modified_by_connector);
    assert!(read.modified_at.is_some());

    let found = crm
        .find_opportunity_by_referral("b2c1e7a4-0000-4000-8000-000000000001")
        .await
        .expect("query")
        .expect("found");
    assert_eq!(found, read);
    assert_eq!(
        crm.find_opportunity_by_referral("someone-else's")
            .await
            .expect("query"),
        None
    );

    // What Dynamics 365 shows: the customer is the account, the currency is the euro, and
    // the opportunity waits on hold.
    let row = env.row("opportunities", &id).await;
    assert_eq!(row["_customerid_value"], json!(account));
    assert_eq!(row["_parentcontactid_value"], json!(contact));
    assert_eq!(codes(&row), (0, 2));
    let euro = env
        .rows("transactioncurrencies")
        .await
        .into_iter()
        .find(|c| c["isocurrencycode"] == "EUR")
        .expect("EUR seeded");
    assert_eq!(
        row["_transactioncurrencyid_value"],
        euro["transactioncurrencyid"]
    );
}

#[tokio::test]
async fn an_update_writes_only_the_fields_it_names() {
    let env = Env::start().await;
    let crm = env.crm();
    let mut fields = basic(&crm, "Contoso").await;
    fields.deal_value = Some(5000.0);
    fields.description = Some("before".into());
    fields.referral_id = Some("ref-upd".into());
    fields.visibility = Some(Visibility::Private);
    let id = crm.create_opportunity(&fields).await.expect("created");
    let before = env.row("opportunities", &id).await;

    crm.update_opportunity(
        &id,
        &OpportunityFields {
            name: Some("✔ Contoso".into()),
            audit: Some("synced".into()),
            ..Default::default()
        },
    )
    .await
    .expect("updated");

    let after = env.row("opportunities", &id).await;
    assert_eq!(after["name"], "✔ Contoso");
    assert_eq!(after["cosell_audit"], "synced");
    let bookkeeping = [
        "name",
        "cosell_audit",
        "modifiedon",
        "versionnumber",
        "@odata.etag",
    ];
    for (column, value) in before.as_object().expect("row") {
        if !bookkeeping.contains(&column.as_str()) {
            assert_eq!(&after[column], value, "{column} changed");
        }
    }
}

#[tokio::test]
async fn states_follow_hold_active_won_and_lost_through_the_actions() {
    let env = Env::start().await;
    let crm = env.crm();
    let mut fields = basic(&crm, "Northwind").await;
    fields.state = Some(OpportunityState::OnHold);
    let id = crm.create_opportunity(&fields).await.expect("created");
    assert_eq!(codes(&env.row("opportunities", &id).await), (0, 2));

    let to = |state| OpportunityFields {
        state: Some(state),
        ..Default::default()
    };
    crm.update_opportunity(&id, &to(OpportunityState::Active))
        .await
        .expect("accepted");
    assert_eq!(codes(&env.row("opportunities", &id).await), (0, 1));

    // Fields that come with the win are written before the opportunity closes.
    let won = OpportunityFields {
        audit: Some("won in Partner Center".into()),
        ..to(OpportunityState::Won)
    };
    crm.update_opportunity(&id, &won).await.expect("won");
    let row = env.row("opportunities", &id).await;
    assert_eq!(codes(&row), (1, 3));
    assert_eq!(row["cosell_audit"], "won in Partner Center");
    let closes = env.closes().await;
    assert_eq!(closes.len(), 1, "{closes:?}");
    assert_eq!(closes[0]["action"], "WinOpportunity");
    assert_eq!(closes[0]["_opportunityid_value"], json!(id));

    // The same command delivered again changes nothing and does not fail.
    crm.update_opportunity(&id, &won)
        .await
        .expect("redelivered win");
    assert_eq!(env.closes().await.len(), 1);
    let read = crm
        .get_opportunity(&id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.fields.state, Some(OpportunityState::Won));

    // A closed opportunity is read-only: a different value is refused, not forced in.
    let late = OpportunityFields {
        description: Some("a late edit".into()),
        ..to(OpportunityState::Won)
    };
    let err = crm
        .update_opportunity(&id, &late)
        .await
        .expect_err("closed");
    assert!(matches!(err, CrmError::Rejected { .. }), "{err:?}");

    // Won → Lost reopens, then loses (Canceled).
    crm.update_opportunity(&id, &to(OpportunityState::Lost))
        .await
        .expect("lost");
    assert_eq!(codes(&env.row("opportunities", &id).await), (2, 4));
    let closes = env.closes().await;
    assert_eq!(closes.len(), 2);
    assert_eq!(closes[1]["action"], "LoseOpportunity");

    // Reopening lands straight in the asked-for open status, with the other fields.
    crm.update_opportunity(
        &id,
        &OpportunityFields {
            description: Some("reopened by Microsoft".into()),
            ..to(OpportunityState::OnHold)
        },
    )
    .await
    .expect("reopened");
    let row = env.row("opportunities", &id).await;
    assert_eq!(codes(&row), (0, 2));
    assert_eq!(row["description"], "reopened by Microsoft");
    let read = crm
        .get_opportunity(&id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.fields.state, Some(OpportunityState::OnHold));

    // Created lost: an open create, then LoseOpportunity.
    let mut lost = basic(&crm, "Tailspin").await;
    lost.state = Some(OpportunityState::Lost);
    let lost_id = crm.create_opportunity(&lost).await.expect("created lost");
    assert_eq!(codes(&env.row("opportunities", &lost_id).await), (2, 4));
}

#[tokio::test]
async fn a_win_whose_answer_was_lost_is_not_an_error_on_retry() {
    let env = Env::start().await;
    let crm = env.crm();
    let id = crm
        .create_opportunity(&basic(&crm, "Adatum").await)
        .await
        .expect("created");
    env.fault(json!({
        "method": "POST", "route": "/api/data/v9.2/WinOpportunity",
        "dropAfterCommit": true, "count": 1
    }))
    .await;
    crm.update_opportunity(
        &id,
        &OpportunityFields {
            state: Some(OpportunityState::Won),
            ..Default::default()
        },
    )
    .await
    .expect("won despite the lost answer");
    assert_eq!(codes(&env.row("opportunities", &id).await), (1, 3));
    assert_eq!(env.closes().await.len(), 1);
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_makes_one_row() {
    let env = Env::start().await;
    let crm = env.crm();
    let fields = basic(&crm, "Litware").await;
    env.fault(json!({
        "method": "PATCH", "route": "/api/data/v9.2/opportunities({id})",
        "dropAfterCommit": true, "count": 1
    }))
    .await;
    let id = crm.create_opportunity(&fields).await.expect("created");
    let rows = env.rows("opportunities").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["opportunityid"], json!(id));
    assert_eq!(
        env.stat(PATCH_OPPORTUNITY).await,
        2,
        "the create was retried"
    );
}

#[tokio::test]
async fn leads_are_created_found_and_disqualified() {
    let env = Env::start().await;
    let crm = env.crm();
    let lead = LeadFields {
        topic: Some("Co-sell lead: Power BI rollout".into()),
        first_name: Some("Grace".into()),
        last_name: Some("Hopper".into()),
        company: Some("Wide World Importers".into()),
        email: Some("grace@wwi.example".into()),
        phone: Some("+1 425 555 0100".into()),
        postal_code: Some("98052".into()),
        country: Some("US".into()),
        description: Some("Marketing qualified".into()),
        state: Some(LeadState::Open),
        referral_id: Some("lead-ref-1".into()),
        referral_link: Some("https://partner.microsoft.com/referrals/lead-ref-1".into()),
        audit: Some("created".into()),
    };
    let id = crm.create_lead(&lead).await.expect("created");
    let read = crm.get_lead(&id).await.expect("read").expect("exists");
    assert_eq!(read.fields, lead);
    let found = crm
        .find_lead_by_referral("lead-ref-1")
        .await
        .expect("query")
        .expect("found");
    assert_eq!(found.id, id);
    assert_eq!(
        crm.find_lead_by_referral("other").await.expect("query"),
        None
    );

    crm.update_lead(
        &id,
        &LeadFields {
            state: Some(LeadState::Disqualified),
            audit: Some("declined in Partner Center".into()),
            ..Default::default()
        },
    )
    .await
    .expect("disqualified");
    let row = env.row("leads", &id).await;
    assert_eq!(codes(&row), (2, 4));
    assert_eq!(row["cosell_audit"], "declined in Partner Center");
    assert_eq!(row["subject"], "Co-sell lead: Power BI rollout");
    let read = crm.get_lead(&id).await.expect("read").expect("exists");
    assert_eq!(read.fields.state, Some(LeadState::Disqualified));

    let qualified = crm
        .create_lead(&LeadFields {
            topic: Some("Qualified on arrival".into()),
            state: Some(LeadState::Qualified),
            ..Default::default()
        })
        .await
        .expect("created");
    assert_eq!(codes(&env.row("leads", &qualified).await), (1, 3));
}

#[tokio::test]
async fn account_candidates_share_the_postal_code_or_else_the_name() {
    let env = Env::start().await;
    let crm = env.crm();
    let spaced = AccountFields {
        name: "Fabrikam".into(),
        street: Some("Damrak 1".into()),
        city: Some("Amsterdam".into()),
        state: Some("NH".into()),
        postal_code: Some("1011 AB".into()),
        country: Some("NL".into()),
    };
    let a = crm.create_account(&spaced).await.expect("a");
    let b = crm
        .create_account(&AccountFields {
            name: "Fabrikam BV".into(),
            postal_code: Some("1011AB".into()),
            ..Default::default()
        })
        .await
        .expect("b");
    let elsewhere = crm
        .create_account(&AccountFields {
            name: "Fabrikam".into(),
            ..Default::default()
        })
        .await
        .expect("no postal code");
    crm.create_account(&AccountFields {
        name: "Contoso".into(),
        postal_code: Some("2000".into()),
        ..Default::default()
    })
    .await
    .expect("other");

    let by_postal = crm
        .account_candidates("Fabrikam", Some("1011 ab"))
        .await
        .expect("candidates");
    let mut ids: Vec<&str> = by_postal.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    let mut want = vec![a.as_str(), b.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    let first = by_postal.iter().find(|c| c.id == a).expect("a");
    assert_eq!(first.fields, spaced);

    let by_name = crm
        .account_candidates("Fabrikam", None)
        .await
        .expect("candidates");
    let mut ids: Vec<&str> = by_name.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    let mut want = vec![a.as_str(), elsewhere.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);

    let quoted = crm
        .create_account(&AccountFields {
            name: "O'Brien & Sons".into(),
            ..Default::default()
        })
        .await
        .expect("quoted");
    let found = crm
        .account_candidates("O'Brien & Sons", None)
        .await
        .expect("candidates");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, quoted);
    assert!(
        crm.account_candidates("Fabrikam", Some("9999 ZZ"))
            .await
            .expect("candidates")
            .is_empty()
    );
}

#[tokio::test]
async fn a_contact_is_found_by_email_and_attached_once() {
    let env = Env::start().await;
    let crm = env.crm();
    let account_id = account(&crm, "Woodgrove").await;
    let contact = ContactFields {
        first_name: Some("Alan".into()),
        last_name: "Turing".into(),
        email: Some("Alan.Turing@Woodgrove.example".into()),
        phone: None,
        account_id: Some(account_id),
    };
    let contact_id = crm.create_contact(&contact).await.expect("contact");
    let found = crm
        .find_contact_by_email("alan.turing@woodgrove.example")
        .await
        .expect("query")
        .expect("found");
    assert_eq!(found.id, contact_id);
    assert_eq!(found.fields, contact);
    assert_eq!(
        crm.find_contact_by_email("nobody@woodgrove.example")
            .await
            .expect("query"),
        None
    );

    let opportunity = crm
        .create_opportunity(&basic(&crm, "Woodgrove deal").await)
        .await
        .expect("opportunity");
    crm.attach_contact(&opportunity, &contact_id)
        .await
        .expect("attached");
    let read = crm
        .get_opportunity(&opportunity)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.fields.contact_id, Some(contact_id.clone()));
    let writes = env.stat(PATCH_OPPORTUNITY).await;
    crm.attach_contact(&opportunity, &contact_id)
        .await
        .expect("attached again");
    assert_eq!(
        env.stat(PATCH_OPPORTUNITY).await,
        writes,
        "an attached contact is not written again"
    );
}

#[tokio::test]
async fn solution_links_are_added_once_each() {
    let env = Env::start().await;
    let crm = env.crm();
    let id = crm
        .create_opportunity(&basic(&crm, "Relecloud").await)
        .await
        .expect("created");
    let other = crm
        .create_opportunity(&basic(&crm, "Other").await)
        .await
        .expect("created");
    for solution in ["sol-azure-migrate", "sol-azure-migrate", "sol-sentinel"] {
        crm.add_solution_link(&id, solution).await.expect("linked");
    }
    assert_eq!(
        crm.solution_links(&id).await.expect("links"),
        vec!["sol-azure-migrate", "sol-sentinel"]
    );
    assert!(crm.solution_links(&other).await.expect("links").is_empty());
    let rows = env.rows("cosell_solutions").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r["_cosell_opportunityid_value"] == json!(id))
    );
}

#[tokio::test]
async fn long_lists_are_read_page_by_page() {
    let env = Env::start().await;
    let mut config = env.config();
    config.page_size = 2;
    let crm = DataverseCrm::new(config).expect("valid");
    let id = crm
        .create_opportunity(&basic(&crm, "Paged").await)
        .await
        .expect("created");
    let solutions: Vec<String> = (1..=5).map(|n| format!("sol-{n}")).collect();
    for s in &solutions {
        crm.add_solution_link(&id, s).await.expect("linked");
    }
    env.control(Method::DELETE, "/_sandbox/stats", None).await;
    assert_eq!(crm.solution_links(&id).await.expect("links"), solutions);
    assert_eq!(env.stat("GET /api/data/v9.2/cosell_solutions").await, 3);
}

#[tokio::test]
async fn a_sellers_edit_is_told_apart_from_the_connectors_own() {
    let env = Env::start().await;
    let crm = env.crm();
    let id = crm
        .create_opportunity(&basic(&crm, "Proseware").await)
        .await
        .expect("created");
    let (status, body) = env
        .control(
            Method::PATCH,
            &format!("/_sandbox/dataverse/opportunities({id})"),
            Some(json!({"description": "the seller's notes"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let read = crm
        .get_opportunity(&id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        read.fields.description.as_deref(),
        Some("the seller's notes")
    );
    assert!(!read.modified_by_connector);

    crm.update_opportunity(
        &id,
        &OpportunityFields {
            audit: Some("synced".into()),
            ..Default::default()
        },
    )
    .await
    .expect("updated");
    let read = crm
        .get_opportunity(&id)
        .await
        .expect("read")
        .expect("exists");
    assert!(read.modified_by_connector);
}

#[tokio::test]
async fn a_configured_referral_column_is_the_one_used() {
    let env = Env::start().await;
    env.add_field(
        "opportunities",
        json!({"name": "new_pcreferralid", "type": "string", "maxLength": 100}),
    )
    .await;
    let mut config = env.config();
    config.fields.referral_id = "new_pcreferralid".into();
    let crm = DataverseCrm::new(config).expect("valid");
    let mut fields = basic(&crm, "Custom").await;
    fields.referral_id = Some("ref-custom".into());
    let id = crm.create_opportunity(&fields).await.expect("created");

    let row = env.row("opportunities", &id).await;
    assert_eq!(row["new_pcreferralid"], "ref-custom");
    assert_eq!(row["cosell_referralid"], Value::Null);
    let found = crm
        .find_opportunity_by_referral("ref-custom")
        .await
        .expect("query")
        .expect("found");
    assert_eq!(found.id, id);
    assert_eq!(found.fields.referral_id.as_deref(), Some("ref-custom"));
    assert_eq!(
        env.crm()
            .find_opportunity_by_referral("ref-custom")
            .await
            .expect("query"),
        None,
        "the default column holds nothing"
    );
}

#[tokio::test]
async fn a_choice_visibility_column_and_its_options_can_be_configured() {
    let env = Env::start().await;
    env.add_field(
        "opportunities",
        json!({"name": "new_pcvisibility", "type": "picklist", "options": [100000000, 100000001]}),
    )
    .await;
    let mut config = env.config();
    config.fields.visibility = "new_pcvisibility".into();
    config.fields.visibility_encoding = VisibilityEncoding::Choice {
        private: 100_000_000,
        visible: 100_000_001,
    };
    let crm = DataverseCrm::new(config).expect("valid");
    let mut fields = basic(&crm, "Choice").await;
    fields.visibility = Some(Visibility::Visible);
    let id = crm.create_opportunity(&fields).await.expect("created");
    let row = env.row("opportunities", &id).await;
    assert_eq!(row["new_pcvisibility"], 100_000_001);
    assert_eq!(
        row["cosell_visibility"], false,
        "the default column is untouched"
    );
    let read = crm
        .get_opportunity(&id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.fields.visibility, Some(Visibility::Visible));
}

#[tokio::test]
async fn a_misnamed_table_is_a_rejection_not_a_missing_record() {
    let env = Env::start().await;
    let mut config = env.config();
    config.fields.solution_link_set = "new_solutionlinks".into();
    let crm = DataverseCrm::new(config).expect("valid");
    let id = crm
        .create_opportunity(&basic(&crm, "Misnamed").await)
        .await
        .expect("created");
    let err = crm.solution_links(&id).await.expect_err("no such table");
    match err {
        CrmError::Rejected { message, .. } => {
            assert!(message.contains("new_solutionlinks"), "{message}")
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn throttling_with_retry_after_is_waited_out() {
    let env = Env::start().await;
    let crm = env.crm();
    let id = crm
        .create_opportunity(&basic(&crm, "Throttled").await)
        .await
        .expect("created");
    env.control(Method::DELETE, "/_sandbox/stats", None).await;
    env.fault(json!({
        "method": "GET", "route": "/api/data/v9.2/opportunities({id})",
        "status": 429, "retryAfter": 1, "count": 1
    }))
    .await;
    let read = crm.get_opportunity(&id).await.expect("retried and read");
    assert!(read.is_some());
    assert_eq!(env.stat(GET_OPPORTUNITY).await, 2);
}

#[tokio::test]
async fn an_exhausted_request_budget_is_transient_with_its_retry_after() {
    let env = Env::start().await;
    let crm = env.crm();
    crm.account_candidates("warm-up", None)
        .await
        .expect("warm-up");
    env.control(Method::DELETE, "/_sandbox/dataverse/limits/usage", None)
        .await;
    let (status, _) = env
        .control(
            Method::PATCH,
            "/_sandbox/dataverse/limits",
            Some(json!({"requests": 1})),
        )
        .await;
    assert_eq!(status, 200);
    crm.account_candidates("Fabrikam", None)
        .await
        .expect("within the budget");
    let err = crm
        .account_candidates("Fabrikam", None)
        .await
        .expect_err("over the budget");
    match err {
        CrmError::Transient {
            status: Some(429),
            retry_after: Some(secs),
            message,
        } => {
            assert!(secs >= 1, "{secs}");
            assert!(message.contains("Number of requests exceeded"), "{message}");
        }
        other => panic!("expected a throttled transient error, got {other:?}"),
    }
}

#[tokio::test]
async fn server_errors_are_transient_once_retries_are_spent() {
    let env = Env::start().await;
    let crm = env.crm();
    let id = crm
        .create_opportunity(&basic(&crm, "Flaky").await)
        .await
        .expect("created");
    env.fault(json!({
        "method": "GET", "route": "/api/data/v9.2/opportunities({id})", "status": 503
    }))
    .await;
    let err = crm.get_opportunity(&id).await.expect_err("unavailable");
    assert!(
        matches!(
            err,
            CrmError::Transient {
                status: Some(503),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_missing_required_field_is_rejected_by_name_and_create_defaults_fill_it() {
    let env = Env::start().await;
    let (status, body) = env
        .control(
            Method::PATCH,
            "/_sandbox/dataverse/schema/opportunities/fields/closeprobability",
            Some(json!({"required": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let crm = env.crm();
    let fields = basic(&crm, "Mandatory").await;
    match crm.create_opportunity(&fields).await {
        Err(CrmError::Rejected { message, field }) => {
            assert_eq!(field.as_deref(), Some("closeprobability"), "{message}");
            assert!(message.contains("closeprobability"), "{message}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(env.rows("opportunities").await.is_empty());

    let mut config = env.config();
    config
        .fields
        .opportunity_create_defaults
        .insert("closeprobability".into(), json!(40));
    let crm = DataverseCrm::new(config).expect("valid");
    let id = crm.create_opportunity(&fields).await.expect("created");
    assert_eq!(env.row("opportunities", &id).await["closeprobability"], 40);
}

#[tokio::test]
async fn an_unknown_currency_is_rejected_with_a_clear_message() {
    let env = Env::start().await;
    let crm = env.crm();
    let mut fields = basic(&crm, "Currency").await;
    fields.currency = Some("XAU".into());
    match crm.create_opportunity(&fields).await {
        Err(CrmError::Rejected { message, field }) => {
            assert!(message.contains("XAU"), "{message}");
            assert!(message.contains("currency"), "{message}");
            assert_eq!(field.as_deref(), Some("transactioncurrencyid"));
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(env.rows("opportunities").await.is_empty());
}

#[tokio::test]
async fn one_token_serves_many_calls_and_a_revoked_one_is_replaced() {
    let env = Env::start().await;
    let crm = env.crm();
    let id = crm
        .create_opportunity(&basic(&crm, "Tokens").await)
        .await
        .expect("created");
    for _ in 0..5 {
        crm.get_opportunity(&id).await.expect("read");
        crm.solution_links(&id).await.expect("links");
    }
    assert_eq!(env.stat(TOKEN_ROUTE).await, 1);

    let (status, _) = env
        .control(Method::POST, "/_sandbox/identities/expire-tokens", None)
        .await;
    assert!(status < 300);
    crm.get_opportunity(&id)
        .await
        .expect("read with a new token")
        .expect("exists");
    assert_eq!(env.stat(TOKEN_ROUTE).await, 2);
}

#[tokio::test]
async fn wrong_credentials_are_an_auth_error_that_hides_the_secret() {
    let env = Env::start().await;
    let mut config = env.config();
    config.client_secret = Secret::new("not-the-secret-123");
    let crm = DataverseCrm::new(config).expect("valid");
    let err = crm
        .get_opportunity("6592a1b0-ad2b-4c5b-a68a-47ab4b6c7d3e")
        .await
        .expect_err("refused");
    assert!(matches!(err, CrmError::Auth { .. }), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("not-the-secret-123"), "{shown}");
}

#[tokio::test]
async fn missing_records_read_as_none_and_are_not_recreated_by_updates() {
    let env = Env::start().await;
    let crm = env.crm();
    let missing = "6592a1b0-ad2b-4c5b-a68a-47ab4b6c7d3e";
    assert_eq!(crm.get_opportunity(missing).await.expect("read"), None);
    assert_eq!(crm.get_opportunity("not-a-guid").await.expect("read"), None);
    assert_eq!(crm.get_lead(missing).await.expect("read"), None);
    let err = crm
        .update_opportunity(
            missing,
            &OpportunityFields {
                name: Some("ghost".into()),
                ..Default::default()
            },
        )
        .await
        .expect_err("missing");
    assert!(matches!(err, CrmError::NotFound { .. }), "{err:?}");
    assert!(env.rows("opportunities").await.is_empty(), "no upsert");
    let err = crm
        .update_lead(
            missing,
            &LeadFields {
                state: Some(LeadState::Disqualified),
                ..Default::default()
            },
        )
        .await
        .expect_err("missing");
    assert!(matches!(err, CrmError::NotFound { .. }), "{err:?}");
}
