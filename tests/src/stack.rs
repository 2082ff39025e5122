//! The whole connector on loopback, for end-to-end scenarios: the sandbox (Partner Center,
//! Entra ID, Dataverse, Salesforce), the state store and the FIFO sync queue (DynamoDB and SQS
//! in moto, or the embedded store and queue in a temporary directory: see [`Backend`]), the real
//! adapters pointed at them, the webhook receiver as a real HTTP server running the ingress
//! logic, and a queue processor the test drives.
//!
//! Methods speak the product's words (`incoming_referral`, `microsoft_changes`, `sync`,
//! `opportunity_for`), so a scenario reads as what a seller and Microsoft do, and what the
//! seller then sees in the CRM. Everything CRM-specific (paths, field names, stage values) is in
//! [`CrmSide`]: a scenario is written once and runs against both CRMs.
//!
//! Every `TestStack` starts its own sandbox and its own moto or data directory, so scenarios
//! never see each other's records, counters or messages.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_sqs::types::QueueAttributeName;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use cosell_localaws::Moto;
use cosell_sandbox::config::{ADMIN_USER, CLIENT_ID, CLIENT_SECRET};
use cosell_sandbox::{Sandbox, SandboxConfig};
pub use cosell_shared::crm::CrmKind;
use cosell_shared::crm::dataverse::{DataverseConfig, DataverseCrm};
use cosell_shared::crm::salesforce::{SalesforceAuth, SalesforceConfig, SalesforceCrm};
use cosell_shared::ingress::{self, SignatureCheck};
use cosell_shared::partner_center::http::{PartnerCenterClient, PartnerCenterConfig};
use cosell_shared::partner_center::refresh_store::{FileTokenStore, RefreshTokenStore};
use cosell_shared::partner_center::signature::{SignatureVerifier, SignatureVerifierConfig};
use cosell_shared::partner_center::token::UserCredential;
use cosell_shared::queue::embedded::{EmbeddedQueue, EmbeddedQueueSettings};
use cosell_shared::queue::sqs::SqsQueue;
use cosell_shared::queue::{Queue, QueueConsumer};
use cosell_shared::store::dynamodb::{DynamoStore, DynamoStoreConfig};
use cosell_shared::store::sqlite::SqliteStore;
use cosell_shared::store::{Claim, JournalEntry, Store};
use cosell_shared::sync::consume;
use cosell_shared::sync::poller::{PollReport, Poller, PollerOptions};
use cosell_shared::sync::{Processor, SyncOptions};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

const TABLE: &str = "cosell-state";
const QUEUE: &str = "cosell-sync";
/// The four referral events the connector registers, as Microsoft's connector does.
pub const REFERRAL_EVENTS: [&str; 4] = [
    "referral-created",
    "referral-updated",
    "related-referral-created",
    "related-referral-updated",
];
/// Retries of one external call inside the adapters (after the first attempt).
pub const ADAPTER_RETRIES: usize = 2;
/// A message that failed this many times goes to the dead-letter queue (`maxReceiveCount`).
pub const MAX_RECEIVES: u32 = 5;
/// Guards against a hang; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// How the Salesforce adapter signs in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SalesforceSignIn {
    /// JWT bearer with the connected app's key, as a production org is set up.
    #[default]
    JwtBearer,
    /// Client credentials of the connected app. The sandbox judges a JWT assertion's `exp`
    /// by its own clock, so after `/_sandbox/clock/advance` only this flow can sign in again.
    ClientCredentials,
}

/// Where the connector keeps its state and messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    /// DynamoDB and SQS (in moto), as the Lambda functions use them.
    #[default]
    Aws,
    /// The SQLite store and queue of `cosell local`, in a temporary directory.
    Embedded,
}

/// What differs between stacks beside the CRM.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Setup {
    pub salesforce_sign_in: SalesforceSignIn,
    pub backend: Backend,
    /// Rows per page of the CRM's answers (Dataverse `odata.maxpagesize`; Salesforce's query
    /// batch size, 200 at the least), to make the change feed span pages.
    pub crm_page_size: Option<usize>,
}

/// What Microsoft sends the partner (`POST /_sandbox/partner-center/incoming?kind=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// Shared, sales-qualified, with Microsoft's own referral beside it.
    CoSell,
    /// Independent, marketing-qualified, alone.
    Lead,
    /// Shared, not qualified: Microsoft sharing its pipeline.
    Pipeline,
}

impl Incoming {
    fn query(self) -> &'static str {
        match self {
            Incoming::CoSell => "co-sell",
            Incoming::Lead => "lead",
            Incoming::Pipeline => "pipeline",
        }
    }
}

/// Where an opportunity stands, as a seller reads it in either CRM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Dataverse: open, statuscode 2 (On Hold). Salesforce: the configured hold stage.
    OnHold,
    /// Open in any other status or stage.
    Active,
    /// Dataverse statecode 1; Salesforce "Closed Won".
    Won,
    /// Dataverse statecode 2; Salesforce "Closed Lost".
    Lost,
}

/// A deal a seller shares with Partner Center (see [`TestStack::seller_shares`]).
#[derive(Debug, Clone, Copy)]
pub struct Share<'a> {
    pub name: &'a str,
    pub customer: &'a str,
    /// The account's country, as the seller typed it.
    pub country: &'a str,
    pub deal_value: f64,
    pub solutions: &'a [&'a str],
    /// An `assistanceRequestCode` (`ProofOfConceptOrDemo`…): asks for Microsoft's help.
    pub help: Option<&'a str>,
    pub visible: bool,
    /// The opportunity names a customer contact.
    pub contact: bool,
}

impl Default for Share<'_> {
    fn default() -> Self {
        Share {
            name: "Tailspin cloud migration",
            customer: "Tailspin Toys",
            country: "NO",
            deal_value: 25_000.0,
            solutions: &["SOL-TAILSPIN-1"],
            help: None,
            visible: true,
            contact: true,
        }
    }
}

/// An opportunity as the seller sees it, in neutral terms; `raw` is the CRM's own row.
#[derive(Debug, Clone, PartialEq)]
pub struct CrmOpportunity {
    pub id: String,
    pub name: String,
    pub stage: Stage,
    pub deal_value: Option<f64>,
    pub account_id: Option<String>,
    /// The customer contact: Dataverse `_parentcontactid_value`, Salesforce the primary
    /// `OpportunityContactRole`.
    pub contact_id: Option<String>,
    pub sync_with_partner_center: bool,
    pub referral_id: Option<String>,
    pub referral_link: Option<String>,
    pub microsoft_status: Option<String>,
    pub microsoft_crm_id: Option<String>,
    pub audit: String,
    /// Partner Center solution ids linked to the opportunity.
    pub solutions: Vec<String>,
    pub raw: Value,
}

impl CrmOpportunity {
    /// Audit lines, newest first.
    pub fn audit_lines(&self) -> Vec<&str> {
        self.audit
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// An account as the seller sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CrmAccount {
    pub id: String,
    pub name: String,
    pub postal_code: Option<String>,
    pub country: Option<String>,
}

/// A lead as the seller sees it; `raw` is the CRM's own row.
#[derive(Debug, Clone, PartialEq)]
pub struct CrmLead {
    pub id: String,
    pub referral_id: Option<String>,
    pub company: Option<String>,
    pub last_name: Option<String>,
    pub raw: Value,
}

/// What one `process_queue` did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueRun {
    /// Messages handled and deleted.
    pub succeeded: usize,
    /// Failed attempts (each made visible again; the queue dead-letters a message after
    /// [`MAX_RECEIVES`]).
    pub failed: usize,
    /// Why each failed attempt failed.
    pub errors: Vec<String>,
    /// Messages the queue gave up on after [`MAX_RECEIVES`] receives.
    pub dead_lettered: u64,
}

