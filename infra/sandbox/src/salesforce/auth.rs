//! Salesforce's own OAuth endpoint (`POST /services/oauth2/token`, docs/salesforce.md,
//! "Sign-in") and the check of `Authorization: Bearer` on the REST API.
//!
//! The JWT bearer grant needs a connected app with a certificate: the sandbox loads one from
//! [`Config::certificate_file`] or generates a key pair once per process, so that a reset keeps
//! the key a connector already fetched through the control API.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use aws_lc_rs::hmac;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rcgen::{DistinguishedName, DnType};
use serde::Deserialize;
use serde_json::{Value, json};

use super::errors::{OAuthError, SfError};
use super::{Config, Session};
use crate::app::App;

/// The connected app's certificate, against which JWT assertions are verified, and its private
/// key when the sandbox knows it (always, unless a certificate alone was configured).
pub struct ConnectedApp {
    pub certificate_pem: String,
    pub private_key_pem: Option<String>,
    key: DecodingKey,
}

impl std::fmt::Debug for ConnectedApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectedApp")
            .field("has_private_key", &self.private_key_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl ConnectedApp {
    fn from_pems(certificate_pem: String, private_key_pem: Option<String>) -> Result<Self, String> {
        let key = DecodingKey::from_rsa_pem(certificate_pem.as_bytes())
            .map_err(|e| format!("the connected app certificate has no RSA public key: {e}"))?;
        Ok(ConnectedApp {
            certificate_pem,
            private_key_pem,
            key,
        })
    }
}

/// A fresh RSA-2048 key and a self-signed certificate for it, as an admin would upload to the
/// connected app.
fn generate() -> Result<(String, String), String> {
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        "cosell-sandbox Salesforce connected app",
    );
    let (key, cert) = crate::signing::self_signed_rsa(dn)
        .map_err(|e| format!("cannot generate the connected app key: {e}"))?;
    Ok((key.serialize_pem(), cert.pem()))
}

/// Loads the configured certificate, or takes the process's generated key pair.
pub fn connected_app(config: &Config) -> Result<Arc<ConnectedApp>, String> {
    static GENERATED: OnceLock<Result<Arc<ConnectedApp>, String>> = OnceLock::new();
    let Some(cert_path) = &config.certificate_file else {
        return GENERATED
            .get_or_init(|| {
                let (key, cert) = generate()?;
                ConnectedApp::from_pems(cert, Some(key)).map(Arc::new)
            })
            .clone();
    };
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let cert = read(cert_path)?;
    let key = config.private_key_file.as_deref().map(read).transpose()?;
    ConnectedApp::from_pems(cert, key).map(Arc::new)
}

