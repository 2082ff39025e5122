//! Resource paths after `/api/data/v9.x/`: `set`, `set(<guid>)`, `set(col='v',…)`, `set/$count`,
//! and the unbound operations. One wildcard route serves them all because axum cannot match
//! `set(id)` inside a segment.

use serde_json::Value;
use uuid::Uuid;

use super::error::DvError;

/// Web API versions the simulator answers (docs/dataverse.md, "URL and version": v9.2 is
/// current, v9.0 URLs keep working).
pub const VERSIONS: &[&str] = &["v9.0", "v9.1", "v9.2"];

/// How a row is addressed.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Id(Uuid),
    /// Alternate key columns and their values, in URL order.
    Alternate(Vec<(String, Value)>),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Id(id) => write!(f, "{id}"),
            Key::Alternate(pairs) => {
                let parts: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => format!("{k}='{s}'"),
                        other => format!("{k}={other}"),
                    })
                    .collect();
                write!(f, "{}", parts.join(","))
            }
        }
    }
}

/// What a request addresses.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    Collection(String),
    Count(String),
    Row(String, Key),
    /// `WinOpportunity` / `LoseOpportunity`.
    Action(String),
    WhoAmI,
    /// The metadata API (`EntityDefinitions…`, `RelationshipDefinitions…`,
    /// `InsertStatusValue`, `PublishXml`): the decoded path, parsed by `metadata`.
    Metadata(String),
    /// Anything deeper (`set(id)/name`, `$ref`, `$batch`, `$metadata`): real, not simulated.
    Unsupported(String),
}

/// Decodes `%XX` escapes of a URL path (a `+` stays a `+` in paths).
pub fn percent_decode(s: &str) -> Result<String, DvError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| DvError::bad_request("Bad Request - Error in query syntax."))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| DvError::bad_request("Bad Request - Error in query syntax."))
}

/// Splits `/api/data/v9.2/rest` into the version and the rest; `None` when not this API's.
pub fn split_api_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/api/data/")?;
    Some(rest.split_once('/').unwrap_or((rest, "")))
}

/// `name(inner)` → (`name`, `inner`).
pub(super) fn split_key_segment(segment: &str) -> Option<(&str, &str)> {
    let open = segment.find('(')?;
    let inner = segment[open + 1..].strip_suffix(')')?;
    Some((&segment[..open], inner))
}

fn syntax_error() -> DvError {
    DvError::bad_request("Bad Request - Error in query syntax.")
}

/// One key value: `'text'` (`''` escapes a quote), a GUID, a number, `true`/`false`.
fn key_value(raw: &str) -> Result<Value, DvError> {
    let raw = raw.trim();
    if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return Ok(Value::String(inner.replace("''", "'")));
    }
    if let Ok(id) = Uuid::parse_str(raw) {
        return Ok(Value::String(id.to_string()));
    }
    match raw {
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if let Ok(i) = raw.parse::<i64>() {
        return Ok(Value::from(i));
    }
    raw.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
        .ok_or_else(syntax_error)
}

/// Splits on commas outside quotes.
fn split_pairs(inner: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in inner.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
}

/// The key inside `set(…)`: a bare GUID, or `col=value` pairs.
pub fn parse_key(inner: &str) -> Result<Key, DvError> {
    let inner = inner.trim();
    if let Ok(id) = Uuid::parse_str(inner) {
        return Ok(Key::Id(id));
    }
    let mut pairs = Vec::new();
    for part in split_pairs(inner) {
        let (name, value) = part.split_once('=').ok_or_else(syntax_error)?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(syntax_error());
        }
        pairs.push((name.to_string(), key_value(value)?));
    }
    Ok(Key::Alternate(pairs))
}

/// First segments of the metadata API: definitions are addressed by key and navigated deeper
/// than data rows, so they get their own parser.
const METADATA_HEADS: &[&str] = &[
    "EntityDefinitions",
    "RelationshipDefinitions",
    "GlobalOptionSetDefinitions",
    "InsertStatusValue",
    "PublishXml",
    "PublishAllXml",
];

/// Reads the decoded rest of an API path.
pub fn parse_resource(rest: &str) -> Result<Resource, DvError> {
    let rest = rest.trim_end_matches('/');
    let mut segments = rest.split('/');
    let first = segments.next().unwrap_or("");
    let head = first.split('(').next().unwrap_or("");
    if METADATA_HEADS.contains(&head.strip_prefix("Microsoft.Dynamics.CRM.").unwrap_or(head)) {
        return Ok(Resource::Metadata(rest.to_string()));
    }
    let second = segments.next();
    if segments.next().is_some() {
        return Ok(Resource::Unsupported(rest.to_string()));
    }
    let bare = first
        .strip_prefix("Microsoft.Dynamics.CRM.")
        .unwrap_or(first);
    match (bare, second) {
        ("WinOpportunity" | "LoseOpportunity", None) => {
            return Ok(Resource::Action(bare.to_string()));
        }
        ("WhoAmI" | "WhoAmI()", None) => return Ok(Resource::WhoAmI),
        _ => {}
    }
    if first.is_empty() || first.starts_with('$') {
        return Ok(Resource::Unsupported(rest.to_string()));
    }
    match (split_key_segment(first), second) {
        (Some((set, inner)), None) => Ok(Resource::Row(set.to_string(), parse_key(inner)?)),
        (Some(_), Some(_)) => Ok(Resource::Unsupported(rest.to_string())),
        (None, None) if !first.contains('(') => Ok(Resource::Collection(first.to_string())),
        (None, Some("$count")) => Ok(Resource::Count(first.to_string())),
        _ => Ok(Resource::Unsupported(rest.to_string())),
    }
}

