//! What the two CRM change feeds share: the cursor of a polling round over a modification
//! time with an overlap window, and the fingerprints that keep the overlap from handing the
//! same record version out twice.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most fingerprints a cursor keeps of records the overlap will read again. Past this the
/// oldest are forgotten: such a record may come twice, never not at all.
pub(crate) const MAX_REMEMBERED: usize = 32;

/// Polling by a modification time: rounds from the last round's upper bound (minus the
/// overlap) to the newest time when the round began.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Rounds {
    /// `until` of the last finished round; `None` before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Records handed out that the next round's overlap reads again.
    #[serde(default, skip_serializing_if = "Remembered::is_empty")]
    pub seen: Remembered,
    /// The round being paged, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Run>,
    /// The server's time when the last finished round began (Salesforce: its `Date`), once that
    /// round read the whole overlap window in one batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<DateTime<Utc>>,
}

/// A round being paged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Run {
    /// The newest modification time when the round began: its upper bound.
    pub until: DateTime<Utc>,
    /// Where the next page is (the API's own next-page link or query).
    pub next: String,
    /// Fingerprints of records read so far that the next round's overlap reads again.
    #[serde(default, skip_serializing_if = "Remembered::is_empty")]
    pub keep: Remembered,
}

/// Fingerprints of records already handed out, oldest first, stored as one base64 string.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub(crate) struct Remembered(pub Vec<u64>);

impl Remembered {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, print: u64) -> bool {
        self.0.contains(&print)
    }

    pub fn remember(&mut self, print: u64) {
        if self.0.contains(&print) {
            return;
        }
        self.0.push(print);
        if self.0.len() > MAX_REMEMBERED {
            let extra = self.0.len() - MAX_REMEMBERED;
            self.0.drain(..extra);
        }
    }
}

impl From<Remembered> for String {
    fn from(r: Remembered) -> String {
        use base64::Engine;
        let bytes: Vec<u8> = r.0.iter().flat_map(|p| p.to_be_bytes()).collect();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}

impl TryFrom<String> for Remembered {
    type Error = String;

    fn try_from(s: String) -> Result<Remembered, String> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.as_bytes())
            .map_err(|e| e.to_string())?;
        if bytes.len() % 8 != 0 {
            return Err("not a list of fingerprints".into());
        }
        Ok(Remembered(
            bytes
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    u64::from_be_bytes(b)
                })
                .collect(),
        ))
    }
}

/// A stable 64-bit fingerprint (FNV-1a) of a record as read, under `key` (its id in a
/// canonical form): the same record version always gives the same number, in every process
/// and Rust release.
pub(crate) fn fingerprint(key: &str, record: &Value) -> u64 {
    let text = record.to_string();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain([0]).chain(text.bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}
