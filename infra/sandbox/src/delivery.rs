//! Signed webhook delivery: every referral change becomes a thin event POSTed to the registered
//! URL, signed like Partner Center's, retried with back-off, and recorded for tests to inspect.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

use crate::app::App;
use crate::clock::webhook_timestamp;
use crate::config::ResourceUriStyle;
use crate::faults::WebhookFaultKind;

/// A held-back (reordered) event goes out anyway when nothing overtakes it within this time.
const REORDER_HOLD: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub enum Event {
    Referral {
        name: String,
        referral_id: String,
    },
    Test {
        correlation_id: String,
        delivery_id: u64,
    },
}

impl Event {
    pub fn referral(name: &str, referral_id: &str) -> Event {
        Event::Referral {
            name: name.to_string(),
            referral_id: referral_id.to_string(),
        }
    }

    pub fn test(correlation_id: &str, delivery_id: u64) -> Event {
        Event::Test {
            correlation_id: correlation_id.to_string(),
            delivery_id,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "value")]
pub enum AttemptOutcome {
    Status(u16),
    Error(String),
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub at: DateTime<Utc>,
    pub outcome: AttemptOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    Pending,
    Delivered,
    GivenUp,
    Dropped,
    NotSubscribed,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: u64,
    pub event_name: String,
    pub resource_uri: String,
    pub url: String,
    pub body: String,
    pub attempts: Vec<Attempt>,
    pub outcome: Outcome,
    pub finished: bool,
}

#[derive(Debug, Default)]
pub struct Deliveries {
    next_id: u64,
    items: BTreeMap<u64, Delivery>,
}

impl Deliveries {
    /// A delivery id handed out before the event is dispatched, so a test event's correlation
    /// id can point at it straight away.
    pub fn reserve(&mut self) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.items.insert(
            id,
            Delivery {
                id,
                event_name: String::new(),
                resource_uri: String::new(),
                url: String::new(),
                body: String::new(),
                attempts: Vec::new(),
                outcome: Outcome::Pending,
                finished: false,
            },
        );
        id
    }

    pub fn get(&self, id: u64) -> Option<&Delivery> {
        self.items.get(&id)
    }

    pub fn all(&self) -> Vec<Delivery> {
        self.items.values().cloned().collect()
    }

    fn update(&mut self, id: u64, f: impl FnOnce(&mut Delivery)) {
        if let Some(d) = self.items.get_mut(&id) {
            f(d);
        }
    }
}

#[derive(Debug, Clone)]
struct Prepared {
    id: u64,
    url: String,
    body: Vec<u8>,
    signature: String,
    ms_header: bool,
}

/// Runs until the sandbox shuts down, turning events into deliveries.
pub async fn dispatch(app: App, mut rx: mpsc::UnboundedReceiver<Event>) {
    let mut held: Option<Prepared> = None;
    loop {
        let event = match held.take() {
            Some(h) => tokio::select! {
                ev = rx.recv() => { held = Some(h); ev }
                _ = tokio::time::sleep(REORDER_HOLD) => { spawn(&app, h, Duration::ZERO); continue; }
            },
            None => rx.recv().await,
        };
        let Some(event) = event else { break };
        let Some(prepared) = prepare(&app, event) else {
            continue;
        };
        let fault = app.faults().take_webhook_fault();
        match fault {
            Some((WebhookFaultKind::Drop, _)) => {
                app.deliveries().update(prepared.id, |d| {
                    d.outcome = Outcome::Dropped;
                    d.finished = true;
                });
            }
            Some((WebhookFaultKind::Duplicate, _)) => {
                let copy = duplicate(&app, &prepared);
                spawn(&app, prepared, Duration::ZERO);
                spawn(&app, copy, Duration::ZERO);
            }
            Some((WebhookFaultKind::Reorder, _)) if held.is_none() => {
                held = Some(prepared);
                continue;
            }
            Some((WebhookFaultKind::Delay, delay)) => spawn(&app, prepared, delay),
            Some((WebhookFaultKind::Reorder, _)) | None => spawn(&app, prepared, Duration::ZERO),
        }
        // An event held back for reordering goes out just after the one that overtook it.
        if let Some(h) = held.take() {
            spawn(&app, h, Duration::from_millis(50));
        }
    }
}

