//! Value semantics shared by `$filter` and `$orderby`: how numbers,
//! strings and date-times found in JSON rows are read and ordered.

use std::cmp::Ordering;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, Utc};
use serde_json::Value;

/// A number from a literal or a JSON row.
///
/// Integers stay exact (JSON ids and option-set values can exceed the 53
/// bits an `f64` holds) and only genuine decimals go through `f64`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    pub(crate) fn from_json(n: &serde_json::Number) -> Option<Self> {
        n.as_i64()
            .map(|i| Self::Int(i.into()))
            .or_else(|| n.as_u64().map(|u| Self::Int(u.into())))
            .or_else(|| n.as_f64().map(Self::Float))
    }

    /// Exact numeric comparison. It must be a total order because
    /// `$orderby` feeds it to `sort_by`, which may panic on inconsistent
    /// orderings, so an integer is never rounded to `f64` when that could
    /// make two different integers tie with the same float.
    pub(crate) fn cmp_num(self, other: Self) -> Ordering {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) => a.cmp(&b),
            (Self::Float(a), Self::Float(b)) => cmp_f64(a, b),
            (Self::Int(a), Self::Float(b)) => cmp_int_float(a, b),
            (Self::Float(a), Self::Int(b)) => cmp_int_float(b, a).reverse(),
        }
    }
}

fn cmp_f64(a: f64, b: f64) -> Ordering {
    // JSON has no NaN; `partial_cmp` (unlike `total_cmp`) keeps -0.0 == 0.0,
    // which integer 0 also equals.
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

fn cmp_int_float(i: i128, f: f64) -> Ordering {
    // A whole float inside i128's range compares exactly as an integer;
    // otherwise rounding `i` cannot create a false tie (a fractional `f` is
    // below 2^53, where every integer is exact).
    const I128_LIMIT: f64 = 1.7e38;
    if f.fract() == 0.0 && f.abs() < I128_LIMIT {
        i.cmp(&(f as i128))
    } else {
        cmp_f64(i as f64, f)
    }
}

/// Case-insensitive ordinal comparison, without allocating: both Partner
/// Center and Dataverse compare strings case-insensitively.
pub(crate) fn cmp_ci(a: &str, b: &str) -> Ordering {
    a.chars()
        .flat_map(char::to_lowercase)
        .cmp(b.chars().flat_map(char::to_lowercase))
}

/// Reads exactly `n` ASCII digits at `at`.
fn fixed_digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let digits = b.get(at..at + n)?;
    digits.iter().try_fold(0u32, |acc, d| {
        d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
    })
}

/// Recognises `YYYY-MM-DD` at the start of `b`. The outer `None` means
/// "not shaped like a date"; an inner `None` means shaped like one but not
/// a real calendar day, which the lexer reports rather than re-lexing.
pub(crate) fn scan_date(b: &[u8]) -> Option<(usize, Option<NaiveDate>)> {
    let year = fixed_digits(b, 0, 4)?;
    (b.get(4) == Some(&b'-')).then_some(())?;
    let month = fixed_digits(b, 5, 2)?;
    (b.get(7) == Some(&b'-')).then_some(())?;
    let day = fixed_digits(b, 8, 2)?;
    let year = i32::try_from(year).ok()?;
    Some((10, NaiveDate::from_ymd_opt(year, month, day)))
}

/// Recognises an OData `DateTimeOffset` at the start of `b`:
/// `YYYY-MM-DDThh:mm[:ss[.fffffff]][Z|±hh:mm]`. Seconds are optional as in
/// the OData ABNF; a missing offset is read as UTC because Dataverse emits
/// some values without one.
pub(crate) fn scan_datetime(b: &[u8]) -> Option<(usize, Option<DateTime<FixedOffset>>)> {
    let (mut i, date) = scan_date(b)?;
    matches!(b.get(i), Some(b'T' | b't')).then_some(())?;
    i += 1;
    let hour = fixed_digits(b, i, 2)?;
    (b.get(i + 2) == Some(&b':')).then_some(())?;
    let minute = fixed_digits(b, i + 3, 2)?;
    i += 5;
    let (mut second, mut nanos) = (0, 0);
    if b.get(i) == Some(&b':') {
        second = fixed_digits(b, i + 1, 2)?;
        i += 3;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            let len = b[start..].iter().take_while(|d| d.is_ascii_digit()).count();
            if len == 0 {
                return None;
            }
            // Partner Center sends 7 digits (100 ns ticks); digits past the
            // 9th are below what any source produces, so they are dropped.
            for (k, d) in b[start..start + len].iter().take(9).enumerate() {
                nanos += u32::from(d - b'0') * 10u32.pow(8 - k as u32);
            }
            i = start + len;
        }
    }
    let offset_secs = match b.get(i) {
        Some(b'Z' | b'z') => {
            i += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let h = fixed_digits(b, i + 1, 2)?;
            (b.get(i + 3) == Some(&b':')).then_some(())?;
            let m = fixed_digits(b, i + 4, 2)?;
            i += 6;
            let secs = i32::try_from(h * 3600 + m * 60).ok()?;
            if sign == b'-' { -secs } else { secs }
        }
        _ => 0,
    };
    let value = date.and_then(|date| {
        let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
        let offset = FixedOffset::east_opt(offset_secs)?;
        date.and_time(time).and_local_timezone(offset).single()
    });
    Some((i, value))
}

/// The whole string as a date-time, or `None`.
pub(crate) fn parse_datetime(s: &str) -> Option<DateTime<FixedOffset>> {
    match scan_datetime(s.as_bytes())? {
        (len, value) if len == s.len() => value,
        _ => None,
    }
}

