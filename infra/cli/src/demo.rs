//! `cosell local --demo`: both directions on the sandbox. Microsoft shares a few referrals, and
//! once each has landed a table shows where it went in the CRM; then sellers work in the CRM
//! (accept one, share a new deal, share one missing what Partner Center needs), and once the
//! poller has found their changes a second table shows what Partner Center made of them.

use std::sync::Arc;
use std::time::Duration;

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use cosell_shared::crm::{Crm, CrmKind, OpportunityState};
use cosell_shared::store::{JournalEntry, RecordKind, Store};
use serde_json::{Value, json};

/// How long the demo waits for every referral to land before showing what it has.
const PATIENCE: Duration = Duration::from_secs(60);

/// One referral the demo shares.
struct Seed {
    kind: &'static str,
    label: &'static str,
    partial: Value,
}

fn seeds() -> Vec<Seed> {
    vec![
        Seed {
            kind: "co-sell",
            label: "co-sell",
            partial: json!({
                "name": "Contoso: data platform modernisation",
                "customerProfile": {
                    "name": "Contoso Ltd",
                    "address": {"city": "Oslo", "postalCode": "0150", "country": "NO"},
                    "team": [{"firstName": "Kari", "lastName": "Nordmann", "email": "kari@contoso.example"}]
                },
                "details": {"dealValue": 42000, "currency": "USD",
                            "requirements": {"solutions": [{"id": "SOL-DATA-1"}]}}
            }),
        },
        Seed {
            kind: "co-sell",
            label: "co-sell",
            partial: json!({
                "name": "Fabrikam: Teams Phone rollout",
                "customerProfile": {
                    "name": "Fabrikam Inc",
                    "address": {"city": "Seattle", "postalCode": "98052", "country": "US"},
                    "team": [{"firstName": "Avery", "lastName": "Howard", "email": "avery@fabrikam.example"}]
                },
                "details": {"dealValue": 18500, "currency": "USD"}
            }),
        },
        Seed {
            kind: "pipeline",
            label: "pipeline sharing",
            partial: json!({
                "name": "Northwind: Azure migration",
                "customerProfile": {
                    "name": "Northwind Traders",
                    "address": {"city": "Utrecht", "postalCode": "3511", "country": "NL"}
                }
            }),
        },
        Seed {
            kind: "lead",
            label: "lead",
            partial: json!({
                "name": "Adventure Works: Dynamics 365 trial",
                "customerProfile": {
                    "name": "Adventure Works",
                    "address": {"city": "Budapest", "postalCode": "1051", "country": "HU"}
                }
            }),
        },
    ]
}

/// Both halves, each ending in its table.
pub async fn run(sandbox_url: String, store: Arc<dyn Store>, crm: Arc<dyn Crm>) {
    let accepted = match seed_and_show(&sandbox_url, store.as_ref(), crm.as_ref()).await {
        Ok((table, first)) => {
            println!("\nWhere each referral landed:\n{table}");
            first
        }
        Err(why) => {
            eprintln!("The demo could not finish: {why}");
            return;
        }
    };
    println!("\nNow sellers work in the CRM; the poller takes their changes to Partner Center…");
    match sellers_act_and_show(&sandbox_url, store.as_ref(), crm.kind(), accepted).await {
        Ok(table) => {
            println!("\nWhat sellers did in the CRM, and what Partner Center shows:\n{table}")
        }
        Err(why) => {
            eprintln!("The demo could not finish: {why}");
            return;
        }
    }
    println!(
        "\nThe sandbox keeps running: share more with POST {sandbox_url}/_sandbox/partner-center/incoming?kind=co-sell"
    );
}