/// A bind value: `/accounts(<id>)`, `accounts(<id>)`, or the absolute URL of the row.
pub fn parse_reference(reference: &str) -> Result<(String, Key), DvError> {
    let bad = || {
        DvError::bad_request(format!(
            "The @odata.bind value '{reference}' is not a valid entity reference."
        ))
    };
    let path = match reference.find("/api/data/") {
        Some(at) => split_api_path(&reference[at..])
            .map(|(_, rest)| rest)
            .ok_or_else(bad)?,
        None => reference.trim_start_matches('/'),
    };
    let path = percent_decode(path)?;
    let (set, inner) = split_key_segment(&path).ok_or_else(bad)?;
    if set.is_empty() || set.contains('/') {
        return Err(bad());
    }
    Ok((set.to_string(), parse_key(inner).map_err(|_| bad())?))
}

/// The counter key for an API path: ids become `{id}` (alternate keys and other keys
/// `{key}`) in every segment, so counts are per entity set (or definition) and operation:
/// `/api/data/v9.2/EntityDefinitions({key})/Attributes`.
pub fn label(path: &str) -> Option<String> {
    let (version, rest) = split_api_path(path)?;
    let segments: Vec<String> = rest
        .split('/')
        .map(|segment| match split_key_segment(segment) {
            Some((name, inner)) => {
                let decoded = percent_decode(inner).unwrap_or_default();
                if Uuid::parse_str(decoded.trim()).is_ok() {
                    format!("{name}({{id}})")
                } else {
                    format!("{name}({{key}})")
                }
            }
            None => segment.to_string(),
        })
        .collect();
    Some(format!("/api/data/{version}/{}", segments.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";

    #[test]
    fn resources() {
        assert_eq!(
            parse_resource("accounts").expect("ok"),
            Resource::Collection("accounts".into())
        );
        assert_eq!(
            parse_resource(&format!("accounts({ID})")).expect("ok"),
            Resource::Row(
                "accounts".into(),
                Key::Id(Uuid::parse_str(ID).expect("uuid"))
            )
        );
        assert_eq!(
            parse_resource("accounts(accountnumber='A''1',x=2)").expect("ok"),
            Resource::Row(
                "accounts".into(),
                Key::Alternate(vec![
                    ("accountnumber".into(), Value::from("A'1")),
                    ("x".into(), Value::from(2)),
                ])
            )
        );
        assert_eq!(
            parse_resource("accounts/$count").expect("ok"),
            Resource::Count("accounts".into())
        );
        assert_eq!(
            parse_resource("Microsoft.Dynamics.CRM.WinOpportunity").expect("ok"),
            Resource::Action("WinOpportunity".into())
        );
        assert!(matches!(
            parse_resource(&format!("accounts({ID})/name")),
            Ok(Resource::Unsupported(_))
        ));
        assert!(parse_resource("accounts(not a key)").is_err());
        assert_eq!(
            parse_resource("EntityDefinitions(LogicalName='lead')/Attributes").expect("ok"),
            Resource::Metadata("EntityDefinitions(LogicalName='lead')/Attributes".into())
        );
        assert_eq!(
            parse_resource("Microsoft.Dynamics.CRM.InsertStatusValue").expect("ok"),
            Resource::Metadata("Microsoft.Dynamics.CRM.InsertStatusValue".into())
        );
    }

    #[test]
    fn references() {
        let (set, key) = parse_reference(&format!("/accounts({ID})")).expect("ok");
        assert_eq!(set, "accounts");
        assert_eq!(key, Key::Id(Uuid::parse_str(ID).expect("uuid")));
        let (set, _) = parse_reference(&format!("http://127.0.0.1:1/api/data/v9.2/contacts({ID})"))
            .expect("ok");
        assert_eq!(set, "contacts");
        assert!(parse_reference("accounts").is_err());
    }

    #[test]
    fn labels() {
        assert_eq!(
            label(&format!("/api/data/v9.2/opportunities({ID})")).as_deref(),
            Some("/api/data/v9.2/opportunities({id})")
        );
        assert_eq!(
            label("/api/data/v9.2/accounts(accountnumber='A%201')").as_deref(),
            Some("/api/data/v9.2/accounts({key})")
        );
        assert_eq!(
            label("/api/data/v9.0/accounts").as_deref(),
            Some("/api/data/v9.0/accounts")
        );
        assert_eq!(label("/services/data"), None);
        assert_eq!(
            label("/api/data/v9.2/EntityDefinitions(LogicalName='opportunity')/Attributes(LogicalName='statuscode')/Microsoft.Dynamics.CRM.StatusAttributeMetadata").as_deref(),
            Some("/api/data/v9.2/EntityDefinitions({key})/Attributes({key})/Microsoft.Dynamics.CRM.StatusAttributeMetadata")
        );
        assert_eq!(
            label(&format!("/api/data/v9.2/EntityDefinitions({ID})")).as_deref(),
            Some("/api/data/v9.2/EntityDefinitions({id})")
        );
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%20b+c").expect("ok"), "a b+c");
        assert!(percent_decode("%zz").is_err());
    }
}