impl QueueRun {
    pub fn received(&self) -> usize {
        self.succeeded + self.failed
    }

    pub fn add(&mut self, other: QueueRun) {
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.errors.extend(other.errors);
        self.dead_lettered += other.dead_lettered;
    }
}

/// Request counts from `GET /_sandbox/stats`, keyed `"METHOD /route/{template}"`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calls(pub BTreeMap<String, u64>);

impl Calls {
    /// The count of one `"METHOD /route"`, 0 when never called.
    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }

    /// Every request that is not a read (`GET`).
    pub fn writes(&self) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| !k.starts_with("GET "))
            .map(|(_, n)| n)
            .sum()
    }

    /// The counts that grew since `before`.
    pub fn since(&self, before: &Calls) -> Calls {
        Calls(
            self.0
                .iter()
                .filter_map(|(k, n)| {
                    let d = n.saturating_sub(before.get(k));
                    (d > 0).then(|| (k.clone(), d))
                })
                .collect(),
        )
    }
}

/// A webhook delivery as it reached the receiver, and what the receiver answered.
#[derive(Debug, Clone)]
pub struct Captured {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub status: u16,
}

/// The CRM-specific part of the stack: control-API paths, field names and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrmSide(pub CrmKind);

impl CrmSide {
    /// The control-API path of a CRM entity set (`opportunities`, `Opportunity`…).
    pub fn control(self, set: &str) -> String {
        match self.0 {
            CrmKind::Dynamics => format!("/_sandbox/dataverse/{set}"),
            CrmKind::Salesforce => format!("/_sandbox/salesforce/{set}"),
        }
    }

    /// The opportunity entity set.
    pub fn opportunities(self) -> &'static str {
        match self.0 {
            CrmKind::Dynamics => "opportunities",
            CrmKind::Salesforce => "Opportunity",
        }
    }

    fn accounts(self) -> &'static str {
        match self.0 {
            CrmKind::Dynamics => "accounts",
            CrmKind::Salesforce => "Account",
        }
    }

    fn leads(self) -> &'static str {
        match self.0 {
            CrmKind::Dynamics => "leads",
            CrmKind::Salesforce => "Lead",
        }
    }

    /// The row id column.
    fn id_of(self, set: &str, row: &Value) -> String {
        let key = match self.0 {
            CrmKind::Salesforce => "Id".to_string(),
            CrmKind::Dynamics => match set {
                "opportunities" => "opportunityid".into(),
                "accounts" => "accountid".into(),
                "contacts" => "contactid".into(),
                "leads" => "leadid".into(),
                other => format!("{}id", other.trim_end_matches('s')),
            },
        };
        text(row, &key).unwrap_or_default()
    }

    /// The opportunity's referral identifier field (also the lead's).
    pub fn referral_field(self) -> &'static str {
        match self.0 {
            CrmKind::Dynamics => "cosell_referralid",
            CrmKind::Salesforce => "Referral_Identifier__c",
        }
    }

    /// The opportunity's name field.
    pub fn name_field(self) -> &'static str {
        match self.0 {
            CrmKind::Dynamics => "name",
            CrmKind::Salesforce => "Name",
        }
    }

    pub fn deal_value_field(self) -> &'static str {
        match self.0 {
            CrmKind::Dynamics => "estimatedvalue",
            CrmKind::Salesforce => "Amount",
        }
    }

    pub fn audit_field(self) -> &'static str {
        match self.0 {
            CrmKind::Dynamics => "cosell_audit",
            CrmKind::Salesforce => "Audit__c",
        }
    }

    pub fn microsoft_status_field(self) -> &'static str {
        match self.0 {
            CrmKind::Dynamics => "cosell_microsoftstatus",
            CrmKind::Salesforce => "Microsoft_Status__c",
        }
    }

    pub fn microsoft_crm_id_field(self) -> &'static str {
        match self.0 {
            CrmKind::Dynamics => "cosell_microsoftcrmid",
            CrmKind::Salesforce => "Microsoft_CRM_Identifier__c",
        }
    }

    /// Columns the CRM itself maintains on every write (modification time, version, who).
    pub fn system_fields(self) -> &'static [&'static str] {
        match self.0 {
            CrmKind::Dynamics => &[
                "@odata.etag",
                "modifiedon",
                "_modifiedby_value",
                "versionnumber",
            ],
            CrmKind::Salesforce => &[
                "attributes",
                "LastModifiedDate",
                "LastModifiedById",
                "SystemModstamp",
            ],
        }
    }

    /// Whether a request-count key is a call to this CRM's API.
    fn is_api_call(self, key: &str) -> bool {
        match self.0 {
            CrmKind::Dynamics => key.contains(" /api/data/"),
            CrmKind::Salesforce => key.contains(" /services/"),
        }
    }

    /// How the CRM's "How can Microsoft help" field shows an `assistanceRequestCode`.
    pub fn help_value(self, code: &str) -> String {
        match self.0 {
            CrmKind::Dynamics => code.to_string(),
            CrmKind::Salesforce => {
                // Salesforce's picklist spells the code out: `ProofOfConceptOrDemo` →
                // `Proof of concept or demo`.
                let mut out = String::new();
                for (i, c) in code.chars().enumerate() {
                    if c.is_uppercase() && i > 0 {
                        out.push(' ');
                        out.extend(c.to_lowercase());
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        }
    }

    /// The route (as `/_sandbox/stats` counts it) of the request that creates an opportunity.
    pub fn create_opportunity_route(self) -> (&'static str, &'static str) {
        match self.0 {
            // Created with a chosen GUID: PATCH opportunities(<id>) with If-None-Match: *.
            CrmKind::Dynamics => ("PATCH", "/api/data/v9.2/opportunities({id})"),
            // Upserted on the referral-id external id.
            CrmKind::Salesforce => (
                "PATCH",
                "/services/data/v{version}/sobjects/Opportunity/Referral_Identifier__c/{value}",
            ),
        }
    }

    fn stage(self, row: &Value) -> Stage {
        match self.0 {
            CrmKind::Dynamics => match (
                row["statecode"].as_i64().unwrap_or(-1),
                row["statuscode"].as_i64().unwrap_or(-1),
            ) {
                (0, 2) => Stage::OnHold,
                (1, _) => Stage::Won,
                (2, _) => Stage::Lost,
                _ => Stage::Active,
            },
            CrmKind::Salesforce => match row["StageName"].as_str().unwrap_or("") {
                "On Hold" => Stage::OnHold,
                "Closed Won" => Stage::Won,
                "Closed Lost" => Stage::Lost,
                _ => Stage::Active,
            },
        }
    }

    fn opportunity(
        self,
        row: Value,
        contact_id: Option<String>,
        solutions: Vec<String>,
    ) -> CrmOpportunity {
        let (account, sync, link) = match self.0 {
            CrmKind::Dynamics => (
                text(&row, "_parentaccountid_value").or_else(|| text(&row, "_customerid_value")),
                row["cosell_syncwithpartnercenter"].as_bool(),
                text(&row, "cosell_referrallink"),
            ),
            CrmKind::Salesforce => (
                text(&row, "AccountId"),
                row["Sync_with_Partner_Center__c"].as_bool(),
                text(&row, "Referral_Link__c"),
            ),
        };
        CrmOpportunity {
            id: self.id_of(self.opportunities(), &row),
            name: text(&row, self.name_field()).unwrap_or_default(),
            stage: self.stage(&row),
            deal_value: row[self.deal_value_field()].as_f64(),
            account_id: account,
            contact_id,
            sync_with_partner_center: sync.unwrap_or(false),
            referral_id: text(&row, self.referral_field()),
            referral_link: link,
            microsoft_status: text(&row, self.microsoft_status_field()),
            microsoft_crm_id: text(&row, self.microsoft_crm_id_field()),
            audit: text(&row, self.audit_field()).unwrap_or_default(),
            solutions,
            raw: row,
        }
    }

    fn account(self, row: &Value) -> CrmAccount {
        let (name, postal, country) = match self.0 {
            CrmKind::Dynamics => ("name", "address1_postalcode", "address1_country"),
            CrmKind::Salesforce => ("Name", "BillingPostalCode", "BillingCountry"),
        };
        CrmAccount {
            id: self.id_of(self.accounts(), row),
            name: text(row, name).unwrap_or_default(),
            postal_code: text(row, postal),
            country: text(row, country),
        }
    }

    fn lead(self, row: Value) -> CrmLead {
        let (company, last) = match self.0 {
            CrmKind::Dynamics => ("companyname", "lastname"),
            CrmKind::Salesforce => ("Company", "LastName"),
        };
        CrmLead {
            id: self.id_of(self.leads(), &row),
            referral_id: text(&row, self.referral_field()),
            company: text(&row, company),
            last_name: text(&row, last),
            raw: row,
        }
    }

    /// A seller's account, as the CRM's UI would create it.
    fn account_body(self, name: &str, postal_code: &str, country: &str) -> Value {
        match self.0 {
            CrmKind::Dynamics => json!({
                "name": name, "address1_postalcode": postal_code, "address1_country": country
            }),
            CrmKind::Salesforce => json!({
                "Name": name, "BillingPostalCode": postal_code, "BillingCountry": country
            }),
        }
    }

    /// A seller's opportunity for `account_id`, not shared with Partner Center.
    fn opportunity_body(self, name: &str, account_id: &str) -> Value {
        match self.0 {
            CrmKind::Dynamics => json!({
                "name": name,
                "customerid_account@odata.bind": format!("/accounts({account_id})"),
                "estimatedvalue": 1000
            }),
            CrmKind::Salesforce => json!({
                "Name": name,
                "AccountId": account_id,
                "StageName": "Prospecting",
                "CloseDate": "2030-06-30",
                "Amount": 1000
            }),
        }
    }
}

fn text(row: &Value, key: &str) -> Option<String> {
    row.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The receiver's state: the ingress's collaborators and what arrived.
#[derive(Clone)]
struct Receiver {
    verifier: Arc<SignatureVerifier>,
    queue: Arc<dyn Queue>,
    captured: Arc<Mutex<Vec<Captured>>>,
}

/// The webhook endpoint: the real ingress logic behind a real HTTP server, as the
/// webhook-ingress function runs it behind API Gateway.
async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let verifier: &dyn SignatureCheck = receiver.verifier.as_ref();
    let queue: &dyn Queue = receiver.queue.as_ref();
    let reply = ingress::handle(&headers, &body, verifier, queue).await;
    receiver
        .captured
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Captured {
            headers,
            body: body.to_vec(),
            status: reply.status,
        });
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, reply.body)
}

