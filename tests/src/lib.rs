//! End-to-end scenarios live under `tests/tests/`; this library holds what several of them share.

pub mod queue_contract;
pub mod stack;
pub mod store_contract;
