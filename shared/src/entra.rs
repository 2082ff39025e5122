//! What every sign-in of the connector with Microsoft Entra ID shares: how the app proves who it
//! is (a client secret, or a certificate through a signed client assertion, which Entra
//! recommends over secrets), what a token says about the user who signed in, and Entra's error
//! answers with their AADSTS codes.

use std::fmt;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;

use crate::secret::Secret;

/// The `client_assertion_type` of a certificate credential (RFC 7523).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long a client assertion may be used: Entra only needs it for the one request.
const ASSERTION_LIFETIME_SECS: i64 = 600;

/// How the app registration authenticates to Entra's token endpoint.
#[derive(Clone)]
pub enum ClientCredential {
    /// A client secret (`client_secret=`).
    Secret(Secret),
    /// A certificate uploaded to the app registration; its private key signs a short-lived
    /// assertion for each request (`private_key_jwt`).
    Certificate(ClientCertificate),
}

impl fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientCredential::Secret(_) => f.write_str("ClientSecret(***)"),
            ClientCredential::Certificate(c) => write!(f, "ClientCertificate({})", c.thumbprint),
        }
    }
}

impl From<Secret> for ClientCredential {
    fn from(secret: Secret) -> Self {
        ClientCredential::Secret(secret)
    }
}

impl From<&str> for ClientCredential {
    fn from(secret: &str) -> Self {
        ClientCredential::Secret(Secret::new(secret))
    }
}

impl From<String> for ClientCredential {
    fn from(secret: String) -> Self {
        ClientCredential::Secret(Secret::new(secret))
    }
}

/// A certificate credential: the key that signs, and the thumbprints that tell Entra which of
/// the app's certificates to check the signature with.
#[derive(Clone)]
pub struct ClientCertificate {
    key: EncodingKey,
    /// SHA-1 of the certificate's DER, hex, as the Entra admin center shows it.
    thumbprint: String,
    x5t: String,
    x5t_s256: String,
}

/// A certificate credential that cannot be used, said so the operator can fix the setting.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error("the certificate is not a PEM X.509 certificate: {0}")]
    Certificate(String),
    #[error("the private key is not a PEM RSA private key (PKCS#8 or PKCS#1): {0}")]
    PrivateKey(String),
    #[error("cannot sign the client assertion: {0}")]
    Signing(String),
}

impl ClientCertificate {
    /// From the certificate uploaded to the app registration and its private key, both PEM.
    pub fn from_pem(
        certificate_pem: &str,
        private_key_pem: &Secret,
    ) -> Result<ClientCertificate, CredentialError> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(certificate_pem.trim().as_bytes())
            .map_err(|e| CredentialError::Certificate(e.to_string()))?;
        pem.parse_x509()
            .map_err(|e| CredentialError::Certificate(e.to_string()))?;
        let der = &pem.contents;
        let sha1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, der);
        let sha256 = digest::digest(&digest::SHA256, der);
        let key = EncodingKey::from_rsa_pem(private_key_pem.expose().trim().as_bytes())
            .map_err(|e| CredentialError::PrivateKey(e.to_string()))?;
        Ok(ClientCertificate {
            key,
            thumbprint: sha1.as_ref().iter().map(|b| format!("{b:02X}")).collect(),
            x5t: URL_SAFE_NO_PAD.encode(sha1.as_ref()),
            x5t_s256: URL_SAFE_NO_PAD.encode(sha256.as_ref()),
        })
    }

    /// The SHA-1 thumbprint in hex, as the app registration's "Certificates & secrets" lists it.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A signed assertion for one request to `token_url` (its audience, as Entra requires).
    pub fn assertion(&self, client_id: &str, token_url: &str) -> Result<String, CredentialError> {
        let now = chrono::Utc::now().timestamp();
        let mut header = Header::new(Algorithm::RS256);
        header.x5t = Some(self.x5t.clone());
        header.x5t_s256 = Some(self.x5t_s256.clone());
        let claims = serde_json::json!({
            "aud": token_url,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| CredentialError::Signing(e.to_string()))
    }
}

