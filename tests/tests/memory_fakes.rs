//! The in-memory stand-ins keep the same promises as the real adapters: the store as DynamoDB
//! and SQLite, the queue as SQS and the embedded queue, Partner Center as the HTTP client on the
//! sandbox, the CRM as the Dataverse and Salesforce adapters. A use case tested on them behaves as
//! it will on those.

use std::sync::Arc;

use cosell_e2e::crm_contract::{CrmUnderTest, SellerEdit};
use cosell_e2e::queue_contract::{self, QueueUnderTest};
use cosell_e2e::store_contract;
use cosell_shared::crm::{Crm, CrmKind, OpportunityFields, OpportunityState};
use cosell_shared::queue::QueueConsumer;
use cosell_shared::store::Store;
use cosell_shared::testing::{MemoryCrm, MemoryPartnerCenter, MemoryQueue, MemoryStore};

#[tokio::test]
async fn the_memory_store_keeps_the_store_contract() {
    store_contract::run_all(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_one_memory_store_one_wins_each_time() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    for _ in 0..20 {
        store_contract::concurrent_first_writes_one_wins(
            store.as_ref(),
            &store_contract::Ids::new(),
        )
        .await;
    }
}

#[tokio::test]
async fn the_memory_queue_keeps_the_queue_contract() {
    queue_contract::run_all(async |spec| {
        let queue = Arc::new(MemoryQueue::new(
            spec.visibility_timeout,
            spec.max_receive_count,
        ));
        let dead_letters: Arc<dyn QueueConsumer> = match queue.dead_letters() {
            Some(dlq) => dlq,
            None => panic!("a queue made with new() has a dead-letter queue"),
        };
        QueueUnderTest {
            queue: queue.clone(),
            consumer: queue,
            dead_letters,
            visibility_timeout: spec.visibility_timeout,
            max_receive_count: spec.max_receive_count,
        }
    })
    .await;
}

#[tokio::test]
async fn the_memory_partner_center_keeps_the_partner_center_contract() {
    let pc = MemoryPartnerCenter::new();
    cosell_e2e::partner_center_contract::run_all(&pc, &pc).await;
}

// ---------------------------------------------------------------- the CRM, as either kind

/// The in-memory CRM, with a seller working in it.
struct Memory(MemoryCrm);

#[async_trait::async_trait]
impl CrmUnderTest for Memory {
    fn crm(&self) -> &dyn Crm {
        &self.0
    }

    async fn seller_creates(&self, name: &str, sync: bool) -> String {
        self.0.seller_creates(OpportunityFields {
            name: Some(name.into()),
            close_date: chrono::NaiveDate::from_ymd_opt(2030, 6, 30),
            state: Some(OpportunityState::Active),
            sync_with_partner_center: Some(sync),
            ..Default::default()
        })
    }

    async fn seller_edits(&self, id: &str, edit: SellerEdit) {
        let found = self.0.seller_edits(id, |f| match edit {
            SellerEdit::Description(d) => f.description = Some(d),
            SellerEdit::SyncWithPartnerCenter(s) => f.sync_with_partner_center = Some(s),
        });
        assert!(found, "opportunity {id} to edit");
    }

    async fn seller_deletes(&self, id: &str) {
        self.0.seller_deletes(id);
    }
}

mod dynamics {
    cosell_e2e::crm_contract_tests!(async {
        super::Memory(super::MemoryCrm::new(super::CrmKind::Dynamics))
    });
}

mod salesforce {
    cosell_e2e::crm_contract_tests!(async {
        super::Memory(super::MemoryCrm::new(super::CrmKind::Salesforce))
    });
}
