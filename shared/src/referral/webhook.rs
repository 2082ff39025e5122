//! The Partner Center webhook notification.
//!
//! The notification is thin: no event id, no state, no sequence number. It only
//! says "this referral changed", so the connector reads the referral itself and
//! must tolerate duplicates and any order.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::model::Extra;

string_enum! {
    /// The event names Partner Center sends; other Partner Center events
    /// (invoices, subscriptions…) arrive as `Other`.
    pub enum EventName {
        ReferralCreated => "referral-created",
        ReferralUpdated => "referral-updated",
        /// The other party's referral of a shared engagement was created.
        RelatedReferralCreated => "related-referral-created",
        RelatedReferralUpdated => "related-referral-updated",
        /// Sent on request to prove the endpoint works; carries no real referral.
        TestCreated => "test-created",
    }
}

impl EventName {
    /// The events the connector registers for and syncs on.
    pub const REFERRAL_EVENTS: &'static [EventName] = &[
        EventName::ReferralCreated,
        EventName::ReferralUpdated,
        EventName::RelatedReferralCreated,
        EventName::RelatedReferralUpdated,
    ];

    pub fn is_referral_event(&self) -> bool {
        Self::REFERRAL_EVENTS.contains(self)
    }
}

/// One webhook delivery body.
///
/// Only `EventName` and `ResourceUri` are required here although the swagger
/// marks all but `AuditUri` as required: refusing an event over a field the
/// connector never reads would lose a sync for nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WebhookEvent {
    pub event_name: EventName,
    /// Where to GET the changed resource; its last path segment is the referral id.
    pub resource_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// Documented as present and `null`, so it is always written, as `null` when unset.
    #[serde(default)]
    pub audit_uri: Option<String>,
    /// Kept as sent; it has a different format from the referral timestamps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_change_utc_date: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Why a webhook body was not accepted as an event.