impl ClientCredential {
    /// The form fields that authenticate the app in a request to `token_url`.
    pub fn form_fields(
        &self,
        client_id: &str,
        token_url: &str,
    ) -> Result<Vec<(&'static str, String)>, CredentialError> {
        Ok(match self {
            ClientCredential::Secret(s) => vec![("client_secret", s.expose().to_string())],
            ClientCredential::Certificate(c) => vec![
                ("client_assertion_type", JWT_BEARER_ASSERTION.to_string()),
                ("client_assertion", c.assertion(client_id, token_url)?),
            ],
        })
    }

    /// The client secret, to cut it out of anything Entra echoes back.
    pub fn secret(&self) -> Option<&Secret> {
        match self {
            ClientCredential::Secret(s) => Some(s),
            ClientCredential::Certificate(_) => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, ClientCredential::Secret(s) if s.is_empty())
    }
}

/// What a token says about who it was issued to. The claims are read without checking the
/// signature: the connector received the token straight from Entra over TLS and only reports
/// what it says (who signed in, whether with MFA); the APIs it is sent to do the checking.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct TokenClaims {
    #[serde(default)]
    pub upn: Option<String>,
    #[serde(default)]
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub unique_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tid: Option<String>,
    #[serde(default)]
    pub aud: Option<String>,
    /// How the user authenticated: `pwd`, `mfa`, `rsa`…
    #[serde(default)]
    pub amr: Option<Vec<String>>,
    #[serde(default)]
    pub exp: Option<i64>,
}

impl TokenClaims {
    /// The claims of a JWT, or `None` for a token that is not one (opaque tokens exist).
    pub fn read(token: &str) -> Option<TokenClaims> {
        jsonwebtoken::dangerous::insecure_decode_claims::<TokenClaims>(token).ok()
    }

    /// The user's sign-in name, from whichever claim the token carries.
    pub fn username(&self) -> Option<&str> {
        self.upn
            .as_deref()
            .or(self.preferred_username.as_deref())
            .or(self.unique_name.as_deref())
    }

    /// Whether the token carries Microsoft's MFA claim (`amr` contains `mfa`), the claim Partner
    /// Center checks; `None` when the token says nothing about how the user signed in.
    pub fn mfa(&self) -> Option<bool> {
        self.amr
            .as_ref()
            .map(|amr| amr.iter().any(|m| m.eq_ignore_ascii_case("mfa")))
    }
}

/// Entra's error body (`{"error","error_description","error_codes",…}`).
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
pub struct EntraError {
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_description: Option<String>,
    #[serde(default)]
    pub error_codes: Option<Vec<u64>>,
}

impl EntraError {
    /// `error` (`invalid_grant`, `invalid_client`…), or `unknown_error`.
    pub fn code(&self) -> &str {
        self.error.as_deref().unwrap_or("unknown_error")
    }

    /// The AADSTS numbers: `error_codes`, else the one the description starts with.
    pub fn aadsts(&self) -> Vec<u64> {
        if let Some(codes) = self.error_codes.as_ref().filter(|c| !c.is_empty()) {
            return codes.clone();
        }
        self.error_description
            .as_deref()
            .and_then(|d| d.trim().strip_prefix("AADSTS"))
            .map(|rest| {
                rest.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|digits| digits.parse().ok())
            .into_iter()
            .collect()
    }

    pub fn has_code(&self, code: u64) -> bool {
        self.aadsts().contains(&code)
    }

    /// The first line of the description (Entra appends trace and correlation ids on later
    /// lines), at most `max` characters, with each of `secrets` cut out in case the service ever
    /// echoes one.
    pub fn summary(&self, max: usize, secrets: &[&str]) -> String {
        let first_line = self
            .error_description
            .as_deref()
            .and_then(|d| d.lines().next())
            .map(str::trim)
            .filter(|l| !l.is_empty());
        let mut text = match (first_line, self.aadsts().first()) {
            (Some(line), _) => line.to_string(),
            (None, Some(code)) => format!("AADSTS{code}"),
            (None, None) => "no description".to_string(),
        };
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            text = text.replace(s, "***");
        }
        if text.chars().count() > max {
            text = text.chars().take(max).collect::<String>() + "…";
        }
        text
    }
}

