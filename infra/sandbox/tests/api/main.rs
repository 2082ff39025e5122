//! The sandbox over real HTTP on loopback: each documented behaviour, as a client sees it.

mod common;
mod control;
mod cosell;
mod delivery;
mod referrals;
mod tokens;
mod webhooks;
