//! In-memory stand-ins for the ports, for unit tests of the use cases (the `testing` feature).
//! Each keeps the promises of the real adapters and passes their contract suite; the adapters
//! themselves are tested against moto and the sandbox, never only against these.

mod crm;
mod partner_center;
mod queue;
mod store;

pub use crm::MemoryCrm;
pub use crm::Method as CrmMethod;
pub use partner_center::{Calls, MemoryPartnerCenter, SentPatch};
pub use queue::MemoryQueue;
pub use store::MemoryStore;
