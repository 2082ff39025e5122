//! What every HTTP client of the connector (Partner Center, its sign-in, Dataverse,
//! Salesforce) reads and writes the same way.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// How many times the shared TLS configuration was built: once per process.
static TLS_BUILDS: AtomicUsize = AtomicUsize::new(0);

/// The TLS configuration of every HTTP client in the process: the platform's certificate
/// verifier (as reqwest's own default) with TLS 1.2 and 1.3 and HTTP/2 offered. Built once, so a
/// cold start loads the system's roots once rather than once per client; `None` when the
/// platform verifier cannot be set up (each client then falls back to reqwest's own).
fn shared_tls() -> Option<rustls::ClientConfig> {
    static TLS: OnceLock<Option<rustls::ClientConfig>> = OnceLock::new();
    TLS.get_or_init(|| {
        use rustls_platform_verifier::BuilderVerifierExt;
        TLS_BUILDS.fetch_add(1, Ordering::Relaxed);
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let built = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_platform_verifier())
            .map(|b| b.with_no_client_auth());
        match built {
            Ok(mut config) => {
                // A preconfigured TLS setup is used as given: reqwest adds no ALPN to it.
                config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                Some(config)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot set up the shared TLS configuration; each HTTP client sets up its own");
                None
            }
        }
    })
    .clone()
}

/// A `reqwest` client builder with the process's shared TLS configuration: what every HTTP
/// client of the connector starts from.
pub fn client_builder() -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder();
    match shared_tls() {
        Some(config) => builder.use_preconfigured_tls(config),
        None => builder,
    }
}

/// Everything but RFC 3986's unreserved characters: a value encoded with it cannot end its
/// query option (`&`, `=`), start another (`$`), or turn into a space (`+`).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A query option's value, percent-encoded (spaces as `%20`: not every OData server reads `+`
/// as a space).
pub fn encode_query_value(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// An OData string literal: quoted, with each `'` doubled (OData's only escape inside one).
pub fn odata_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// How many seconds a `Retry-After` header asks to wait, from either form RFC 9110 allows:
/// delay-seconds, or an HTTP date (a date in the past is zero).
pub fn retry_after(headers: &HeaderMap) -> Option<u64> {
    retry_after_at(headers, SystemTime::now())
}

fn retry_after_at(headers: &HeaderMap, now: SystemTime) -> Option<u64> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at.duration_since(now).unwrap_or(Duration::ZERO);
    // A part second still has to pass: round up, never ask again early.
    Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn every_http_client_of_the_process_shares_one_tls_setup() {
        for _ in 0..3 {
            assert!(client_builder().build().is_ok());
        }
        // The adapters build their clients from it too.
        for _ in 0..2 {
            let config = crate::crm::dataverse::DataverseConfig::new(
                "https://contoso.crm.dynamics.com",
                "contoso-tenant",
                "client-id",
                crate::crm::dataverse::Secret::new("not-a-secret"),
            );
            assert!(crate::crm::dataverse::DataverseCrm::new(config).is_ok());
        }
        assert_eq!(
            TLS_BUILDS.load(Ordering::Relaxed),
            1,
            "built once per process"
        );
        let config = shared_tls().unwrap_or_else(|| panic!("the platform verifier sets up here"));
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            "HTTP/2 is still offered"
        );
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_str(value).expect("a header value"),
        );
        h
    }

    #[test]
    fn retry_after_reads_seconds_and_each_date_form() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:00 GMT").expect("a date");
        assert_eq!(retry_after_at(&headers("57"), now), Some(57));
        assert_eq!(retry_after_at(&headers(" 3 "), now), Some(3));
        // IMF-fixdate, and the two obsolete forms a recipient must still accept.
        for later in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(retry_after_at(&headers(later), now), Some(37), "{later}");
        }
        assert_eq!(
            retry_after_at(&headers("Sun, 06 Nov 1994 08:00:00 GMT"), now),
            Some(0),
            "a date in the past"
        );
        assert_eq!(retry_after_at(&headers("soon"), now), None);
        assert_eq!(retry_after_at(&HeaderMap::new(), now), None);
    }

    #[test]
    fn query_values_cannot_break_their_query() {
        assert_eq!(
            encode_query_value("externalReferenceId eq 'a&b=c+$d'"),
            "externalReferenceId%20eq%20%27a%26b%3Dc%2B%24d%27"
        );
        assert_eq!(encode_query_value("Zoë"), "Zo%C3%AB");
        assert_eq!(encode_query_value("a-b.c_d~"), "a-b.c_d~");
    }

    #[test]
    fn odata_strings_double_their_quotes() {
        assert_eq!(odata_string("O'Brien"), "'O''Brien'");
        assert_eq!(odata_string("plain"), "'plain'");
    }
}
