//! The use cases on the in-memory ports: every branch a reviewer asks about, each in
//! milliseconds. The same behaviour end to end, over HTTP against the sandbox and on DynamoDB
//! and SQS, is in the scenarios of the `cosell-e2e` crate; these pin down the decisions.

mod inbound;
mod metrics;
mod outbound;
mod poller;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::inbound::Inbound;
use super::outbound::Outbound;
use super::poller::{Poller, PollerOptions};
use super::{Clock, Handled, SyncError, SyncOptions};
use crate::crm::{
    AccountFields, ContactFields, Crm, CrmKind, Opportunity, OpportunityFields, OpportunityState,
};
use crate::queue::{QueueConsumer, SyncCommand};
use crate::referral::Referral;
use crate::store::{JournalEntry, Link, Store};
use crate::testing::{MemoryCrm, MemoryPartnerCenter, MemoryQueue, MemoryStore};

/// Monday 1 December 2026, 09:00 UTC: every clock starts here and moves only when a test says.
fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Partner Center, the CRM, the store and the queue, all in memory, on one clock.
struct World {
    pc: Arc<MemoryPartnerCenter>,
    crm: Arc<MemoryCrm>,
    store: Arc<MemoryStore>,
    queue: MemoryQueue,
    options: SyncOptions,
    poller: PollerOptions,
}

impl World {
    fn new(kind: CrmKind) -> World {
        let pc = Arc::new(MemoryPartnerCenter::new());
        pc.set_now(start());
        let crm = Arc::new(MemoryCrm::new(kind));
        crm.set_now(start());
        let clock = {
            let pc = pc.clone();
            Clock::new(move || pc.now())
        };
        World {
            pc,
            crm,
            // The store judges retention by the world's clock, not the day the tests run.
            store: Arc::new(MemoryStore::new().with_clock(clock.clone())),
            queue: MemoryQueue::new(Duration::from_secs(30), 5),
            options: SyncOptions {
                clock,
                ..SyncOptions::default()
            },
            poller: PollerOptions {
                reconciliation_grace: Duration::ZERO,
                ..PollerOptions::default()
            },
        }
    }

    fn dynamics() -> World {
        World::new(CrmKind::Dynamics)
    }

    fn now(&self) -> DateTime<Utc> {
        self.pc.now()
    }

    /// Time passes on both sides.
    fn advance(&self, by: chrono::Duration) {
        let now = self.pc.advance(by);
        self.crm.set_now(now);
    }

