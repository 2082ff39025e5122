//! The key and certificate that sign webhook deliveries, as Partner Center does: RSA PKCS#1 v1.5
//! with SHA-256 over the raw body, the certificate downloadable from the URL named in the
//! `X-MS-Certificate-Url` header.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use base64::Engine;
use rcgen::{CertificateParams, DistinguishedName, DnType, PKCS_RSA_SHA256, RsaKeySize};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("signing key {path} is not a PEM PKCS#8 RSA private key: {reason}")]
    BadKey { path: String, reason: String },
    #[error("signing certificate {path} is not a PEM X.509 certificate: {reason}")]
    BadCert { path: String, reason: String },
    #[error("cannot generate the signing key or certificate: {0}")]
    Generate(String),
}

pub struct Signer {
    key: KeyPair,
    rng: SystemRandom,
    cert_der: Vec<u8>,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

/// A fresh RSA-2048 key and a self-signed certificate for it, valid from yesterday for a year:
/// the webhook signer's, and the Salesforce connected app's.
pub fn self_signed_rsa(
    dn: DistinguishedName,
) -> Result<(rcgen::KeyPair, rcgen::Certificate), rcgen::Error> {
    let key_pair = rcgen::KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048)?;
    let mut params = CertificateParams::new(vec!["cosell-sandbox.local".to_string()])?;
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    let cert = params.self_signed(&key_pair)?;
    Ok((key_pair, cert))
}

impl Signer {
    /// A fresh RSA-2048 key (the size of Partner Center's signatures) and a self-signed
    /// certificate valid from yesterday for a year.
    pub fn generate(organization: &str) -> Result<Signer, SigningError> {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, organization);
        dn.push(
            DnType::CommonName,
            "cosell-sandbox pcnotifications-dispatch",
        );
        let (key_pair, cert) =
            self_signed_rsa(dn).map_err(|e| SigningError::Generate(e.to_string()))?;
        let key_pem = key_pair.serialize_pem();
        Self::from_parts(
            &key_pair.serialize_der(),
            cert.der().to_vec(),
            key_pem,
            cert.pem(),
        )
        .map_err(SigningError::Generate)
    }

    /// A key and certificate from PEM files, e.g. ones a previous run wrote out, so that a
    /// receiver which pinned the certificate keeps working across restarts.
    pub fn load(key_path: &Path, cert_path: &Path) -> Result<Signer, SigningError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| SigningError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        let key_pem = read(key_path)?;
        let cert_pem = read(cert_path)?;
        let key_der = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
            SigningError::BadKey {
                path: key_path.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| {
            SigningError::BadCert {
                path: cert_path.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        Self::from_parts(
            key_der.secret_pkcs8_der(),
            cert_der.to_vec(),
            key_pem,
            cert_pem,
        )
        .map_err(|reason| SigningError::BadKey {
            path: key_path.display().to_string(),
            reason,
        })
    }

    fn from_parts(
        pkcs8: &[u8],
        cert_der: Vec<u8>,
        key_pem: String,
        cert_pem: String,
    ) -> Result<Signer, String> {
        let key = KeyPair::from_pkcs8(pkcs8).map_err(|e| e.to_string())?;
        Ok(Signer {
            key,
            rng: SystemRandom::new(),
            cert_der,
            cert_pem,
            key_pem,
        })
    }

    /// Base64 of the RSA PKCS#1 v1.5 SHA-256 signature over `body`.
    pub fn sign(&self, body: &[u8]) -> String {
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        // Signing with a key that parsed cannot fail short of memory exhaustion; an empty
        // signature would then simply not verify at the receiver.
        if self
            .key
            .sign(&RSA_PKCS1_SHA256, &self.rng, body, &mut sig)
            .is_err()
        {
            sig.clear();
        }
        base64::engine::general_purpose::STANDARD.encode(sig)
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_round_trips_through_pem_files() {
        let signer = Signer::generate("Microsoft Corporation").expect("generate");
        let dir = std::env::temp_dir().join(format!("cosell-sandbox-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (k, c) = (dir.join("key.pem"), dir.join("cert.pem"));
        std::fs::write(&k, signer.key_pem()).expect("write key");
        std::fs::write(&c, signer.cert_pem()).expect("write cert");
        let loaded = Signer::load(&k, &c).expect("load");
        assert_eq!(loaded.cert_der(), signer.cert_der());
        // PKCS#1 v1.5 is deterministic: the same key signs the same body identically.
        assert_eq!(loaded.sign(b"body"), signer.sign(b"body"));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_file_without_a_key_is_refused_with_its_path() {
        let dir = std::env::temp_dir().join(format!("cosell-sandbox-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let k = dir.join("key.pem");
        std::fs::write(&k, "not a key").expect("write");
        let err = Signer::load(&k, &k).expect_err("must fail");
        assert!(err.to_string().contains("key.pem"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }
}
