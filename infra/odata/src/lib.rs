//! OData `$filter`, `$orderby` and `$select` for the sandbox's simulated
//! Partner Center Referrals API and Dataverse Web API, evaluated against
//! rows held as [`serde_json::Value`] objects.
//!
//! ```
//! use cosell_odata::{Filter, OrderBy};
//! use serde_json::json;
//!
//! let filter = Filter::parse("status eq 'new' and team/any(t:t/email eq 'ann@contoso.com')")?;
//! let row = json!({"status": "New", "team": [{"email": "Ann@Contoso.com"}]});
//! assert!(filter.matches(&row));
//! assert_eq!(filter.properties(), ["status", "team/email"]);
//!
//! let order = OrderBy::parse("createdDateTime desc, name")?;
//! let mut rows = vec![json!({"createdDateTime": "2024-01-01T00:00:00Z"}), row];
//! rows.sort_by(|a, b| order.compare(a, b));
//! # Ok::<(), cosell_odata::ODataError>(())
//! ```
//!
//! # Why a hand-written parser
//!
//! The crates.io OData parsers were checked first. `odata-params` 0.4 has
//! no `/` property paths or `any`/`all` lambdas, gives `and` and `or` the
//! wrong precedence, escapes quotes with `\'` instead of OData's `''` and
//! reports errors without a position. `odatav4-parser` 0.0.3 has no
//! date-time literals, stops paths after one `/` and binds `not` to the
//! property rather than the comparison. Both only parse; evaluation would
//! be ours anyway. The grammar needed here is small, so a recursive-descent
//! parser ([`Filter`]'s module documents it) costs less than working
//! around either.
//!
//! # Grammar covered
//!
//! - `eq ne gt ge lt le` between a property path (`a/b/c`) and a literal;
//!   `and`, `or`, `not` and parentheses, `not` binding tightest and `or`
//!   loosest. Keywords are case-insensitive; property names are not.
//! - Literals: `'text'` (`''` is a quote), integers and decimals (may be
//!   negative, may have an exponent), `true`, `false`, `null`, unquoted
//!   GUIDs, unquoted date-times (`2024-05-01T00:00:00Z`, fractional seconds
//!   and `±hh:mm` offsets allowed, seconds optional) and dates
//!   (`2024-05-01`).
//! - `contains(path,'x')`, `startswith(path,'x')`, `endswith(path,'x')`.
//! - Lambdas `path/any(v:…)`, `path/all(v:…)` and `path/any()`; inside
//!   the body `v/…` addresses the current element and `v` the element
//!   itself, while other paths still address the row.
//!
//! # Evaluation semantics
//!
//! - A missing property and JSON `null` are equal to `null` and to nothing
//!   else: `eq null` is true, while `ne null` and every comparison with a
//!   non-null literal are false. A present value is never equal to
//!   `null`: `ne null` is true.
//! - Strings compare case-insensitively, as both Partner Center and
//!   Dataverse do: `eq`/`ne` ignore case, and `gt`/`lt`/… order the
//!   lowercased strings by code point. `contains`, `startswith` and
//!   `endswith` also ignore case; on a non-string or missing value they
//!   are false.
//! - When the literal is a date-time (unquoted, or quoted text that reads
//!   as one) and the row's string value also reads as one, both compare as
//!   instants with full sub-second precision, so Partner Center's 7-digit
//!   (100 ns) timestamps order correctly across offsets. A date literal
//!   compares with a date string as a date, and with a date-time string as
//!   midnight UTC of that day.
//! - GUID literals compare case-insensitively with string values.
//! - Numbers compare numerically, exactly for integers. There is no
//!   coercion between kinds: a string holding `"1"` never equals the
//!   number `1`, and booleans compare only with booleans.
//! - Values of kinds that do not compare (say a number against a string
//!   literal) are unequal: `ne` is true and every other operator false.
//! - `any` is false for a missing, null or non-array collection; `all` is
//!   too, but is true for an empty array.
//! - `not` negates the result above, so `not (x eq 'a')` is true for a row
//!   without `x`.
//!
//! [`OrderBy::compare`] reads values the same way and puts missing/null
//! first ascending. Values of different kinds order by kind (null,
//! boolean, number, date-time string, other string, array, object) so the
//! ordering is total and safe for `sort_by`.
//!
//! # Restricting properties
//!
//! [`Filter::properties`] and [`OrderBy::properties`] list every path an
//! expression reads, so an endpoint that only supports some properties
//! (the Referrals API filters on a handful) can reject the others with its
//! own error before evaluating anything.

mod error;
mod filter;
mod lexer;
mod orderby;
mod select;
mod value;

pub use error::ODataError;
pub use filter::Filter;
pub use orderby::{Direction, OrderBy};
pub use select::parse_select;

/// Deepest nesting of parentheses, `not` and lambdas a filter may use.
/// Filters arrive from HTTP clients and the parser is recursive, so
/// without a cap one request could overflow the server thread's stack;
/// real filters stay far below it.
pub const MAX_DEPTH: usize = 64;

#[cfg(test)]
mod tests;
