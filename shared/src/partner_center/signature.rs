//! Checks that a webhook delivery really comes from Partner Center.
//!
//! Partner Center signs the raw body with RSA PKCS#1 v1.5 over SHA-256 and says where its
//! certificate is in `X-MS-Certificate-Url`. Because the sender names the certificate, the URL is
//! the trust anchor: only certificates under configured prefixes (by default Partner Center's
//! documented storage location, over https) are ever fetched, without following redirects and
//! with a size cap. The certificate's subject organisation and validity dates are checked, and
//! it is cached by URL so a burst of deliveries costs one download.
//!
//! The certificate chain is not built to a Microsoft root: the https origin pin already says who
//! published the certificate, and the sandbox's self-signed certificate must verify the same way.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use tokio::sync::Mutex;
use tokio::time::Instant;
use x509_parser::public_key::PublicKey;

/// Where Partner Center publishes the certificate that signs its webhook deliveries.
pub const PARTNER_CENTER_CERTIFICATE_PREFIX: &str =
    "https://3psostorageacct.blob.core.windows.net/cert/";
/// The organisation in the subject of Partner Center's signing certificate.
pub const DEFAULT_EXPECTED_ORGANIZATION: &str = "Microsoft Corporation";
/// A certificate is a couple of KiB; anything much larger is not one.
pub const DEFAULT_MAX_CERTIFICATE_BYTES: usize = 64 * 1024;
/// A certificate is downloaded again after a day, so a rotated one is picked up.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(24 * 3600);
/// The webhook must be answered quickly, so a slow certificate host is given up on.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Header names as Partner Center sends them; lookups ignore case.
const CERTIFICATE_URL: &str = "X-MS-Certificate-Url";
const SIGNATURE_ALGORITHM: &str = "X-MS-Signature-Algorithm";
const MS_SIGNATURE: &str = "x-ms-signature";
/// Header values are echoed into messages only up to this length.
const MAX_ECHO_CHARS: usize = 200;

/// What the verifier trusts.
#[derive(Debug, Clone)]
pub struct SignatureVerifierConfig {
    /// Certificate URLs must start with one of these (scheme, host and port equal; the path
    /// starting with the prefix's path). End each with `/`. Default: only
    /// [`PARTNER_CENTER_CERTIFICATE_PREFIX`]; add the sandbox's `http://127.0.0.1:PORT/cert/`
    /// explicitly to trust it.
    pub allowed_certificate_prefixes: Vec<String>,
    /// Required among the organisations (`O=`) of the certificate's subject.
    pub expected_organization: String,
    pub max_certificate_bytes: usize,
    /// How long a downloaded certificate is trusted before it is fetched again.
    pub cache_ttl: Duration,
    pub fetch_timeout: Duration,
}

impl Default for SignatureVerifierConfig {
    fn default() -> Self {
        SignatureVerifierConfig {
            allowed_certificate_prefixes: vec![PARTNER_CENTER_CERTIFICATE_PREFIX.to_string()],
            expected_organization: DEFAULT_EXPECTED_ORGANIZATION.to_string(),
            max_certificate_bytes: DEFAULT_MAX_CERTIFICATE_BYTES,
            cache_ttl: DEFAULT_CACHE_TTL,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
        }
    }
}

/// A verifier setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum SignatureConfigError {
    #[error("allowed certificate prefix '{prefix}' is not usable: {reason}")]
    InvalidPrefix { prefix: String, reason: String },
    #[error("cannot build the certificate download client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Why a delivery was refused. Each message fits a 401 log line and names no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the {header} header is missing or unreadable")]
    MissingHeader { header: &'static str },
    #[error("the signature algorithm '{algorithm}' is not supported; only rsa-sha256 is")]
    UnsupportedAlgorithm { algorithm: String },
    #[error("the signature is not valid base64")]
    MalformedSignature,
    #[error("the certificate URL '{url}' is not under an allowed prefix")]
    CertificateUrlNotAllowed { url: String },
    #[error("cannot download the certificate from {url}: {reason}")]
    CertificateFetch { url: String, reason: String },
    #[error("the certificate from {url} cannot be read: {reason}")]
    CertificateParse { url: String, reason: String },
    #[error("the certificate's organisation is {found}, not {expected}")]
    WrongOrganization { expected: String, found: String },
    #[error("the certificate expired at {not_after}")]
    CertificateExpired { not_after: String },
    #[error("the certificate is not valid before {not_before}")]
    CertificateNotYetValid { not_before: String },
    #[error("the signature does not match the body")]
    BadSignature,
}

