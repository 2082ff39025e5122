//! What every HTTP client of the connector (Partner Center, its sign-in, Dataverse,
//! Salesforce) reads and writes the same way.

use std::time::{Duration, SystemTime};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{HeaderMap, RETRY_AFTER};

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
