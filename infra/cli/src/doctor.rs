//! `cosell doctor`: what an admin runs before go-live and whenever something is wrong. Every part
//! the connector relies on is checked the way the connector uses it (the settings, both
//! sign-ins, the three Partner Center APIs' answers, each CRM column and table, the store and the
//! queue) and reported ✔ or ✖ with the fix. Reads only: the one write is a rotated refresh
//! token, kept where the connector keeps it.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use cosell_shared::config::Config;
use cosell_shared::crm::CrmKind;
use cosell_shared::crm::schema::{CrmSchema, ItemState};
use cosell_shared::partner_center::http::PartnerCenterClient;
use cosell_shared::partner_center::{PartnerCenter, PartnerCenterError};
use cosell_shared::queue::QueueConsumer;
use cosell_shared::queue::embedded::{EmbeddedQueue, EmbeddedQueueSettings};
use cosell_shared::queue::sqs::SqsQueue;
use cosell_shared::registrar;
use cosell_shared::store::Store;
use cosell_shared::store::sqlite::SqliteStore;
use cosell_shared::wiring;
use serde::Serialize;

use crate::crm_setup::crm_name;
use crate::local::{DEAD_LETTER_QUEUE_NAME, QUEUE_NAME};
use crate::resolve::{Resolved, Sources, resolve};
use crate::settings::Settings;

/// How far back the Referrals API read goes (its referrals' currencies are checked too).
const REFERRALS_READ_DAYS: i64 = 7;

/// What `cosell doctor` was asked to check.
#[derive(Debug, Clone, Default)]
pub struct DoctorOptions {
    pub sources: Sources,
    /// The data directory of `cosell local` (the embedded store and queue).
    pub data_dir: PathBuf,
    /// The URL the webhook registration should point at (else `COSELL_WEBHOOK_URL`).
    pub webhook_url: Option<String>,
}

/// One check: what, whether it passed, what was found, and what to do when it did not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Every check, in the order run; `ok` only when all passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Report {
    /// One line per check: ✔ or ✖, the name, what was found and, for a ✖, the fix.
    pub fn write_text(&self, out: &mut dyn Write) {
        for c in &self.checks {
            let mark = if c.ok { "✔" } else { "✖" };
            let _ = match &c.fix {
                Some(fix) => writeln!(out, "{mark} {}: {} → {fix}", c.name, c.detail),
                None => writeln!(out, "{mark} {}: {}", c.name, c.detail),
            };
        }
        let failed = self.checks.iter().filter(|c| !c.ok).count();
        let _ = if failed == 0 {
            writeln!(out, "All {} checks passed.", self.checks.len())
        } else {
            writeln!(
                out,
                "{failed} of {} checks failed (✖ above, each with its fix).",
                self.checks.len()
            )
        };
    }
}

/// Runs every check; a failing one does not stop the others unless they depend on it.
pub async fn run(options: DoctorOptions, settings: Settings) -> Report {
    let mut checks = Vec::new();
    match resolve(settings, &options.sources).await {
        Err(e) => checks.push(Check::fail(
            "settings",
            e.to_string(),
            "correct the setting named, then run cosell doctor again",
        )),
        Ok(resolved) => {
            checks.push(Check::pass("settings", describe_settings(&resolved.config)));
            let webhook_url = options.webhook_url.clone().or_else(|| {
                resolved
                    .settings
                    .get("COSELL_WEBHOOK_URL")
                    .map(str::to_string)
            });
            let currencies = partner_center(&resolved, webhook_url.as_deref(), &mut checks).await;
            crm(&resolved.config, &currencies, &mut checks).await;
            store_and_queue(&resolved, &options, &mut checks).await;
        }
    }
    Report {
        ok: checks.iter().all(|c| c.ok),
        checks,
    }
}

fn describe_settings(config: &Config) -> String {
    let backend = match (&config.aws.table_name, &config.aws.queue_url) {
        (Some(t), Some(q)) => format!("DynamoDB table {t} and SQS queue {q}"),
        _ => "the embedded store and queue".to_string(),
    };
    format!(
        "valid: {}, Partner Center at {}, {backend}",
        crm_name(config.crm.kind()),
        config.partner_center.api_base_url
    )
}

