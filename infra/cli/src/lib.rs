//! The `cosell` command: the connector on one machine.

pub mod auth;
pub mod crm_setup;
pub mod demo;
pub mod doctor;
pub mod local;
pub mod ops;
pub mod register;
pub mod resolve;
pub mod settings;
pub mod solutions;
