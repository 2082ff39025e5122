//! The behaviour every `Crm` adapter must show.