/// Sandbox + moto + the connector, isolated per test.
pub struct TestStack {
    pub kind: CrmKind,
    pub crm_side: CrmSide,
    pub sandbox: Sandbox,
    pub backend: Backend,
    // Kept alive for the test; dropping them stops moto or removes the directory.
    _moto: Option<Moto>,
    _data_dir: Option<tempfile::TempDir>,
    cli_env: Vec<(String, String)>,
    http: reqwest::Client,
    queue: Arc<dyn Queue>,
    consumer: Arc<dyn QueueConsumer>,
    dead_letters: Arc<dyn QueueConsumer>,
    pub store: Arc<dyn Store>,
    /// The poller's options; change them before the poll they should apply to.
    pub poller_options: PollerOptions,
    pc: Arc<PartnerCenterClient>,
    /// Where the Referral admin's sign-in is kept, as in `cosell local`'s data directory.
    pub tokens: Arc<FileTokenStore>,
    _token_dir: tempfile::TempDir,
    crm: Arc<dyn cosell_shared::crm::Crm>,
    /// The admin's options; change them before the messages they should apply to are processed.
    pub options: SyncOptions,
    /// How far the sandbox clock was moved: the connector's clock follows it.
    clock_offset: Arc<std::sync::atomic::AtomicI64>,
    receiver_url: String,
    captured: Arc<Mutex<Vec<Captured>>>,
    receiver_task: JoinHandle<()>,
}

impl Drop for TestStack {
    fn drop(&mut self) {
        self.receiver_task.abort();
    }
}

impl TestStack {
    /// Starts everything for one CRM on `backend`, with the default sync options.
    pub async fn start(kind: CrmKind, backend: Backend) -> TestStack {
        TestStack::start_with(
            kind,
            Setup {
                backend,
                ..Setup::default()
            },
        )
        .await
    }

