//! The co-sell connector's engine. This crate holds no Lambda types, so the same
//! code runs in the functions, the local runner and the tests.

pub mod domain;
pub mod referral;
