//! The co-sell connector's engine. This crate holds no Lambda types, so the same
//! code runs in the functions, the local runner and the tests.
//!
//! The domain (`domain`, `referral`) is free of I/O. Everything that talks to the outside sits
//! behind a port: [`partner_center::PartnerCenter`], [`crm::Crm`], [`store::Store`] and
//! [`queue::Queue`], each with its adapters beside it.

pub mod config;
pub mod crm;
pub mod domain;
pub mod entra;
pub mod http;
pub mod ingress;
pub mod metrics;
pub mod partner_center;
pub mod queue;
pub mod referral;
pub mod registrar;
pub mod retry;
pub mod secret;
pub mod secrets;
pub mod store;
pub mod sync;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod wiring;