    /// Starts everything for one CRM, set up as `setup` says.
    pub async fn start_with(kind: CrmKind, setup: Setup) -> TestStack {
        init_tracing();
        let sandbox = Sandbox::start(SandboxConfig::default())
            .await
            .unwrap_or_else(|e| panic!("cannot start the sandbox: {e}"));
        let parts = match setup.backend {
            Backend::Aws => aws_backend().await,
            Backend::Embedded => embedded_backend(),
        };
        let http = reqwest::Client::new();

        let token_dir =
            tempfile::tempdir().unwrap_or_else(|e| panic!("a directory for the sign-in: {e}"));
        let tokens = Arc::new(FileTokenStore::in_dir(token_dir.path()));
        let pc = Arc::new(partner_center(&sandbox, tokens.clone()).await);
        let crm: Arc<dyn cosell_shared::crm::Crm> = match kind {
            CrmKind::Dynamics => Arc::new(dataverse(&sandbox, setup.crm_page_size)),
            CrmKind::Salesforce => Arc::new(
                salesforce(
                    &sandbox,
                    &http,
                    setup.salesforce_sign_in,
                    setup.crm_page_size,
                )
                .await,
            ),
        };

        let verifier = SignatureVerifier::new(SignatureVerifierConfig {
            allowed_certificate_prefixes: vec![sandbox.url("/cert/")],
            ..SignatureVerifierConfig::default()
        })
        .unwrap_or_else(|e| panic!("signature verifier: {e}"));
        let captured = Arc::new(Mutex::new(Vec::new()));
        let receiver = Receiver {
            verifier: Arc::new(verifier),
            queue: parts.queue.clone(),
            captured: captured.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind the webhook receiver: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("receiver address: {e}"));
        let receiver_url = format!("http://{addr}/webhooks/partner-center");
        let router = axum::Router::new()
            .route("/webhooks/partner-center", axum::routing::post(receive))
            .with_state(receiver);
        let receiver_task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });

        let clock_offset = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let stack = TestStack {
            kind,
            crm_side: CrmSide(kind),
            sandbox,
            backend: setup.backend,
            _moto: parts.moto,
            cli_env: parts.cli_env,
            _data_dir: parts.data_dir,
            http,
            queue: parts.queue.clone(),
            consumer: parts.consumer,
            dead_letters: parts.dead_letters,
            store: parts.store,
            // The scenarios poll right after dropping a webhook: no grace before reconciling.
            poller_options: PollerOptions {
                reconciliation_grace: std::time::Duration::ZERO,
                ..PollerOptions::default()
            },
            pc,
            tokens,
            _token_dir: token_dir,
            crm,
            options: SyncOptions {
                // Scenarios close deals within seconds; the Won hold has scenarios of its own.
                won_hold: std::time::Duration::ZERO,
                clock: cosell_shared::sync::Clock::new({
                    let offset = clock_offset.clone();
                    move || {
                        Utc::now()
                            + chrono::Duration::seconds(
                                offset.load(std::sync::atomic::Ordering::SeqCst),
                            )
                    }
                }),
                ..SyncOptions::default()
            },
            clock_offset,
            receiver_url,
            captured,
            receiver_task,
        };
        stack.register_webhooks().await;
        stack
    }

    /// Points the Partner Center registration at the receiver with the four referral events,
    /// the signature in `x-ms-signature` (as Microsoft's connector registers).
    async fn register_webhooks(&self) {
        let token: Value = self
            .http
            .post(self.sandbox.url("/common/oauth2/v2.0/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("scope", "https://api.partnercenter.microsoft.com/.default"),
            ])
            .send()
            .await
            .unwrap_or_else(|e| panic!("webhooks token: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("webhooks token body: {e}"));
        let token = token["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access token in {token}"));
        let response = self
            .http
            .put(self.sandbox.url("/webhooks/v1/registration"))
            .bearer_auth(token)
            .json(&json!({
                "WebhookUrl": self.receiver_url,
                "WebhookEvents": REFERRAL_EVENTS,
                "SignatureTokenToMsSignatureHeader": true,
            }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("webhook registration: {e}"));
        assert!(
            response.status().is_success(),
            "webhook registration answered {}",
            response.status()
        );
    }

    /// The Referral admin signs in again, as `cosell auth login` does, into the stack's store.
    pub async fn sign_in_again(&self) {
        let refresh = crate::sandbox_refresh_token(self.sandbox.base_url(), ADMIN_USER).await;
        self.tokens
            .sign_in(&refresh)
            .await
            .unwrap_or_else(|e| panic!("keep the sign-in: {e}"));
    }

    /// What points the `cosell` command at this stack's store and queue: its arguments
    /// (`--data-dir` of the embedded backend) and its environment (DynamoDB and SQS in moto).
    pub fn cli_target(&self) -> (Vec<String>, Vec<(String, String)>) {
        let args = match &self._data_dir {
            Some(dir) => vec!["--data-dir".to_string(), dir.path().display().to_string()],
            None => Vec::new(),
        };
        (args, self.cli_env.clone())
    }

    /// The processor as the queue-processor function builds it, with the current options.
    pub fn processor(&self) -> Processor {
        Processor {
            pc: self.pc.clone(),
            crm: self.crm.clone(),
            store: self.store.clone(),
            options: self.options.clone(),
        }
    }

    // ---- the control API -------------------------------------------------------------

    /// A control call that must succeed; answers its JSON (or `null`).
    pub async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.try_control(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} answered {status}: {value}"
        );
        value
    }

    /// A control call; answers the status and the JSON (or `null`).
    pub async fn try_control(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method.clone(), self.sandbox.url(path));
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    // ---- Microsoft's side ------------------------------------------------------------

    /// Microsoft shares a referral with the partner: the defaults of `kind` with `partial`
    /// merged over them. Answers the referral as created.
    pub async fn incoming_referral(&self, kind: Incoming, partial: Value) -> Value {
        self.control(
            Method::POST,
            &format!("/_sandbox/partner-center/incoming?kind={}", kind.query()),
            Some(partial),
        )
        .await
    }

    /// Microsoft changes the partner's referral (JSON merge patch).
    pub async fn microsoft_changes(&self, referral_id: &str, partial: Value) -> Value {
        self.control(
            Method::PATCH,
            &format!("/_sandbox/partner-center/referrals/{referral_id}"),
            Some(partial),
        )
        .await
    }

    /// Microsoft changes its own referral in the engagement of `referral_id`.
    pub async fn microsoft_changes_related(&self, referral_id: &str, partial: Value) -> Value {
        self.control(
            Method::PATCH,
            &format!("/_sandbox/partner-center/referrals/{referral_id}/related"),
            Some(partial),
        )
        .await
    }

    /// Every referral, the partner's and Microsoft's, as `(owner, referral)`.
    pub async fn referrals(&self) -> Vec<(String, Value)> {
        let rows = self
            .control(Method::GET, "/_sandbox/partner-center/referrals", None)
            .await;
        rows.as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                (
                    r["owner"].as_str().unwrap_or_default().to_string(),
                    r["referral"].clone(),
                )
            })
            .collect()
    }

    /// The referral `id` as Partner Center holds it now.
    pub async fn referral(&self, id: &str) -> Value {
        self.referrals()
            .await
            .into_iter()
            .map(|(_, r)| r)
            .find(|r| r["id"].as_str().is_some_and(|x| x.eq_ignore_ascii_case(id)))
            .unwrap_or_else(|| panic!("no referral {id} in Partner Center"))
    }

    /// Microsoft's referral in the engagement of the partner's referral `id`.
    pub async fn related_referral(&self, id: &str) -> Option<Value> {
        let own = self.referral(id).await;
        let engagement = own["engagementId"].as_str().unwrap_or_default().to_string();
        self.referrals()
            .await
            .into_iter()
            .find(|(owner, r)| owner == "microsoft" && r["engagementId"] == engagement)
            .map(|(_, r)| r)
    }

    /// Moves the sandbox clock forward: tokens and unanswered referrals expire by it.
    pub async fn advance_clock_days(&self, days: i64) {
        self.advance_clock_hours(days * 24).await;
    }

    /// Moves the sandbox clock, and the connector's with it, forward by `hours`.
    pub async fn advance_clock_hours(&self, hours: i64) {
        self.advance_clock_minutes(hours * 60).await;
    }

    /// Moves the sandbox clock, and the connector's with it, forward by `minutes`.
    pub async fn advance_clock_minutes(&self, minutes: i64) {
        self.control(
            Method::POST,
            "/_sandbox/clock/advance",
            Some(json!({ "minutes": minutes })),
        )
        .await;
        self.clock_offset
            .fetch_add(minutes * 60, std::sync::atomic::Ordering::SeqCst);
    }

    /// The time as the connector sees it (the sandbox's clock).
    pub fn now(&self) -> chrono::DateTime<Utc> {
        self.options.clock.now()
    }

    /// Adds a fault rule (`POST /_sandbox/faults`).
    pub async fn fault(&self, rule: Value) {
        self.control(Method::POST, "/_sandbox/faults", Some(rule))
            .await;
    }

    /// Adds a webhook delivery fault (`duplicate`, `reorder`, `drop`, `delay`).
    pub async fn webhook_fault(&self, rule: Value) {
        self.control(Method::POST, "/_sandbox/faults/webhooks", Some(rule))
            .await;
    }

    /// The next opportunity creates commit in the CRM but their answers never arrive: as many
    /// as one sync attempt makes, so it gives up after the CRM committed.
    pub async fn crm_dies_after_committing_opportunity_create(&self) {
        let (method, route) = self.crm_side.create_opportunity_route();
        self.fault(json!({
            "method": method,
            "route": route,
            "dropAfterCommit": true,
            "count": ADAPTER_RETRIES + 1,
        }))
        .await;
    }

    /// Faults that have not fired all their times yet.
    pub async fn faults_left(&self) -> Value {
        self.control(Method::GET, "/_sandbox/faults", None).await
    }

    // ---- deliveries, queue, processor ------------------------------------------------

    /// Every webhook delivery the sandbox made or is making.
    pub async fn deliveries(&self) -> Vec<Value> {
        self.control(Method::GET, "/_sandbox/webhooks/deliveries", None)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until no delivery is pending, twice in a row with the same number of deliveries
    /// (an event the sandbox has just raised may not be listed yet). Answers how many
    /// deliveries there are.
    pub async fn wait_for_deliveries(&self) -> usize {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut last: Option<usize> = None;
        loop {
            let all = self.deliveries().await;
            let pending = all.iter().any(|d| d["finished"] != Value::Bool(true));
            if !pending && last == Some(all.len()) {
                return all.len();
            }
            last = (!pending).then_some(all.len());
            assert!(
                tokio::time::Instant::now() < deadline,
                "webhook deliveries still pending after {PATIENCE:?}: {all:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// What reached the receiver, in order.
    pub fn captured(&self) -> Vec<Captured> {
        self.captured
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// POSTs straight to the receiver, as anyone on the internet could; answers the status.
    pub async fn post_to_receiver(&self, headers: &HeaderMap, body: Vec<u8>) -> u16 {
        let mut request = self.http.post(&self.receiver_url).body(body);
        for (name, value) in headers {
            if name != "host" && name != "content-length" {
                request = request.header(name.as_str(), value.as_bytes());
            }
        }
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("post to the receiver: {e}"))
            .status()
            .as_u16()
    }

    /// Messages in the sync queue, visible or in flight.
    pub async fn queue_depth(&self) -> u64 {
        self.consumer
            .depth()
            .await
            .unwrap_or_else(|e| panic!("queue depth: {e}"))
            .total()
    }

    /// Messages in the dead-letter queue.
    pub async fn dead_letter_depth(&self) -> u64 {
        self.dead_letters
            .depth()
            .await
            .unwrap_or_else(|e| panic!("dead-letter queue depth: {e}"))
            .total()
    }

    /// One receive of up to ten messages, processed as the Lambda event source mapping with
    /// `ReportBatchItemFailures` does: succeeded messages are deleted, failed ones become
    /// visible again at once (or after the `Retry-After` the service asked for, as the
    /// processor sets it); the queue moves a message to the dead-letter queue once it was
    /// received [`MAX_RECEIVES`] times.
    pub async fn process_batch(&self) -> QueueRun {
        let dead_before = self.dead_letter_depth().await;
        let received = self
            .consumer
            .receive(10, Duration::ZERO)
            .await
            .unwrap_or_else(|e| panic!("receive: {e}"));
        let processor = self.processor();
        let report = consume::run_batch(
            self.consumer.as_ref(),
            received,
            |m| {
                let (processor, body) = (&processor, m.body.clone());
                async move { processor.handle(&body).await }
            },
            || true,
            |_| Duration::ZERO,
        )
        .await
        .unwrap_or_else(|e| panic!("settling the batch: {e}"));
        QueueRun {
            succeeded: report.succeeded,
            failed: report.failed,
            errors: report.errors,
            dead_lettered: self.dead_letter_depth().await - dead_before,
        }
    }

    /// Processes batches until a receive comes back empty.
    pub async fn process_queue(&self) -> QueueRun {
        let mut run = QueueRun::default();
        for _ in 0..200 {
            let batch = self.process_batch().await;
            let done = batch.received() == 0;
            run.add(batch);
            if done {
                return run;
            }
        }
        panic!("the sync queue was not drained after 200 batches: {run:?}");
    }

    /// Waits for the webhooks, processes the queue, and again, until both are quiet: what a
    /// seller waits for after a change in Partner Center (the connector's own write-back
    /// raises a webhook too).
    pub async fn sync(&self) -> QueueRun {
        let mut run = QueueRun::default();
        for _ in 0..20 {
            let before = self.wait_for_deliveries().await;
            let batch = self.process_queue().await;
            let quiet = batch.received() == 0;
            run.add(batch);
            if quiet && self.wait_for_deliveries().await == before {
                return run;
            }
        }
        panic!("webhooks and the queue did not settle after 20 rounds: {run:?}");
    }

    // ---- what the seller sees in the CRM ---------------------------------------------

    async fn crm_rows(&self, set: &str) -> Vec<Value> {
        let body = self
            .control(Method::GET, &self.crm_side.control(set), None)
            .await;
        match self.kind {
            CrmKind::Dynamics => body["value"].as_array().cloned().unwrap_or_default(),
            CrmKind::Salesforce => body.as_array().cloned().unwrap_or_default(),
        }
    }

    async fn crm_row(&self, set: &str, id: &str) -> Option<Value> {
        let path = match self.kind {
            CrmKind::Dynamics => self.crm_side.control(&format!("{set}({id})")),
            CrmKind::Salesforce => self.crm_side.control(&format!("{set}/{id}")),
        };
        let (status, body) = self.try_control(Method::GET, &path, None).await;
        match status {
            200 => Some(body),
            404 => None,
            other => panic!("GET {path} answered {other}: {body}"),
        }
    }

    /// Every opportunity in the CRM.
    pub async fn opportunities(&self) -> Vec<CrmOpportunity> {
        let rows = self.crm_rows(self.crm_side.opportunities()).await;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.complete_opportunity(row).await);
        }
        out
    }

    async fn complete_opportunity(&self, row: Value) -> CrmOpportunity {
        let side = self.crm_side;
        let id = side.id_of(side.opportunities(), &row);
        let (contact, solutions) = match self.kind {
            CrmKind::Dynamics => {
                let solutions = self
                    .crm_rows("cosell_solutionlinks")
                    .await
                    .into_iter()
                    .filter(|s| s["_cosell_opportunityid_value"].as_str() == Some(&id))
                    .filter_map(|s| text(&s, "cosell_solutionid"))
                    .collect();
                (text(&row, "_parentcontactid_value"), solutions)
            }
            CrmKind::Salesforce => {
                let contact = self
                    .crm_rows("OpportunityContactRole")
                    .await
                    .into_iter()
                    .filter(|r| r["OpportunityId"].as_str() == Some(&id))
                    .max_by_key(|r| r["IsPrimary"].as_bool().unwrap_or(false))
                    .and_then(|r| text(&r, "ContactId"));
                let solutions = self
                    .crm_rows("Microsoft_Solution__c")
                    .await
                    .into_iter()
                    .filter(|s| s["Opportunity__c"].as_str() == Some(&id))
                    .filter_map(|s| text(&s, "Solution_Id__c"))
                    .collect();
                (contact, solutions)
            }
        };
        side.opportunity(row, contact, solutions)
    }

    /// The opportunities whose referral identifier is `referral_id`.
    pub async fn opportunities_for(&self, referral_id: &str) -> Vec<CrmOpportunity> {
        self.opportunities()
            .await
            .into_iter()
            .filter(|o| {
                o.referral_id
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case(referral_id))
            })
            .collect()
    }

    /// The one opportunity for `referral_id`; `None` when there is none, a panic when several.
    pub async fn opportunity_for(&self, referral_id: &str) -> Option<CrmOpportunity> {
        let mut found = self.opportunities_for(referral_id).await;
        assert!(
            found.len() <= 1,
            "{} opportunities for referral {referral_id}: {found:#?}",
            found.len()
        );
        found.pop()
    }

    /// The opportunity `id`, read as the seller sees it.
    pub async fn opportunity(&self, id: &str) -> Option<CrmOpportunity> {
        let row = self.crm_row(self.crm_side.opportunities(), id).await?;
        Some(self.complete_opportunity(row).await)
    }

    /// Every account in the CRM.
    pub async fn accounts(&self) -> Vec<CrmAccount> {
        self.crm_rows(self.crm_side.accounts())
            .await
            .iter()
            .map(|r| self.crm_side.account(r))
            .collect()
    }

    /// The account `id`; `None` when it does not exist.
    pub async fn account(&self, id: &str) -> Option<CrmAccount> {
        let row = self.crm_row(self.crm_side.accounts(), id).await?;
        Some(self.crm_side.account(&row))
    }

    /// The email of contact `id`.
    pub async fn contact_email(&self, id: &str) -> Option<String> {
        let (set, field) = match self.kind {
            CrmKind::Dynamics => ("contacts", "emailaddress1"),
            CrmKind::Salesforce => ("Contact", "Email"),
        };
        let row = self.crm_row(set, id).await?;
        text(&row, field)
    }

    /// Every lead in the CRM.
    pub async fn leads(&self) -> Vec<CrmLead> {
        self.crm_rows(self.crm_side.leads())
            .await
            .into_iter()
            .map(|r| self.crm_side.lead(r))
            .collect()
    }

    /// The CRM lead for `referral_id`, if any.
    pub async fn lead_for(&self, referral_id: &str) -> Option<CrmLead> {
        let mut found: Vec<CrmLead> = self
            .leads()
            .await
            .into_iter()
            .filter(|l| {
                l.referral_id
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case(referral_id))
            })
            .collect();
        assert!(
            found.len() <= 1,
            "several leads for {referral_id}: {found:#?}"
        );
        found.pop()
    }

    /// A seller creates an account in the CRM; answers its id.
    pub async fn seller_creates_account(
        &self,
        name: &str,
        postal_code: &str,
        country: &str,
    ) -> String {
        let set = self.crm_side.accounts();
        let row = self
            .control(
                Method::POST,
                &self.crm_side.control(set),
                Some(self.crm_side.account_body(name, postal_code, country)),
            )
            .await;
        let id = self.crm_side.id_of(set, &row);
        assert!(!id.is_empty(), "no id in the created account {row}");
        id
    }

    /// A seller creates an opportunity (not shared with Partner Center); answers its id.
    pub async fn seller_creates_opportunity(&self, name: &str) -> String {
        let account = self
            .seller_creates_account("Northwind", "10001", "US")
            .await;
        let set = self.crm_side.opportunities();
        let row = self
            .control(
                Method::POST,
                &self.crm_side.control(set),
                Some(self.crm_side.opportunity_body(name, &account)),
            )
            .await;
        let id = self.crm_side.id_of(set, &row);
        assert!(!id.is_empty(), "no id in the created opportunity {row}");
        id
    }

    /// A seller creates `count` opportunities for one account, each with Sync with Partner
    /// Center = yes but nothing else a referral needs (no solution): each ends with ✖ and an
    /// Audit line, without a Partner Center call. Answers their ids.
    pub async fn seller_marks_many_for_sync(&self, count: usize) -> Vec<String> {
        let account = self
            .seller_creates_account("Wide World Importers", "98052", "US")
            .await;
        let set = self.crm_side.opportunities();
        let mut ids = Vec::with_capacity(count);
        for n in 0..count {
            let mut body = self
                .crm_side
                .opportunity_body(&format!("Wide World deal {n}"), &account);
            match self.kind {
                CrmKind::Dynamics => body["cosell_syncwithpartnercenter"] = json!(true),
                CrmKind::Salesforce => body["Sync_with_Partner_Center__c"] = json!(true),
            }
            let row = self
                .control(Method::POST, &self.crm_side.control(set), Some(body))
                .await;
            ids.push(self.crm_side.id_of(set, &row));
        }
        ids
    }

    /// A seller deletes an opportunity.
    pub async fn seller_deletes_opportunity(&self, id: &str) {
        let set = self.crm_side.opportunities();
        let path = match self.kind {
            CrmKind::Dynamics => self.crm_side.control(&format!("{set}({id})")),
            CrmKind::Salesforce => self.crm_side.control(&format!("{set}/{id}")),
        };
        self.control(Method::DELETE, &path, None).await;
    }

    /// A seller shares a deal: an account, a contact, the opportunity with Sync with Partner
    /// Center = yes and its solution links, as the CRM's UI would create them. Answers the
    /// opportunity's id.
    pub async fn seller_shares(&self, share: Share<'_>) -> String {
        let account = self
            .seller_creates_account(share.customer, "0150", share.country)
            .await;
        let contact = if share.contact {
            let body = match self.kind {
                CrmKind::Dynamics => json!({
                    "firstname": "Kari", "lastname": "Nordmann",
                    "emailaddress1": format!("kari@{}.example", share.customer.to_lowercase().replace(' ', "")),
                    "parentcustomerid_account@odata.bind": format!("/accounts({account})")
                }),
                CrmKind::Salesforce => json!({
                    "FirstName": "Kari", "LastName": "Nordmann",
                    "Email": format!("kari@{}.example", share.customer.to_lowercase().replace(' ', "")),
                    "AccountId": account
                }),
            };
            let set = match self.kind {
                CrmKind::Dynamics => "contacts",
                CrmKind::Salesforce => "Contact",
            };
            let row = self
                .control(Method::POST, &self.crm_side.control(set), Some(body))
                .await;
            Some(self.crm_side.id_of(set, &row))
        } else {
            None
        };
        let opportunities = self.crm_side.opportunities();
        let mut body = self.crm_side.opportunity_body(share.name, &account);
        let help = share.help.map(|code| self.crm_side.help_value(code));
        match self.kind {
            CrmKind::Dynamics => {
                body["cosell_syncwithpartnercenter"] = json!(true);
                body["cosell_visibility"] = json!(share.visible);
                body["estimatedvalue"] = json!(share.deal_value);
                if let Some(h) = help {
                    body["cosell_microsofthelp"] = json!(h);
                }
                if let Some(c) = &contact {
                    body["parentcontactid@odata.bind"] = json!(format!("/contacts({c})"));
                }
            }
            CrmKind::Salesforce => {
                body["Sync_with_Partner_Center__c"] = json!(true);
                body["Referral_Visibility__c"] =
                    json!(if share.visible { "Visible" } else { "Private" });
                body["Amount"] = json!(share.deal_value);
                if let Some(h) = help {
                    body["How_can_Microsoft_help__c"] = json!(h);
                }
            }
        }
        let row = self
            .control(
                Method::POST,
                &self.crm_side.control(opportunities),
                Some(body),
            )
            .await;
        let id = self.crm_side.id_of(opportunities, &row);
        if let (CrmKind::Salesforce, Some(c)) = (self.kind, &contact) {
            self.control(
                Method::POST,
                &self.crm_side.control("OpportunityContactRole"),
                Some(json!({"OpportunityId": id, "ContactId": c, "IsPrimary": true})),
            )
            .await;
        }
        for solution in share.solutions {
            let (set, body) = match self.kind {
                CrmKind::Dynamics => (
                    "cosell_solutionlinks",
                    json!({
                        "cosell_solutionid": solution, "cosell_name": solution,
                        "cosell_opportunityid@odata.bind": format!("/opportunities({id})")
                    }),
                ),
                CrmKind::Salesforce => (
                    "Microsoft_Solution__c",
                    json!({"Solution_Id__c": solution, "Name": solution, "Opportunity__c": id}),
                ),
            };
            self.control(Method::POST, &self.crm_side.control(set), Some(body))
                .await;
        }
        id
    }

    /// A seller changes an opportunity's fields (the CRM's own names and values).
    pub async fn seller_edits(&self, id: &str, fields: Value) {
        let set = self.crm_side.opportunities();
        let path = match self.kind {
            CrmKind::Dynamics => self.crm_side.control(&format!("{set}({id})")),
            CrmKind::Salesforce => self.crm_side.control(&format!("{set}/{id}")),
        };
        self.control(Method::PATCH, &path, Some(fields)).await;
    }

    /// A seller removes the opportunity's customer contact (Dataverse: the contact lookup;
    /// Salesforce: its contact roles).
    pub async fn seller_removes_contact(&self, id: &str) {
        match self.kind {
            CrmKind::Dynamics => {
                self.seller_edits(id, json!({"parentcontactid@odata.bind": null}))
                    .await;
            }
            CrmKind::Salesforce => {
                for role in self
                    .crm_rows("OpportunityContactRole")
                    .await
                    .into_iter()
                    .filter(|r| r["OpportunityId"].as_str() == Some(id))
                {
                    let role_id = role["Id"].as_str().unwrap_or_default().to_string();
                    self.control(
                        Method::DELETE,
                        &self
                            .crm_side
                            .control(&format!("OpportunityContactRole/{role_id}")),
                        None,
                    )
                    .await;
                }
            }
        }
    }

    /// A seller renames an opportunity (keeping whatever marker it shows).
    pub async fn seller_renames(&self, id: &str, name: &str) {
        let field = self.crm_side.name_field();
        self.seller_edits(id, json!({ field: name })).await;
    }

    /// A seller changes the deal value.
    pub async fn seller_sets_deal_value(&self, id: &str, value: f64) {
        let field = self.crm_side.deal_value_field();
        self.seller_edits(id, json!({ field: value })).await;
    }

    /// A seller moves an opportunity to a stage: out of the hold stage to active, or closed.
    pub async fn seller_moves_to(&self, id: &str, stage: Stage) {
        let fields = match (self.kind, stage) {
            (CrmKind::Dynamics, Stage::Active) => json!({"statecode": 0, "statuscode": 1}),
            (CrmKind::Dynamics, Stage::OnHold) => json!({"statecode": 0, "statuscode": 2}),
            (CrmKind::Dynamics, Stage::Won) => json!({"statecode": 1, "statuscode": 3}),
            (CrmKind::Dynamics, Stage::Lost) => json!({"statecode": 2, "statuscode": 4}),
            (CrmKind::Salesforce, Stage::Active) => json!({"StageName": "Qualification"}),
            (CrmKind::Salesforce, Stage::OnHold) => json!({"StageName": "On Hold"}),
            (CrmKind::Salesforce, Stage::Won) => json!({"StageName": "Closed Won"}),
            (CrmKind::Salesforce, Stage::Lost) => json!({"StageName": "Closed Lost"}),
        };
        self.seller_edits(id, fields).await;
    }

    /// One run of the CRM change poller and the reconciliation, as the scheduled function runs
    /// them.
    pub async fn poll(&self) -> PollReport {
        let poller = Poller {
            crm: self.crm.as_ref(),
            pc: self.pc.as_ref(),
            store: self.store.as_ref(),
            queue: self.queue.as_ref(),
            options: &self.poller_options,
        };
        let (report, errors) = poller.run(self.options.clock.now()).await;
        assert!(errors.is_empty(), "the poll failed: {errors:?}");
        report
    }

    /// Polls and syncs until neither the poll nor the webhooks bring anything new: what a
    /// seller waits for after a change in the CRM.
    pub async fn settle(&self) -> QueueRun {
        let mut run = QueueRun::default();
        for _ in 0..20 {
            let report = self.poll().await;
            let batch = self.sync().await;
            let quiet =
                report.crm_enqueued + report.referrals_enqueued == 0 && batch.received() == 0;
            run.add(batch);
            if quiet {
                return run;
            }
        }
        panic!("the poll and the queue did not settle after 20 rounds: {run:?}");
    }

    /// The partner's referral carrying `crm_id` as `externalReferenceId`, if any; panics when
    /// there are several.
    pub async fn referral_for_opportunity(&self, crm_id: &str) -> Option<Value> {
        let mine: Vec<Value> = self
            .referrals()
            .await
            .into_iter()
            .filter(|(owner, r)| {
                owner != "microsoft" && r["externalReferenceId"].as_str() == Some(crm_id)
            })
            .map(|(_, r)| r)
            .collect();
        assert!(
            mine.len() <= 1,
            "several referrals carry {crm_id}: {mine:#?}"
        );
        mine.into_iter().next()
    }

    // ---- counters and the connector's own records ------------------------------------

    /// Request counts per route since the sandbox started.
    pub async fn stats(&self) -> Calls {
        let body = self.control(Method::GET, "/_sandbox/stats", None).await;
        Calls(
            body.as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    /// Calls to the Partner Center Referrals API.
    pub async fn partner_center_calls(&self) -> Calls {
        let all = self.stats().await;
        Calls(
            all.0
                .into_iter()
                .filter(|(k, _)| k.contains(" /v1.0/engagements/referrals"))
                .collect(),
        )
    }

    /// Calls to the CRM's API (sign-in excluded).
    pub async fn crm_calls(&self) -> Calls {
        let side = self.crm_side;
        let all = self.stats().await;
        Calls(
            all.0
                .into_iter()
                .filter(|(k, _)| side.is_api_call(k) && !k.contains("/oauth2/"))
                .collect(),
        )
    }

    /// Token requests, per token endpoint.
    pub async fn sign_ins(&self) -> Calls {
        let all = self.stats().await;
        Calls(
            all.0
                .into_iter()
                .filter(|(k, _)| k.contains("/oauth2/"))
                .collect(),
        )
    }

    /// The connector's history of a referral, newest first.
    pub async fn journal(&self, referral_id: &str) -> Vec<JournalEntry> {
        self.store
            .journal(referral_id, 100)
            .await
            .unwrap_or_else(|e| panic!("journal of {referral_id}: {e}"))
    }

    /// The idempotency key the processor claims for the referral's current version (its eTag
    /// and its related referral's).
    pub async fn current_sync_key(&self, referral_id: &str) -> String {
        let own = self.referral(referral_id).await;
        let related = self.related_referral(referral_id).await;
        format!(
            "pc:{}:{}:{}",
            referral_id.to_ascii_lowercase(),
            own["eTag"].as_str().unwrap_or(""),
            related
                .as_ref()
                .and_then(|r| r["eTag"].as_str())
                .unwrap_or("")
        )
    }

    /// A worker claimed the referral's current version and died: its claim is still in
    /// progress, but its protection ran out five minutes ago. Answers the key.
    pub async fn crashed_worker_claims(&self, referral_id: &str) -> String {
        let key = self.current_sync_key(referral_id).await;
        let now = Utc::now();
        let claimed = self
            .store
            .claim(
                &key,
                now - chrono::Duration::minutes(10),
                now - chrono::Duration::minutes(5),
            )
            .await
            .unwrap_or_else(|e| panic!("claim {key}: {e}"));
        assert_eq!(claimed, Claim::Acquired, "the key was free");
        key
    }

    /// Whether the processor finished the work behind `key`: a new claim on it finds it done.
    pub async fn sync_key_completed(&self, key: &str) -> bool {
        let now = Utc::now();
        let claim = self
            .store
            .claim(key, now, now + chrono::Duration::minutes(5))
            .await
            .unwrap_or_else(|e| panic!("claim {key}: {e}"));
        if claim == Claim::Acquired {
            let _ = self.store.release(key).await;
        }
        claim == Claim::Completed
    }
}

/// The fields whose values differ between two reads of a record, CRM-maintained system
/// fields left out.
pub fn changed_fields(side: CrmSide, before: &Value, after: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (b, a) = (
        before.as_object().unwrap_or(&empty),
        after.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<String> = b
        .keys()
        .chain(a.keys())
        .filter(|k| !side.system_fields().contains(&k.as_str()))
        .filter(|k| b.get(*k) != a.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The connector's log lines on stderr when `TEST_LOG` is set (an `EnvFilter`, e.g.
/// `TEST_LOG=cosell_shared=debug`); silent otherwise.
fn init_tracing() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// The Partner Center client of the stack, signed in as `cosell auth login` would, keeping its
/// rotated refresh tokens in `tokens` as `cosell local` does in its data directory.
async fn partner_center(sandbox: &Sandbox, tokens: Arc<FileTokenStore>) -> PartnerCenterClient {
    let refresh = crate::sandbox_refresh_token(sandbox.base_url(), ADMIN_USER).await;
    tokens
        .sign_in(&refresh)
        .await
        .unwrap_or_else(|e| panic!("keep the sign-in: {e}"));
    let auth = crate::sandbox_auth(sandbox.base_url(), UserCredential::RefreshToken(refresh));
    let config = PartnerCenterConfig {
        api_base_url: sandbox.base_url().to_string(),
        webhooks_base_url: sandbox.base_url().to_string(),
        timeout: Duration::from_secs(10),
        retry: crate::fast_retries(ADAPTER_RETRIES),
    };
    PartnerCenterClient::with_token_store(config, auth, Some(tokens))
        .unwrap_or_else(|e| panic!("Partner Center client: {e}"))
}

fn dataverse(sandbox: &Sandbox, page_size: Option<usize>) -> DataverseCrm {
    let mut config = DataverseConfig::new(
        sandbox.base_url(),
        "contoso-tenant",
        CLIENT_ID,
        CLIENT_SECRET,
    );
    config.authority_url = sandbox.base_url().to_string();
    config.retry = crate::fast_retries(ADAPTER_RETRIES);
    if let Some(n) = page_size {
        config.page_size = n;
    }
    config.timeout = Duration::from_secs(10);
    // The sandbox's schema has the opt-in columns: scenarios use them.
    config.fields.solution_area = Some("cosell_solutionarea".into());
    config.fields.solution_play = Some("cosell_solutionplay".into());
    config.fields.partner_role = Some("cosell_partnerrole".into());
    config.fields.marketplace_intent = Some("cosell_marketplaceintent".into());
    DataverseCrm::new(config).unwrap_or_else(|e| panic!("Dataverse adapter: {e}"))
}

async fn salesforce(
    sandbox: &Sandbox,
    http: &reqwest::Client,
    sign_in: SalesforceSignIn,
    batch_size: Option<usize>,
) -> SalesforceCrm {
    let app: Value = http
        .get(sandbox.url("/_sandbox/salesforce/connected-app"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("connected app: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("connected app body: {e}"));
    let s = |k: &str| {
        app[k]
            .as_str()
            .unwrap_or_else(|| panic!("connected app without {k}"))
            .to_string()
    };
    let auth = match sign_in {
        SalesforceSignIn::JwtBearer => SalesforceAuth::JwtBearer {
            consumer_key: s("consumerKey"),
            username: s("username"),
            private_key_pem: s("privateKeyPem").into(),
            audience: None,
        },
        SalesforceSignIn::ClientCredentials => SalesforceAuth::ClientCredentials {
            client_id: s("consumerKey"),
            client_secret: s("consumerSecret").into(),
        },
    };
    let mut config = SalesforceConfig::new(auth);
    config.login_url = s("loginUrl");
    config.retry = crate::fast_retries(ADAPTER_RETRIES);
    config.query_batch_size = batch_size.and_then(|n| u32::try_from(n).ok());
    config.timeout = Duration::from_secs(10);
    config.fields.solution_area = Some("Solution_Area__c".into());
    config.fields.solution_play = Some("Solution_Play__c".into());
    config.fields.partner_role = Some("Partner_Role__c".into());
    config.fields.marketplace_intent = Some("Marketplace_Intent__c".into());
    SalesforceCrm::new(config).unwrap_or_else(|e| panic!("Salesforce adapter: {e}"))
}

/// The state table with the template's keys; answers its name.
pub async fn create_state_table(dynamodb: &aws_sdk_dynamodb::Client) -> &'static str {
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap_or_else(|e| panic!("attribute {name}: {e}"))
    };
    let key = |name: &str, key_type: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .unwrap_or_else(|e| panic!("key {name}: {e}"))
    };
    dynamodb
        .create_table()
        .table_name(TABLE)
        .attribute_definitions(attribute("pk"))
        .attribute_definitions(attribute("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateTable: {e}"));
    TABLE
}

/// A FIFO queue `{name}.fifo` with explicit deduplication ids, and its dead-letter queue
/// `{name}-dlq.fifo` after `max_receive_count` receives, as `template.yaml` declares the sync
/// queue; answers their URLs.
pub async fn create_fifo_queues(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    visibility_timeout: Duration,
    max_receive_count: u32,
) -> (String, String) {
    let create = |name: String, redrive_policy: Option<String>| async move {
        let mut request = sqs
            .create_queue()
            .queue_name(&name)
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_timeout.as_secs().to_string(),
            );
        if let Some(policy) = redrive_policy {
            request = request.attributes(QueueAttributeName::RedrivePolicy, policy);
        }
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateQueue {name}: {e}"))
            .queue_url
            .unwrap_or_else(|| panic!("CreateQueue {name} returned no URL"))
    };
    let dlq_url = create(format!("{name}-dlq.fifo"), None).await;
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetQueueAttributes: {e}"))
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_else(|| panic!("the dead-letter queue has no ARN"));
    let policy = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count});
    let url = create(format!("{name}.fifo"), Some(policy.to_string())).await;
    (url, dlq_url)
}

/// A stack's store and queues.
struct BackendParts {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    consumer: Arc<dyn QueueConsumer>,
    dead_letters: Arc<dyn QueueConsumer>,
    moto: Option<Moto>,
    data_dir: Option<tempfile::TempDir>,
    /// The settings that point `cosell` at this store and queue.
    cli_env: Vec<(String, String)>,
}

/// The state table and the sync queue with its dead-letter queue, as the template declares
/// them, in a fresh moto.
async fn aws_backend() -> BackendParts {
    let moto = Moto::start()
        .await
        .unwrap_or_else(|e| panic!("cannot start moto: {e}"));
    let dynamodb = moto.dynamodb();
    let table_name = create_state_table(&dynamodb).await.to_string();
    let table_for_cli = table_name.clone();
    let store = Arc::new(DynamoStore::new(
        dynamodb,
        DynamoStoreConfig {
            table_name,
            retention: cosell_shared::store::DEFAULT_RETENTION,
        },
    ));
    let sqs = moto.sqs();
    let (queue_url, dlq_url) = create_sync_queues(&sqs).await;
    let cli_env = vec![
        ("COSELL_TABLE_NAME".to_string(), table_for_cli),
        ("COSELL_QUEUE_URL".to_string(), queue_url.clone()),
        ("AWS_ENDPOINT_URL".to_string(), moto.endpoint().to_string()),
        (
            "AWS_REGION".to_string(),
            cosell_localaws::REGION.to_string(),
        ),
        ("AWS_ACCESS_KEY_ID".to_string(), "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), "testing".to_string()),
    ];
    let queue = Arc::new(SqsQueue::new(sqs.clone(), queue_url));
    BackendParts {
        store,
        queue: queue.clone(),
        consumer: queue,
        dead_letters: Arc::new(SqsQueue::new(sqs, dlq_url)),
        moto: Some(moto),
        data_dir: None,
        cli_env,
    }
}

/// The sync queue and its dead-letter queue as the template declares them (FIFO, explicit
/// deduplication ids, redrive after [`MAX_RECEIVES`]); answers their URLs.
pub async fn create_sync_queues(sqs: &aws_sdk_sqs::Client) -> (String, String) {
    create_fifo_queues(sqs, QUEUE, Duration::from_secs(300), MAX_RECEIVES).await
}

/// The embedded store and queue, as `cosell local` opens them, in a temporary directory.
fn embedded_backend() -> BackendParts {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("a temporary directory: {e}"));
    let store = SqliteStore::open(&dir.path().join("state.sqlite3"))
        .unwrap_or_else(|e| panic!("the embedded store: {e}"));
    let queue_path = dir.path().join("queue.sqlite3");
    let settings = EmbeddedQueueSettings {
        max_receive_count: MAX_RECEIVES,
        dead_letter_queue: Some("sync-dlq".into()),
        ..EmbeddedQueueSettings::default()
    };
    let queue = Arc::new(
        EmbeddedQueue::open(&queue_path, "sync", settings.clone())
            .unwrap_or_else(|e| panic!("the embedded queue: {e}")),
    );
    let dead_letters = Arc::new(
        EmbeddedQueue::open(
            &queue_path,
            "sync-dlq",
            EmbeddedQueueSettings {
                dead_letter_queue: None,
                ..settings
            },
        )
        .unwrap_or_else(|e| panic!("the embedded dead-letter queue: {e}")),
    );
    BackendParts {
        store: Arc::new(store),
        queue: queue.clone(),
        consumer: queue,
        dead_letters,
        moto: None,
        data_dir: Some(dir),
        cli_env: Vec::new(),
    }
}
