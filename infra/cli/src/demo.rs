//! `cosell local --demo`: Microsoft shares a few referrals in the sandbox, and once each has
//! landed, a table shows where it went in the CRM.

use std::sync::Arc;
use std::time::Duration;

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use cosell_shared::crm::{Crm, OpportunityState};
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

/// Shares the referrals, waits for each to land, prints the table.
pub async fn run(sandbox_url: String, store: Arc<dyn Store>, crm: Arc<dyn Crm>) {
    match seed_and_show(&sandbox_url, store.as_ref(), crm.as_ref()).await {
        Ok(table) => {
            println!("\nWhere each referral landed:\n{table}");
            println!(
                "\nThe sandbox keeps running: share more with POST {sandbox_url}/_sandbox/partner-center/incoming?kind=co-sell"
            );
        }
        Err(why) => eprintln!("The demo could not finish: {why}"),
    }
}

async fn seed_and_show(
    sandbox_url: &str,
    store: &dyn Store,
    crm: &dyn Crm,
) -> Result<Table, String> {
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
    for ((seed, id), entry) in shared.iter().zip(landed) {
        let name = seed.partial["name"].as_str().unwrap_or_default();
        let link = store
            .link_by_referral(id)
            .await
            .map_err(|e| e.to_string())?;
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