/// One allowed prefix, parsed once.
#[derive(Debug, Clone)]
struct Prefix {
    scheme: String,
    host: String,
    port: Option<u16>,
    path: String,
}

/// What a verification needs from a certificate.
#[derive(Debug)]
struct Certificate {
    organizations: Vec<String>,
    not_before: i64,
    not_after: i64,
    /// DER `RSAPublicKey`.
    public_key: Vec<u8>,
}

#[derive(Debug)]
struct CacheEntry {
    certificate: Arc<Certificate>,
    fetched_at: Instant,
}

/// Verifies Partner Center webhook signatures. Share one per process so its certificate cache
/// is shared too.
#[derive(Debug)]
pub struct SignatureVerifier {
    config: SignatureVerifierConfig,
    prefixes: Vec<Prefix>,
    http: reqwest::Client,
    /// Held across a download, so concurrent deliveries wait for one fetch.
    cache: Mutex<HashMap<String, CacheEntry>>,
}

impl SignatureVerifier {
    /// Checks the allowed prefixes; no certificate is downloaded until the first delivery.
    pub fn new(config: SignatureVerifierConfig) -> Result<SignatureVerifier, SignatureConfigError> {
        let prefixes = config
            .allowed_certificate_prefixes
            .iter()
            .map(|p| parse_prefix(p))
            .collect::<Result<Vec<_>, _>>()?;
        let http = crate::http::client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.fetch_timeout)
            .user_agent(concat!("cosell-connector/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(SignatureVerifier {
            config,
            prefixes,
            http,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Accepts the delivery when its signature over the raw `body` verifies with a trusted,
    /// current certificate of the expected organisation.
    pub async fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
        let certificate_url =
            header(headers, CERTIFICATE_URL).ok_or(SignatureError::MissingHeader {
                header: CERTIFICATE_URL,
            })?;
        if let Some(algorithm) = header(headers, SIGNATURE_ALGORITHM)
            && !algorithm.eq_ignore_ascii_case("rsa-sha256")
        {
            return Err(SignatureError::UnsupportedAlgorithm {
                algorithm: echo(algorithm),
            });
        }
        let signature = signature(headers)?;
        let url = self.allowed(certificate_url)?;
        let certificate = self.certificate(&url).await?;
        let expected = &self.config.expected_organization;
        if !certificate
            .organizations
            .iter()
            .any(|o| o.trim() == expected.trim())
        {
            return Err(SignatureError::WrongOrganization {
                expected: expected.clone(),
                found: if certificate.organizations.is_empty() {
                    "not stated".to_string()
                } else {
                    certificate.organizations.join(", ")
                },
            });
        }
        let now = Utc::now().timestamp();
        if now > certificate.not_after {
            return Err(SignatureError::CertificateExpired {
                not_after: timestamp(certificate.not_after),
            });
        }
        if now < certificate.not_before {
            return Err(SignatureError::CertificateNotYetValid {
                not_before: timestamp(certificate.not_before),
            });
        }
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &certificate.public_key)
            .verify(body, &signature)
            .map_err(|_| SignatureError::BadSignature)
    }