const SIGN_IN_FIX: &str = "sign the Referral admin in with `cosell auth login` (interactive, with MFA; the password grant cannot pass it)";

/// The sign-in, the Webhooks API registration and a Referrals API read; answers the currencies
/// of the referrals read.
async fn partner_center(
    resolved: &Resolved,
    webhook_url: Option<&str>,
    checks: &mut Vec<Check>,
) -> BTreeSet<String> {
    let mut currencies = BTreeSet::new();
    let client = match wiring::partner_center_client(&resolved.config, resolved.tokens.clone()) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            checks.push(Check::fail(
                "Partner Center sign-in",
                e.to_string(),
                "correct the COSELL_PC_* settings",
            ));
            return currencies;
        }
    };
    let signed_in = sign_in(&client).await;
    let blocked = !signed_in.ok;
    checks.push(signed_in);
    if blocked {
        for name in [
            "Partner Center webhook registration",
            "Partner Center referrals",
        ] {
            checks.push(Check::fail(
                name,
                "not checked: there is no Partner Center sign-in",
                "fix the sign-in first",
            ));
        }
        return currencies;
    }
    checks.push(registration(&client, webhook_url).await);
    let since = Utc::now() - chrono::Duration::days(REFERRALS_READ_DAYS);
    checks.push(match client.list_changed_since(since).await {
        Ok(referrals) => {
            currencies.extend(
                referrals
                    .iter()
                    .filter_map(|r| r.details.as_ref()?.currency.as_deref())
                    .map(|c| c.trim().to_ascii_uppercase())
                    .filter(|c| !c.is_empty()),
            );
            Check::pass(
                "Partner Center referrals",
                format!(
                    "a Referrals API read: {} referrals changed in the last {REFERRALS_READ_DAYS} days",
                    referrals.len()
                ),
            )
        }
        Err(e) => Check::fail(
            "Partner Center referrals",
            e.to_string(),
            pc_fix(&e, "the Referral admin needs the Referral admin role in Partner Center"),
        ),
    });
    currencies
}

fn pc_fix(e: &PartnerCenterError, otherwise: &str) -> String {
    match e {
        PartnerCenterError::Auth { .. } => SIGN_IN_FIX.to_string(),
        e if e.is_transient() => {
            "Partner Center is unavailable for now: run cosell doctor again later".to_string()
        }
        _ => otherwise.to_string(),
    }
}

async fn sign_in(client: &PartnerCenterClient) -> Check {
    const NAME: &str = "Partner Center sign-in";
    match client.signed_in_user().await {
        Err(e) => Check::fail(NAME, e.to_string(), pc_fix(&e, SIGN_IN_FIX)),
        Ok(None) => Check::pass(
            NAME,
            "a token for the Referrals API (not a JWT, so who it acts for cannot be read)",
        ),
        Ok(Some(claims)) => {
            let Some(user) = claims.username() else {
                return Check::fail(
                    NAME,
                    "the token names no user: it is app-only, and the Referrals API takes App+User tokens only",
                    SIGN_IN_FIX,
                );
            };
            let tenant = claims.tid.as_deref().unwrap_or("unknown");
            match claims.mfa() {
                Some(true) => Check::pass(
                    NAME,
                    format!("App+User as {user} (tenant {tenant}), with the MFA claim"),
                ),
                Some(false) | None => Check::fail(
                    NAME,
                    format!(
                        "App+User as {user} (tenant {tenant}), without the MFA claim Partner Center requires"
                    ),
                    SIGN_IN_FIX,
                ),
            }
        }
    }
}

