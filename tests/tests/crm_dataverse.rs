//! The Dataverse adapter against the sandbox's Dataverse Web API over real HTTP: what the sync
//! engine sees through the `Crm` port, checked against the rows as a seller would see them
//! (the sandbox's control API).
//!
//! The sandbox's standard schema has no state/province column on accounts and no connector
//! columns on leads; a partner's environment has them, so [`Env::start`] adds them through the
//! schema control API, as an admin would.

use std::time::Duration;

use cosell_e2e::crm_contract::{CrmUnderTest, SellerEdit};
use cosell_e2e::fast_retries;
use cosell_sandbox::config::{CLIENT_ID, CLIENT_SECRET};
use cosell_sandbox::{Sandbox, SandboxConfig};
use cosell_shared::crm::dataverse::{DataverseConfig, DataverseCrm, Secret, VisibilityEncoding};
use cosell_shared::crm::{
    AccountFields, CatalogSolution, ClearField, ContactFields, Crm, CrmError, CrmKind, LeadFields,
    LeadState, OpportunityFields, OpportunityState, Visibility,
};
use cosell_shared::domain::accounts::AccountKey;
use reqwest::Method;
use serde_json::{Value, json};

const TOKEN_ROUTE: &str = "POST /{tenant}/oauth2/v2.0/token";
const GET_OPPORTUNITY: &str = "GET /api/data/v9.2/opportunities({id})";
const PATCH_OPPORTUNITY: &str = "PATCH /api/data/v9.2/opportunities({id})";

struct Env {
    sandbox: Sandbox,
    http: reqwest::Client,
}

impl Env {
    async fn start() -> Env {
        Env::with(SandboxConfig::default()).await
    }

    async fn with(config: SandboxConfig) -> Env {
        let sandbox = Sandbox::start(config).await.expect("sandbox starts");
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
        c.retry = fast_retries(3);
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
        ..Default::default()
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
    assert_eq!(env.stat("GET /api/data/v9.2/cosell_solutionlinks").await, 3);
}

fn solution(n: usize) -> CatalogSolution {
    CatalogSolution {
        solution_id: format!("sol-{n}"),
        name: format!("Solution {n}"),
        description: Some(format!("What solution {n} does")),
    }
}

#[tokio::test]
async fn catalog_rows_hold_the_configured_columns() {
    let env = Env::start().await;
    let crm = env.crm();
    let id = crm
        .create_catalog_solution(&solution(1))
        .await
        .expect("created");
    let row = env.row("cosell_solutioncatalogs", &id).await;
    assert_eq!(row["cosell_solutioncatalogid"], id.as_str());
    assert_eq!(row["cosell_solutionid"], "sol-1");
    assert_eq!(row["cosell_name"], "Solution 1");
    assert_eq!(row["cosell_description"], "What solution 1 does");

    let bare = CatalogSolution {
        description: None,
        ..solution(2)
    };
    crm.update_catalog_solution(&id, &bare)
        .await
        .expect("updated");
    let row = env.row("cosell_solutioncatalogs", &id).await;
    assert_eq!(
        (&row["cosell_solutionid"], &row["cosell_name"]),
        (&json!("sol-2"), &json!("Solution 2"))
    );
    assert_eq!(row["cosell_description"], Value::Null, "emptied");

    // A table without a description column: the setting left out, the column is never named.
    let mut config = env.config();
    config.fields.catalog_description = None;
    let plain = DataverseCrm::new(config).expect("valid");
    crm.update_catalog_solution(&id, &solution(2))
        .await
        .expect("described again");
    plain
        .update_catalog_solution(&id, &bare)
        .await
        .expect("updated without the description");
    let listed = plain.catalog().await.expect("listed");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].solution, bare, "the description is not read");
    assert_eq!(
        env.row("cosell_solutioncatalogs", &id).await["cosell_description"],
        "What solution 2 does",
        "nor written"
    );

    let missing = crm
        .update_catalog_solution("00000000-0000-4000-8000-000000000000", &bare)
        .await;
    assert!(
        matches!(missing, Err(CrmError::NotFound { .. })),
        "{missing:?}"
    );
    assert_eq!(
        crm.create_catalog_solution(&CatalogSolution {
            name: " ".into(),
            ..solution(3)
        })
        .await,
        Err(CrmError::Rejected {
            message: "a catalog solution needs a name".into(),
            field: Some("cosell_name".into()),
        }),
        "refused before it is sent"
    );
}