    /// The certificate URL, when it lies under an allowed prefix. Checked on the raw text as
    /// well as the parsed URL, because parsing resolves `..` and would hide a climb out of the
    /// prefix.
    fn allowed(&self, raw: &str) -> Result<url::Url, SignatureError> {
        let refused = || SignatureError::CertificateUrlNotAllowed { url: echo(raw) };
        let lower = raw.to_ascii_lowercase();
        if lower.contains("..") || lower.contains("%2e") || raw.contains('\\') {
            return Err(refused());
        }
        let url = url::Url::parse(raw).map_err(|_| refused())?;
        if !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(refused());
        }
        let host = url.host_str().unwrap_or_default();
        let ok = self.prefixes.iter().any(|p| {
            url.scheme() == p.scheme
                && host == p.host
                && url.port_or_known_default() == p.port
                && url.path().starts_with(&p.path)
        });
        if ok { Ok(url) } else { Err(refused()) }
    }

    async fn certificate(&self, url: &url::Url) -> Result<Arc<Certificate>, SignatureError> {
        let mut cache = self.cache.lock().await;
        if let Some(entry) = cache.get(url.as_str())
            && entry.fetched_at.elapsed() < self.config.cache_ttl
        {
            return Ok(entry.certificate.clone());
        }
        let der = self.download(url).await?;
        let certificate = Arc::new(parse_certificate(url, &der)?);
        let ttl = self.config.cache_ttl;
        cache.retain(|_, e| e.fetched_at.elapsed() < ttl);
        cache.insert(
            url.as_str().to_string(),
            CacheEntry {
                certificate: certificate.clone(),
                fetched_at: Instant::now(),
            },
        );
        tracing::info!(
            url = url.as_str(),
            "downloaded the webhook signing certificate"
        );
        Ok(certificate)
    }

    async fn download(&self, url: &url::Url) -> Result<Vec<u8>, SignatureError> {
        let failed = |reason: String| SignatureError::CertificateFetch {
            url: url.to_string(),
            reason,
        };
        let max = self.config.max_certificate_bytes;
        let mut response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed(format!("the server answered {status}")));
        }
        if response.content_length().is_some_and(|n| n > max as u64) {
            return Err(failed(format!("it is larger than {max} bytes")));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.to_string()))? {
            if bytes.len() + chunk.len() > max {
                return Err(failed(format!("it is larger than {max} bytes")));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

/// A `.cer` file is DER, or PEM when someone saved it that way.
fn parse_certificate(url: &url::Url, bytes: &[u8]) -> Result<Certificate, SignatureError> {
    let bad = |reason: String| SignatureError::CertificateParse {
        url: url.to_string(),
        reason,
    };
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    let pem;
    let der: &[u8] = if bytes[start..].starts_with(b"-----BEGIN") {
        let (_, parsed) = x509_parser::pem::parse_x509_pem(&bytes[start..])
            .map_err(|e| bad(format!("not a PEM certificate: {e}")))?;
        pem = parsed;
        &pem.contents
    } else {
        bytes
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| bad(format!("not an X.509 certificate: {e}")))?;
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(PublicKey::RSA(_)) => {}
        Ok(_) => return Err(bad("its key is not an RSA key".to_string())),
        Err(e) => return Err(bad(format!("its public key is unreadable: {e}"))),
    }
    let organizations = cert
        .subject()
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    Ok(Certificate {
        organizations,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        public_key: spki.subject_public_key.data.to_vec(),
    })
}

fn parse_prefix(raw: &str) -> Result<Prefix, SignatureConfigError> {
    let invalid = |reason: &str| SignatureConfigError::InvalidPrefix {
        prefix: raw.to_string(),
        reason: reason.to_string(),
    };
    let url = url::Url::parse(raw).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("it must be an http(s) URL"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(invalid("it must not carry a query, fragment or user"));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| invalid("it has no host"))?;
    Ok(Prefix {
        scheme: url.scheme().to_string(),
        host: host.to_string(),
        port: url.port_or_known_default(),
        path: url.path().to_string(),
    })
}

/// A header's value, whatever the case of its name.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The signature bytes from `x-ms-signature` (with or without a `Signature ` prefix) or from
/// `Authorization: Signature …`.
fn signature(headers: &HeaderMap) -> Result<Vec<u8>, SignatureError> {
    let strip = |v: &str| -> String {
        match v.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("signature") => {
                rest.trim().to_string()
            }
            _ => v.to_string(),
        }
    };
    let encoded = if let Some(v) = header(headers, MS_SIGNATURE) {
        strip(v)
    } else {
        header(headers, "authorization")
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("signature")
                    .then(|| rest.trim().to_string())
            })
            .ok_or(SignatureError::MissingHeader {
                header: "Authorization: Signature (or x-ms-signature)",
            })?
    };
    base64::engine::general_purpose::STANDARD
        .decode(encoded.as_bytes())
        .map_err(|_| SignatureError::MalformedSignature)
}