/// The one registration a partner has: where it points and which events it names.
async fn registration(client: &PartnerCenterClient, webhook_url: Option<&str>) -> Check {
    const NAME: &str = "Partner Center webhook registration";
    let referral_events: Vec<&str> = registrar::EVENTS
        .iter()
        .copied()
        .filter(|e| e.starts_with("referral-") || e.starts_with("related-referral-"))
        .collect();
    let register = |url: Option<&str>| {
        match url {
        Some(url) => format!("run `cosell register --url {url} --restore` (deployed: the registrar does it)"),
        None => "deploy the stack (its registrar registers the ingress), or run `cosell register --url URL`".to_string(),
    }
    };
    match client.webhook_registration().await {
        Err(e) => Check::fail(
            NAME,
            format!("the Webhooks API: {e}"),
            pc_fix(&e, "the Referral admin must be allowed to manage webhooks"),
        ),
        Ok(None) => Check::fail(
            NAME,
            "Partner Center has no webhook registration: referral changes reach the connector only through the reconciliation poll",
            register(webhook_url),
        ),
        Ok(Some(reg)) => {
            let missing: Vec<&str> = referral_events
                .iter()
                .copied()
                .filter(|e| !reg.webhook_events.iter().any(|r| r.eq_ignore_ascii_case(e)))
                .collect();
            let same_url = |wanted: &str| {
                reg.webhook_url.trim_end_matches('/') == wanted.trim_end_matches('/')
            };
            match webhook_url {
                Some(wanted) if !same_url(wanted) => Check::fail(
                    NAME,
                    format!("it points at {}, not {wanted}", reg.webhook_url),
                    register(Some(wanted)),
                ),
                _ if !missing.is_empty() => Check::fail(
                    NAME,
                    format!(
                        "it points at {} without {}",
                        reg.webhook_url,
                        missing.join(", ")
                    ),
                    register(Some(webhook_url.unwrap_or(&reg.webhook_url))),
                ),
                Some(_) => Check::pass(
                    NAME,
                    format!(
                        "it points at {} with the four referral events",
                        reg.webhook_url
                    ),
                ),
                None => Check::pass(
                    NAME,
                    format!(
                        "it points at {} with the four referral events (give --webhook-url or COSELL_WEBHOOK_URL to compare it with the connector's)",
                        reg.webhook_url
                    ),
                ),
            }
        }
    }
}

/// The CRM's sign-in and identity, each item the connector needs, and the currencies.
async fn crm(config: &Config, referral_currencies: &BTreeSet<String>, checks: &mut Vec<Check>) {
    let kind = config.crm.kind();
    let settings_fix = match kind {
        CrmKind::Dynamics => {
            "check COSELL_DATAVERSE_URL, the app registration (COSELL_DATAVERSE_CLIENT_ID/SECRET) and that it is an application user of the environment"
        }
        CrmKind::Salesforce => {
            "check COSELL_SALESFORCE_* (the connected app and the integration user) and that the user may use the API"
        }
    };
    let schema = match wiring::crm_schema(config) {
        Ok(s) => s,
        Err(e) => {
            checks.push(Check::fail("CRM sign-in", e.to_string(), settings_fix));
            return;
        }
    };
    match schema.identity().await {
        Err(e) => {
            checks.push(Check::fail("CRM sign-in", e.to_string(), settings_fix));
            return;
        }
        Ok(identity) => checks.push(match (kind, identity.daily_api_requests) {
            (_, Some((0, max))) => Check::fail(
                "CRM sign-in",
                format!(
                    "user {}: none of today's {max} daily API requests is left",
                    identity.user_id
                ),
                "wait for the 24-hour window to move on, or raise the org's API limit",
            ),
            (_, Some((left, max))) => Check::pass(
                "CRM sign-in",
                format!(
                    "user {}: {left} of {max} daily API requests left",
                    identity.user_id
                ),
            ),
            (CrmKind::Dynamics, None) => Check::pass(
                "CRM sign-in",
                format!(
                    "WhoAmI: application user {}{}",
                    identity.user_id,
                    identity
                        .organization
                        .map(|o| format!(", organization {o}"))
                        .unwrap_or_default()
                ),
            ),
            (CrmKind::Salesforce, None) => {
                Check::pass("CRM sign-in", format!("user {}", identity.user_id))
            }
        }),
    }
    schema_items(schema.as_ref(), checks).await;
    checks.push(currencies(schema.as_ref(), config, referral_currencies).await);
}

async fn schema_items(schema: &dyn CrmSchema, checks: &mut Vec<Check>) {
    match schema.inspect().await {
        Err(e) => checks.push(Check::fail(
            "CRM schema",
            format!("cannot read the CRM's metadata: {e}"),
            "the connector's CRM user needs to read the metadata (Dataverse: a security role; Salesforce: View Setup and Configuration)",
        )),
        Ok(items) => {
            for item in items {
                let name = format!("{} {}", item.kind.label(), item.name);
                checks.push(match item.state {
                    ItemState::InPlace => Check::pass(name, format!("{} in place", item.detail)),
                    ItemState::Missing => Check::fail(
                        name,
                        format!("missing ({})", item.detail),
                        "run `cosell crm setup`",
                    ),
                    ItemState::Unusable(why) => {
                        Check::fail(name, format!("unusable ({})", item.detail), why)
                    }
                    ItemState::Manual(why) => {
                        Check::fail(name, format!("missing ({})", item.detail), why)
                    }
                });
            }
        }
    }
}

