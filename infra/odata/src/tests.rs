//! Table tests for `$filter` and `$orderby` through the public API.

use std::cmp::Ordering;

use serde_json::{Value, json};

use crate::{Direction, Filter, ODataError, OrderBy};

/// Runs `(filter, expected)` rows against one JSON row, naming the failing
/// filter.
fn check(row: &Value, cases: &[(&str, bool)]) {
    for &(filter, expected) in cases {
        let parsed = Filter::parse(filter).unwrap_or_else(|e| panic!("{filter:?}: {e}"));
        assert_eq!(parsed.matches(row), expected, "{filter:?} on {row}");
    }
}

fn parse_error(filter: &str) -> String {
    match Filter::parse(filter) {
        Ok(parsed) => panic!("{filter:?} parsed as {parsed:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn string_operators_ignore_case() {
    let row = json!({"name": "Contoso"});
    check(
        &row,
        &[
            ("name eq 'Contoso'", true),
            ("name eq 'CONTOSO'", true),
            ("name eq 'Fabrikam'", false),
            ("name ne 'contoso'", false),
            ("name ne 'Fabrikam'", true),
            ("name gt 'b'", true),
            ("name gt 'D'", false),
            ("name ge 'contoso'", true),
            ("name lt 'd'", true),
            ("name lt 'Contoso'", false),
            ("name le 'CONTOSO'", true),
            ("name le 'a'", false),
        ],
    );
}

#[test]
fn number_operators() {
    let row = json!({"n": 5, "f": 2.5, "neg": -3, "big": 9_007_199_254_740_993_u64});
    check(
        &row,
        &[
            ("n eq 5", true),
            ("n eq 5.0", true),
            ("n eq 6", false),
            ("n ne 6", true),
            ("n ne 5", false),
            ("n gt 4.9", true),
            ("n gt 5", false),
            ("n ge 5", true),
            ("n lt 5", false),
            ("n lt 10", true),
            ("n le 5", true),
            ("f eq 2.5", true),
            ("f gt 2", true),
            ("f lt 2.51", true),
            ("neg eq -3", true),
            ("neg lt -2", true),
            ("neg gt -2", false),
            ("big eq 9007199254740993", true),
            ("big eq 9007199254740992", false),
            ("n eq 5e0", true),
        ],
    );
}

#[test]
fn no_coercion_between_kinds() {
    let row = json!({"s": "1", "n": 1, "b": true});
    check(
        &row,
        &[
            ("s eq 1", false),
            ("s ne 1", true),
            ("s gt 0", false),
            ("n eq '1'", false),
            ("b eq 'true'", false),
            ("n eq true", false),
            ("s eq '1'", true),
        ],
    );
}

#[test]
fn boolean_operators() {
    let row = json!({"yes": true, "no": false});
    check(
        &row,
        &[
            ("yes eq true", true),
            ("yes eq false", false),
            ("yes ne false", true),
            ("no eq false", true),
            ("no eq FALSE", true),
            ("yes gt false", true),
            ("no lt true", true),
            ("no gt true", false),
        ],
    );
}

#[test]
fn datetime_operators_compare_instants() {
    let row = json!({"at": "2024-05-01T12:00:00Z", "text": "not a date"});
    check(
        &row,
        &[
            ("at eq 2024-05-01T12:00:00Z", true),
            ("at eq 2024-05-01T14:00:00+02:00", true),
            ("at eq '2024-05-01T07:00:00-05:00'", true),
            ("at ne 2024-05-01T12:00:00.0000001Z", true),
            ("at gt 2024-05-01T11:59:59.999Z", true),
            ("at gt 2024-05-01T12:00:00Z", false),
            ("at ge 2024-05-01T12:00:00Z", true),
            ("at lt 2024-05-01T13:00:00+02:00", false),
            ("at lt 2024-05-02T00:00Z", true),
            ("at le 2024-05-01T12:00:00Z", true),
            ("at gt 2024-05-01", true),
            ("at lt 2024-05-02", true),
            ("text gt 2024-05-01T00:00:00Z", false),
            ("text lt 2024-05-01T00:00:00Z", false),
        ],
    );
    let dated = json!({"birth": "1990-01-01"});
    check(
        &dated,
        &[
            ("birth eq 1990-01-01", true),
            ("birth lt 1990-01-02", true),
            ("birth gt 1990-01-01", false),
        ],
    );
}

#[test]
fn partner_center_timestamps_keep_100ns_ticks() {
    let filter = Filter::parse("updatedDateTime gt 2019-02-23T02:05:23.2931817Z").unwrap();
    let at = |ts: &str| json!({"updatedDateTime": ts});
    assert!(filter.matches(&at("2019-02-23T02:05:23.2931818Z")));
    assert!(!filter.matches(&at("2019-02-23T02:05:23.2931817Z")));
    assert!(!filter.matches(&at("2019-02-23T02:05:23.2931816Z")));
    // Same instant, written with an offset.
    assert!(!filter.matches(&at("2019-02-23T04:05:23.2931817+02:00")));
    let quoted = Filter::parse("updatedDateTime lt '2019-02-23T02:05:23.2931817Z'").unwrap();
    assert!(quoted.matches(&at("2019-02-23T02:05:23.2931816Z")));
    assert!(!quoted.matches(&at("2019-02-23T02:05:23.2931818Z")));
}

#[test]
fn guid_literals_ignore_case() {
    let row = json!({"engagementId": "6592A1B0-AD2B-4C5B-A68A-47AB4B6C7D3E"});
    check(
        &row,
        &[
            ("engagementId eq 6592a1b0-ad2b-4c5b-a68a-47ab4b6c7d3e", true),
            (
                "engagementId eq '6592a1b0-ad2b-4c5b-a68a-47ab4b6c7d3e'",
                true,
            ),
            (
                "engagementId ne 6592a1b0-ad2b-4c5b-a68a-47ab4b6c7d3e",
                false,
            ),
            (
                "engagementId eq 00000000-ad2b-4c5b-a68a-47ab4b6c7d3e",
                false,
            ),
            ("engagementId gt 00000000-0000-0000-0000-000000000000", true),
            (
                "engagementId lt 00000000-0000-0000-0000-000000000000",
                false,
            ),
            ("engagementId ge 6592A1B0-AD2B-4C5B-A68A-47AB4B6C7D3E", true),
            ("engagementId le ffffffff-ffff-ffff-ffff-ffffffffffff", true),
        ],
    );
}

#[test]
fn nested_paths() {
    let row = json!({"customerProfile": {"address": {"country": "US", "zip": 98052}}});
    check(
        &row,
        &[
            ("customerProfile/address/country eq 'US'", true),
            ("customerProfile/address/country eq 'us'", true),
            ("customerProfile/address/country eq 'CA'", false),
            ("customerProfile/address/zip eq 98052", true),
            ("customerProfile/address/city eq null", true),
            ("customerProfile/address eq null", false),
            ("customerProfile/missing/country eq 'US'", false),
            ("customerProfile/Address/country eq 'US'", false),
        ],
    );
}

#[test]
fn partner_center_documented_examples() {
    let referral = json!({
        "engagementId": "6592a1b0-ad2b-4c5b-a68a-47ab4b6c7d3e",
        "status": "New",
        "substatus": "Pending",
        "qualification": "SalesQualified",
        "type": "Shared",
        "direction": "Incoming",
        "customerProfile": {"address": {"country": "US"}},
        "team": [
            {"email": "ann@contoso.com"},
            {"email": "x@y"}
        ],
        "updatedDateTime": "2019-02-23T02:05:23.2931818Z"
    });
    check(
        &referral,
        &[
            (
                "engagementId eq '6592a1b0-ad2b-4c5b-a68a-47ab4b6c7d3e'",
                true,
            ),
            ("engagementId eq 6592a1b0-ad2b-4c5b-a68a-47ab4b6c7d3e", true),
            (
                "status eq 'New' and qualification eq 'SalesQualified'",
                true,
            ),
            (
                "status eq 'New' and qualification eq 'MarketingQualified'",
                false,
            ),
            (
                "customerProfile/address/country eq 'US' and direction eq 'Incoming'",
                true,
            ),
            (
                "customerProfile/address/country eq 'US' and direction eq 'Outgoing'",
                false,
            ),
            ("(type eq 'Shared' and direction eq 'Incoming')", true),
            ("(type eq 'Independent' and direction eq 'Incoming')", false),
            ("substatus eq 'Pending'", true),
            ("substatus eq 'Accepted'", false),
            ("team/any(t:t/email eq 'x@y')", true),
            ("team/any(t: t/email eq 'X@Y')", true),
            ("team/any(t:t/email eq 'nobody@y')", false),
            ("updatedDateTime gt 2019-02-23T02:05:23.2931817Z", true),
            ("updatedDateTime gt 2019-02-23T02:05:23.2931818Z", false),
        ],
    );
}

#[test]
fn lambdas() {
    let row = json!({
        "team": [
            {"email": "ann@contoso.com", "role": "Owner"},
            {"email": "bob@contoso.com", "role": "Member"}
        ],
        "tags": ["Azure", "AI"],
        "empty": [],
        "scalar": "x",
        "groups": [{"members": [{"name": "Zed"}]}, {"members": []}],
        "region": "EMEA"
    });
    check(
        &row,
        &[
            ("team/all(t:endswith(t/email,'@contoso.com'))", true),
            ("team/all(t:t/role eq 'Owner')", false),
            (
                "team/any(t:t/role eq 'Owner' and startswith(t/email,'ann'))",
                true,
            ),
            (
                "team/any(t:t/role eq 'Owner' and startswith(t/email,'bob'))",
                false,
            ),
            ("tags/any(tag:tag eq 'ai')", true),
            ("tags/any(tag:tag eq 'Dynamics')", false),
            ("team/any()", true),
            ("empty/any()", false),
            ("empty/any(e:e eq 1)", false),
            ("empty/all(e:e eq 1)", true),
            ("missing/any(e:e eq 1)", false),
            ("missing/all(e:e eq 1)", false),
            ("scalar/any(e:e eq 'x')", false),
            // A path without the variable still reads the row.
            ("team/any(t:region eq 'EMEA')", true),
            ("groups/any(g:g/members/any(m:m/name eq 'zed'))", true),
            ("groups/all(g:g/members/any(m:m/name eq 'zed'))", false),
            ("not team/any(t:t/role eq 'Guest')", true),
        ],
    );
}

#[test]
fn dataverse_examples() {
    let account = json!({
        "_parentaccountid_value": "5f1c3a2b-0000-4000-8000-00000000beef",
        "name": "Contoso Ltd",
        "modifiedon": "2024-05-01T00:00:00Z",
        "statecode": 1
    });
    check(
        &account,
        &[
            (
                "_parentaccountid_value eq 5f1c3a2b-0000-4000-8000-00000000beef",
                true,
            ),
            (
                "_parentaccountid_value eq 5F1C3A2B-0000-4000-8000-00000000BEEF",
                true,
            ),
            (
                "_parentaccountid_value eq 5f1c3a2b-0000-4000-8000-00000000beee",
                false,
            ),
            ("contains(name,'contoso')", true),
            ("contains(name,'LTD')", true),
            ("contains(name,'fabrikam')", false),
            ("startswith(name,'Con')", true),
            ("startswith(name,'con')", true),
            ("startswith(name,'Ltd')", false),
            ("endswith(name,'ltd')", true),
            ("endswith(name,'Contoso')", false),
            ("contains(missing,'x')", false),
            ("contains(statecode,'1')", false),
            ("modifiedon ge 2024-05-01T00:00:00Z", true),
            ("modifiedon ge 2024-05-01T00:00:00.0000001Z", false),
            ("statecode eq 0 or statecode eq 1", true),
            ("statecode eq 0 or statecode eq 2", false),
            ("STARTSWITH(name,'Con') AND statecode EQ 1", true),
        ],
    );
}

#[test]
fn precedence_not_over_and_over_or() {
    let f = Filter::parse("a eq 1 or b eq 2 and c eq 3").unwrap();
    // Read as `a or (b and c)`; `(a or b) and c` would reject the first.
    assert!(f.matches(&json!({"a": 1, "b": 0, "c": 0})));
    assert!(f.matches(&json!({"a": 0, "b": 2, "c": 3})));
    assert!(!f.matches(&json!({"a": 0, "b": 2, "c": 0})));

    let grouped = Filter::parse("(a eq 1 or b eq 2) and c eq 3").unwrap();
    assert!(!grouped.matches(&json!({"a": 1, "b": 0, "c": 0})));
    assert!(grouped.matches(&json!({"a": 1, "b": 0, "c": 3})));

    // `not` applies to the next comparison only, not the whole `and`.
    let negated = Filter::parse("not a eq 1 and b eq 2").unwrap();
    assert!(negated.matches(&json!({"a": 0, "b": 2})));
    assert!(!negated.matches(&json!({"a": 1, "b": 2})));
    assert!(!negated.matches(&json!({"a": 0, "b": 0})));
}

#[test]
fn not_operator() {
    let row = json!({"status": "Active", "flag": true});
    check(
        &row,
        &[
            ("not status eq 'Active'", false),
            ("not status eq 'Closed'", true),
            ("not (status eq 'Closed' or flag eq true)", false),
            ("not not flag eq true", true),
            ("not contains(status,'act')", false),
            ("not missing eq 'x'", true),
        ],
    );
}

#[test]
fn escaped_quotes() {
    let row = json!({"name": "O'Brien", "quote": "'"});
    check(
        &row,
        &[
            ("name eq 'O''Brien'", true),
            ("name eq 'o''brien'", true),
            ("name eq 'OBrien'", false),
            ("contains(name,'''')", true),
            ("quote eq ''''", true),
        ],
    );
}

#[test]
fn null_and_missing() {
    let row = json!({"nothing": null, "name": "x", "zero": 0, "empty": ""});
    check(
        &row,
        &[
            ("nothing eq null", true),
            ("missing eq null", true),
            ("nothing ne null", false),
            ("missing ne null", false),
            ("nothing eq 'x'", false),
            ("nothing ne 'x'", false),
            ("missing ne 'x'", false),
            ("missing gt 0", false),
            ("missing lt 0", false),
            ("nothing gt 2024-01-01T00:00:00Z", false),
            ("name eq null", false),
            ("name ne null", true),
            ("zero eq null", false),
            ("empty eq null", false),
            ("empty eq ''", true),
        ],
    );
}

#[test]
fn parse_errors_name_position_and_expectation() {
    let cases = [
        (
            "status eq 'New' foo",
            "unexpected token 'foo' at position 16: expected 'and', 'or' or end of input",
        ),
        (
            "status foo 'New'",
            "unexpected token 'foo' at position 7: expected a comparison operator",
        ),
        (
            "(status eq 'New'",
            "unexpected end of input at position 16: expected 'and', 'or' or ')'",
        ),
        (
            "status eq 'New')",
            "unexpected token ')' at position 15: expected 'and', 'or' or end of input",
        ),
        (
            "((a eq 1) and b eq 2",
            "unexpected end of input at position 20: expected 'and', 'or' or ')'",
        ),
        (
            "status eq",
            "unexpected end of input at position 9: expected a literal value",
        ),
        (
            "status eq and x eq 1",
            "unexpected token 'and' at position 10: expected a literal value",
        ),
        (
            "status eq other",
            "unexpected token 'other' at position 10: expected a literal value",
        ),
        (
            "tolower(name) eq 'x'",
            "unknown function 'tolower' at position 0: expected contains, startswith or endswith",
        ),
        (
            "a eq 1 and Microsoft.Dynamics.CRM.Today(PropertyName='x')",
            "unknown function 'Microsoft.Dynamics.CRM.Today' at position 11: expected contains, startswith or endswith",
        ),
        (
            "contains(name)",
            "unexpected token ')' at position 13: expected ','",
        ),
        (
            "contains(name,5)",
            "unexpected token '5' at position 14: expected a string literal",
        ),
        (
            "",
            "unexpected end of input at position 0: expected a filter expression",
        ),
        (
            "'x' eq name",
            "unexpected string 'x' at position 0: expected a filter expression",
        ),
        (
            "a and b",
            "unexpected token 'and' at position 2: expected a comparison operator",
        ),
        (
            "team/any(t t/email eq 'x')",
            "unexpected token 't' at position 11: expected ':' after the lambda variable",
        ),
        (
            "team/all()",
            "unexpected token ')' at position 9: expected a property name",
        ),
        (
            "a/ eq 1",
            "unexpected token '1' at position 6: expected a comparison operator",
        ),
        (
            "a/(b eq 1)",
            "unexpected token '(' at position 2: expected a property name",
        ),
        (
            "a eq 1 % 2",
            "unexpected token '%' at position 7: expected 'and', 'or' or end of input",
        ),
        (
            "a = 1",
            "unexpected token '=' at position 2: expected a comparison operator",
        ),
        (
            "name eq 'open",
            "unterminated string literal starting at position 8",
        ),
    ];
    for (filter, message) in cases {
        assert_eq!(parse_error(filter), message, "{filter:?}");
    }
}

#[test]
fn error_exposes_position() {
    let err = Filter::parse("status foo 'New'").unwrap_err();
    assert_eq!(err.position(), 7);
    assert!(matches!(
        err,
        ODataError::Unexpected {
            expected: "a comparison operator",
            ..
        }
    ));
}

#[test]
fn nesting_is_capped() {
    let depth = crate::MAX_DEPTH;
    let ok = format!("{}a eq 1{}", "(".repeat(depth), ")".repeat(depth));
    assert!(Filter::parse(&ok).unwrap().matches(&json!({"a": 1})));
    let deep = format!("{}a eq 1{}", "(".repeat(depth + 1), ")".repeat(depth + 1));
    assert_eq!(
        parse_error(&deep),
        format!("expression nests deeper than {depth} levels at position {depth}")
    );
    let nots = format!("{}a eq 1", "not ".repeat(depth + 1));
    assert!(matches!(
        Filter::parse(&nots),
        Err(ODataError::TooDeep { .. })
    ));
    // Long flat chains are not nesting.
    let chain = vec!["a eq 1"; 10_000].join(" and ");
    assert!(Filter::parse(&chain).unwrap().matches(&json!({"a": 1})));
}

#[test]
fn filter_properties_lists_every_path_once() {
    let f = Filter::parse(
        "status eq 'New' and (customerProfile/address/country eq 'US' or status ne 'Closed') \
         and team/any(t:t/email eq 'x@y' and contains(t/name,'a') and region eq 'EU') \
         and groups/any(g:g/members/any(m:m/id eq 1)) and tags/any(tag:tag eq 'ai') and deals/any()",
    )
    .unwrap();
    assert_eq!(
        f.properties(),
        [
            "status",
            "customerProfile/address/country",
            "team/email",
            "team/name",
            "region",
            "groups/members/id",
            "tags",
            "deals",
        ]
    );
}

#[test]
fn orderby_parses_keys_and_directions() {
    let order = OrderBy::parse("createdDateTime desc, customerProfile/name ASC,id").unwrap();
    assert_eq!(
        order.keys(),
        [
            ("createdDateTime".to_owned(), Direction::Desc),
            ("customerProfile/name".to_owned(), Direction::Asc),
            ("id".to_owned(), Direction::Asc),
        ]
    );
    assert_eq!(
        order.properties(),
        ["createdDateTime", "customerProfile/name", "id"]
    );
}

#[test]
fn orderby_sorts_multi_key_and_desc() {
    let order = OrderBy::parse("status asc, updated desc").unwrap();
    let mut rows = [
        json!({"id": 1, "status": "new", "updated": "2024-01-01T00:00:00Z"}),
        json!({"id": 2, "status": "Closed", "updated": "2024-01-03T00:00:00Z"}),
        json!({"id": 3, "status": "New", "updated": "2024-01-02T00:00:00.0000001Z"}),
        json!({"id": 4, "updated": "2024-01-05T00:00:00Z"}),
        json!({"id": 5, "status": "new", "updated": "2024-01-02T00:00:00Z"}),
        json!({"id": 6, "status": "closed", "updated": "2024-01-03T00:00:00Z"}),
    ];
    rows.sort_by(|a, b| order.compare(a, b));
    let ids: Vec<i64> = rows.iter().filter_map(|r| r["id"].as_i64()).collect();
    // Missing status first; "Closed"/"closed" tie and keep input order;
    // within "new", newest first at 100 ns resolution.
    assert_eq!(ids, [4, 2, 6, 3, 5, 1]);
}

#[test]
fn orderby_values_follow_filter_rules() {
    let by = |spec: &str, a: Value, b: Value| OrderBy::parse(spec).unwrap().compare(&a, &b);
    assert_eq!(
        by("n", json!({"n": 10}), json!({"n": 9})),
        Ordering::Greater
    );
    assert_eq!(by("n", json!({"n": 2.5}), json!({"n": 3})), Ordering::Less);
    assert_eq!(
        by("n desc", json!({"n": 10}), json!({"n": 9})),
        Ordering::Less
    );
    assert_eq!(
        by(
            "at",
            json!({"at": "2024-01-01T10:00:00+05:00"}),
            json!({"at": "2024-01-01T06:00:00Z"})
        ),
        Ordering::Less
    );
    assert_eq!(
        by("s", json!({"s": "abc"}), json!({"s": "ABC"})),
        Ordering::Equal
    );
    assert_eq!(
        by("s", json!({"s": null}), json!({"s": "a"})),
        Ordering::Less
    );
    assert_eq!(by("s", json!({}), json!({"s": null})), Ordering::Equal);
    assert_eq!(
        by("s desc", json!({}), json!({"s": "a"})),
        Ordering::Greater
    );
    assert_eq!(
        by("b", json!({"b": false}), json!({"b": true})),
        Ordering::Less
    );
    assert_eq!(
        by("a/b", json!({"a": {"b": 2}}), json!({"a": {"b": 1}})),
        Ordering::Greater
    );
}

#[test]
fn orderby_errors() {
    let cases = [
        (
            "",
            "unexpected end of input at position 0: expected a property name",
        ),
        (
            "name,",
            "unexpected end of input at position 5: expected a property name",
        ),
        (
            "name sideways",
            "unexpected token 'sideways' at position 5: expected 'asc', 'desc', ',' or end of input",
        ),
        (
            "name desc desc",
            "unexpected token 'desc' at position 10: expected 'asc', 'desc', ',' or end of input",
        ),
        (
            "a/",
            "unexpected end of input at position 2: expected a property name",
        ),
        (
            "Microsoft.X",
            "invalid property name 'Microsoft.X' at position 0",
        ),
    ];
    for (input, message) in cases {
        match OrderBy::parse(input) {
            Ok(parsed) => panic!("{input:?} parsed as {parsed:?}"),
            Err(e) => assert_eq!(e.to_string(), message, "{input:?}"),
        }
    }
}
