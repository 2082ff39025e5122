//! The sync rules as plain functions over plain data: no I/O, so every rule is tested with
//! tables of cases and properties.

pub mod accounts;
pub mod audit;
pub mod classify;
pub mod echo;
pub mod inbound;
pub mod marker;
pub mod merge;
pub mod outbound;
pub mod projection;
pub mod records;
pub mod stage;
