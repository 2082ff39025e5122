//! API calls per change: what one change costs the partner's Partner Center and CRM budgets,
//! measured on the sandbox's request counters with the whole connector on loopback. The
//! call-count test asserts these numbers; the bench binary prints them.
//!
//! A poll's own cost (the change feed's page, the reconciliation's list) is the same whether a
//! change happened or not, so each row counts the idle poll once and the rest of what the change
//! caused: the processor's reads and writes, the webhook of the connector's own write, and the
//! extra feed reads a change brings.

use serde_json::json;

use crate::stack::{Backend, Calls, CrmKind, Incoming, Share, Stage, TestStack};

/// One row of the table: a change, the calls it cost, and the floor a correct connector needs.
#[derive(Debug, Clone)]
pub struct Row {
    pub change: &'static str,
    /// Every API call it caused, by `METHOD /route` (sign-in excluded).
    pub calls: Calls,
    /// Of those, the writes (anything but `GET`).
    pub writes: u64,
    pub floor: u64,
    /// Sync commands the change put through the processor.
    pub commands: usize,
}

impl Row {
    pub fn total(&self) -> u64 {
        self.calls.0.values().sum()
    }

    /// Calls over the floor, as a ratio (1.0 is the floor).
    pub fn ratio(&self) -> f64 {
        self.total() as f64 / self.floor.max(1) as f64
    }
}

/// The connector's API calls: Partner Center's Referrals API and the CRM's, without sign-in and
/// without the sandbox's own control routes.
async fn api_calls(stack: &TestStack) -> Calls {
    let mut all = stack.partner_center_calls().await;
    all.0.extend(stack.crm_calls().await.0);
    all
}

/// What `work` cost, less `idle` polls' worth of calls.
async fn measure<F: std::future::Future<Output = usize>>(
    stack: &TestStack,
    idle: &Calls,
    polls: u64,
    work: F,
) -> (Calls, usize) {
    let before = api_calls(stack).await;
    let commands = work.await;
    let mut delta = api_calls(stack).await.since(&before);
    for (route, n) in &idle.0 {
        if let Some(d) = delta.0.get_mut(route) {
            *d = d.saturating_sub(n * polls);
        }
    }
    delta.0.retain(|_, n| *n > 0);
    (delta, commands)
}

fn row(change: &'static str, floor: u64, (calls, commands): (Calls, usize)) -> Row {
    Row {
        change,
        writes: calls.writes(),
        calls,
        floor,
        commands,
    }
}

/// A poll and the sync of whatever it and the webhooks bring: after the connector's own CRM
/// write, nothing but the feed's read (part of the idle poll) should happen.
async fn poll_and_sync(stack: &TestStack) -> usize {
    let report = stack.poll().await;
    report.crm_enqueued + report.referrals_enqueued + stack.sync().await.received()
}