#[derive(Debug, Error)]
pub enum EventError {
    #[error("webhook body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("webhook body is a JSON {found}, expected an object")]
    NotAnObject { found: &'static str },
    #[error("webhook body has no {field} (absent or null)")]
    MissingField { field: &'static str },
    #[error("webhook body has an empty {field}")]
    EmptyField { field: &'static str },
    #[error("webhook {field} is a JSON {found}, expected a string")]
    NotAString {
        field: &'static str,
        found: &'static str,
    },
    #[error("webhook body does not have the event shape: {0}")]
    Invalid(#[source] serde_json::Error),
}

const REQUIRED: &[&str] = &["EventName", "ResourceUri"];
const OPTIONAL_TEXT: &[&str] = &["ResourceName", "AuditUri", "ResourceChangeUtcDate"];

impl WebhookEvent {
    /// Parses a delivery body, naming the first thing wrong with it so that a bad
    /// delivery can be logged usefully (serde's own messages name no field here).
    pub fn parse(bytes: &[u8]) -> Result<WebhookEvent, EventError> {
        let value: Value = serde_json::from_slice(bytes).map_err(EventError::NotJson)?;
        let Value::Object(fields) = &value else {
            return Err(EventError::NotAnObject {
                found: json_kind(&value),
            });
        };
        for &field in REQUIRED {
            match fields.get(field) {
                None | Some(Value::Null) => return Err(EventError::MissingField { field }),
                Some(Value::String(text)) if text.trim().is_empty() => {
                    return Err(EventError::EmptyField { field });
                }
                _ => {}
            }
        }
        for &field in REQUIRED.iter().chain(OPTIONAL_TEXT) {
            match fields.get(field) {
                None | Some(Value::Null) | Some(Value::String(_)) => {}
                Some(other) => {
                    return Err(EventError::NotAString {
                        field,
                        found: json_kind(other),
                    });
                }
            }
        }
        serde_json::from_value(value).map_err(EventError::Invalid)
    }

    /// The id of the changed resource: the last non-empty path segment of
    /// `ResourceUri`, ignoring query and fragment. The documented URI and the one
    /// the API serves differ in host and prefix, so nothing else is relied on.
    pub fn resource_id(&self) -> Option<&str> {
        let uri = self.resource_uri.as_str();
        let uri = uri.find(['?', '#']).map_or(uri, |end| &uri[..end]);
        let path = match uri.find("://") {
            Some(scheme_end) => {
                let after_scheme = &uri[scheme_end + 3..];
                after_scheme
                    .find('/')
                    .map_or("", |start| &after_scheme[start..])
            }
            None => uri,
        };
        path.rsplit('/').find(|segment| !segment.is_empty())
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DOCUMENTED: &str = include_str!("../../tests/fixtures/webhook_referral_updated.json");

    fn event_with_uri(uri: &str) -> WebhookEvent {
        WebhookEvent {
            event_name: EventName::ReferralUpdated,
            resource_uri: uri.to_owned(),
            resource_name: None,
            audit_uri: None,
            resource_change_utc_date: None,
            extra: Extra::new(),
        }
    }

    #[test]
    fn parses_the_documented_payload_and_writes_it_back_unchanged() {
        let event = WebhookEvent::parse(DOCUMENTED.as_bytes()).expect("documented payload");
        assert_eq!(event.event_name, EventName::ReferralUpdated);
        assert_eq!(
            event.resource_uri,
            "https://api.partnercenter.microsoft.com/engagements/v1/referrals/5dd4a8e1-3f0c-4b5e-9a51-0c6f2d7b8e90"
        );
        assert_eq!(event.resource_name.as_deref(), Some("referral"));
        assert_eq!(event.audit_uri, None);
        assert_eq!(
            event.resource_change_utc_date.as_deref(),
            Some("2018-02-17T00:05:39.5485487+00:00")
        );
        assert!(event.extra.is_empty());
        assert_eq!(
            event.resource_id(),
            Some("5dd4a8e1-3f0c-4b5e-9a51-0c6f2d7b8e90")
        );

        let original: Value = serde_json::from_str(DOCUMENTED).expect("fixture is JSON");
        assert_eq!(serde_json::to_value(&event).expect("serialise"), original);
    }

    #[test]
    fn keeps_unknown_keys_and_event_names() {
        let body = br#"{"EventName":"invoice-ready","ResourceUri":"/v1/invoices/D0001",
            "AuditUri":"https://audit/1","TenantId":null,"Attempt":3}"#;
        let event = WebhookEvent::parse(body).expect("valid");
        assert_eq!(event.event_name, EventName::Other("invoice-ready".into()));
        assert!(!event.event_name.is_referral_event());
        assert_eq!(event.audit_uri.as_deref(), Some("https://audit/1"));
        assert_eq!(event.extra.get("TenantId"), Some(&Value::Null));
        assert_eq!(event.extra.get("Attempt"), Some(&json!(3)));
        assert_eq!(event.resource_id(), Some("D0001"));
        let written = serde_json::to_value(&event).expect("serialise");
        assert_eq!(written["TenantId"], Value::Null);
        assert_eq!(written["EventName"], json!("invoice-ready"));
    }

    #[test]
    fn referral_events_are_the_four_referral_names() {
        let names: Vec<&str> = EventName::REFERRAL_EVENTS
            .iter()
            .map(EventName::as_str)
            .collect();
        assert_eq!(
            names,
            [
                "referral-created",
                "referral-updated",
                "related-referral-created",
                "related-referral-updated"
            ]
        );
        assert!(EventName::RelatedReferralUpdated.is_referral_event());
        assert!(!EventName::TestCreated.is_referral_event());
        assert_eq!(EventName::from("Test-Created"), EventName::TestCreated);
    }

    #[test]
    fn resource_id_is_the_last_path_segment() {
        let cases = [
            (
                "https://api.partnercenter.microsoft.com/engagements/v1/referrals/abc",
                Some("abc"),
            ),
            (
                "http://127.0.0.1:9/v1.0/engagements/referrals/abc?x=1",
                Some("abc"),
            ),
            (
                "https://api.partner.microsoft.com/v1.0/engagements/referrals/abc/",
                Some("abc"),
            ),
            ("https://host/referrals/abc//?x=/y/z#frag/ment", Some("abc")),
            ("https://host/referrals/abc#top", Some("abc")),
            ("/v1.0/engagements/referrals/abc", Some("abc")),
            ("abc", Some("abc")),
            ("https://host.example", None),
            ("https://host.example/", None),
            ("https://host.example?id=abc", None),
            ("", None),
        ];
        for (uri, expected) in cases {
            assert_eq!(event_with_uri(uri).resource_id(), expected, "{uri}");
        }
    }

    #[test]
    fn names_what_is_wrong_with_a_bad_body() {
        let error = |body: &str| WebhookEvent::parse(body.as_bytes()).expect_err("refused");

        assert!(matches!(
            error("EventName=referral-updated"),
            EventError::NotJson(_)
        ));
        assert!(matches!(error(""), EventError::NotJson(_)));
        assert!(matches!(
            error(r#"[{"EventName":"referral-updated"}]"#),
            EventError::NotAnObject { found: "array" }
        ));
        assert!(matches!(
            error(r#"{"ResourceUri":"https://h/referrals/a"}"#),
            EventError::MissingField { field: "EventName" }
        ));
        assert!(matches!(
            error(r#"{"EventName":null,"ResourceUri":"https://h/referrals/a"}"#),
            EventError::MissingField { field: "EventName" }
        ));
        assert!(matches!(
            error(r#"{"EventName":"referral-updated"}"#),
            EventError::MissingField {
                field: "ResourceUri"
            }
        ));
        assert!(matches!(
            error(r#"{"EventName":"referral-updated","ResourceUri":" "}"#),
            EventError::EmptyField {
                field: "ResourceUri"
            }
        ));
        assert!(matches!(
            error(r#"{"EventName":7,"ResourceUri":"https://h/referrals/a"}"#),
            EventError::NotAString {
                field: "EventName",
                found: "number"
            }
        ));
        assert!(matches!(
            error(r#"{"EventName":"referral-updated","ResourceUri":"u","AuditUri":{}}"#),
            EventError::NotAString {
                field: "AuditUri",
                found: "object"
            }
        ));

        let message = error(r#"{"EventName":"referral-created"}"#).to_string();
        assert_eq!(message, "webhook body has no ResourceUri (absent or null)");
    }

    #[test]
    fn only_event_name_and_resource_uri_are_required() {
        let event = WebhookEvent::parse(
            br#"{"EventName":"referral-created","ResourceUri":"https://h/referrals/r1"}"#,
        )
        .expect("minimal event");
        assert_eq!(event.event_name, EventName::ReferralCreated);
        assert_eq!(event.resource_name, None);
        assert_eq!(event.resource_change_utc_date, None);
        assert_eq!(
            serde_json::to_value(&event).expect("serialise"),
            json!({"EventName":"referral-created","ResourceUri":"https://h/referrals/r1","AuditUri":null})
        );
    }
}
