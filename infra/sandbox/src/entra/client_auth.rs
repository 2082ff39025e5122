//! How a client proves who it is at the token endpoint: a client secret, or a client assertion
//! (private_key_jwt) signed with the key of a certificate registered for the app.

use std::collections::HashMap;

use axum::http::StatusCode;
use base64::Engine;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::jwt::ClientProof;
use super::{AadError, Endpoint, Form, aad_error, field, refusal, required, unknown_client};
use crate::app::App;
use crate::config::{ClientIdentity, TENANT_ID};

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Clock skew allowed on an assertion's `nbf` and `exp`, as Entra allows.
const SKEW_SECS: i64 = 300;

/// A client that has identified itself, and how it proved it.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub proof: ClientProof,
    /// The app registration allows public client flows (device code without a credential).
    pub public_client_flows: bool,
}

impl Client {
    /// The grant needs a confidential client: a request with no credential is refused.
    pub fn require_credential(&self) -> Result<(), AadError> {
        if self.proof == ClientProof::None {
            return Err(missing_credential(StatusCode::UNAUTHORIZED));
        }
        Ok(())
    }

    /// The grant is also a public client's sign-in, but only where the app registration allows
    /// public client flows; otherwise a request with no credential is refused with `status`.
    pub fn require_credential_or_public_flows(&self, status: StatusCode) -> Result<(), AadError> {
        if self.proof == ClientProof::None && !self.public_client_flows {
            return Err(missing_credential(status));
        }
        Ok(())
    }
}

pub fn missing_credential(status: StatusCode) -> AadError {
    aad_error(
        status,
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    )
}

/// `jti`s of assertions already presented, with the time after which they may be forgotten
/// (an assertion past its `exp` is refused anyway).
#[derive(Debug, Default)]
pub struct SeenAssertions(HashMap<(String, String), DateTime<Utc>>);

impl SeenAssertions {
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Records the `jti`; false when it was seen before.
    fn first_use(&mut self, client_id: &str, jti: &str, keep_until: DateTime<Utc>) -> bool {
        let now = Utc::now();
        self.0.retain(|_, until| *until > now);
        self.0
            .insert((client_id.to_string(), jti.to_string()), keep_until)
            .is_none()
    }
}

fn thumbprint(algorithm: &'static aws_lc_rs::digest::Algorithm, der: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(algorithm, der).as_ref())
}

/// The certificate's `x5t` (SHA-1) and `x5t#S256` (SHA-256) thumbprints, base64url.
pub fn thumbprints(der: &[u8]) -> (String, String) {
    (
        thumbprint(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der),
        thumbprint(&aws_lc_rs::digest::SHA256, der),
    )
}

fn pem_of(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// The RSA public key of a certificate, to verify RS256 and PS256 assertions with.
pub fn rsa_key(der: &[u8]) -> Result<DecodingKey, String> {
    DecodingKey::from_rsa_pem(pem_of(der).as_bytes())
        .map_err(|e| format!("the certificate has no RSA public key: {e}"))
}

/// A PEM certificate as uploaded to an app registration, checked to carry an RSA key.
pub fn parse_certificate(pem: &str) -> Result<Vec<u8>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("certificate_pem is not a PEM certificate: {e}"))?
        .to_vec();
    rsa_key(&der)?;
    Ok(der)
}

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Value>,
    exp: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
}

fn invalid_client(code: u32, description: &str) -> AadError {
    aad_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        code,
        description,
    )
}

/// An assertion's `aud` must name this token endpoint. Hosts differ behind the sandbox, so only
/// the path counts: `/{tenant}/oauth2/token` or `/{tenant}/oauth2/v2.0/token`, with the tenant
/// as the request named it or as the directory's id.
fn audience_matches(aud: &str, endpoint: &Endpoint) -> bool {
    let path = url::Url::parse(aud)
        .map(|u| u.path().to_string())
        .unwrap_or_else(|_| aud.to_string());
    let mut segments = path.trim_matches('/').splitn(2, '/');
    let (Some(tenant), Some(rest)) = (segments.next(), segments.next()) else {
        return false;
    };
    let tenant_ok =
        tenant.eq_ignore_ascii_case(&endpoint.tenant) || tenant.eq_ignore_ascii_case(TENANT_ID);
    tenant_ok
        && (rest.eq_ignore_ascii_case("oauth2/token")
            || rest.eq_ignore_ascii_case("oauth2/v2.0/token"))
}

impl App {
    /// Certificates registered for a client: configured ones and those added at run time.
    pub fn client_certificates(&self, client_id: &str) -> Vec<Vec<u8>> {
        let mut all: Vec<Vec<u8>> = self
            .config
            .clients
            .iter()
            .filter(|c| c.client_id == client_id)
            .flat_map(|c| c.certificates.iter().cloned())
            .collect();
        all.extend(self.tokens().client_certificates(client_id));
        all
    }

    /// The app registration of a client id.
    pub fn registered_client(&self, client_id: &str) -> Result<&ClientIdentity, AadError> {
        self.config
            .clients
            .iter()
            .find(|c| c.client_id == client_id)
            .ok_or_else(|| unknown_client(client_id))
    }

