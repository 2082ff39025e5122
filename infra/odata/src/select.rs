//! `$select`: a comma-separated list of property names.

use crate::error::ODataError;

fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Splits a `$select` value into property names, trimmed. Empty items and
/// anything but plain identifiers are rejected rather than ignored, since
/// the real services reject them too and a silently narrowed projection
/// would hide the client's bug.
pub fn parse_select(s: &str) -> Result<Vec<String>, ODataError> {
    let mut names = Vec::new();
    // Errors report character positions; slicing needs byte offsets.
    let (mut chars_before, mut bytes_before) = (0, 0);
    for item in s.split(',') {
        let name = item.trim();
        if name.is_empty() {
            let is_last = bytes_before + item.len() == s.len();
            return Err(ODataError::Unexpected {
                found: if is_last { "end of input" } else { "token ','" }.to_owned(),
                position: chars_before + item.chars().count(),
                expected: "a property name",
            });
        }
        if !is_identifier(name) {
            let leading = item.chars().take_while(|c| c.is_whitespace()).count();
            return Err(ODataError::InvalidName {
                name: name.to_owned(),
                position: chars_before + leading,
            });
        }
        names.push(name.to_owned());
        chars_before += item.chars().count() + 1;
        bytes_before += item.len() + 1;
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_in_order() {
        assert_eq!(
            parse_select(" id, name ,_parentaccountid_value").unwrap(),
            ["id", "name", "_parentaccountid_value"]
        );
    }

    #[test]
    fn rejects_empty_and_invalid_items() {
        let cases = [
            (
                "",
                "unexpected end of input at position 0: expected a property name",
            ),
            (
                "a,,b",
                "unexpected token ',' at position 2: expected a property name",
            ),
            (
                "a, ",
                "unexpected end of input at position 3: expected a property name",
            ),
            ("a,b-c", "invalid property name 'b-c' at position 2"),
            ("a, 1x", "invalid property name '1x' at position 3"),
            (
                "a,team/email",
                "invalid property name 'team/email' at position 2",
            ),
        ];
        for (input, message) in cases {
            assert_eq!(
                parse_select(input).unwrap_err().to_string(),
                message,
                "{input:?}"
            );
        }
    }
}
