//! The Salesforce REST API simulator over real HTTP on loopback: each documented behaviour, as
//! a connector sees it.

// A test crate: its helpers may panic on what the test set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod clearing;
mod common;
mod control;
mod query;
mod records;
mod security;
mod subquery;
mod tooling;
mod upsert;