fn prepare(app: &App, event: Event) -> Option<Prepared> {
    let registration = app.partner_center().registration.clone();
    let (name, resource_uri, resource_name, reserved) = match &event {
        Event::Referral { name, referral_id } => {
            let uri = match app.config.resource_uri_style {
                ResourceUriStyle::ReferralsApi => app.referral_url(referral_id),
                ResourceUriStyle::Documented => {
                    format!("{}/engagements/v1/referrals/{referral_id}", app.base_url)
                }
            };
            (name.clone(), uri, "referral", None)
        }
        Event::Test {
            correlation_id,
            delivery_id,
        } => (
            "test-created".to_string(),
            format!(
                "{}/webhooks/v1/registration/validationEvents/{correlation_id}",
                app.base_url
            ),
            "test",
            Some(*delivery_id),
        ),
    };
    let body = serde_json::to_vec(&json!({
        "EventName": name,
        "ResourceUri": resource_uri,
        "ResourceName": resource_name,
        "AuditUri": null,
        "ResourceChangeUtcDate": webhook_timestamp(app.clock.now()),
    }))
    .ok()?;
    let mut deliveries = app.deliveries();
    let id = reserved.unwrap_or_else(|| deliveries.reserve());
    let subscribed = registration
        .as_ref()
        .filter(|r| r.webhook_events.contains(&name));
    deliveries.update(id, |d| {
        d.event_name = name.clone();
        d.resource_uri = resource_uri.clone();
        d.body = String::from_utf8_lossy(&body).into_owned();
        if let Some(r) = subscribed {
            d.url = r.webhook_url.clone();
        } else {
            d.outcome = Outcome::NotSubscribed;
            d.finished = true;
        }
    });
    let r = subscribed?;
    Some(Prepared {
        id,
        url: r.webhook_url.clone(),
        signature: app.signer.sign(&body),
        body,
        ms_header: r.signature_to_ms_header,
    })
}

fn duplicate(app: &App, p: &Prepared) -> Prepared {
    let mut deliveries = app.deliveries();
    let id = deliveries.reserve();
    let original = deliveries.get(p.id).cloned();
    deliveries.update(id, |d| {
        if let Some(o) = original {
            d.event_name = o.event_name;
            d.resource_uri = o.resource_uri;
            d.url = o.url;
            d.body = o.body;
        }
    });
    Prepared { id, ..p.clone() }
}

fn spawn(app: &App, p: Prepared, delay: Duration) {
    let app = app.clone();
    tokio::spawn(async move {
        let mut shutdown = app.shutdown.clone();
        tokio::select! {
            _ = deliver(&app, p, delay) => {}
            _ = shutdown.changed() => {}
        }
    });
}

async fn deliver(app: &App, p: Prepared, delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let cert_url = format!("{}/cert/pcnotifications-dispatch.cer", app.base_url);
    let mut wait = app.config.webhook_retry_base;
    for attempt in 1..=app.config.webhook_attempts.max(1) {
        let mut req = app
            .http
            .post(&p.url)
            .header("Content-Type", "application/json")
            .header("X-MS-Certificate-Url", &cert_url)
            .header("X-MS-Signature-Algorithm", "rsa-sha256")
            .body(p.body.clone());
        req = if p.ms_header {
            req.header("x-ms-signature", &p.signature)
        } else {
            req.header("Authorization", format!("Signature {}", p.signature))
        };
        let outcome = match req.send().await {
            Ok(resp) => AttemptOutcome::Status(resp.status().as_u16()),
            Err(e) => AttemptOutcome::Error(describe(&e)),
        };
        let ok = matches!(outcome, AttemptOutcome::Status(s) if (200..300).contains(&s));
        let last = attempt >= app.config.webhook_attempts;
        let at = app.clock.now();
        app.deliveries().update(p.id, |d| {
            d.attempts.push(Attempt { at, outcome });
            if ok || last {
                d.outcome = if ok {
                    Outcome::Delivered
                } else {
                    Outcome::GivenUp
                };
                d.finished = true;
            }
        });
        if ok || last {
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(app.config.webhook_retry_max);
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "The receiver did not answer in time.".into()
    } else if e.is_connect() {
        "The receiver could not be reached.".into()
    } else {
        format!("The delivery failed: {e}")
    }
}
