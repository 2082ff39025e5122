//! The Salesforce adapter against the sandbox's Salesforce REST API, over real HTTP: sign-in,
//! token reuse and renewal, opportunities with their connector fields, stages, leads, accounts,
//! contacts, solution links, and the errors a user or an operator would see.
//!
//! Each test starts its own sandbox, so no test sees another's records or counters.

use std::time::Duration;

use chrono::NaiveDate;
use cosell_e2e::crm_contract::{CrmUnderTest, SellerEdit};
use cosell_e2e::fast_retries;
use cosell_sandbox::{Sandbox, SandboxConfig};
use cosell_shared::crm::salesforce::{SalesforceAuth, SalesforceConfig, SalesforceCrm};
use cosell_shared::crm::{
    AccountFields, CatalogSolution, ClearField, ContactFields, Crm, CrmError, CrmKind, LeadFields,
    LeadState, OpportunityFields, OpportunityState, Visibility,
};
use cosell_shared::domain::accounts::AccountKey;
use serde_json::{Value, json};

/// A sandbox and a plain HTTP client for its control API.
struct Env {
    sandbox: Sandbox,
    http: reqwest::Client,
}

impl Env {
    async fn start() -> Env {
        Env::with(SandboxConfig::default()).await
    }

    async fn with(config: SandboxConfig) -> Env {
        let sandbox = Sandbox::start(config)
            .await
            .unwrap_or_else(|e| panic!("cannot start the sandbox: {e}"));
        Env {
            sandbox,
            http: reqwest::Client::new(),
        }
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method.clone(), self.sandbox.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("control call");
        let status = resp.status();
        let text = resp.text().await.expect("control body");
        assert!(
            status.is_success(),
            "{method} {path} answered {status}: {text}"
        );
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("control JSON")
        }
    }

    async fn get(&self, path: &str) -> Value {
        self.control(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.control(reqwest::Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> Value {
        self.control(reqwest::Method::PATCH, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Value {
        self.control(reqwest::Method::PUT, path, Some(body)).await
    }

    /// A row as stored, read without a token.
    async fn row(&self, object: &str, id: &str) -> Value {
        self.get(&format!("/_sandbox/salesforce/{object}/{id}"))
            .await
    }

    async fn rows(&self, object: &str) -> Vec<Value> {
        match self.get(&format!("/_sandbox/salesforce/{object}")).await {
            Value::Array(a) => a,
            other => panic!("expected a list of {object}, got {other}"),
        }
    }

    /// Requests counted for `key` (`METHOD /route`) since the last reset.
    async fn count(&self, key: &str) -> u64 {
        self.get("/_sandbox/stats")
            .await
            .get(key)
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }

    async fn reset_stats(&self) {
        self.control(reqwest::Method::DELETE, "/_sandbox/stats", None)
            .await;
    }

    async fn connected_app(&self) -> Value {
        self.get("/_sandbox/salesforce/connected-app").await
    }

    /// The adapter with JWT bearer sign-in and the default field names.
    async fn config(&self) -> SalesforceConfig {
        let app = self.connected_app().await;
        let s = |k: &str| app[k].as_str().expect(k).to_string();
        let mut c = SalesforceConfig::new(SalesforceAuth::JwtBearer {
            consumer_key: s("consumerKey"),
            username: s("username"),
            private_key_pem: s("privateKeyPem").into(),
            audience: None,
        });
        c.login_url = s("loginUrl");
        c.retry = fast_retries(3);
        c.timeout = Duration::from_secs(10);
        c
    }

    async fn crm(&self) -> SalesforceCrm {
        SalesforceCrm::new(self.config().await).expect("a valid configuration")
    }
}

const TOKEN: &str = "POST /services/oauth2/token";

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a valid date")
}

fn opportunity(name: &str, referral_id: &str) -> OpportunityFields {
    OpportunityFields {
        name: Some(name.into()),
        close_date: Some(date(2030, 6, 30)),
        state: Some(OpportunityState::Active),
        referral_id: Some(referral_id.into()),
        ..Default::default()
    }
}

async fn read(crm: &SalesforceCrm, id: &str) -> cosell_shared::crm::Opportunity {
    crm.get_opportunity(id)
        .await
        .expect("read")
        .expect("exists")
}

fn rejected_field(e: &CrmError) -> Option<&str> {
    match e {
        CrmError::Rejected { field, .. } => field.as_deref(),
        _ => None,
    }
}

#[tokio::test]
async fn jwt_bearer_and_client_credentials_both_sign_in() {
    let env = Env::start().await;
    let app = env.connected_app().await;
    let jwt = env.crm().await;
    assert_eq!(jwt.kind(), CrmKind::Salesforce);
    let account = jwt
        .create_account(&AccountFields {
            name: "Contoso".into(),
            postal_code: Some("98052".into()),
            ..Default::default()
        })
        .await
        .expect("JWT bearer session creates an account");

    let mut config = env.config().await;
    config.auth = SalesforceAuth::ClientCredentials {
        client_id: app["consumerKey"].as_str().expect("key").into(),
        client_secret: app["consumerSecret"].as_str().expect("secret").into(),
    };
    let cc = SalesforceCrm::new(config).expect("valid");
    let found = cc
        .account_candidates(&AccountKey::PostalCode("98052".into()))
        .await
        .expect("client credentials session queries");
    assert_eq!(found.iter().map(|a| &a.id).collect::<Vec<_>>(), [&account]);

    let user = app["userId"].as_str().expect("integration user id");
    assert_eq!(jwt.integration_user_id().await.as_deref(), Ok(user));
    assert_eq!(cc.integration_user_id().await.as_deref(), Ok(user));
}

#[tokio::test]
async fn wrong_credentials_are_an_auth_error_and_not_retried() {
    let env = Env::start().await;
    let mut config = env.config().await;
    config.auth = SalesforceAuth::ClientCredentials {
        client_id: "sandbox-client".into(),
        client_secret: "not-the-secret".into(),
    };
    let crm = SalesforceCrm::new(config).expect("valid");
    let err = crm
        .find_contact_by_email("a@example.com")
        .await
        .expect_err("a wrong secret cannot sign in");
    match &err {
        CrmError::Auth { message } => {
            assert!(message.contains("invalid_client"), "{message}");
            assert!(!message.contains("not-the-secret"), "{message}");
        }
        other => panic!("expected an auth error, got {other:?}"),
    }
    assert_eq!(env.count(TOKEN).await, 1);
}

#[tokio::test]
async fn one_token_serves_many_calls() {
    let env = Env::start().await;
    let crm = env.crm().await;
    env.reset_stats().await;
    let account = crm
        .create_account(&AccountFields {
            name: "Fabrikam".into(),
            ..Default::default()
        })
        .await
        .expect("account");
    let id = crm
        .create_opportunity(&OpportunityFields {
            account_id: Some(account),
            ..opportunity("Fabrikam deal", "ref-token")
        })
        .await
        .expect("opportunity");
    for _ in 0..3 {
        crm.get_opportunity(&id).await.expect("read");
    }
    crm.find_opportunity_by_referral("ref-token")
        .await
        .expect("find");
    assert_eq!(env.count(TOKEN).await, 1);
}

#[tokio::test]
async fn an_expired_session_signs_in_once_more_and_the_call_succeeds() {
    let env = Env::start().await;
    let crm = env.crm().await;
    let id = crm
        .create_opportunity(&opportunity("Tailspin", "ref-expire"))
        .await
        .expect("opportunity");
    env.reset_stats().await;
    env.post("/_sandbox/salesforce/expire-tokens", json!({}))
        .await;

    let read = crm.get_opportunity(&id).await.expect("read after expiry");
    assert_eq!(read.map(|o| o.id), Some(id.clone()));
    assert_eq!(env.count(TOKEN).await, 1, "exactly one new sign-in");
    // The read is one query (the record with its contact role nested).
    assert_eq!(env.count(QUERY).await, 2, "the refused call and its repeat");
    crm.get_opportunity(&id).await.expect("read again");
    assert_eq!(env.count(TOKEN).await, 1, "the new token is kept");
}

#[tokio::test]
async fn an_opportunity_reads_back_as_written() {
    let env = Env::start().await;
    let crm = env.crm().await;
    let account = crm
        .create_account(&AccountFields {
            name: "Northwind Traders".into(),
            street: Some("1 Main St".into()),
            city: Some("Redmond".into()),
            state: Some("WA".into()),
            postal_code: Some("98052".into()),
            country: Some("US".into()),
        })
        .await
        .expect("account");
    let contact = crm
        .create_contact(&ContactFields {
            first_name: Some("Ana".into()),
            last_name: "Bowman".into(),
            email: Some("ana@northwind.example".into()),
            phone: Some("+1 425 555 0100".into()),
            account_id: Some(account.clone()),
        })
        .await
        .expect("contact");
    let written = OpportunityFields {
        name: Some("Northwind cloud migration".into()),
        deal_value: Some(125_000.5),
        currency: Some("USD".into()),
        close_date: Some(date(2030, 3, 31)),
        description: Some("Move 400 seats".into()),
        state: Some(OpportunityState::OnHold),
        account_id: Some(account.clone()),
        contact_id: Some(contact.clone()),
        sync_with_partner_center: Some(true),
        referral_id: Some("8f2c6c1e-0b6a-4c39-9b7e-1d1f0e3b7a11".into()),
        referral_link: Some("https://partner.microsoft.com/referrals/8f2c".into()),
        microsoft_help: Some("ProofOfConceptOrDemo".into()),
        visibility: Some(Visibility::Visible),
        microsoft_crm_id: Some("7-ABCDEF".into()),
        microsoft_status: Some("Active/Accepted".into()),
        audit: Some("2030-01-01 created from Partner Center".into()),
        ..Default::default()
    };
    let id = crm.create_opportunity(&written).await.expect("create");

    let read = crm
        .get_opportunity(&id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.id, id);
    assert_eq!(read.fields, written);
    assert!(read.modified_by_connector);
    assert!(read.modified_at.is_some());

    let row = env.row("Opportunity", &id).await;
    assert_eq!(row["StageName"], "On Hold");
    assert_eq!(row["How_can_Microsoft_help__c"], "Proof of concept or demo");
    let roles = env.rows("OpportunityContactRole").await;
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0]["ContactId"], json!(contact));
    assert_eq!(roles[0]["IsPrimary"], json!(true));

    // Attaching again changes nothing.
    crm.attach_contact(&id, &contact).await.expect("attach");
    assert_eq!(env.rows("OpportunityContactRole").await.len(), 1);
}

#[tokio::test]
async fn a_new_primary_contact_replaces_the_old_one() {
    let env = Env::start().await;
    let crm = env.crm().await;
    let first = crm
        .create_contact(&ContactFields {
            last_name: "First".into(),
            ..Default::default()
        })
        .await
        .expect("contact");
    let second = crm
        .create_contact(&ContactFields {
            last_name: "Second".into(),
            ..Default::default()
        })
        .await
        .expect("contact");
    let id = crm
        .create_opportunity(&OpportunityFields {
            contact_id: Some(first.clone()),
            ..opportunity("Contacts", "ref-contacts")
        })
        .await
        .expect("create");
    crm.update_opportunity(
        &id,
        &OpportunityFields {
            contact_id: Some(second.clone()),
            ..Default::default()
        },
    )
    .await
    .expect("update");
    let read = crm
        .get_opportunity(&id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.fields.contact_id, Some(second.clone()));
    let primaries: Vec<Value> = env
        .rows("OpportunityContactRole")
        .await
        .into_iter()
        .filter(|r| r["IsPrimary"] == json!(true))
        .map(|r| r["ContactId"].clone())
        .collect();
    assert_eq!(primaries, [json!(second)]);
}

#[tokio::test]
async fn opportunities_are_found_by_referral_id_among_many() {
    let env = Env::start().await;
    let crm = env.crm().await;
    // Many opportunities a seller made, none of them ours.
    for i in 0..40 {
        env.post(
            "/_sandbox/salesforce/Opportunity",
            json!({
                "Name": format!("Seller deal {i}"),
                "StageName": "Prospecting",
                "CloseDate": "2030-01-01",
                "Referral_Identifier__c": format!("seller-{i}"),
            }),
        )
        .await;
    }
    let tricky = [
        "plain-id",
        "o'brien's referral",
        r"back\slash",
        r"quote\'mix",
        "slash/and?query#frag",
    ];
    let mut ids = Vec::new();
    for referral in tricky {
        let id = crm
            .create_opportunity(&opportunity(&format!("Deal {referral}"), referral))
            .await
            .unwrap_or_else(|e| panic!("create {referral}: {e}"));
        ids.push(id);
    }
    for (referral, id) in tricky.iter().zip(&ids) {
        let found = crm
            .find_opportunity_by_referral(referral)
            .await
            .unwrap_or_else(|e| panic!("find {referral}: {e}"))
            .unwrap_or_else(|| panic!("{referral} not found"));
        assert_eq!(&found.id, id, "{referral}");
        assert_eq!(found.fields.referral_id.as_deref(), Some(*referral));
    }
    let seller = crm
        .find_opportunity_by_referral("seller-17")
        .await
        .expect("find")
        .expect("found");
    assert_eq!(seller.fields.name.as_deref(), Some("Seller deal 17"));
    assert!(!seller.modified_by_connector);
    assert_eq!(
        crm.find_opportunity_by_referral("o'brien")
            .await
            .expect("find"),
        None
    );
    assert_eq!(
        crm.find_opportunity_by_referral("' OR Name != '")
            .await
            .expect("an injection attempt is just a value"),
        None
    );
}

#[tokio::test]
async fn creating_twice_with_one_referral_id_makes_one_opportunity() {
    let env = Env::start().await;
    let crm = env.crm().await;
    let first = crm
        .create_opportunity(&opportunity("Once", "ref-once"))
        .await
        .expect("first");
    let second = crm
        .create_opportunity(&opportunity("Once", "ref-once"))
        .await
        .expect("second");
    assert_eq!(first, second);
    assert_eq!(env.rows("Opportunity").await.len(), 1);
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_retried_without_a_duplicate() {
    let env = Env::start().await;
    let crm = env.crm().await;
    // Whichever way the adapter creates, the first answer is lost after the write committed.
    let lost = |method: &str, route: &str| json!({"method": method, "route": route, "dropAfterCommit": true, "count": 1});
    env.post(
        "/_sandbox/faults",
        json!([
            lost("POST", "/services/data/v{version}/sobjects/Opportunity"),
            lost(
                "PATCH",
                "/services/data/v{version}/sobjects/Opportunity/Referral_Identifier__c/{value}"
            ),
        ]),
    )
    .await;
    env.reset_stats().await;
    let id = crm
        .create_opportunity(&opportunity("Lost answer", "ref-lost"))
        .await
        .expect("the retry finds the committed record");
    let rows = env.rows("Opportunity").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["Id"], json!(id));
    let stats = env.get("/_sandbox/stats").await;
    let creates: u64 = stats
        .as_object()
        .expect("stats")
        .iter()
        .filter(|(k, _)| {
            k.starts_with("POST /services/data/") || k.starts_with("PATCH /services/data/")
        })
        .filter_map(|(_, v)| v.as_u64())
        .sum();
    assert_eq!(creates, 2, "the lost attempt and its retry: {stats}");
}

#[tokio::test]
async fn server_errors_are_retried() {
    let env = Env::start().await;
    let crm = env.crm().await;
    env.post(
        "/_sandbox/faults",
        json!({"method": "POST", "route": "/services/data/v{version}/sobjects/Account", "status": 503, "count": 2}),
    )
    .await;
    env.reset_stats().await;
    crm.create_account(&AccountFields {
        name: "Retried".into(),
        ..Default::default()
    })
    .await
    .expect("succeeds on the third attempt");
    assert_eq!(
        env.count("POST /services/data/v{version}/sobjects/Account")
            .await,
        3
    );
    assert_eq!(env.rows("Account").await.len(), 1);
}

#[tokio::test]
async fn a_salesforce_that_does_not_answer_in_time_is_transient() {
    let env = Env::start().await;
    let mut config = env.config().await;
    config.timeout = Duration::from_millis(200);
    let crm = SalesforceCrm::new(config).expect("valid");
    crm.integration_user_id().await.expect("signed in");
    env.post(
        "/_sandbox/faults",
        json!({"method": "GET", "route": "/services/data/v{version}/query", "latencyMs": 1000, "count": 10}),
    )
    .await;
    env.reset_stats().await;
    let err = crm
        .find_contact_by_email("slow@example.com")
        .await
        .expect_err("every attempt times out");
    assert!(
        matches!(err, CrmError::Transient { status: None, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(
        env.count("GET /services/data/v{version}/query").await,
        4,
        "the first attempt and three retries"
    );
}

#[tokio::test]
async fn an_update_changes_only_the_fields_given() {
    let env = Env::start().await;
    let crm = env.crm().await;
    let id = crm
        .create_opportunity(&OpportunityFields {
            deal_value: Some(1000.0),
            description: Some("before".into()),
            microsoft_status: Some("New/Pending".into()),
            ..opportunity("Partial", "ref-partial")
        })
        .await
        .expect("create");
    // A seller's own field, which the connector must never touch.
    env.patch(
        &format!("/_sandbox/salesforce/Opportunity/{id}"),
        json!({"NextStep": "Call the CIO"}),
    )
    .await;
    let before = env.row("Opportunity", &id).await;

    crm.update_opportunity(
        &id,
        &OpportunityFields {
            deal_value: Some(2500.0),
            description: Some("after".into()),
            ..Default::default()
        },
    )
    .await
    .expect("update");

    let after = env.row("Opportunity", &id).await;
    assert_eq!(after["Amount"], json!(2500.0));
    assert_eq!(after["Description"], "after");
    let moving = [
        "Amount",
        "Description",
        "LastModifiedDate",
        "LastModifiedById",
        "SystemModstamp",
    ];
    let (Value::Object(b), Value::Object(a)) = (&before, &after) else {
        panic!("rows are objects");
    };
    for (k, v) in b {
        if !moving.contains(&k.as_str()) {
            assert_eq!(a.get(k), Some(v), "{k} changed");
        }
    }
    assert_eq!(after["NextStep"], "Call the CIO");
    assert_eq!(after["Microsoft_Status__c"], "New/Pending");
}

#[tokio::test]
async fn states_move_through_the_configured_stages() {
    let env = Env::start().await;
    let crm = env.crm().await;
    let stage = |row: &Value| row["StageName"].as_str().unwrap_or_default().to_string();
    let id = crm
        .create_opportunity(&OpportunityFields {
            state: Some(OpportunityState::OnHold),
            ..opportunity("Staged", "ref-stages")
        })
        .await
        .expect("create");
    assert_eq!(stage(&env.row("Opportunity", &id).await), "On Hold");
    let state = |s: OpportunityState| OpportunityFields {
        state: Some(s),
        ..Default::default()
    };

    crm.update_opportunity(&id, &state(OpportunityState::Active))
        .await
        .expect("accept");
    assert_eq!(stage(&env.row("Opportunity", &id).await), "Qualification");

    // A seller moves it further along: still active, and an "active" write leaves it there.
    env.patch(
        &format!("/_sandbox/salesforce/Opportunity/{id}"),
        json!({"StageName": "Negotiation/Review"}),
    )
    .await;
    let read = crm
        .get_opportunity(&id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.fields.state, Some(OpportunityState::Active));
    crm.update_opportunity(&id, &state(OpportunityState::Active))
        .await
        .expect("active again");
    assert_eq!(
        stage(&env.row("Opportunity", &id).await),
        "Negotiation/Review"
    );

    crm.update_opportunity(&id, &state(OpportunityState::Won))
        .await
        .expect("win");
    let row = env.row("Opportunity", &id).await;
    assert_eq!(stage(&row), "Closed Won");
    assert_eq!(row["IsWon"], json!(true));
    let read = crm
        .get_opportunity(&id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.fields.state, Some(OpportunityState::Won));

    let lost = crm
        .create_opportunity(&opportunity("Lost one", "ref-lost-stage"))
        .await
        .expect("create");
    crm.update_opportunity(&lost, &state(OpportunityState::Lost))
        .await
        .expect("lose");
    let row = env.row("Opportunity", &lost).await;
    assert_eq!(stage(&row), "Closed Lost");
    assert_eq!(row["IsClosed"], json!(true));
    assert_eq!(row["IsWon"], json!(false));
}

#[tokio::test]
async fn stages_an_admin_renamed_are_used() {
    let env = Env::start().await;
    let mut stages = env.get("/_sandbox/salesforce/stages").await;
    let list = stages.as_array_mut().expect("stages");
    list.push(json!({"name": "Awaiting Microsoft", "isClosed": false}));
    list.push(json!({"name": "Signed", "isClosed": true, "isWon": true}));
    env.put("/_sandbox/salesforce/stages", stages).await;
    let mut config = env.config().await;
    config.stages.on_hold = "Awaiting Microsoft".into();
    config.stages.won = "Signed".into();
    let crm = SalesforceCrm::new(config).expect("valid");
    let id = crm
        .create_opportunity(&OpportunityFields {
            state: Some(OpportunityState::OnHold),
            ..opportunity("Renamed", "ref-renamed")
        })
        .await
        .expect("create");
    assert_eq!(
        env.row("Opportunity", &id).await["StageName"],
        "Awaiting Microsoft"
    );
    let read = crm
        .get_opportunity(&id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.fields.state, Some(OpportunityState::OnHold));
    crm.update_opportunity(
        &id,
        &OpportunityFields {
            state: Some(OpportunityState::Won),
            ..Default::default()
        },
    )
    .await
    .expect("win");
    assert_eq!(env.row("Opportunity", &id).await["StageName"], "Signed");
}

#[tokio::test]
async fn leads_are_created_found_and_disqualified() {
    let env = Env::start().await;
    let crm = env.crm().await;
    let written = LeadFields {
        topic: Some("Teams rollout".into()),
        first_name: Some("Kim".into()),
        last_name: None,
        company: Some("Wide World Importers".into()),
        email: Some("kim@wwi.example".into()),
        phone: Some("+44 20 7946 0000".into()),
        postal_code: Some("SW1A 1AA".into()),
        country: Some("GB".into()),
        description: Some("Needs 200 seats".into()),
        state: Some(LeadState::Open),
        referral_id: Some("lead-ref-1".into()),
        referral_link: Some("https://partner.microsoft.com/referrals/lead-ref-1".into()),
        audit: Some("created".into()),
    };
    let id = crm.create_lead(&written).await.expect("create lead");
    let row = env.row("Lead", &id).await;
    assert_eq!(row["LastName"], "Wide World Importers", "company stands in");
    assert_eq!(row["Status"], "Open - Not Contacted");
    assert_eq!(row["Description"], "Teams rollout\n\nNeeds 200 seats");

    let found = crm
        .find_lead_by_referral("lead-ref-1")
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.id, id);
    assert_eq!(
        found.fields,
        LeadFields {
            topic: None,
            last_name: Some("Wide World Importers".into()),
            description: Some("Teams rollout\n\nNeeds 200 seats".into()),
            ..written.clone()
        }
    );

    crm.update_lead(
        &id,
        &LeadFields {
            state: Some(LeadState::Disqualified),
            ..Default::default()
        },
    )
    .await
    .expect("disqualify");
    let row = env.row("Lead", &id).await;
    assert_eq!(row["Status"], "Closed - Not Converted");
    assert_eq!(row["Email"], "kim@wwi.example", "untouched");
    let read = crm.get_lead(&id).await.expect("read").expect("exists");
    assert_eq!(read.fields.state, Some(LeadState::Disqualified));

    let anonymous = crm
        .create_lead(&LeadFields {
            referral_id: Some("lead-ref-2".into()),
            ..Default::default()
        })
        .await
        .expect("a lead with no names");
    let row = env.row("Lead", &anonymous).await;
    assert_eq!(row["LastName"], "Unknown");
    assert_eq!(row["Company"], "Unknown");
    assert_eq!(crm.find_lead_by_referral("lead-ref-3").await, Ok(None));
}

#[tokio::test]
async fn account_candidates_follow_next_records_url_across_batches() {
    let mut config = SandboxConfig::default();
    config.salesforce.query_batch_size = 4;
    let env = Env::with(config).await;
    let crm = env.crm().await;
    for i in 0..11 {
        env.post(
            "/_sandbox/salesforce/Account",
            json!({"Name": format!("Branch {i}"), "BillingPostalCode": "10115"}),
        )
        .await;
    }
    env.reset_stats().await;
    let all = crm
        .account_candidates(&AccountKey::PostalCode("10115".into()))
        .await
        .expect("candidates");
    let names: Vec<String> = all.iter().map(|a| a.fields.name.clone()).collect();
    let want: Vec<String> = (0..11).map(|i| format!("Branch {i}")).collect();
    assert_eq!(names, want);
    assert_eq!(
        env.count("GET /services/data/v{version}/query/{locator}")
            .await,
        2,
        "batches of 4, 4 and 3"
    );
}

const CATALOG: &str = "Microsoft_Solution_Catalog__c";

fn solution(n: usize) -> CatalogSolution {
    CatalogSolution {
        solution_id: format!("sol-{n}"),
        name: format!("Solution {n}"),
        description: Some(format!("Solution area {n}")),
    }
}

#[tokio::test]
async fn catalog_records_hold_the_configured_fields_and_a_repeated_create_finds_the_first() {
    let env = Env::start().await;
    let crm = env.crm().await;
    let id = crm
        .create_catalog_solution(&solution(1))
        .await
        .expect("created");
    let row = env.row(CATALOG, &id).await;
    assert_eq!(row["Solution_Id__c"], "sol-1");
    assert_eq!(row["Name"], "Solution 1");
    assert_eq!(row["Solution_Area__c"], "Solution area 1");
    // A create retried after its answer was lost: the upsert on the External ID finds the row.
    assert_eq!(
        crm.create_catalog_solution(&solution(1)).await,
        Ok(id.clone())
    );
    assert_eq!(env.rows(CATALOG).await.len(), 1, "one record");

    let bare = CatalogSolution {
        description: None,
        ..solution(2)
    };
    crm.update_catalog_solution(&id, &bare)
        .await
        .expect("updated");
    let row = env.row(CATALOG, &id).await;
    assert_eq!(
        (&row["Solution_Id__c"], &row["Name"]),
        (&json!("sol-2"), &json!("Solution 2"))
    );
    assert_eq!(row["Solution_Area__c"], Value::Null, "emptied");

    // An object without a description field: the setting left out, the field is never named.
    let mut config = env.config().await;
    config.fields.catalog_description = None;
    let plain = SalesforceCrm::new(config).expect("valid");
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
        env.row(CATALOG, &id).await["Solution_Area__c"],
        "Solution area 2",
        "nor written"
    );

    assert_eq!(
        crm.create_catalog_solution(&CatalogSolution {
            solution_id: String::new(),
            ..solution(3)
        })
        .await,
        Err(CrmError::Rejected {
            message: "a catalog solution needs a Partner Center solution id".into(),
            field: Some("Solution_Id__c".into()),
        }),
        "refused before it is sent"
    );
}

#[tokio::test]
async fn a_catalog_longer_than_a_batch_is_listed_whole() {
    let mut config = SandboxConfig::default();
    config.salesforce.query_batch_size = 2;
    let env = Env::with(config).await;
    let crm = env.crm().await;
    assert_eq!(crm.catalog().await, Ok(vec![]));
    let mut ids = Vec::new();
    for n in 1..=5 {
        ids.push(
            crm.create_catalog_solution(&solution(n))
                .await
                .expect("created"),
        );
    }
    env.reset_stats().await;
    let mut got: Vec<(String, CatalogSolution)> = crm
        .catalog()
        .await
        .expect("listed")
        .into_iter()
        .map(|e| (e.crm_id, e.solution))
        .collect();
    got.sort_by(|a, b| a.1.solution_id.cmp(&b.1.solution_id));
    let want: Vec<(String, CatalogSolution)> = ids.into_iter().zip((1..=5).map(solution)).collect();
    assert_eq!(got, want, "every record once");
    assert_eq!(env.count(QUERY_BATCH).await, 2, "batches of 2, 2 and 1");
}

#[tokio::test]
async fn a_catalog_id_field_that_is_no_external_id_is_refused_by_name() {
    let env = Env::start().await;
    env.post(
        &format!("/_sandbox/salesforce/schema/{CATALOG}/fields"),
        json!({"name": "Plain_Id__c", "type": "string", "length": 100}),
    )
    .await;
    let mut config = env.config().await;
    config.fields.catalog_solution_id = "Plain_Id__c".into();
    let crm = SalesforceCrm::new(config).expect("valid");
    match crm.create_catalog_solution(&solution(1)).await {
        Err(CrmError::Rejected { message, field }) => {
            assert_eq!(field.as_deref(), Some("Plain_Id__c"));
            assert!(message.contains("External ID"), "{message}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn a_differently_named_referral_field_is_used_when_configured() {
    let env = Env::start().await;
    env.post(
        "/_sandbox/salesforce/schema/Opportunity/fields",
        json!({"name": "Alt_Referral_Id__c", "type": "string", "length": 80, "externalId": true}),
    )
    .await;
    let mut config = env.config().await;
    config.fields.referral_id = "Alt_Referral_Id__c".into();
    let crm = SalesforceCrm::new(config).expect("valid");
    let id = crm
        .create_opportunity(&opportunity("Alt", "alt-ref-1"))
        .await
        .expect("create");
    let row = env.row("Opportunity", &id).await;
    assert_eq!(row["Alt_Referral_Id__c"], "alt-ref-1");
    assert_eq!(row["Referral_Identifier__c"], Value::Null);
    let found = crm
        .find_opportunity_by_referral("alt-ref-1")
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.id, id);
    assert_eq!(found.fields.referral_id.as_deref(), Some("alt-ref-1"));
    let again = crm
        .create_opportunity(&opportunity("Alt", "alt-ref-1"))
        .await
        .expect("create again");
    assert_eq!(again, id);
}

#[tokio::test]
async fn a_referral_field_that_is_not_an_external_id_is_refused_by_name() {
    let env = Env::start().await;
    env.post(
        "/_sandbox/salesforce/schema/Opportunity/fields",
        json!({"name": "Plain_Referral__c", "type": "string", "length": 80}),
    )
    .await;
    let mut config = env.config().await;
    config.fields.referral_id = "Plain_Referral__c".into();
    let crm = SalesforceCrm::new(config).expect("valid");
    let err = crm
        .create_opportunity(&opportunity("Plain", "plain-1"))
        .await
        .expect_err("an upsert needs an external id");
    assert_eq!(rejected_field(&err), Some("Plain_Referral__c"));
    assert!(err.to_string().contains("External ID"), "{err}");
}

#[tokio::test]
async fn several_records_with_one_referral_id_are_refused() {
    let env = Env::start().await;
    for name in ["Copy A", "Copy B"] {
        env.post(
            "/_sandbox/salesforce/Opportunity",
            json!({"Name": name, "StageName": "Prospecting", "CloseDate": "2030-01-01", "Referral_Identifier__c": "dup-ref"}),
        )
        .await;
    }
    let crm = env.crm().await;
    let err = crm
        .create_opportunity(&opportunity("Third", "dup-ref"))
        .await
        .expect_err("ambiguous upsert");
    assert!(err.to_string().contains("several"), "{err}");
    assert!(err.to_string().contains("dup-ref"), "{err}");
    assert_eq!(rejected_field(&err), Some("Referral_Identifier__c"));
    let err = crm
        .find_opportunity_by_referral("dup-ref")
        .await
        .expect_err("ambiguous find");
    assert!(err.to_string().contains("several"), "{err}");
    assert_eq!(env.rows("Opportunity").await.len(), 2, "nothing written");
}

#[tokio::test]
async fn a_foreign_currency_needs_a_multi_currency_org() {
    let env = Env::start().await;
    let crm = env.crm().await;
    let eur = OpportunityFields {
        deal_value: Some(5000.0),
        currency: Some("EUR".into()),
        ..opportunity("Euro deal", "ref-eur")
    };
    let err = crm
        .create_opportunity(&eur)
        .await
        .expect_err("EUR in a USD-only org");
    assert_eq!(rejected_field(&err), Some("CurrencyIsoCode"));
    assert!(err.to_string().contains("multi-currency"), "{err}");
    assert!(env.rows("Opportunity").await.is_empty());

    let mut multi = SandboxConfig::default();
    multi.salesforce.multi_currency = true;
    let env = Env::with(multi).await;
    let mut config = env.config().await;
    config.multi_currency = true;
    let crm = SalesforceCrm::new(config).expect("valid");
    let id = crm.create_opportunity(&eur).await.expect("stored");
    assert_eq!(env.row("Opportunity", &id).await["CurrencyIsoCode"], "EUR");
    let read = crm
        .get_opportunity(&id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.fields.currency.as_deref(), Some("EUR"));
}

#[tokio::test]
async fn a_spent_daily_budget_is_transient_and_not_retried_in_process() {
    let env = Env::start().await;
    let crm = env.crm().await;
    crm.integration_user_id().await.expect("signed in");
    let budget = env.get("/_sandbox/salesforce/budget").await;
    env.put(
        "/_sandbox/salesforce/budget",
        json!({"used": budget["max"]}),
    )
    .await;
    env.reset_stats().await;
    let err = crm
        .find_contact_by_email("x@example.com")
        .await
        .expect_err("no budget left");
    assert!(
        matches!(
            err,
            CrmError::Transient {
                status: Some(403),
                retry_after: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(
        env.count("GET /services/data/v{version}/query").await,
        1,
        "the limit rolls over 24 hours: no in-process retries"
    );
}

#[tokio::test]
async fn a_missing_required_field_is_named_and_can_be_configured() {
    let env = Env::start().await;
    env.patch(
        "/_sandbox/salesforce/schema/Opportunity/fields/NextStep",
        json!({"required": true}),
    )
    .await;
    let crm = env.crm().await;
    let err = crm
        .create_opportunity(&opportunity("Needs a step", "ref-required"))
        .await
        .expect_err("NextStep is required");
    assert_eq!(rejected_field(&err), Some("NextStep"));
    assert!(err.to_string().contains("NextStep"), "{err}");

    let mut config = env.config().await;
    config
        .opportunity_create_values
        .insert("NextStep".into(), json!("Qualify with Microsoft"));
    let crm = SalesforceCrm::new(config).expect("valid");
    let id = crm
        .create_opportunity(&opportunity("Needs a step", "ref-required"))
        .await
        .expect("the admin's value fills it");
    assert_eq!(
        env.row("Opportunity", &id).await["NextStep"],
        "Qualify with Microsoft"
    );
}

// ---------------------------------------------------------------- the change feed

const QUERY: &str = "GET /services/data/v{version}/query";
const QUERY_BATCH: &str = "GET /services/data/v{version}/query/{locator}";

/// Every page of the feed from `cursor` until `more` is false: the opportunities in order, the
/// last cursor, and how many pages it took.
async fn drain(
    crm: &SalesforceCrm,
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

fn description(opportunities: &[cosell_shared::crm::Opportunity], id: &str) -> Vec<String> {
    opportunities
        .iter()
        .filter(|o| o.id == id)
        .map(|o| o.fields.description.clone().unwrap_or_default())
        .collect()
}

impl Env {
    /// An opportunity a seller creates in Salesforce.
    async fn seller_opportunity(&self, name: &str, sync: bool) -> String {
        let row = self
            .post(
                "/_sandbox/salesforce/Opportunity",
                json!({
                    "Name": name,
                    "StageName": "Qualification",
                    "CloseDate": "2030-06-30",
                    "Sync_with_Partner_Center__c": sync,
                }),
            )
            .await;
        row["Id"].as_str().expect("opportunity id").to_string()
    }

    async fn seller_edit(&self, id: &str, change: Value) {
        self.patch(&format!("/_sandbox/salesforce/Opportunity/{id}"), change)
            .await;
    }
}

#[tokio::test]
async fn a_feed_of_several_batches_brings_every_synced_opportunity_exactly_once() {
    let env = Env::start().await;
    let mut config = env.config().await;
    // Salesforce's smallest batch.
    config.query_batch_size = Some(200);
    let crm = SalesforceCrm::new(config).expect("valid");
    let mut shared = Vec::new();
    for n in 0..230 {
        shared.push(env.seller_opportunity(&format!("Deal {n}"), true).await);
    }
    for n in 0..5 {
        env.seller_opportunity(&format!("Private {n}"), false).await;
    }
    env.reset_stats().await;
    let (all, _, pages) = drain(&crm, None).await;
    assert_eq!(all.len(), 230);
    assert_eq!(ids(&all), sorted(shared));
    assert_eq!(pages, 2, "230 records in batches of 200");
    assert_eq!(env.count(QUERY_BATCH).await, 1);
}

#[tokio::test]
async fn an_edit_made_while_the_feed_is_paging_is_not_lost() {
    let mut config = SandboxConfig::default();
    config.salesforce.query_batch_size = 2;
    let env = Env::with(config).await;
    let crm = env.crm().await;
    let mut shared = Vec::new();
    for n in 0..6 {
        shared.push(env.seller_opportunity(&format!("Deal {n}"), true).await);
    }
    let first = crm.opportunity_changes(None).await.expect("first page");
    assert!(first.more);
    assert_eq!(first.opportunities.len(), 2);
    let handed_out = first.opportunities[0].id.clone();
    let pending = shared
        .iter()
        .find(|id| first.opportunities.iter().all(|o| &o.id != *id))
        .cloned()
        .expect("a record in a later batch");
    env.seller_edit(
        &handed_out,
        json!({"Description": "edited after its batch"}),
    )
    .await;
    env.seller_edit(&pending, json!({"Description": "edited before its batch"}))
        .await;
    let (rest, cursor, _) = drain(&crm, Some(first.cursor)).await;
    let (next, _, _) = drain(&crm, Some(cursor)).await;
    let seen: Vec<_> = rest.iter().chain(&next).cloned().collect();
    assert!(
        description(&seen, &handed_out).contains(&"edited after its batch".to_string()),
        "{seen:?}"
    );
    assert!(
        description(&seen, &pending).contains(&"edited before its batch".to_string()),
        "{seen:?}"
    );
    let all: Vec<_> = first.opportunities.iter().chain(&seen).cloned().collect();
    for id in &shared {
        assert!(all.iter().any(|o| &o.id == id), "{id} never came");
    }
}

#[tokio::test]
async fn an_expired_query_locator_runs_the_round_again() {
    let mut config = SandboxConfig::default();
    config.salesforce.query_batch_size = 2;
    let env = Env::with(config).await;
    let crm = env.crm().await;
    let mut shared = Vec::new();
    for n in 0..5 {
        shared.push(env.seller_opportunity(&format!("Deal {n}"), true).await);
    }
    let first = crm.opportunity_changes(None).await.expect("first page");
    assert!(first.more);
    // Locators expire after a quarter of an hour unused.
    env.post("/_sandbox/clock/advance", json!({"minutes": 20}))
        .await;
    let (rest, _, _) = drain(&crm, Some(first.cursor)).await;
    assert_eq!(ids(&rest), sorted(shared));
}

#[tokio::test]
async fn a_feed_quiet_for_longer_than_the_overlap_costs_one_query_and_still_brings_the_next_edit() {
    let env = Env::start().await;
    let crm = env.crm().await;
    let id = env.seller_opportunity("Alpha", true).await;
    let (first, cursor, _) = drain(&crm, None).await;
    assert_eq!(ids(&first), vec![id.clone()]);
    // Within the overlap a round reads the window again: a record stamped before the last
    // round's end may commit late.
    env.reset_stats().await;
    let (again, cursor, _) = drain(&crm, Some(cursor)).await;
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(
        env.count(QUERY).await,
        2,
        "the newest stamp, then the window"
    );

    // Once a round has read the window after the overlap had passed, a quiet feed is one query.
    env.post("/_sandbox/clock/advance", json!({"minutes": 11}))
        .await;
    let (_, cursor, _) = drain(&crm, Some(cursor)).await;
    env.reset_stats().await;
    let (idle, cursor, _) = drain(&crm, Some(cursor)).await;
    assert!(idle.is_empty(), "{idle:?}");
    assert_eq!(env.count(QUERY).await, 1, "only the newest stamp");

    env.seller_edit(&id, json!({"Description": "budget approved"}))
        .await;
    let (edit, _, _) = drain(&crm, Some(cursor)).await;
    assert_eq!(description(&edit, &id), ["budget approved"]);
}

#[tokio::test]
async fn a_failing_feed_query_is_transient() {
    let env = Env::start().await;
    let crm = env.crm().await;
    env.seller_opportunity("Alpha", true).await;
    env.post(
        "/_sandbox/faults",
        json!({"method": "GET", "route": "/services/data/v{version}/query", "status": 503}),
    )
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
    assert!(env.count(QUERY).await >= 1);
}

#[tokio::test]
async fn a_configured_country_field_is_the_one_read() {
    let env = Env::start().await;
    env.post(
        "/_sandbox/salesforce/schema/Account/fields",
        json!({"name": "Country_Code__c", "type": "string", "length": 2}),
    )
    .await;
    let mut config = env.config().await;
    config.fields.account_country = "Country_Code__c".into();
    let crm = SalesforceCrm::new(config).expect("valid");
    let account = env
        .post(
            "/_sandbox/salesforce/Account",
            json!({"Name": "Northwind", "BillingCountry": "Germany", "Country_Code__c": "DE"}),
        )
        .await;
    let id = account["Id"].as_str().expect("id");
    let read = crm.get_account(id).await.expect("read").expect("exists");
    assert_eq!(read.fields.country.as_deref(), Some("DE"));
}

// ---------------------------------------------------------------- clearing and Services fields

const SERVICES_FIELDS: [&str; 4] = [
    "Solution_Area__c",
    "Solution_Play__c",
    "Partner_Role__c",
    "Marketplace_Intent__c",
];

impl Env {
    /// The adapter configured for the Services co-sell fields, as an admin would through
    /// `COSELL_SALESFORCE_FIELDS`.
    async fn services_config(&self) -> SalesforceConfig {
        let mut config = self.config().await;
        config.fields = serde_json::from_value(json!({
            "solutionArea": "Solution_Area__c",
            "solutionPlay": "Solution_Play__c",
            "partnerRole": "Partner_Role__c",
            "marketplaceIntent": "Marketplace_Intent__c",
        }))
        .expect("the settings parse");
        config
    }

    async fn services_crm(&self) -> SalesforceCrm {
        SalesforceCrm::new(self.services_config().await).expect("valid")
    }

    /// The opportunity's primary contact roles' contacts.
    async fn primary_contacts(&self, opportunity: &str) -> Vec<Value> {
        self.rows("OpportunityContactRole")
            .await
            .into_iter()
            .filter(|r| r["OpportunityId"] == json!(opportunity) && r["IsPrimary"] == json!(true))
            .map(|r| r["ContactId"].clone())
            .collect()
    }
}

/// An opportunity with every clearable field (the close date aside) and the Services fields
/// filled in, and its primary contact.
async fn everything(crm: &SalesforceCrm, name: &str, currency: &str) -> (String, String) {
    let contact = crm
        .create_contact(&ContactFields {
            last_name: "Bowman".into(),
            ..Default::default()
        })
        .await
        .expect("contact");
    let id = crm
        .create_opportunity(&OpportunityFields {
            deal_value: Some(42_000.0),
            currency: Some(currency.into()),
            description: Some("notes".into()),
            contact_id: Some(contact.clone()),
            microsoft_help: Some("ProofOfConceptOrDemo".into()),
            microsoft_status: Some("Active/Accepted".into()),
            microsoft_crm_id: Some("7-ABCDEF".into()),
            solution_area: Some("Cloud and AI Platforms".into()),
            solution_play: Some("Migrate and modernize your estate".into()),
            partner_role: Some("Implementation partner".into()),
            sync_with_partner_center: Some(true),
            audit: Some("created".into()),
            ..opportunity(name, &format!("ref-{name}"))
        })
        .await
        .expect("created");
    (id, contact)
}

#[tokio::test]
async fn clearing_each_field_empties_it_and_deletes_the_primary_contact_role() {
    let mut multi = SandboxConfig::default();
    multi.salesforce.multi_currency = true;
    let env = Env::with(multi).await;
    let mut config = env.services_config().await;
    config.multi_currency = true;
    let crm = SalesforceCrm::new(config).expect("valid");
    let (id, contact) = everything(&crm, "Emptied", "EUR").await;
    // A role the seller added stays: only the customer contact is the connector's.
    let evaluator = crm
        .create_contact(&ContactFields {
            last_name: "Evaluator".into(),
            ..Default::default()
        })
        .await
        .expect("contact");
    env.post(
        "/_sandbox/salesforce/OpportunityContactRole",
        json!({"OpportunityId": id, "ContactId": evaluator, "Role": "Evaluator"}),
    )
    .await;
    assert_eq!(env.primary_contacts(&id).await, [json!(contact)]);
    let row = env.row("Opportunity", &id).await;
    assert_eq!(row["CurrencyIsoCode"], "EUR");
    assert_eq!(row["Partner_Role__c"], "Implementation partner");

    let every_clear_but_the_date: Vec<ClearField> = [
        ClearField::DealValue,
        ClearField::Currency,
        ClearField::Description,
        ClearField::MicrosoftHelp,
        ClearField::Contact,
        ClearField::MicrosoftStatus,
        ClearField::MicrosoftCrmId,
        ClearField::SolutionArea,
        ClearField::SolutionPlay,
        ClearField::PartnerRole,
    ]
    .to_vec();
    env.reset_stats().await;
    crm.update_opportunity(
        &id,
        &OpportunityFields {
            audit: Some("emptied".into()),
            clear: every_clear_but_the_date.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("cleared");
    assert_eq!(
        env.count("PATCH /services/data/v{version}/sobjects/Opportunity/{id}")
            .await,
        1,
        "the fields go in one PATCH"
    );
    assert_eq!(
        env.count("DELETE /services/data/v{version}/sobjects/OpportunityContactRole/{id}")
            .await,
        1
    );

    let row = env.row("Opportunity", &id).await;
    for field in [
        "Amount",
        "CurrencyIsoCode",
        "Description",
        "How_can_Microsoft_help__c",
        "Microsoft_Status__c",
        "Microsoft_CRM_Identifier__c",
        "Solution_Area__c",
        "Solution_Play__c",
        "Partner_Role__c",
    ] {
        assert_eq!(row[field], Value::Null, "{field} emptied: {row}");
    }
    assert_eq!(row["Audit__c"], "emptied");
    assert_eq!(row["CloseDate"], "2030-06-30", "not asked to clear");
    assert!(env.primary_contacts(&id).await.is_empty());
    let left: Vec<Value> = env
        .rows("OpportunityContactRole")
        .await
        .into_iter()
        .map(|r| r["ContactId"].clone())
        .collect();
    assert_eq!(left, [json!(evaluator)], "the seller's role stays");

    let read = read(&crm, &id).await;
    let f = &read.fields;
    assert_eq!(
        (f.deal_value, &f.currency, &f.description, &f.contact_id),
        (None, &None, &None, &None)
    );
    assert_eq!(
        (&f.microsoft_help, &f.microsoft_status, &f.microsoft_crm_id),
        (&None, &None, &None)
    );
    assert_eq!(
        (&f.solution_area, &f.solution_play, &f.partner_role),
        (&None, &None, &None)
    );
    assert!(f.clear.is_empty(), "a read never asks to clear");

    // Again: nothing left to detach, and emptying what is empty is harmless.
    env.reset_stats().await;
    crm.update_opportunity(
        &id,
        &OpportunityFields {
            clear: every_clear_but_the_date,
            ..Default::default()
        },
    )
    .await
    .expect("cleared again");
    assert_eq!(
        env.count("DELETE /services/data/v{version}/sobjects/OpportunityContactRole/{id}")
            .await,
        0
    );
}

#[tokio::test]
async fn the_required_close_date_refuses_its_clear_by_name_unless_the_org_relaxed_it() {
    let env = Env::start().await;
    let crm = env.crm().await;
    let id = crm
        .create_opportunity(&OpportunityFields {
            description: Some("kept".into()),
            ..opportunity("Dated", "ref-dated")
        })
        .await
        .expect("created");
    let clear = OpportunityFields {
        clear: vec![ClearField::CloseDate, ClearField::Description],
        ..Default::default()
    };
    let err = crm
        .update_opportunity(&id, &clear)
        .await
        .expect_err("Salesforce requires a close date");
    assert_eq!(rejected_field(&err), Some("CloseDate"), "{err}");
    let row = env.row("Opportunity", &id).await;
    assert_eq!(row["Description"], "kept", "one PATCH: all or nothing");

    env.patch(
        "/_sandbox/salesforce/schema/Opportunity/fields/CloseDate",
        json!({"required": false}),
    )
    .await;
    crm.update_opportunity(&id, &clear).await.expect("cleared");
    let row = env.row("Opportunity", &id).await;
    assert_eq!(
        (&row["CloseDate"], &row["Description"]),
        (&Value::Null, &Value::Null)
    );
}

#[tokio::test]
async fn a_services_field_both_set_and_cleared_is_set_in_the_row() {
    let env = Env::start().await;
    let crm = env.services_crm().await;
    let (id, first) = everything(&crm, "Both", "USD").await;
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
    let row = env.row("Opportunity", &id).await;
    assert_eq!(row["Description"], "new notes");
    assert_eq!(row["Solution_Play__c"], "Innovate with Azure AI");
    assert_eq!(
        row["Microsoft_CRM_Identifier__c"],
        Value::Null,
        "a clear of a field not set still applies"
    );
    assert_eq!(env.primary_contacts(&id).await, [json!(second)]);
    assert_ne!(json!(first), json!(second));
}

#[tokio::test]
async fn services_fields_round_trip_and_the_marketplace_intent_is_only_read() {
    let env = Env::start().await;
    let crm = env.services_crm().await;
    let fields = OpportunityFields {
        sync_with_partner_center: Some(true),
        solution_area: Some("Cloud and AI Platforms".into()),
        solution_play: Some("Migrate and modernize your estate".into()),
        partner_role: Some("Implementation partner".into()),
        marketplace_intent: Some("Yes".into()),
        ..opportunity("Services", "ref-services")
    };
    let id = crm.create_opportunity(&fields).await.expect("created");
    let row = env.row("Opportunity", &id).await;
    assert_eq!(row["Solution_Area__c"], "Cloud and AI Platforms");
    assert_eq!(row["Solution_Play__c"], "Migrate and modernize your estate");
    assert_eq!(row["Partner_Role__c"], "Implementation partner");
    assert_eq!(
        row["Marketplace_Intent__c"],
        Value::Null,
        "the connector never writes the marketplace intent"
    );

    env.seller_edit(&id, json!({"Marketplace_Intent__c": "Have not decided"}))
        .await;
    let got = read(&crm, &id).await;
    assert_eq!(got.fields.solution_area, fields.solution_area);
    assert_eq!(got.fields.solution_play, fields.solution_play);
    assert_eq!(got.fields.partner_role, fields.partner_role);
    assert_eq!(
        got.fields.marketplace_intent.as_deref(),
        Some("Have not decided")
    );
    let found = crm
        .find_opportunity_by_referral("ref-services")
        .await
        .expect("query")
        .expect("found");
    assert_eq!(found.fields, got.fields);
    let (fed, _, _) = drain(&crm, None).await;
    let fed = fed.iter().find(|o| o.id == id).expect("in the feed");
    assert_eq!(fed.fields, got.fields);

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
    let row = env.row("Opportunity", &id).await;
    assert_eq!(row["Partner_Role__c"], "Co-sell partner");
    assert_eq!(row["Marketplace_Intent__c"], "Have not decided");
}

#[tokio::test]
async fn without_the_settings_an_org_lacking_the_services_fields_keeps_working() {
    let env = Env::start().await;
    for field in SERVICES_FIELDS {
        env.control(
            reqwest::Method::DELETE,
            &format!("/_sandbox/salesforce/schema/Opportunity/fields/{field}"),
            None,
        )
        .await;
    }
    // The sandbox refuses any request naming a field the object lacks (in `fields=`, in SOQL,
    // or in a body, even as null), so every call below succeeding shows the adapter never
    // named one.
    let crm = env.crm().await;
    let id = crm
        .create_opportunity(&OpportunityFields {
            sync_with_partner_center: Some(true),
            solution_area: Some("Cloud and AI Platforms".into()),
            partner_role: Some("Implementation partner".into()),
            marketplace_intent: Some("Yes".into()),
            ..opportunity("Plain", "ref-plain")
        })
        .await
        .expect("created");
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
    let got = read(&crm, &id).await;
    assert_eq!(
        (
            &got.fields.solution_area,
            &got.fields.solution_play,
            &got.fields.partner_role,
            &got.fields.marketplace_intent
        ),
        (&None, &None, &None, &None)
    );
    crm.find_opportunity_by_referral("ref-plain")
        .await
        .expect("query")
        .expect("found");
    let (fed, _, _) = drain(&crm, None).await;
    assert_eq!(ids(&fed), vec![id.clone()]);

    // The same org with the settings: the missing field is named.
    let err = env
        .services_crm()
        .await
        .get_opportunity(&id)
        .await
        .expect_err("the field does not exist");
    assert!(err.to_string().contains("__c"), "{err}");
}

#[tokio::test]
async fn a_bad_services_field_name_stops_start_up_with_the_setting_named() {
    let env = Env::start().await;
    for (setting, fields) in [
        ("solution_area", json!({"solutionArea": "Solution Area"})),
        ("partner_role", json!({"partnerRole": "Audit__c"})),
        (
            "marketplace_intent",
            json!({"solutionPlay": "X__c", "marketplaceIntent": "X__c"}),
        ),
    ] {
        let mut config = env.config().await;
        config.fields = serde_json::from_value(fields).expect("parses");
        let err = SalesforceCrm::new(config).expect_err("refused");
        assert!(err.to_string().contains(setting), "{setting}: {err}");
    }
}

// ---------------------------------------------------------------- the CRM contract

/// The adapter on a sandbox of its own, and a seller in Salesforce.
struct Contract {
    env: Env,
    crm: SalesforceCrm,
}

async fn contract() -> Contract {
    let env = Env::start().await;
    let crm = env.crm().await;
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
            SellerEdit::Description(d) => json!({"Description": d}),
            SellerEdit::SyncWithPartnerCenter(s) => json!({"Sync_with_Partner_Center__c": s}),
        };
        self.env.seller_edit(id, change).await;
    }

    async fn seller_deletes(&self, id: &str) {
        self.env
            .control(
                reqwest::Method::DELETE,
                &format!("/_sandbox/salesforce/Opportunity/{id}"),
                None,
            )
            .await;
    }
}

mod contract {
    cosell_e2e::crm_contract_tests!(super::contract());
}
