//! A [`crate::partner_center::PartnerCenter`] in memory.

/// The in-memory Partner Center.
#[derive(Default)]
pub struct MemoryPartnerCenter {}