/// Every currency a referral of the last days uses (and, for a Salesforce org without
/// multi-currency, its one currency) must exist in the CRM, or those deals are refused.
async fn currencies(
    schema: &dyn CrmSchema,
    config: &Config,
    referral_currencies: &BTreeSet<String>,
) -> Check {
    const NAME: &str = "currencies";
    let have: BTreeSet<String> = match schema.currencies().await {
        Ok(c) => c.into_iter().map(|c| c.to_ascii_uppercase()).collect(),
        Err(e) => {
            return Check::fail(
                NAME,
                format!("cannot read the CRM's currencies: {e}"),
                "the connector's CRM user needs to read the currencies",
            );
        }
    };
    let listed = have.iter().cloned().collect::<Vec<_>>().join(", ");
    let missing: Vec<&str> = referral_currencies
        .iter()
        .filter(|c| !have.contains(*c))
        .map(String::as_str)
        .collect();
    if have.is_empty() {
        return Check::fail(
            NAME,
            "the CRM has no currency",
            "add the currencies your deals use in the CRM",
        );
    }
    if missing.is_empty() {
        let used = if referral_currencies.is_empty() {
            format!("no referral of the last {REFERRALS_READ_DAYS} days names one")
        } else {
            format!(
                "the last {REFERRALS_READ_DAYS} days' referrals use {}",
                referral_currencies
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Check::pass(NAME, format!("the CRM has {listed}; {used}"));
    }
    let fix = match &config.crm {
        cosell_shared::config::CrmConfig::Salesforce(c) if !c.multi_currency => format!(
            "the org works in {} only: turn multi-currency on, add the currencies under Manage Currencies and set COSELL_SALESFORCE_MULTI_CURRENCY=true",
            c.corporate_currency
        ),
        cosell_shared::config::CrmConfig::Salesforce(_) => {
            "add them under Setup → Company Settings → Manage Currencies".to_string()
        }
        cosell_shared::config::CrmConfig::Dynamics(_) => {
            "add them under Settings → Business Management → Currencies".to_string()
        }
    };
    Check::fail(
        NAME,
        format!(
            "referrals use {}, which the CRM lacks (it has {listed}): those deals are refused",
            missing.join(", ")
        ),
        fix,
    )
}

/// DynamoDB and SQS when configured, else the embedded store and queue in the data directory;
/// with the dead-letter queue's depth.
async fn store_and_queue(resolved: &Resolved, options: &DoctorOptions, checks: &mut Vec<Check>) {
    let config = &resolved.config;
    match (&config.aws.table_name, &config.aws.queue_url) {
        (Some(table), Some(url)) => {
            let sdk = wiring::aws_sdk_config(config).await;
            checks.push(match wiring::store(config, &sdk) {
                Err(e) => Check::fail("store", e.to_string(), "correct COSELL_TABLE_NAME"),
                Ok(store) => match store.link_by_referral("cosell-doctor").await {
                    Ok(_) => Check::pass("store", format!("DynamoDB table {table} answers")),
                    Err(e) => Check::fail(
                        "store",
                        format!("DynamoDB table {table}: {e}"),
                        "check COSELL_TABLE_NAME (the stack's StateTableName), the region and the credentials' dynamodb:GetItem",
                    ),
                },
            });
            let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), url);
            checks.push(depth("queue", &format!("SQS queue {url}"), &queue).await);
            checks.push(match queue.dead_letter_queue().await {
                Err(e) => Check::fail(
                    "dead-letter queue",
                    e.to_string(),
                    "the credentials need sqs:GetQueueAttributes and sqs:GetQueueUrl",
                ),
                Ok(None) => Check::fail(
                    "dead-letter queue",
                    "the queue has no redrive policy, so a command that keeps failing is received again and again",
                    "give the queue a dead-letter queue as template.yaml does",
                ),
                Ok(Some(dlq)) => dead_letters(&format!("SQS queue {}", dlq.url()), &dlq).await,
            });
        }
        (Some(_), None) | (None, Some(_)) => checks.push(Check::fail(
            "store",
            "only one of COSELL_TABLE_NAME and COSELL_QUEUE_URL is set",
            "set both (the stack's StateTableName and SyncQueueUrl) or neither for the embedded store and queue",
        )),
        (None, None) => embedded(&options.data_dir, checks).await,
    }
}

