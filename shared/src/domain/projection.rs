//! The synced projection: the fields both sides share, in neutral terms. The store keeps the
//! projection of the last sync; comparing it with each side's current projection tells what
//! changed where, so the connector never writes back what it wrote (no echo) and keeps both
//! sides' edits (three-way merge).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::referral::{Status, Substatus};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Projection {
    /// Without the status marker.
    pub name: Option<String>,
    pub deal_value: Option<f64>,
    pub currency: Option<String>,
    pub close_date: Option<NaiveDate>,
    pub notes: Option<String>,
    /// `Status/Substatus` of the referral, e.g. `Active/Accepted`.
    pub status: Option<String>,
    pub microsoft_help: Option<String>,
    pub visible: Option<bool>,
    pub microsoft_status: Option<String>,
    pub microsoft_crm_id: Option<String>,
    /// Whether the deal names a customer contact (Partner Center: `customerProfile.team`). Only
    /// its removal is synced: a contact emptied on one side is emptied on the other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_contact: Option<bool>,
}

impl Projection {
    /// The referral's status and substatus, when `status` holds a pair the connector reads.
    pub fn status_pair(&self) -> Option<(Status, Substatus)> {
        let (s, sub) = self.status.as_deref()?.split_once('/')?;
        Some((s.parse().ok()?, sub.parse().ok()?))
    }
}
