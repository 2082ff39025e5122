//! The Partner Center referral, its lifecycle rules and the webhook that announces
//! its changes.
//!
//! # The round-trip rule
//!
//! Partner Center updates a referral with a PUT that replaces the whole resource,
//! so the connector always writes back everything it read. Whatever this model
//! does not understand must therefore survive a read-modify-write unchanged:
//!
//! * every struct keeps the keys it does not name in a flattened `extra` map, in
//!   the order received and with their values (nulls included) untouched;
//! * every enum keeps values it does not know in `Other(String)`;
//! * timestamps stay strings, byte for byte (seven fractional digits), and money
//!   stays a [`serde_json::Number`], so an integer amount is never rewritten as a
//!   float. A decimal keeps its value, not its text (`1234.50` is written back as
//!   `1234.5`): serde_json's `arbitrary_precision` would keep the text, but it
//!   changes number handling for every crate in the build, and the service reads
//!   both spellings as the same decimal.
//!
//! The one allowed difference: an explicit `null` on a field the model names reads
//! as `None` and is written back as an absent key, which the service treats alike.
//! Modelled keys are written first, then `extra`; key order is not significant in
//! JSON and the service does not depend on it.

#[macro_use]
mod string_enum;

mod enums;
mod model;
mod state;
mod webhook;

pub use enums::{
    AssistanceRequestCode, Direction, Qualification, ReferralType, Status, Substatus, TargetType,
};
pub use model::{
    AdditionalRequirements, Address, Attribute, Consent, ContactPreference, CustomerId,
    CustomerProfile, Details, Extra, InviteContext, InvitedBy, Link, Links, Member, Referral,
    Requirements, Solution, Tag, Target, TrackingInfo,
};
pub use state::{TransitionError, TransitionRules, check_transition};
pub use webhook::{EventError, EventName, WebhookEvent};