    /// Identifies the client of a token request and checks the credential it presented, if
    /// any. Whether a credential is needed depends on the grant, so that is left to the caller.
    pub fn identify_client(&self, form: &Form, endpoint: &Endpoint) -> Result<Client, AadError> {
        let client_id = required(form, "client_id")?;
        let known = self.registered_client(client_id)?;
        let client = |proof| Client {
            id: client_id.to_string(),
            proof,
            public_client_flows: known.public_client_flows,
        };
        let assertion_type = field(form, "client_assertion_type");
        let assertion = field(form, "client_assertion");
        // An assertion wins over a secret sent beside it: it is the stronger credential.
        if !assertion_type.is_empty() || !assertion.is_empty() {
            if assertion_type != ASSERTION_TYPE {
                return Err(refusal(
                    "invalid_request",
                    90014,
                    &format!("The client_assertion_type must be '{ASSERTION_TYPE}'."),
                ));
            }
            if assertion.is_empty() {
                return Err(refusal(
                    "invalid_request",
                    90014,
                    "The request body must contain the following parameter: 'client_assertion'.",
                ));
            }
            self.check_assertion(client_id, assertion, endpoint)?;
            return Ok(client(ClientProof::Certificate));
        }
        let secret = form.get("client_secret");
        match secret {
            None => Ok(client(ClientProof::None)),
            Some(s) if *s == known.client_secret => Ok(client(ClientProof::Secret)),
            Some(_) => Err(invalid_client(
                7000215,
                &format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                ),
            )),
        }
    }

    /// Checks a private_key_jwt assertion: its certificate, signature, issuer and subject,
    /// audience, validity window and `jti`.
    fn check_assertion(
        &self,
        client_id: &str,
        assertion: &str,
        endpoint: &Endpoint,
    ) -> Result<(), AadError> {
        let malformed =
            |why: &str| invalid_client(50027, &format!("JWT token is invalid or malformed: {why}"));
        let header =
            jsonwebtoken::decode_header(assertion).map_err(|e| malformed(&e.to_string()))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::PS256) {
            return Err(malformed(&format!(
                "the client assertion is signed with {:?}; Entra accepts RS256 and PS256",
                header.alg
            )));
        }
        let certificates = self.client_certificates(client_id);
        let named = header.x5t.as_deref().or(header.x5t_s256.as_deref());
        let Some(named) = named else {
            return Err(invalid_client(
                700027,
                "Client assertion failed signature validation: the assertion's header names no certificate (x5t or x5t#S256).",
            ));
        };
        let certificate = certificates.iter().find(|der| {
            let (sha1, sha256) = thumbprints(der);
            header.x5t.as_deref() == Some(sha1.as_str())
                || header.x5t_s256.as_deref() == Some(sha256.as_str())
        });
        let Some(certificate) = certificate else {
            return Err(invalid_client(
                700027,
                &format!(
                    "Client assertion failed signature validation. The key was not found: no certificate with thumbprint '{named}' is registered for application '{client_id}'."
                ),
            ));
        };
        let key = rsa_key(certificate).map_err(|e| malformed(&e))?;
        let mut validation = Validation::new(header.alg);
        // The claims are checked below, each with its own error.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    invalid_client(700027, "Client assertion failed signature validation.")
                }
                _ => malformed(&e.to_string()),
            })?
            .claims;
        if claims.iss.as_deref() != Some(client_id) || claims.sub.as_deref() != Some(client_id) {
            return Err(invalid_client(
                700021,
                &format!(
                    "Client assertion application identifier doesn't match 'client_id' parameter: iss and sub must both be '{client_id}'."
                ),
            ));
        }
        let audiences: Vec<&str> = match &claims.aud {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !audiences.iter().any(|a| audience_matches(a, endpoint)) {
            return Err(invalid_client(
                700023,
                &format!(
                    "Client assertion audience claim does not match Realm issuer: aud must be the token endpoint, {}.",
                    endpoint.path
                ),
            ));
        }
        // The client signs with its own clock, which the sandbox clock's advances leave
        // behind, so the assertion's window is checked against the wall clock.
        let now = Utc::now();
        let exp = claims.exp.unwrap_or(i64::MIN);
        let nbf = claims.nbf.unwrap_or(i64::MIN);
        if exp + SKEW_SECS <= now.timestamp() || nbf - SKEW_SECS > now.timestamp() {
            let when = |t: i64| {
                DateTime::from_timestamp(t, 0)
                    .map(crate::clock::rfc3339)
                    .unwrap_or_else(|| "never".into())
            };
            return Err(invalid_client(
                700024,
                &format!(
                    "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}.",
                    crate::clock::rfc3339(now),
                    when(nbf),
                    when(exp)
                ),
            ));
        }
        let Some(jti) = claims.jti.filter(|j| !j.is_empty()) else {
            return Err(malformed("the client assertion has no 'jti' claim"));
        };
        let keep_until = DateTime::from_timestamp(exp.saturating_add(SKEW_SECS), 0)
            .unwrap_or(now + chrono::Duration::days(1));
        if !self
            .tokens()
            .assertions
            .first_use(client_id, &jti, keep_until)
        {
            return Err(invalid_client(
                50027,
                &format!(
                    "JWT token is invalid or malformed: the client assertion with jti '{jti}' was already presented; each assertion may be used once."
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(tenant: &str, path: &str) -> Endpoint {
        Endpoint {
            tenant: tenant.into(),
            path: path.into(),
        }
    }

    #[test]
    fn the_audience_is_the_token_endpoint_whatever_the_host() {
        let e = endpoint("common", "/common/oauth2/v2.0/token");
        assert!(audience_matches(
            "https://login.microsoftonline.com/common/oauth2/v2.0/token",
            &e
        ));
        assert!(audience_matches(
            &format!("http://127.0.0.1:1/{TENANT_ID}/oauth2/token"),
            &e
        ));
        assert!(!audience_matches(
            "https://login.microsoftonline.com/other/oauth2/v2.0/token",
            &e
        ));
        assert!(!audience_matches("sandbox-client", &e));
    }
}