fn echo(value: &str) -> String {
    if value.chars().count() <= MAX_ECHO_CHARS {
        value.to_string()
    } else {
        value.chars().take(MAX_ECHO_CHARS).collect::<String>() + "…"
    }
}

fn timestamp(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier(prefixes: &[&str]) -> SignatureVerifier {
        let config = SignatureVerifierConfig {
            allowed_certificate_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        };
        match SignatureVerifier::new(config) {
            Ok(v) => v,
            Err(e) => panic!("verifier: {e}"),
        }
    }

    #[test]
    fn only_urls_under_an_allowed_prefix_pass() {
        let v = verifier(&[PARTNER_CENTER_CERTIFICATE_PREFIX]);
        let ok = "https://3psostorageacct.blob.core.windows.net/cert/pcnotifications-dispatch.microsoft.com.cer";
        assert!(v.allowed(ok).is_ok());
        for bad in [
            "http://3psostorageacct.blob.core.windows.net/cert/x.cer",
            "https://3psostorageacct.blob.core.windows.net:8443/cert/x.cer",
            "https://3psostorageacct.blob.core.windows.net.evil.test/cert/x.cer",
            "https://evil.test/cert/x.cer",
            "https://3psostorageacct.blob.core.windows.net/certs/x.cer",
            "https://3psostorageacct.blob.core.windows.net/cert/../x.cer",
            "https://3psostorageacct.blob.core.windows.net/cert/%2E%2E/x.cer",
            "https://user@3psostorageacct.blob.core.windows.net/cert/x.cer",
            "https://3psostorageacct.blob.core.windows.net/cert/x.cer?sig=1",
            "/cert/x.cer",
        ] {
            assert!(
                matches!(
                    v.allowed(bad),
                    Err(SignatureError::CertificateUrlNotAllowed { .. })
                ),
                "{bad} passed"
            );
        }
    }

    #[test]
    fn the_default_port_matches_an_explicit_one() {
        let v = verifier(&["https://host.test/cert/"]);
        assert!(v.allowed("https://HOST.test:443/cert/a.cer").is_ok());
    }

    #[test]
    fn bad_prefixes_are_refused_at_start() {
        let config = SignatureVerifierConfig {
            allowed_certificate_prefixes: vec!["ftp://host/cert/".into()],
            ..Default::default()
        };
        assert!(matches!(
            SignatureVerifier::new(config),
            Err(SignatureConfigError::InvalidPrefix { .. })
        ));
    }

    #[test]
    fn the_signature_comes_from_either_header() {
        let mut h = HeaderMap::new();
        assert!(matches!(
            signature(&h),
            Err(SignatureError::MissingHeader { .. })
        ));
        h.insert("authorization", "Signature AQID".parse().expect("value"));
        assert_eq!(signature(&h), Ok(vec![1, 2, 3]));
        h.insert("x-ms-signature", "BAUG".parse().expect("value"));
        assert_eq!(signature(&h), Ok(vec![4, 5, 6]));
        h.insert("x-ms-signature", "Signature BAUG".parse().expect("value"));
        assert_eq!(signature(&h), Ok(vec![4, 5, 6]));
        h.insert("x-ms-signature", "not base64!".parse().expect("value"));
        assert_eq!(signature(&h), Err(SignatureError::MalformedSignature));
    }
}
