//! The Dataverse Web API simulator over real HTTP on loopback: each behaviour as a client
//! (the connector) or a human seller (the control API) sees it.

// A test crate: its helpers may panic on what the test set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod clearing;
mod common;
mod control;
mod limits;
mod metadata;
mod opportunity;
mod query;
mod tracking;
mod writes;
