//! The Dataverse Web API simulator over real HTTP on loopback: each behaviour as a client
//! (the connector) or a human seller (the control API) sees it.

mod auth;
mod clearing;
mod common;
mod control;
mod limits;
mod opportunity;
mod query;
mod tracking;
mod writes;
