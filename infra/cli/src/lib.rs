//! The `cosell` command: the connector on one machine.

pub mod auth;
pub mod demo;
pub mod local;
pub mod register;
pub mod settings;
pub mod solutions;