    fn inbound(&self) -> Inbound<'_> {
        Inbound {
            pc: self.pc.as_ref(),
            crm: self.crm.as_ref(),
            store: self.store.as_ref(),
            options: &self.options,
        }
    }

    fn outbound(&self) -> Outbound<'_> {
        Outbound {
            pc: self.pc.as_ref(),
            crm: self.crm.as_ref(),
            store: self.store.as_ref(),
            options: &self.options,
        }
    }

    fn poll(&self) -> Poller<'_> {
        Poller {
            crm: self.crm.as_ref(),
            pc: self.pc.as_ref(),
            store: self.store.as_ref(),
            queue: &self.queue,
            options: &self.poller,
        }
    }

    /// What the processor does with a webhook for `referral_id`.
    async fn referral_changed(&self, referral_id: &str) -> Result<Handled, SyncError> {
        self.inbound()
            .referral_changed(referral_id, "referral-updated", self.now())
            .await
    }

    async fn synced(&self, referral_id: &str) -> Handled {
        match self.referral_changed(referral_id).await {
            Ok(h) => h,
            Err(e) => panic!("referral {referral_id} synced: {e}"),
        }
    }

    /// What the processor does with the poller's command for `crm_id`.
    async fn opportunity_changed(&self, crm_id: &str) -> Result<Handled, SyncError> {
        self.outbound()
            .opportunity_changed(crm_id, None, self.now())
            .await
    }

    async fn shared(&self, crm_id: &str) -> Handled {
        match self.opportunity_changed(crm_id).await {
            Ok(h) => h,
            Err(e) => panic!("opportunity {crm_id} synced: {e}"),
        }
    }

    async fn link(&self, referral_id: &str) -> Option<Link> {
        match self.store.link_by_referral(referral_id).await {
            Ok(l) => l,
            Err(e) => panic!("link of {referral_id}: {e}"),
        }
    }

    async fn linked(&self, referral_id: &str) -> Link {
        self.link(referral_id)
            .await
            .unwrap_or_else(|| panic!("referral {referral_id} is linked"))
    }

    async fn journal(&self, key: &str) -> Vec<JournalEntry> {
        match self.store.journal(key, 50).await {
            Ok(j) => j,
            Err(e) => panic!("journal of {key}: {e}"),
        }
    }

    fn opportunity(&self, crm_id: &str) -> Opportunity {
        self.crm
            .opportunity(crm_id)
            .unwrap_or_else(|| panic!("opportunity {crm_id} is in the CRM"))
    }

    fn referral(&self, id: &str) -> Referral {
        self.pc
            .referral(id)
            .unwrap_or_else(|| panic!("referral {id} is in Partner Center"))
    }

    /// The referral's notes, as Partner Center holds them now.
    fn notes(&self, id: &str) -> Option<String> {
        self.referral(id).details.and_then(|d| d.notes)
    }

    /// An incoming co-sell referral synced into the CRM: its id and the opportunity's.
    async fn incoming_synced(&self) -> (String, String) {
        let referral = self.pc.incoming_co_sell(serde_json::json!({}));
        let id = referral_id(&referral);
        match self.synced(&id).await {
            Handled::Created { crm_id } => {
                self.pc.reset_calls();
                (id, crm_id)
            }
            other => panic!("the referral is created in the CRM, not {other:?}"),
        }
    }

    /// A seller's deal with Sync with Partner Center = yes and everything a referral needs:
    /// co-sell (Microsoft's help asked for, visible) or private.
    async fn sellers_deal(&self, name: &str, co_sell: bool) -> String {
        let account = self
            .crm
            .create_account(&AccountFields {
                name: format!("{name} Ltd"),
                street: Some("1 Harbour Road".into()),
                city: Some("Oslo".into()),
                postal_code: Some("0150".into()),
                country: Some("NO".into()),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("account: {e}"));
        let contact = self
            .crm
            .create_contact(&ContactFields {
                first_name: Some("Kari".into()),
                last_name: "Nordmann".into(),
                email: Some(format!(
                    "kari@{}.example",
                    name.to_lowercase().replace(' ', "-")
                )),
                account_id: Some(account.clone()),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("contact: {e}"));
        let id = self.crm.seller_creates(OpportunityFields {
            name: Some(name.into()),
            deal_value: Some(30_000.0),
            currency: Some("USD".into()),
            close_date: chrono::NaiveDate::from_ymd_opt(2027, 3, 31),
            description: Some("Move the ERP".into()),
            state: Some(OpportunityState::Active),
            account_id: Some(account),
            contact_id: Some(contact),
            sync_with_partner_center: Some(true),
            microsoft_help: Some(
                if co_sell {
                    "ProofOfConceptOrDemo"
                } else {
                    "none"
                }
                .into(),
            ),
            visibility: Some(if co_sell {
                crate::crm::Visibility::Visible
            } else {
                crate::crm::Visibility::Private
            }),
            ..Default::default()
        });
        self.crm
            .add_solution_link(&id, "SOL-SANDBOX-0001")
            .await
            .unwrap_or_else(|e| panic!("solution link: {e}"));
        id
    }

    /// What the processor does with a queued command, as it arrives.
    async fn process(&self, command: SyncCommand) {
        let processor = super::Processor {
            pc: self.pc.clone(),
            crm: self.crm.clone(),
            store: self.store.clone(),
            options: self.options.clone(),
        };
        let body = serde_json::to_string(&command).unwrap_or_else(|e| panic!("a body: {e}"));
        if let Err(e) = processor.handle(&body).await {
            panic!("{command:?} processed: {e}");
        }
    }

    /// The commands waiting in the queue, received and deleted.
    async fn drain_queue(&self) -> Vec<SyncCommand> {
        let mut out = Vec::new();
        loop {
            let batch = match self.queue.receive(10, Duration::ZERO).await {
                Ok(b) => b,
                Err(e) => panic!("receive: {e}"),
            };
            if batch.is_empty() {
                return out;
            }
            for d in batch {
                match SyncCommand::from_body(&d.body) {
                    Ok(c) => out.push(c),
                    Err(e) => panic!("a readable command: {e}"),
                }
                if let Err(e) = self.queue.delete(&d.receipt).await {
                    panic!("delete: {e}");
                }
            }
        }
    }
}

fn referral_id(r: &Referral) -> String {
    r.id.clone().unwrap_or_default()
}

/// The latest Audit line's text.
fn last_audit(o: &Opportunity) -> String {
    o.fields
        .audit
        .as_deref()
        .and_then(|a| a.lines().next())
        .unwrap_or_default()
        .to_string()
}
