//! The in-memory store keeps the same promises as DynamoDB and SQLite, so a use case tested on it
//! behaves as it will on them.

use std::sync::Arc;

use cosell_e2e::store_contract;
use cosell_shared::store::Store;
use cosell_shared::testing::MemoryStore;

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