/// Answers the table and the first co-sell referral's (id, CRM id), for a seller to accept.
async fn seed_and_show(
    sandbox_url: &str,
    store: &dyn Store,
    crm: &dyn Crm,
) -> Result<(Table, Option<(String, String)>), String> {
    let http = reqwest::Client::new();
    let mut shared = Vec::new();
    for seed in seeds() {
        let url = format!(
            "{sandbox_url}/_sandbox/partner-center/incoming?kind={}",
            seed.kind
        );
        let response = http
            .post(&url)
            .json(&seed.partial)
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status();
        let referral: Value = response
            .json()
            .await
            .map_err(|e| format!("POST {url} answered {status}: {e}"))?;
        let id = referral["id"]
            .as_str()
            .ok_or_else(|| format!("POST {url} answered {status} without an id: {referral}"))?
            .to_string();
        println!("Microsoft shared {} referral {id}", seed.label);
        shared.push((seed, id));
    }

    // Landed = the sync wrote its first journal line for the referral.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut landed: Vec<Option<JournalEntry>> = vec![None; shared.len()];
    while landed.iter().any(Option::is_none) && tokio::time::Instant::now() < deadline {
        for (i, (_, id)) in shared.iter().enumerate() {
            if landed[i].is_none() {
                landed[i] = store
                    .journal(id, 1)
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .next();
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        // Fits the terminal (long outcomes wrap); unbounded when the output is not a terminal.
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["Referral", "Type", "In the CRM", "CRM record", "Outcome"]);
    let mut first_co_sell = None;
    for ((seed, id), entry) in shared.iter().zip(landed) {
        let name = seed.partial["name"].as_str().unwrap_or_default();
        let link = store
            .link_by_referral(id)
            .await
            .map_err(|e| e.to_string())?;
        if let (None, "co-sell", Some(link)) = (&first_co_sell, seed.kind, &link) {
            first_co_sell = Some((id.clone(), link.crm_id.clone()));
        }
        let (where_, record) = match &link {
            Some(link) => match link.record {
                RecordKind::Opportunity => {
                    let opportunity = crm
                        .get_opportunity(&link.crm_id)
                        .await
                        .map_err(|e| e.to_string())?;
                    let title = opportunity
                        .as_ref()
                        .and_then(|o| o.fields.name.clone())
                        .unwrap_or_default();
                    let stage = opportunity
                        .as_ref()
                        .and_then(|o| o.fields.state.as_ref())
                        .map(|s| format!(", {}", stage_name(s)))
                        .unwrap_or_default();
                    (
                        format!("opportunity{stage}"),
                        format!("{title}\n{}", link.crm_id),
                    )
                }
                RecordKind::Lead => ("lead".to_string(), link.crm_id.clone()),
            },
            None => ("—".to_string(), String::new()),
        };
        let outcome = match entry {
            Some(e) => e.message,
            None => "not synced yet (still in the queue?)".to_string(),
        };
        table.add_row([
            format!("{name}\n{id}"),
            seed.label.to_string(),
            where_,
            record,
            outcome,
        ]);
    }
    Ok((table, first_co_sell))
}

/// A seller's request to the sandbox's CRM control API (as the CRM's UI would make it).
struct Seller {
    http: reqwest::Client,
    base: String,
    kind: CrmKind,
}

impl Seller {
    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, String> {
        let url = self.url(path);
        let response = self
            .http
            .request(method.clone(), &url)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("{method} {url} answered {status}: {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a row and answers its id.
    async fn create(&self, set: &str, body: Value) -> Result<String, String> {
        let row = self.send(reqwest::Method::POST, set, body).await?;
        let key = match self.kind {
            CrmKind::Salesforce => "Id".to_string(),
            CrmKind::Dynamics => match set {
                "opportunities" => "opportunityid".to_string(),
                // `accounts` → `accountid`, `cosell_solutionlinks` → `cosell_solutionlinkid`…
                other => format!("{}id", other.trim_end_matches('s')),
            },
        };
        row[key.as_str()]
            .as_str()
            .or_else(|| row["id"].as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("the new {set} row has no id: {row}"))
    }

    async fn edit_opportunity(&self, id: &str, body: Value) -> Result<(), String> {
        let path = match self.kind {
            CrmKind::Dynamics => format!("opportunities({id})"),
            CrmKind::Salesforce => format!("Opportunity/{id}"),
        };
        self.send(reqwest::Method::PATCH, &path, body)
            .await
            .map(|_| ())
    }

    /// Moves an opportunity out of the hold stage.
    async fn accept(&self, id: &str) -> Result<(), String> {
        let body = match self.kind {
            CrmKind::Dynamics => json!({"statecode": 0, "statuscode": 1}),
            CrmKind::Salesforce => json!({"StageName": "Qualification"}),
        };
        self.edit_opportunity(id, body).await
    }

    /// A new deal with Sync with Partner Center = yes: an account in `country`, and, when
    /// `complete`, a contact, Microsoft's help asked for and a solution. Answers its id.
    async fn share(
        &self,
        name: &str,
        customer: &str,
        country: &str,
        complete: bool,
    ) -> Result<String, String> {
        let dynamics = self.kind == CrmKind::Dynamics;
        let account = if dynamics {
            self.create("accounts", json!({"name": customer, "address1_postalcode": "0150", "address1_country": country})).await?
        } else {
            self.create(
                "Account",
                json!({"Name": customer, "BillingPostalCode": "0150", "BillingCountry": country}),
            )
            .await?
        };
        let email = format!("buyer@{}.example", customer.to_lowercase().replace(' ', ""));
        let contact = match (complete, dynamics) {
            (false, _) => None,
            (true, true) => Some(self.create("contacts", json!({"firstname": "Ingrid", "lastname": "Berg", "emailaddress1": email, "parentcustomerid_account@odata.bind": format!("/accounts({account})")})).await?),
            (true, false) => Some(self.create("Contact", json!({"FirstName": "Ingrid", "LastName": "Berg", "Email": email, "AccountId": account})).await?),
        };
        let opportunity = if dynamics {
            let mut body = json!({
                "name": name, "customerid_account@odata.bind": format!("/accounts({account})"),
                "estimatedvalue": 60000, "cosell_syncwithpartnercenter": true, "cosell_visibility": true
            });
            if let Some(c) = &contact {
                body["parentcontactid@odata.bind"] = json!(format!("/contacts({c})"));
                body["cosell_microsofthelp"] = json!("ProofOfConceptOrDemo");
            }
            self.create("opportunities", body).await?
        } else {
            let mut body = json!({
                "Name": name, "AccountId": account, "StageName": "Qualification", "CloseDate": "2030-06-30",
                "Amount": 60000, "Sync_with_Partner_Center__c": true, "Referral_Visibility__c": "Visible"
            });
            if contact.is_some() {
                body["How_can_Microsoft_help__c"] = json!("Proof of concept or demo");
            }
            self.create("Opportunity", body).await?
        };
        if let (Some(c), false) = (&contact, dynamics) {
            self.create(
                "OpportunityContactRole",
                json!({"OpportunityId": opportunity, "ContactId": c, "IsPrimary": true}),
            )
            .await?;
        }
        if complete {
            if dynamics {
                self.create("cosell_solutionlinks", json!({"cosell_solutionid": "SOL-TAILSPIN-1", "cosell_name": "Azure migration", "cosell_opportunityid@odata.bind": format!("/opportunities({opportunity})")})).await?;
            } else {
                self.create("Microsoft_Solution__c", json!({"Solution_Id__c": "SOL-TAILSPIN-1", "Name": "Azure migration", "Opportunity__c": opportunity})).await?;
            }
        }
        Ok(opportunity)
    }
}

/// Sellers accept the first co-sell referral, share a complete deal and one that Partner Center
/// would refuse; once the poller and the processor are through, the table.
async fn sellers_act_and_show(
    sandbox_url: &str,
    store: &dyn Store,
    kind: CrmKind,
    accepted: Option<(String, String)>,
) -> Result<Table, String> {
    let seller = Seller {
        http: reqwest::Client::new(),
        base: match kind {
            CrmKind::Dynamics => format!("{sandbox_url}/_sandbox/dataverse"),
            CrmKind::Salesforce => format!("{sandbox_url}/_sandbox/salesforce"),
        },
        kind,
    };
    let mut rows: Vec<(String, &str, String)> = Vec::new();
    if let Some((referral_id, crm_id)) = &accepted {
        seller.accept(crm_id).await?;
        rows.push((
            crm_id.clone(),
            "moved it out of the hold stage",
            referral_id.clone(),
        ));
    }
    let shared = seller
        .share("Tailspin: cloud migration", "Tailspin Toys", "NO", true)
        .await?;
    rows.push((shared, "set Sync with Partner Center = yes", String::new()));
    let incomplete = seller
        .share("Litware: data estate", "Litware", "Norway", false)
        .await?;
    rows.push((
        incomplete,
        "set Sync with Partner Center = yes (no solution, country \"Norway\")",
        String::new(),
    ));

    // Done = the sync journaled something after the seller's change: under the referral once
    // the opportunity is linked, under the CRM record while it is not.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let started = chrono::Utc::now();
    let mut outcomes: Vec<Option<(String, String)>> = vec![None; rows.len()];
    while outcomes.iter().any(Option::is_none) && tokio::time::Instant::now() < deadline {
        for (i, (crm_id, _, referral_id)) in rows.iter().enumerate() {
            if outcomes[i].is_some() {
                continue;
            }
            let referral = match store.link_by_crm(crm_id).await.map_err(|e| e.to_string())? {
                Some(link) => Some(link.referral_id),
                None => (!referral_id.is_empty()).then(|| referral_id.clone()),
            };
            let key = referral.clone().unwrap_or_else(|| format!("crm:{crm_id}"));
            // The first line after the seller's change is its outcome; later ones (Microsoft's
            // referral announcing itself) are other syncs.
            let recent = store.journal(&key, 20).await.map_err(|e| e.to_string())?;
            if let Some(entry) = recent.into_iter().rev().find(|e| e.at >= started) {
                outcomes[i] = Some((referral.unwrap_or_default(), entry.message));
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "Opportunity",
            "The seller",
            "Partner Center referral",
            "Outcome",
        ]);
    for ((crm_id, did, _), outcome) in rows.iter().zip(outcomes) {
        let (referral, message) = outcome.unwrap_or_else(|| {
            (
                String::new(),
                "not synced yet (the poller runs every few seconds)".to_string(),
            )
        });
        let referral = if referral.is_empty() {
            "—".to_string()
        } else {
            referral
        };
        table.add_row([crm_id.clone(), did.to_string(), referral, message]);
    }
    Ok(table)
}

fn stage_name(state: &OpportunityState) -> &'static str {
    match state {
        OpportunityState::Active => "open",
        OpportunityState::OnHold => "on hold",
        OpportunityState::Won => "won",
        OpportunityState::Lost => "lost",
    }
}
