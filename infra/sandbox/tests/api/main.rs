//! The sandbox over real HTTP on loopback: each documented behaviour, as a client sees it.

// A test crate: its helpers may panic on what the test set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod control;
mod cosell;
mod delivery;
mod entra;
mod referrals;
mod tokens;
mod webhooks;