/// Every row for one CRM, on a fresh stack with the embedded store and queue (the store and
/// queue cost no API calls, so the backend does not change the counts).
pub async fn table(kind: CrmKind) -> Vec<Row> {
    let stack = TestStack::start(kind, Backend::Embedded).await;
    let mut rows = Vec::new();

    // A process that has served a change already: sign-in, the CRM's own user and currency
    // look-ups are made once per process, not per change.
    let warm = stack
        .seller_shares(Share {
            name: "Warm-up deal",
            customer: "Warm-up Ltd",
            visible: false,
            ..Share::default()
        })
        .await;
    stack.settle().await;
    stack.seller_moves_to(&warm, Stage::Lost).await;
    stack.settle().await;
    // Quiet for longer than the Salesforce feed's overlap, as a CRM mostly is between changes.
    stack.advance_clock_minutes(11).await;
    stack.poll().await;

    let (idle, _) = measure(&stack, &Calls::default(), 0, async {
        stack.poll().await;
        0
    })
    .await;
    rows.push(row("idle poll cycle", 2, (idle.clone(), 0)));

    let mut referral_id = String::new();
    let new = measure(&stack, &idle, 0, async {
        let referral = stack.incoming_referral(Incoming::CoSell, json!({})).await;
        referral_id = referral["id"].as_str().unwrap_or_default().to_string();
        stack.sync().await.received()
    })
    .await;
    rows.push(row(
        "new incoming co-sell referral (create, related event, echo)",
        12,
        new,
    ));
    let echo = measure(&stack, &idle, 1, poll_and_sync(&stack)).await;
    rows.push(row(ECHO_POLL, 0, echo));

    stack.advance_clock_minutes(5).await;
    let edit = measure(&stack, &idle, 0, async {
        stack
            .microsoft_changes(&referral_id, json!({"details": {"dealValue": 45000}}))
            .await;
        stack.sync().await.received()
    })
    .await;
    rows.push(row("Microsoft edits one field", 3, edit));
    let echo = measure(&stack, &idle, 1, poll_and_sync(&stack)).await;
    rows.push(row(ECHO_POLL, 0, echo));

    // The seller accepts, so that edits are sent; then one edit, with its echo.
    let crm_id = stack
        .opportunity_for(&referral_id)
        .await
        .map(|o| o.id)
        .unwrap_or_default();
    stack.seller_moves_to(&crm_id, Stage::Active).await;
    stack.settle().await;
    stack.advance_clock_minutes(5).await;
    let seller = measure(&stack, &idle, 1, async {
        stack.seller_sets_deal_value(&crm_id, 52_000.0).await;
        poll_and_sync(&stack).await
    })
    .await;
    rows.push(row("seller edits one field (with its echo)", 4, seller));
    let echo = measure(&stack, &idle, 1, poll_and_sync(&stack)).await;
    rows.push(row(ECHO_POLL, 0, echo));

    for (change, help, creates) in [
        (
            "new seller deal shared (partner-led, with its echo)",
            None,
            1,
        ),
        (
            "new seller deal shared (co-sell, Microsoft's referral, echoes)",
            Some("ProofOfConceptOrDemo"),
            2,
        ),
    ] {
        stack.advance_clock_minutes(5).await;
        let shared = measure(&stack, &idle, 1, async {
            stack
                .seller_shares(Share {
                    name: change,
                    customer: if help.is_some() {
                        "Contoso"
                    } else {
                        "Tailspin Toys"
                    },
                    help,
                    ..Share::default()
                })
                .await;
            let report = stack.poll().await;
            report.crm_enqueued + stack.process_queue().await.received()
        })
        .await;
        // Partner Center announces each referral the share created, and those webhooks reach
        // the queue while it is processed: one read each belongs to the share.
        rows.push(row(change, 5 + 2 * creates, shared));
        let echo = measure(&stack, &idle, 1, poll_and_sync(&stack)).await;
        rows.push(row(ECHO_POLL, 0, echo));
    }
    rows
}

/// The poll after the connector's own CRM write: an echo, nothing to sync.
pub const ECHO_POLL: &str = "echo of the connector's own CRM write (a poll)";

/// The table as text, one line per row with its calls by route.
pub fn render(kind: CrmKind, rows: &[Row]) -> String {
    let mut out = format!(
        "{kind:?}\n{:<64} {:>5} {:>6} {:>5} {:>6} {:>8}\n",
        "change", "calls", "writes", "floor", "ratio", "commands"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<64} {:>5} {:>6} {:>5} {:>6.2} {:>8}\n",
            r.change,
            r.total(),
            r.writes,
            r.floor,
            r.ratio(),
            r.commands
        ));
        for (route, n) in &r.calls.0 {
            out.push_str(&format!("    {n:>3}  {route}\n"));
        }
    }
    out
}

/// What a burst of incoming co-sell referrals costs: the commands the processor handled per
/// referral (webhooks, their echoes, and what the polls and reconciliation added), and how fast
/// the connector took them in.
#[derive(Debug, Clone)]
pub struct Burst {
    pub referrals: usize,
    /// The records the burst created or changed on either side: both referrals of every
    /// engagement in Partner Center and every opportunity in the CRM.
    pub changed_records: usize,
    /// Commands processed while the webhooks were synced.
    pub from_webhooks: usize,
    /// Commands the polls and reconciliation added afterwards, until all was quiet.
    pub from_polls: usize,
    pub seconds: f64,
    /// Of which Partner Center raising the referrals and the ingress taking their webhooks.
    pub arriving_seconds: f64,
}

