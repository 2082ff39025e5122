//! A [`crate::crm::Crm`] in memory.

/// The in-memory CRM.
#[derive(Default)]
pub struct MemoryCrm {}