/// The whole string as a `YYYY-MM-DD` date, or `None`.
pub(crate) fn parse_date(s: &str) -> Option<NaiveDate> {
    match scan_date(s.as_bytes())? {
        (len, value) if len == s.len() => value,
        _ => None,
    }
}

/// A JSON value as `$orderby` sees it.
enum SortKey<'a> {
    Null,
    Bool(bool),
    Num(Num),
    Instant(DateTime<Utc>),
    Text(&'a str),
    Array,
    Object,
}

impl<'a> SortKey<'a> {
    fn of(value: Option<&'a Value>) -> Self {
        match value {
            None | Some(Value::Null) => Self::Null,
            Some(Value::Bool(b)) => Self::Bool(*b),
            Some(Value::Number(n)) => Num::from_json(n).map_or(Self::Null, Self::Num),
            Some(Value::String(s)) => {
                parse_datetime(s).map_or(Self::Text(s), |dt| Self::Instant(dt.with_timezone(&Utc)))
            }
            Some(Value::Array(_)) => Self::Array,
            Some(Value::Object(_)) => Self::Object,
        }
    }

    /// Values of different kinds sort by kind, so the order stays total
    /// even in a column mixing date-times with other strings (comparing
    /// those pairwise by different rules would not be transitive).
    fn rank(&self) -> u8 {
        match self {
            Self::Null => 0,
            Self::Bool(_) => 1,
            Self::Num(_) => 2,
            Self::Instant(_) => 3,
            Self::Text(_) => 4,
            Self::Array => 5,
            Self::Object => 6,
        }
    }
}

/// Total ascending order of two (possibly missing) JSON values: missing and
/// null first, then booleans, numbers, date-times (as instants), strings
/// (case-insensitive), arrays and objects; arrays and objects tie.
pub(crate) fn order_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    let (a, b) = (SortKey::of(a), SortKey::of(b));
    a.rank().cmp(&b.rank()).then_with(|| match (a, b) {
        (SortKey::Bool(x), SortKey::Bool(y)) => x.cmp(&y),
        (SortKey::Num(x), SortKey::Num(y)) => x.cmp_num(y),
        (SortKey::Instant(x), SortKey::Instant(y)) => x.cmp(&y),
        (SortKey::Text(x), SortKey::Text(y)) => cmp_ci(x, y),
        _ => Ordering::Equal,
    })
}

/// Follows `segments` through nested objects. Anything that is not an
/// object along the way (including arrays, which only lambdas traverse)
/// makes the property missing.
pub(crate) fn resolve<'v, S: AsRef<str>>(start: &'v Value, segments: &[S]) -> Option<&'v Value> {
    segments.iter().try_fold(start, |value, segment| {
        value.as_object()?.get(segment.as_ref())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn datetime_keeps_seven_fractional_digits() {
        let a = parse_datetime("2019-02-23T02:05:23.2931817Z").unwrap();
        let b = parse_datetime("2019-02-23T02:05:23.2931818Z").unwrap();
        assert!(a < b);
        assert_eq!(a.timestamp_subsec_nanos(), 293_181_700);
    }

    #[test]
    fn datetime_forms() {
        let utc = parse_datetime("2024-05-01T00:00:00Z").unwrap();
        assert_eq!(parse_datetime("2024-05-01T02:00:00+02:00"), Some(utc));
        assert_eq!(parse_datetime("2024-04-30T19:00:00-05:00"), Some(utc));
        assert_eq!(parse_datetime("2024-05-01T00:00Z"), Some(utc));
        assert_eq!(parse_datetime("2024-05-01T00:00:00"), Some(utc));
        assert_eq!(parse_datetime("2024-05-01"), None);
        assert_eq!(parse_datetime("2024-02-30T00:00:00Z"), None);
        assert_eq!(parse_datetime("2024-05-01T00:00:00Zjunk"), None);
        assert_eq!(parse_datetime("not a date"), None);
    }

    #[test]
    fn numbers_compare_exactly() {
        let big = Num::Int(9_007_199_254_740_993); // 2^53 + 1
        let float = Num::Float(9_007_199_254_740_992.0);
        assert_eq!(big.cmp_num(float), Ordering::Greater);
        assert_eq!(Num::Int(0).cmp_num(Num::Float(-0.0)), Ordering::Equal);
        assert_eq!(Num::Float(1.5).cmp_num(Num::Int(2)), Ordering::Less);
        assert_eq!(Num::Int(-3).cmp_num(Num::Float(-2.5)), Ordering::Less);
    }

    #[test]
    fn sort_order_is_by_kind_then_value() {
        let values = [
            json!("b"),
            json!("2024-01-01T00:00:00Z"),
            json!(2),
            json!(null),
            json!(true),
            json!("A"),
        ];
        let mut sorted: Vec<&Value> = values.iter().collect();
        sorted.sort_by(|a, b| order_values(Some(a), Some(b)));
        assert_eq!(
            sorted,
            [
                &json!(null),
                &json!(true),
                &json!(2),
                &json!("2024-01-01T00:00:00Z"),
                &json!("A"),
                &json!("b")
            ]
        );
    }

    #[test]
    fn resolve_walks_objects_only() {
        let row = json!({"a": {"b": {"c": 1}}, "list": [{"x": 1}]});
        assert_eq!(resolve(&row, &["a", "b", "c"]), Some(&json!(1)));
        assert_eq!(resolve(&row, &["a", "missing"]), None);
        assert_eq!(resolve(&row, &["list", "x"]), None);
    }
}