async fn embedded(dir: &std::path::Path, checks: &mut Vec<Check>) {
    if !dir.exists() {
        checks.push(Check::pass(
            "store",
            format!(
                "the embedded store and queue: {} does not exist yet; `cosell local` creates it",
                dir.display()
            ),
        ));
        return;
    }
    let fix = "give --data-dir (or COSELL_DATA_DIR) the directory `cosell local` uses, readable and writable";
    let state = dir.join("state.sqlite3");
    checks.push(match SqliteStore::open(&state) {
        Err(e) => Check::fail("store", e.to_string(), fix),
        Ok(store) => match store.link_by_referral("cosell-doctor").await {
            Ok(_) => Check::pass(
                "store",
                format!("the embedded store {} answers", state.display()),
            ),
            Err(e) => Check::fail("store", e.to_string(), fix),
        },
    });
    let file = dir.join("queue.sqlite3");
    // Opened without a dead-letter queue of its own: reading depths moves nothing.
    let open = |name: &str| {
        EmbeddedQueue::open(
            &file,
            name,
            EmbeddedQueueSettings {
                dead_letter_queue: None,
                ..EmbeddedQueueSettings::default()
            },
        )
    };
    let described = format!("the embedded queue in {}", file.display());
    checks.push(match open(QUEUE_NAME) {
        Err(e) => Check::fail("queue", e.to_string(), fix),
        Ok(q) => depth("queue", &described, &q).await,
    });
    checks.push(match open(DEAD_LETTER_QUEUE_NAME) {
        Err(e) => Check::fail("dead-letter queue", e.to_string(), fix),
        Ok(q) => dead_letters(&format!("{described} ({DEAD_LETTER_QUEUE_NAME})"), &q).await,
    });
}

async fn depth(name: &str, described: &str, queue: &dyn QueueConsumer) -> Check {
    match queue.depth().await {
        Ok(d) => Check::pass(
            name,
            format!(
                "{described}: {} waiting, {} in flight",
                d.waiting, d.in_flight
            ),
        ),
        Err(e) => Check::fail(
            name,
            format!("{described}: {e}"),
            "check COSELL_QUEUE_URL (the stack's SyncQueueUrl), the region and the credentials",
        ),
    }
}

async fn dead_letters(described: &str, queue: &dyn QueueConsumer) -> Check {
    const NAME: &str = "dead-letter queue";
    match queue.depth().await {
        Ok(d) if d.total() == 0 => Check::pass(NAME, format!("{described}: empty")),
        Ok(d) => Check::fail(
            NAME,
            format!(
                "{described}: {} commands failed past the receive count and were set aside",
                d.total()
            ),
            "`cosell status` names them and `cosell status <id>` shows why; once fixed, `cosell redrive --all` moves them back",
        ),
        Err(e) => Check::fail(NAME, format!("{described}: {e}"), "check the credentials"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_names_each_check_and_leaves_out_the_fix_of_a_pass() {
        let report = Report {
            ok: false,
            checks: vec![
                Check::pass("settings", "valid"),
                Check::fail("currencies", "JPY is missing", "add it"),
            ],
        };
        let json = serde_json::to_value(&report).expect("serialises");
        assert_eq!(json["ok"], false);
        assert_eq!(json["checks"][0]["name"], "settings");
        assert!(json["checks"][0].get("fix").is_none());
        assert_eq!(json["checks"][1]["fix"], "add it");
        let mut text = Vec::new();
        report.write_text(&mut text);
        let text = String::from_utf8(text).expect("utf-8");
        assert!(text.contains("✔ settings: valid\n"), "{text}");
        assert!(
            text.contains("✖ currencies: JPY is missing → add it\n"),
            "{text}"
        );
        assert!(text.contains("1 of 2 checks failed"), "{text}");
    }
}