impl Burst {
    pub fn commands(&self) -> usize {
        self.from_webhooks + self.from_polls
    }

    pub fn commands_per_referral(&self) -> f64 {
        self.commands() as f64 / self.referrals.max(1) as f64
    }

    pub fn commands_per_changed_record(&self) -> f64 {
        self.commands() as f64 / self.changed_records.max(1) as f64
    }

    pub fn referrals_per_second(&self) -> f64 {
        self.referrals as f64 / self.seconds.max(f64::EPSILON)
    }
}

/// `n` incoming co-sell referrals at once, synced, then polled until quiet.
pub async fn burst(kind: CrmKind, n: usize) -> Burst {
    let stack = TestStack::start(kind, Backend::Embedded).await;
    let started = std::time::Instant::now();
    for _ in 0..n {
        stack.incoming_referral(Incoming::CoSell, json!({})).await;
    }
    stack.wait_for_deliveries().await;
    let arriving_seconds = started.elapsed().as_secs_f64();
    let from_webhooks = stack.sync().await.received();
    let seconds = started.elapsed().as_secs_f64();
    let from_polls = stack.settle().await.received();
    let changed_records = stack.referrals().await.len() + stack.opportunities().await.len();
    Burst {
        referrals: n,
        changed_records,
        from_webhooks,
        from_polls,
        seconds,
        arriving_seconds,
    }
}

/// The process's peak resident set size in KiB (Linux `VmHWM`), when it can be read.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// How long a change takes when every API call costs `latency_ms` more (the sandbox's latency
/// fault on every API route), against that latency times the calls that must run one after
/// another.
#[derive(Debug, Clone)]
pub struct Latency {
    pub change: &'static str,
    pub seconds: f64,
    /// The calls a correct connector makes one after another for it.
    pub sequential_floor: u64,
    pub latency_ms: u64,
}

impl Latency {
    pub fn ratio(&self) -> f64 {
        self.seconds * 1000.0 / (self.latency_ms * self.sequential_floor).max(1) as f64
    }
}

/// A Microsoft edit (from the webhook in the queue to the CRM written: read the referral, read
/// the opportunity, write it) and a seller's edit (from the poll to Partner Center written:
/// the feed, the opportunity, the referral, the patch), each with `latency_ms` added per call.
pub async fn latency(kind: CrmKind, latency_ms: u64) -> Vec<Latency> {
    let stack = TestStack::start(kind, Backend::Embedded).await;
    let referral = stack.incoming_referral(Incoming::CoSell, json!({})).await;
    let referral_id = referral["id"].as_str().unwrap_or_default().to_string();
    stack.sync().await;
    let crm_id = stack
        .opportunity_for(&referral_id)
        .await
        .map(|o| o.id)
        .unwrap_or_default();
    stack.seller_moves_to(&crm_id, Stage::Active).await;
    stack.settle().await;
    for route in ["/v1.0/*", "/api/*", "/services/*"] {
        stack
            .fault(json!({"method": "*", "route": route, "latencyMs": latency_ms}))
            .await;
    }
    let mut out = Vec::new();

    stack.advance_clock_minutes(5).await;
    stack
        .microsoft_changes(&referral_id, json!({"details": {"dealValue": 61000}}))
        .await;
    stack.wait_for_deliveries().await;
    let started = std::time::Instant::now();
    stack.process_queue().await;
    out.push(Latency {
        change: "Microsoft edits one field",
        seconds: started.elapsed().as_secs_f64(),
        sequential_floor: 3,
        latency_ms,
    });

    stack.advance_clock_minutes(5).await;
    stack.seller_sets_deal_value(&crm_id, 62_000.0).await;
    let started = std::time::Instant::now();
    stack.poll().await;
    stack.process_queue().await;
    out.push(Latency {
        change: "seller edits one field",
        seconds: started.elapsed().as_secs_f64(),
        sequential_floor: 4,
        latency_ms,
    });
    out
}