/// The claims the JWT bearer grant checks.
#[derive(Debug, Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    /// A string or a list of strings.
    aud: Option<Value>,
    exp: Option<i64>,
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `POST /services/oauth2/token` (form-encoded).
pub async fn token(State(app): State<App>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    match grant(&app, &form) {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

fn grant(app: &App, form: &HashMap<String, String>) -> Result<Value, OAuthError> {
    let config = &app.config.salesforce;
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    match field("grant_type") {
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            let username = check_assertion(app, field("assertion"))?;
            let (token, user_id) = issue(app, &username)?;
            Ok(json!({
                "access_token": token,
                "scope": "api",
                "instance_url": app.base_url,
                "id": identity_url(app, &user_id),
                "token_type": "Bearer",
            }))
        }
        "client_credentials" if config.client_credentials => {
            if field("client_id") != config.consumer_key
                || field("client_secret") != config.consumer_secret
            {
                return Err(OAuthError::new(
                    "invalid_client",
                    "invalid client credentials",
                ));
            }
            let run_as = config.jwt_users.first().cloned().unwrap_or_default();
            let (token, user_id) = issue(app, &run_as)?;
            let id = identity_url(app, &user_id);
            let issued_at = app.clock.now().timestamp_millis().to_string();
            // As documented for the OAuth flows: HMAC-SHA256 of id + issued_at, keyed with the
            // consumer secret, so a client can check the response was not tampered with.
            let key = hmac::Key::new(hmac::HMAC_SHA256, config.consumer_secret.as_bytes());
            let tag = hmac::sign(&key, format!("{id}{issued_at}").as_bytes());
            Ok(json!({
                "access_token": token,
                "signature": base64::engine::general_purpose::STANDARD.encode(tag.as_ref()),
                "scope": "api",
                "instance_url": app.base_url,
                "id": id,
                "token_type": "Bearer",
                "issued_at": issued_at,
            }))
        }
        _ => Err(OAuthError::new(
            "unsupported_grant_type",
            "grant type not supported",
        )),
    }
}

/// Verifies an assertion and returns the user it is for.
fn check_assertion(app: &App, assertion: &str) -> Result<String, OAuthError> {
    let config = &app.config.salesforce;
    let connected = app
        .salesforce()
        .connected_app
        .clone()
        .map_err(|e| OAuthError::invalid_grant(format!("connected app unavailable: {e}")))?;
    // Only the signature is checked by the library; every claim is checked below against the
    // sandbox clock and configuration, so each failure gets its own description.
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Claims>(assertion, &connected.key, &validation)
        .map_err(|_| OAuthError::invalid_grant("invalid assertion"))?
        .claims;
    if claims.iss.as_deref() != Some(config.consumer_key.as_str()) {
        return Err(OAuthError::new(
            "invalid_client_id",
            "client identifier invalid",
        ));
    }
    let audiences: Vec<&str> = match &claims.aud {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let accepted = |aud: &str| {
        config.jwt_audiences.iter().any(|a| same_url(a, aud))
            || (config.accept_base_url_audience && same_url(&app.base_url, aud))
    };
    if !audiences.iter().any(|a| accepted(a)) {
        return Err(OAuthError::invalid_grant("audience is invalid"));
    }
    // The client stamps its assertion with its own (real) clock; judging it by the sandbox's
    // advanced clock would refuse every assertion after a test moves time forward.
    let now = chrono::Utc::now().timestamp();
    let Some(exp) = claims.exp else {
        return Err(OAuthError::invalid_grant("invalid assertion: exp missing"));
    };
    if exp <= now {
        return Err(OAuthError::invalid_grant("expired assertion"));
    }
    let max = i64::try_from(config.jwt_max_lifetime.as_secs()).unwrap_or(i64::MAX);
    if exp - now > max {
        return Err(OAuthError::invalid_grant(
            "invalid assertion: exp is too far in the future",
        ));
    }
    let sub = claims.sub.unwrap_or_default();
    match config
        .jwt_users
        .iter()
        .find(|u| u.eq_ignore_ascii_case(&sub))
    {
        Some(u) => Ok(u.clone()),
        None => Err(OAuthError::invalid_grant(
            "user hasn't approved this consumer",
        )),
    }
}

fn identity_url(app: &App, user_id: &str) -> String {
    let org = app.salesforce().org_id.clone();
    format!("{}/id/{org}/{user_id}", app.base_url)
}

/// A new access token for `username`; returns it and the user's id.
fn issue(app: &App, username: &str) -> Result<(String, String), OAuthError> {
    let now = app.clock.now();
    let lifetime = chrono::Duration::from_std(app.config.salesforce.session_lifetime)
        .unwrap_or(chrono::Duration::hours(2));
    let mut state = app.salesforce();
    let user_id = state
        .user_by_name(username)
        .map(|u| u.id.clone())
        .ok_or_else(|| OAuthError::invalid_grant("user is not active"))?;
    // Salesforce tokens start with the org id, then `!` and an opaque part.
    let token = format!("{}!AQ{}", &state.org_id[..15], random_secret());
    state.sessions.insert(
        token.clone(),
        Session {
            user_id: user_id.clone(),
            expires_at: now + lifetime,
        },
    );
    Ok((token, user_id))
}

/// The user id behind `Authorization: Bearer …` (or Salesforce's older `OAuth …` scheme).
pub fn authenticate(
    state: &mut super::State,
    headers: &HeaderMap,
    now: DateTime<Utc>,
) -> Result<String, SfError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| {
            scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth")
        })
        .map(|(_, t)| t.trim())
        .ok_or_else(SfError::invalid_session)?;
    let session = state
        .sessions
        .get(token)
        .cloned()
        .ok_or_else(SfError::invalid_session)?;
    if session.expires_at <= now {
        state.sessions.remove(token);
        return Err(SfError::invalid_session());
    }
    Ok(session.user_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_verifies_what_its_key_signs() {
        let (key, cert) = generate().expect("generate");
        let app = ConnectedApp::from_pems(cert, Some(key.clone())).expect("certificate");
        let signing = jsonwebtoken::EncodingKey::from_rsa_pem(key.as_bytes()).expect("key");
        let jwt = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::RS256),
            &json!({"iss": "x", "exp": 1}),
            &signing,
        )
        .expect("sign");
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Claims>(&jwt, &app.key, &validation).expect("verify");
        assert_eq!(claims.claims.iss.as_deref(), Some("x"));
        let (other_key, _) = generate().expect("generate");
        let forged = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::RS256),
            &json!({"iss": "x", "exp": 1}),
            &jsonwebtoken::EncodingKey::from_rsa_pem(other_key.as_bytes()).expect("key"),
        )
        .expect("sign");
        assert!(jsonwebtoken::decode::<Claims>(&forged, &app.key, &validation).is_err());
    }
}
