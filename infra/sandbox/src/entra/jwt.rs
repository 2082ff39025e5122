//! The tokens Entra hands out are JWTs a client may decode (the connector reads `amr` and the
//! id token's `preferred_username`); their signature is HS256 with a key made once per process,
//! because APIs in the sandbox look tokens up instead of verifying them.

use std::sync::OnceLock;

use base64::Engine;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::Subject;
use crate::config::TENANT_ID;

fn key() -> &'static EncodingKey {
    static KEY: OnceLock<EncodingKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let secret: [u8; 32] = rand::random();
        EncodingKey::from_secret(&secret)
    })
}

/// A signed JWT, or `None` if the claims could not be serialised (they are built here, so that
/// would be a bug, answered as a server error rather than a panic).
pub fn sign(claims: &Value) -> Option<String> {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("JWT".into());
    jsonwebtoken::encode(&header, claims, key()).ok()
}

/// Entra's object ids are GUIDs that never change for a user; deriving one from the user name
/// keeps it stable across restarts without storing anything.
pub fn object_id(name: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        name.to_ascii_lowercase().as_bytes(),
    );
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The id token's `sub` is pairwise: the same user has a different one in every app.
fn pairwise_subject(username: &str, client_id: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{}|{client_id}", username.to_ascii_lowercase()).as_bytes(),
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..32])
}

/// "referral-admin@sandbox.test" → "Referral Admin": the display name a directory would hold.
pub fn display_name(username: &str) -> String {
    let local = username.split('@').next().unwrap_or(username);
    local
        .split(['-', '.', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// How the client proved itself, as the access token's `appidacr` says: 0 public client,
/// 1 client secret, 2 certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientProof {
    None,
    Secret,
    Certificate,
}

impl ClientProof {
    fn appidacr(self) -> &'static str {
        match self {
            ClientProof::None => "0",
            ClientProof::Secret => "1",
            ClientProof::Certificate => "2",
        }
    }
}

/// The claims of a v1 access token, the kind Partner Center accepts.
pub fn access_claims(
    subject: &Subject,
    audience: &str,
    proof: ClientProof,
    issued: DateTime<Utc>,
    expires: DateTime<Utc>,
) -> Value {
    let mut claims = json!({
        "aud": audience,
        "iss": format!("https://sts.windows.net/{TENANT_ID}/"),
        "iat": issued.timestamp(),
        "nbf": issued.timestamp(),
        "exp": expires.timestamp(),
        "tid": TENANT_ID,
        "appidacr": proof.appidacr(),
        "ver": "1.0",
        // Unique per token, so two tokens issued in the same second differ.
        "uti": uuid::Uuid::new_v4().simple().to_string(),
    });
    let Some(obj) = claims.as_object_mut() else {
        return claims;
    };
    match subject {
        Subject::App { client_id } => {
            // The service principal's object id; app-only tokens name no user.
            let oid = object_id(&format!("app:{client_id}"));
            obj.insert("appid".into(), json!(client_id));
            obj.insert("idtyp".into(), json!("app"));
            obj.insert("sub".into(), json!(oid));
            obj.insert("oid".into(), json!(oid));
        }
        Subject::User {
            client_id,
            username,
            amr,
            ..
        } => {
            obj.insert("appid".into(), json!(client_id));
            obj.insert("acr".into(), json!("1"));
            obj.insert("amr".into(), json!(amr));
            obj.insert("name".into(), json!(display_name(username)));
            obj.insert("oid".into(), json!(object_id(username)));
            obj.insert("scp".into(), json!("user_impersonation"));
            obj.insert("sub".into(), json!(pairwise_subject(username, audience)));
            obj.insert("unique_name".into(), json!(username));
            obj.insert("upn".into(), json!(username));
        }
    }
    claims
}

/// What an id token says about the sign-in.
pub struct IdToken<'a> {
    pub v1: bool,
    pub client_id: &'a str,
    pub username: &'a str,
    pub amr: &'a [String],
    pub nonce: Option<&'a str>,
    pub issued: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

/// The OpenID Connect id token: v2 by default, v1's shape (issuer, `upn`, `amr`) from the v1
/// endpoint.
pub fn id_claims(t: &IdToken<'_>) -> Value {
    let mut claims = json!({
        "aud": t.client_id,
        "iss": if t.v1 {
            format!("https://sts.windows.net/{TENANT_ID}/")
        } else {
            format!("https://login.microsoftonline.com/{TENANT_ID}/v2.0")
        },
        "iat": t.issued.timestamp(),
        "nbf": t.issued.timestamp(),
        "exp": t.expires.timestamp(),
        "tid": TENANT_ID,
        "oid": object_id(t.username),
        "sub": pairwise_subject(t.username, t.client_id),
        "name": display_name(t.username),
        "preferred_username": t.username,
        "ver": if t.v1 { "1.0" } else { "2.0" },
    });
    if let Some(obj) = claims.as_object_mut() {
        if let Some(nonce) = t.nonce {
            obj.insert("nonce".into(), json!(nonce));
        }
        if t.v1 {
            obj.insert("upn".into(), json!(t.username));
            obj.insert("unique_name".into(), json!(t.username));
            obj.insert("amr".into(), json!(t.amr));
        }
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_are_stable_guids_per_user() {
        let a = object_id("referral-admin@sandbox.test");
        assert_eq!(a, object_id("Referral-Admin@sandbox.test"));
        assert_ne!(a, object_id("referral-user@sandbox.test"));
        assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
    }

    #[test]
    fn display_names_come_from_the_user_name() {
        assert_eq!(
            display_name("referral-admin@sandbox.test"),
            "Referral Admin"
        );
        assert_eq!(display_name("ola.nordmann@x"), "Ola Nordmann");
    }
}
