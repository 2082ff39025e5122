//! The behaviour every `PartnerCenter` adapter must show.
