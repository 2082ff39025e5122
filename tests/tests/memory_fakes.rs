//! The in-memory store and queue keep the same promises as DynamoDB and SQLite, SQS and the
//! embedded queue, so a use case tested on them behaves as it will on those.

use std::sync::Arc;

use cosell_e2e::queue_contract::{self, QueueUnderTest};
use cosell_e2e::store_contract;
use cosell_shared::queue::QueueConsumer;
use cosell_shared::store::Store;
use cosell_shared::testing::{MemoryQueue, MemoryStore};

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
    let pc = cosell_shared::testing::MemoryPartnerCenter::new();
    cosell_e2e::partner_center_contract::run_all(&pc, &pc).await;
}