#[tokio::test]
async fn a_catalog_longer_than_a_page_is_listed_whole() {
    let env = Env::start().await;
    let mut config = env.config();
    config.page_size = 2;
    let crm = DataverseCrm::new(config).expect("valid");
    assert_eq!(crm.catalog().await, Ok(vec![]));
    let mut ids = Vec::new();
    for n in 1..=5 {
        ids.push(
            crm.create_catalog_solution(&solution(n))
                .await
                .expect("created"),
        );
    }
    env.control(Method::DELETE, "/_sandbox/stats", None).await;
    let listed = crm.catalog().await.expect("listed");
    let mut got: Vec<(String, CatalogSolution)> =
        listed.into_iter().map(|e| (e.crm_id, e.solution)).collect();
    got.sort_by(|a, b| a.1.solution_id.cmp(&b.1.solution_id));
    let want: Vec<(String, CatalogSolution)> = ids.into_iter().zip((1..=5).map(solution)).collect();
    assert_eq!(got, want, "every row once");
    assert_eq!(
        env.stat("GET /api/data/v9.2/cosell_solutioncatalogs").await,
        3,
        "pages of 2, 2 and 1"
    );
}

#[tokio::test]
async fn a_misnamed_catalog_table_is_a_rejection_naming_it() {
    let env = Env::start().await;
    let mut config = env.config();
    config.fields.catalog_set = "new_solutioncatalogs".into();
    let crm = DataverseCrm::new(config).expect("valid");
    match crm.catalog().await {
        Err(CrmError::Rejected { message, .. }) => {
            assert!(message.contains("new_solutioncatalogs"), "{message}")
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
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
    crm.account_candidates(&AccountKey::Name("warm-up".into()))
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
    crm.account_candidates(&AccountKey::Name("Fabrikam".into()))
        .await
        .expect("within the budget");
    let err = crm
        .account_candidates(&AccountKey::Name("Fabrikam".into()))
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
    config.client_credential = Secret::new("not-the-secret-123").into();
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
async fn the_application_user_signs_in_with_a_certificate_instead_of_a_secret() {
    let env = Env::start().await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("an RSA key");
    let cert = rcgen::CertificateParams::new(vec!["cosell-dataverse".into()])
        .and_then(|p| p.self_signed(&key))
        .expect("a certificate");
    let (status, body) = env
        .control(
            Method::POST,
            "/_sandbox/identities/certificate",
            Some(json!({"client_id": "sandbox-client", "certificate_pem": cert.pem()})),
        )
        .await;
    assert!(status < 300, "{body}");
    let mut config = env.config();
    config.client_credential = cosell_shared::entra::ClientCredential::Certificate(
        cosell_shared::entra::ClientCertificate::from_pem(
            &cert.pem(),
            &Secret::new(key.serialize_pem()),
        )
        .expect("a certificate credential"),
    );
    let crm = DataverseCrm::new(config).expect("valid");
    assert_eq!(
        crm.get_opportunity("6592a1b0-ad2b-4c5b-a68a-47ab4b6c7d3e")
            .await
            .expect("signed in with the certificate"),
        None
    );
}

// ---------------------------------------------------------------- the change feed

const LIST_OPPORTUNITIES: &str = "GET /api/data/v9.2/opportunities";

/// Every page of the feed from `cursor` until `more` is false: the opportunities in order, the
/// last cursor, and how many pages it took.
async fn drain(
    crm: &DataverseCrm,
    cursor: Option<String>,
) -> (Vec<cosell_shared::crm::Opportunity>, String, usize) {
    let mut cursor = cursor;
    let mut all = Vec::new();
    for pages in 1..=100 {
        let page = crm
            .opportunity_changes(cursor.as_deref())
            .await
            .expect("a page of changes");
        all.extend(page.opportunities);
        cursor = Some(page.cursor);
        if !page.more {
            return (all, cursor.unwrap_or_default(), pages);
        }
    }
    panic!("the feed never ran dry");
}

fn ids(opportunities: &[cosell_shared::crm::Opportunity]) -> Vec<String> {
    let mut ids: Vec<String> = opportunities.iter().map(|o| o.id.clone()).collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

impl Env {
    /// An account and an opportunity a seller creates in Dynamics 365.
    async fn seller_opportunity(&self, name: &str, sync: bool) -> String {
        let (status, account) = self
            .control(
                Method::POST,
                "/_sandbox/dataverse/accounts",
                Some(json!({"name": format!("{name} Ltd")})),
            )
            .await;
        assert_eq!(status, 201, "{account}");
        let account = account["accountid"].as_str().expect("account id");
        let (status, row) = self
            .control(
                Method::POST,
                "/_sandbox/dataverse/opportunities",
                Some(json!({
                    "name": name,
                    "customerid_account@odata.bind": format!("/accounts({account})"),
                    "cosell_syncwithpartnercenter": sync,
                })),
            )
            .await;
        assert_eq!(status, 201, "{row}");
        row["opportunityid"]
            .as_str()
            .expect("opportunity id")
            .to_string()
    }

    /// A seller's edit of an opportunity.
    async fn seller_edit(&self, id: &str, change: Value) {
        let (status, body) = self
            .control(
                Method::PATCH,
                &format!("/_sandbox/dataverse/opportunities({id})"),
                Some(change),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    async fn change_tracking(&self, on: bool) {
        let (status, body) = self
            .control(
                Method::PATCH,
                "/_sandbox/dataverse/schema/opportunities",
                Some(json!({"changeTracking": on})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

fn description(opportunities: &[cosell_shared::crm::Opportunity], id: &str) -> Vec<String> {
    opportunities
        .iter()
        .filter(|o| o.id == id)
        .map(|o| o.fields.description.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn a_feed_of_several_pages_brings_every_synced_opportunity_exactly_once() {
    let env = Env::start().await;
    let mut config = env.config();
    config.page_size = 2;
    let crm = DataverseCrm::new(config).expect("valid");
    let mut shared = Vec::new();
    for n in 0..7 {
        shared.push(env.seller_opportunity(&format!("Deal {n}"), true).await);
        env.seller_opportunity(&format!("Private {n}"), false).await;
    }
    env.control(Method::DELETE, "/_sandbox/stats", None).await;
    let (all, cursor, pages) = drain(&crm, None).await;
    assert_eq!(ids(&all), sorted(shared));
    assert!(pages >= 7, "14 rows two at a time: {pages} pages");
    assert_eq!(env.stat(LIST_OPPORTUNITIES).await, pages as u64);
    let idle = crm
        .opportunity_changes(Some(&cursor))
        .await
        .expect("nothing new");
    assert!(idle.opportunities.is_empty());
}

#[tokio::test]
async fn an_edit_made_while_the_feed_is_paging_is_not_lost() {
    let env = Env::start().await;
    let mut config = env.config();
    config.page_size = 2;
    let crm = DataverseCrm::new(config).expect("valid");
    let mut shared = Vec::new();
    for n in 0..6 {
        shared.push(env.seller_opportunity(&format!("Deal {n}"), true).await);
    }
    let first = crm.opportunity_changes(None).await.expect("first page");
    assert!(first.more);
    let handed_out = first.opportunities[0].id.clone();
    let pending = shared
        .iter()
        .find(|id| first.opportunities.iter().all(|o| &o.id != *id))
        .cloned()
        .expect("a row on a later page");
    env.seller_edit(&handed_out, json!({"description": "edited after its page"}))
        .await;
    env.seller_edit(&pending, json!({"description": "edited before its page"}))
        .await;
    let (rest, cursor, _) = drain(&crm, Some(first.cursor)).await;
    let (next, _, _) = drain(&crm, Some(cursor)).await;
    let seen: Vec<_> = rest.iter().chain(&next).cloned().collect();
    assert!(
        description(&seen, &handed_out).contains(&"edited after its page".to_string()),
        "{seen:?}"
    );
    assert!(
        description(&seen, &pending).contains(&"edited before its page".to_string()),
        "{seen:?}"
    );
}

#[tokio::test]
async fn without_change_tracking_the_feed_polls_modifiedon() {
    let env = Env::start().await;
    env.change_tracking(false).await;
    let mut config = env.config();
    config.page_size = 2;
    let crm = DataverseCrm::new(config).expect("valid");
    let mut shared = Vec::new();
    for n in 0..5 {
        shared.push(env.seller_opportunity(&format!("Deal {n}"), true).await);
        env.seller_opportunity(&format!("Private {n}"), false).await;
    }
    let (all, cursor, pages) = drain(&crm, None).await;
    assert_eq!(ids(&all), sorted(shared.clone()));
    assert!(pages >= 3, "five rows two at a time: {pages} pages");

    let idle = crm
        .opportunity_changes(Some(&cursor))
        .await
        .expect("nothing new");
    assert!(idle.opportunities.is_empty(), "{:?}", idle.opportunities);
    assert!(!idle.more);
    assert_eq!(
        idle.cursor, cursor,
        "nothing new leaves the cursor as it was"
    );

    // Within the overlap window every row is read again; only the edited one comes back, and
    // a second edit in the same second of `modifiedon` comes too.
    env.seller_edit(&shared[1], json!({"description": "first"}))
        .await;
    let (edited, cursor, _) = drain(&crm, Some(idle.cursor)).await;
    assert_eq!(ids(&edited), vec![shared[1].clone()]);
    assert_eq!(description(&edited, &shared[1]), ["first"]);
    env.seller_edit(&shared[1], json!({"description": "second"}))
        .await;
    let (again, cursor, _) = drain(&crm, Some(cursor)).await;
    assert_eq!(description(&again, &shared[1]), ["second"]);
    assert_eq!(ids(&again), vec![shared[1].clone()]);
    let (idle, _, _) = drain(&crm, Some(cursor)).await;
    assert!(idle.is_empty(), "{idle:?}");
}

#[tokio::test]
async fn without_change_tracking_an_edit_made_while_paging_is_not_lost() {
    let env = Env::start().await;
    env.change_tracking(false).await;
    let mut config = env.config();
    config.page_size = 2;
    let crm = DataverseCrm::new(config).expect("valid");
    let mut shared = Vec::new();
    for n in 0..6 {
        shared.push(env.seller_opportunity(&format!("Deal {n}"), true).await);
    }
    let first = crm.opportunity_changes(None).await.expect("first page");
    assert!(first.more);
    let handed_out = first.opportunities[0].id.clone();
    let pending = shared
        .iter()
        .find(|id| first.opportunities.iter().all(|o| &o.id != *id))
        .cloned()
        .expect("a row on a later page");
    env.seller_edit(&handed_out, json!({"description": "edited after its page"}))
        .await;
    env.seller_edit(&pending, json!({"description": "edited before its page"}))
        .await;
    let (rest, cursor, _) = drain(&crm, Some(first.cursor)).await;
    let (next, _, _) = drain(&crm, Some(cursor)).await;
    let seen: Vec<_> = rest.iter().chain(&next).cloned().collect();
    assert!(
        description(&seen, &handed_out).contains(&"edited after its page".to_string()),
        "{seen:?}"
    );
    assert!(
        description(&seen, &pending).contains(&"edited before its page".to_string()),
        "{seen:?}"
    );
    let all: Vec<_> = first.opportunities.iter().chain(&seen).cloned().collect();
    for id in &shared {
        assert!(all.iter().any(|o| &o.id == id), "{id} never came");
    }
}

#[tokio::test]
async fn an_expired_delta_token_starts_the_feed_again() {
    let env = Env::start().await;
    let crm = env.crm();
    let a = env.seller_opportunity("Alpha", true).await;
    let b = env.seller_opportunity("Beta", true).await;
    let (_, cursor, _) = drain(&crm, None).await;

    // Delta tokens live seven days.
    let (status, body) = env
        .control(
            Method::POST,
            "/_sandbox/clock/advance",
            Some(json!({"days": 8})),
        )
        .await;
    assert!(status < 300, "{body}");
    env.seller_edit(&a, json!({"description": "after a long outage"}))
        .await;
    let (restarted, cursor, _) = drain(&crm, Some(cursor)).await;
    assert_eq!(ids(&restarted), sorted(vec![a.clone(), b.clone()]));
    assert_eq!(description(&restarted, &a), ["after a long outage"]);

    // The new cursor works as any other.
    env.seller_edit(&b, json!({"description": "back to normal"}))
        .await;
    let (after, _, _) = drain(&crm, Some(cursor)).await;
    assert_eq!(ids(&after), vec![b.clone()]);
}

#[tokio::test]
async fn change_tracking_switched_off_falls_back_to_modifiedon() {
    let env = Env::start().await;
    let crm = env.crm();
    let a = env.seller_opportunity("Alpha", true).await;
    let (_, cursor, _) = drain(&crm, None).await;
    env.change_tracking(false).await;
    env.seller_edit(&a, json!({"description": "seen by modifiedon"}))
        .await;
    let (restarted, cursor, _) = drain(&crm, Some(cursor)).await;
    assert_eq!(description(&restarted, &a), ["seen by modifiedon"]);
    let (idle, _, _) = drain(&crm, Some(cursor)).await;
    assert!(idle.is_empty(), "{idle:?}");
}

#[tokio::test]
async fn a_throttled_feed_read_is_transient() {
    let env = Env::start().await;
    let crm = env.crm();
    env.seller_opportunity("Alpha", true).await;
    env.fault(json!({
        "method": "GET", "route": "/api/data/v9.2/opportunities", "status": 503
    }))
    .await;
    let err = crm
        .opportunity_changes(None)
        .await
        .expect_err("unavailable");
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
async fn a_configured_country_column_is_the_one_read() {
    let env = Env::start().await;
    env.add_field(
        "accounts",
        json!({"name": "new_countrycode", "type": "string", "maxLength": 2}),
    )
    .await;
    let mut config = env.config();
    config.fields.account_country = "new_countrycode".into();
    let crm = DataverseCrm::new(config).expect("valid");
    let (status, row) = env
        .control(
            Method::POST,
            "/_sandbox/dataverse/accounts",
            Some(json!({"name": "Northwind", "address1_country": "Germany", "new_countrycode": "DE"})),
        )
        .await;
    assert_eq!(status, 201, "{row}");
    let id = row["accountid"].as_str().expect("id");
    let read = crm.get_account(id).await.expect("read").expect("exists");
    assert_eq!(read.fields.country.as_deref(), Some("DE"));
}

// ---------------------------------------------------------------- clearing and Services fields

/// The Services co-sell columns under the names the sandbox gives them.
const SERVICES_COLUMNS: [&str; 4] = [
    "cosell_solutionarea",
    "cosell_solutionplay",
    "cosell_partnerrole",
    "cosell_marketplaceintent",
];

/// Every field a write can empty.
const EVERY_CLEAR: [ClearField; 11] = [
    ClearField::DealValue,
    ClearField::Currency,
    ClearField::CloseDate,
    ClearField::Description,
    ClearField::MicrosoftHelp,
    ClearField::Contact,
    ClearField::MicrosoftStatus,
    ClearField::MicrosoftCrmId,
    ClearField::SolutionArea,
    ClearField::SolutionPlay,
    ClearField::PartnerRole,
];

impl Env {
    /// The adapter configured for the Services co-sell columns, as an admin would through
    /// `COSELL_DATAVERSE_FIELDS`.
    fn services_crm(&self) -> DataverseCrm {
        let mut config = self.config();
        config.fields = serde_json::from_value(json!({
            "solutionArea": "cosell_solutionarea",
            "solutionPlay": "cosell_solutionplay",
            "partnerRole": "cosell_partnerrole",
            "marketplaceIntent": "cosell_marketplaceintent",
        }))
        .expect("the settings parse");
        DataverseCrm::new(config).expect("valid config")
    }

    async fn change_field(&self, set: &str, name: &str, change: Value) {
        let (status, body) = self
            .control(
                Method::PATCH,
                &format!("/_sandbox/dataverse/schema/{set}/fields/{name}"),
                Some(change),
            )
            .await;
        assert_eq!(status, 200, "change {set}.{name}: {body}");
    }
}

/// An opportunity with every clearable field, and the Services fields, filled in.
async fn everything(crm: &DataverseCrm, name: &str) -> (String, String) {
    let account = account(crm, &format!("{name} Ltd")).await;
    let contact = crm
        .create_contact(&ContactFields {
            last_name: "Bowman".into(),
            account_id: Some(account.clone()),
            ..Default::default()
        })
        .await
        .expect("contact");
    let id = crm
        .create_opportunity(&OpportunityFields {
            name: Some(name.into()),
            account_id: Some(account),
            contact_id: Some(contact.clone()),
            deal_value: Some(42_000.0),
            currency: Some("EUR".into()),
            close_date: chrono::NaiveDate::from_ymd_opt(2030, 6, 30),
            description: Some("notes".into()),
            microsoft_help: Some("ProofOfConceptOrDemo".into()),
            microsoft_status: Some("Active/Accepted".into()),
            microsoft_crm_id: Some("7-ABCDEF".into()),
            solution_area: Some("Cloud and AI Platforms".into()),
            solution_play: Some("Migrate and modernize your estate".into()),
            partner_role: Some("Implementation partner".into()),
            sync_with_partner_center: Some(true),
            referral_id: Some(format!("ref-{name}")),
            audit: Some("created".into()),
            ..Default::default()
        })
        .await
        .expect("created");
    (id, contact)
}

#[tokio::test]
async fn clearing_each_field_empties_its_column_and_detaches_the_contact() {
    let env = Env::start().await;
    // The currency lookup is ApplicationRequired in the standard schema; this environment's
    // admin relaxed it, so its clear can be seen to land.
    env.change_field(
        "opportunities",
        "transactioncurrencyid",
        json!({"required": false}),
    )
    .await;
    let crm = env.services_crm();
    let (id, contact) = everything(&crm, "Emptied").await;
    let before = env.row("opportunities", &id).await;
    assert_eq!(before["_parentcontactid_value"], json!(contact));
    assert_eq!(before["cosell_partnerrole"], "Implementation partner");
    assert_eq!(before["estimatedvalue"], 42_000.0);

    crm.update_opportunity(
        &id,
        &OpportunityFields {
            audit: Some("emptied".into()),
            clear: EVERY_CLEAR.to_vec(),
            ..Default::default()
        },
    )
    .await
    .expect("cleared");

    let row = env.row("opportunities", &id).await;
    for column in [
        "estimatedvalue",
        "_transactioncurrencyid_value",
        "estimatedclosedate",
        "description",
        "cosell_microsofthelp",
        "_parentcontactid_value",
        "cosell_microsoftstatus",
        "cosell_microsoftcrmid",
        "cosell_solutionarea",
        "cosell_solutionplay",
        "cosell_partnerrole",
    ] {
        assert_eq!(row[column], Value::Null, "{column} emptied: {row}");
    }
    assert_eq!(row["name"], "Emptied", "what is not cleared stays");
    assert_eq!(row["cosell_audit"], "emptied");
    assert!(row["_customerid_value"].is_string(), "the customer stays");

    let read = crm
        .get_opportunity(&id)
        .await
        .expect("read")
        .expect("exists");
    let f = &read.fields;
    assert_eq!(
        (f.deal_value, &f.currency, f.close_date, &f.description),
        (None, &None, None, &None)
    );
    assert_eq!(f.contact_id, None, "the contact is detached");
    assert_eq!(
        (&f.microsoft_help, &f.microsoft_status, &f.microsoft_crm_id),
        (&None, &None, &None)
    );
    assert_eq!(
        (&f.solution_area, &f.solution_play, &f.partner_role),
        (&None, &None, &None)
    );
    assert!(f.clear.is_empty(), "a read never asks to clear");
    assert_eq!(
        env.row("contacts", &contact).await["lastname"],
        "Bowman",
        "only the link goes, not the contact"
    );

    // Clearing what is already empty is harmless (a redelivered command).
    crm.update_opportunity(
        &id,
        &OpportunityFields {
            clear: EVERY_CLEAR.to_vec(),
            ..Default::default()
        },
    )
    .await
    .expect("cleared again");
}

#[tokio::test]
async fn a_required_currency_refuses_its_clear_by_name_and_nothing_is_written() {
    let env = Env::start().await;
    let crm = env.crm();
    let mut fields = basic(&crm, "Priced").await;
    fields.currency = Some("EUR".into());
    fields.description = Some("kept".into());
    let id = crm.create_opportunity(&fields).await.expect("created");
    let err = crm
        .update_opportunity(
            &id,
            &OpportunityFields {
                clear: vec![ClearField::Currency, ClearField::Description],
                ..Default::default()
            },
        )
        .await
        .expect_err("Dataverse requires the transaction currency");
    match &err {
        CrmError::Rejected { field, .. } => {
            assert_eq!(field.as_deref(), Some("transactioncurrencyid"), "{err}")
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let row = env.row("opportunities", &id).await;
    assert_eq!(row["description"], "kept", "one PATCH: all or nothing");
    assert!(row["_transactioncurrencyid_value"].is_string());
}

#[tokio::test]
async fn a_services_field_both_set_and_cleared_is_set_in_the_row() {
    let env = Env::start().await;
    let crm = env.services_crm();
    let (id, first) = everything(&crm, "Both").await;
    let second = crm
        .create_contact(&ContactFields {
            last_name: "Second".into(),
            ..Default::default()
        })
        .await
        .expect("contact");
    crm.update_opportunity(
        &id,
        &OpportunityFields {
            description: Some("new notes".into()),
            contact_id: Some(second.clone()),
            solution_play: Some("Innovate with Azure AI".into()),
            clear: vec![
                ClearField::Description,
                ClearField::Contact,
                ClearField::SolutionPlay,
                ClearField::MicrosoftCrmId,
            ],
            ..Default::default()
        },
    )
    .await
    .expect("updated");
    let row = env.row("opportunities", &id).await;
    assert_eq!(row["description"], "new notes");
    assert_eq!(row["_parentcontactid_value"], json!(second));
    assert_ne!(row["_parentcontactid_value"], json!(first));
    assert_eq!(row["cosell_solutionplay"], "Innovate with Azure AI");
    assert_eq!(
        row["cosell_microsoftcrmid"],
        Value::Null,
        "a clear of a field not set still applies"
    );
}

#[tokio::test]
async fn services_fields_round_trip_and_the_marketplace_intent_is_only_read() {
    let env = Env::start().await;
    let crm = env.services_crm();
    let mut fields = basic(&crm, "Services").await;
    fields.sync_with_partner_center = Some(true);
    fields.referral_id = Some("ref-services".into());
    fields.solution_area = Some("Cloud and AI Platforms".into());
    fields.solution_play = Some("Migrate and modernize your estate".into());
    fields.partner_role = Some("Implementation partner".into());
    fields.marketplace_intent = Some("Yes".into());
    let id = crm.create_opportunity(&fields).await.expect("created");

    let row = env.row("opportunities", &id).await;
    assert_eq!(row["cosell_solutionarea"], "Cloud and AI Platforms");
    assert_eq!(
        row["cosell_solutionplay"],
        "Migrate and modernize your estate"
    );
    assert_eq!(row["cosell_partnerrole"], "Implementation partner");
    assert_eq!(
        row["cosell_marketplaceintent"],
        Value::Null,
        "the connector never writes the marketplace intent"
    );

    // The seller records the customer's intent.
    env.seller_edit(&id, json!({"cosell_marketplaceintent": "Have not decided"}))
        .await;
    let read = crm
        .get_opportunity(&id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.fields.solution_area, fields.solution_area);
    assert_eq!(read.fields.solution_play, fields.solution_play);
    assert_eq!(read.fields.partner_role, fields.partner_role);
    assert_eq!(
        read.fields.marketplace_intent.as_deref(),
        Some("Have not decided")
    );
    let found = crm
        .find_opportunity_by_referral("ref-services")
        .await
        .expect("query")
        .expect("found");
    assert_eq!(found.fields, read.fields);
    let (fed, _, _) = drain(&crm, None).await;
    let fed = fed.iter().find(|o| o.id == id).expect("in the feed");
    assert_eq!(fed.fields, read.fields);

    crm.update_opportunity(
        &id,
        &OpportunityFields {
            partner_role: Some("Co-sell partner".into()),
            marketplace_intent: Some("No".into()),
            ..Default::default()
        },
    )
    .await
    .expect("updated");
    let row = env.row("opportunities", &id).await;
    assert_eq!(row["cosell_partnerrole"], "Co-sell partner");
    assert_eq!(row["cosell_marketplaceintent"], "Have not decided");
}

#[tokio::test]
async fn without_the_settings_an_environment_lacking_the_services_columns_keeps_working() {
    let mut config = SandboxConfig::default();
    config
        .dataverse
        .table_mut("opportunities")
        .expect("opportunities")
        .fields
        .retain(|f| !SERVICES_COLUMNS.contains(&f.name.as_str()));
    let env = Env::with(config).await;
    // The sandbox refuses any request naming a column the table lacks (in $select, or in a
    // body, even as null), so every call below succeeding shows the adapter never named one.
    let crm = env.crm();
    let mut fields = basic(&crm, "Plain").await;
    fields.sync_with_partner_center = Some(true);
    fields.referral_id = Some("ref-plain".into());
    fields.solution_area = Some("Cloud and AI Platforms".into());
    fields.partner_role = Some("Implementation partner".into());
    fields.marketplace_intent = Some("Yes".into());
    let id = crm.create_opportunity(&fields).await.expect("created");
    crm.update_opportunity(
        &id,
        &OpportunityFields {
            solution_play: Some("Migrate and modernize your estate".into()),
            clear: vec![
                ClearField::SolutionArea,
                ClearField::SolutionPlay,
                ClearField::PartnerRole,
                ClearField::Description,
            ],
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
    assert_eq!(
        (
            &read.fields.solution_area,
            &read.fields.solution_play,
            &read.fields.partner_role,
            &read.fields.marketplace_intent
        ),
        (&None, &None, &None, &None)
    );
    crm.find_opportunity_by_referral("ref-plain")
        .await
        .expect("query")
        .expect("found");
    let (fed, _, _) = drain(&crm, None).await;
    assert_eq!(ids(&fed), vec![id.clone()]);

    // The same environment with the settings: the missing column is named.
    let err = env
        .services_crm()
        .get_opportunity(&id)
        .await
        .expect_err("the column does not exist");
    assert!(err.to_string().contains("cosell_"), "{err}");
}

#[tokio::test]
async fn a_bad_services_column_name_stops_start_up_with_the_setting_named() {
    let env = Env::start().await;
    for (setting, fields) in [
        (
            "solution_area",
            json!({"solutionArea": "cosell solution area"}),
        ),
        ("partner_role", json!({"partnerRole": "cosell_audit"})),
        (
            "marketplace_intent",
            json!({"solutionPlay": "cosell_x", "marketplaceIntent": "cosell_x"}),
        ),
    ] {
        let mut config = env.config();
        config.fields = serde_json::from_value(fields).expect("parses");
        let err = DataverseCrm::new(config).expect_err("refused");
        assert!(err.to_string().contains(setting), "{setting}: {err}");
    }
}

// ---------------------------------------------------------------- the CRM contract

/// The adapter on a sandbox of its own, and a seller in Dynamics 365.
struct Contract {
    env: Env,
    crm: DataverseCrm,
}

async fn contract() -> Contract {
    let env = Env::start().await;
    let crm = env.crm();
    Contract { env, crm }
}

#[async_trait::async_trait]
impl CrmUnderTest for Contract {
    fn crm(&self) -> &dyn Crm {
        &self.crm
    }

    async fn seller_creates(&self, name: &str, sync: bool) -> String {
        self.env.seller_opportunity(name, sync).await
    }

    async fn seller_edits(&self, id: &str, edit: SellerEdit) {
        let change = match edit {
            SellerEdit::Description(d) => json!({"description": d}),
            SellerEdit::SyncWithPartnerCenter(s) => json!({"cosell_syncwithpartnercenter": s}),
        };
        self.env.seller_edit(id, change).await;
    }

    async fn seller_deletes(&self, id: &str) {
        let (status, body) = self
            .env
            .control(
                Method::DELETE,
                &format!("/_sandbox/dataverse/opportunities({id})"),
                None,
            )
            .await;
        assert!(status < 300, "delete {id}: {status} {body}");
    }
}

mod contract {
    cosell_e2e::crm_contract_tests!(super::contract());
}
