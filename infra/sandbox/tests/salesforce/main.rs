//! The Salesforce REST API simulator over real HTTP on loopback: each documented behaviour, as
//! a connector sees it.

mod auth;
mod clearing;
mod common;
mod control;
mod query;
mod records;
mod upsert;