/// Entra answers this when a client secret or assertion is sent for a token a public client
/// obtained (the device code flow): such a refresh token is redeemed without one.
pub const PUBLIC_CLIENT_CODE: u64 = 700025;
/// MFA is required (AADSTS50076) or must be registered first (AADSTS50079): the password grant
/// can pass neither.
pub const MFA_REQUIRED_CODES: [u64; 2] = [50076, 50079];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aadsts_codes_come_from_the_list_or_the_description() {
        let listed: EntraError = serde_json::from_value(serde_json::json!({
            "error": "invalid_grant",
            "error_description": "AADSTS700082: The refresh token has expired.",
            "error_codes": [700082]
        }))
        .expect("an Entra error");
        assert!(listed.has_code(700082));
        let described = EntraError {
            error: Some("invalid_grant".into()),
            error_description: Some(
                "AADSTS50173: The provided grant has expired.\nTrace ID: x".into(),
            ),
            error_codes: None,
        };
        assert_eq!(described.aadsts(), vec![50173]);
        assert_eq!(
            described.summary(300, &[]),
            "AADSTS50173: The provided grant has expired."
        );
        assert_eq!(EntraError::default().aadsts(), Vec::<u64>::new());
    }

    #[test]
    fn a_summary_never_shows_a_secret_and_stays_short() {
        let e = EntraError {
            error_description: Some("bad secret hunter2 given".into()),
            ..EntraError::default()
        };
        assert_eq!(e.summary(300, &["hunter2"]), "bad secret *** given");
        assert_eq!(e.summary(3, &[]), "bad…");
    }

    #[test]
    fn claims_tell_the_user_and_the_mfa_claim() {
        let key = EncodingKey::from_secret(b"k");
        let token = jsonwebtoken::encode(
            &Header::default(),
            &serde_json::json!({"upn": "admin@contoso.test", "tid": "t1", "amr": ["pwd", "mfa"]}),
            &key,
        )
        .expect("a JWT");
        let claims = TokenClaims::read(&token).expect("claims");
        assert_eq!(claims.username(), Some("admin@contoso.test"));
        assert_eq!(claims.mfa(), Some(true));
        let pwd = jsonwebtoken::encode(
            &Header::default(),
            &serde_json::json!({"preferred_username": "u@x", "amr": ["pwd"]}),
            &key,
        )
        .expect("a JWT");
        let claims = TokenClaims::read(&pwd).expect("claims");
        assert_eq!(
            (claims.username(), claims.mfa()),
            (Some("u@x"), Some(false))
        );
        assert_eq!(TokenClaims::read("opaque-token"), None);
    }

    #[test]
    fn a_certificate_credential_signs_an_assertion_naming_its_thumbprint() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("an RSA key");
        let cert = rcgen::CertificateParams::new(vec!["connector".into()])
            .and_then(|p| p.self_signed(&key))
            .expect("a certificate");
        let credential =
            ClientCertificate::from_pem(&cert.pem(), &Secret::new(key.serialize_pem()))
                .expect("a certificate credential");
        assert_eq!(credential.thumbprint().len(), 40);
        let assertion = credential
            .assertion("client-1", "https://login.example/t/oauth2/v2.0/token")
            .expect("an assertion");
        let header = jsonwebtoken::decode_header(&assertion).expect("a header");
        assert_eq!(header.alg, Algorithm::RS256);
        assert!(header.x5t.is_some() && header.x5t_s256.is_some());
        let claims: serde_json::Value =
            jsonwebtoken::dangerous::insecure_decode_claims(&assertion).expect("claims");
        assert_eq!(claims["iss"], "client-1");
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(claims["aud"], "https://login.example/t/oauth2/v2.0/token");
        assert!(claims["jti"].as_str().is_some());
    }

    #[test]
    fn bad_pem_is_named() {
        assert!(matches!(
            ClientCertificate::from_pem("not a cert", &Secret::new("k")),
            Err(CredentialError::Certificate(_))
        ));
    }
}
