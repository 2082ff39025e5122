//! The Audit field: newest line first, one line per sync or error, trimmed to the field's size
//! so a busy deal never makes the CRM reject the write.

use chrono::{DateTime, SecondsFormat, Utc};

use super::marker::Mark;

/// One Audit line: when, whether it worked, what happened.
pub fn line(at: DateTime<Utc>, mark: Mark, message: &str) -> String {
    // One line per event: a message's own line breaks would split it.
    let message: String = message
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    format!(
        "{} {} {}",
        at.to_rfc3339_opts(SecondsFormat::Secs, true),
        mark.symbol(),
        message.trim()
    )
}

/// `existing` with `new_line` on top, keeping at most `max_chars` characters: the oldest whole
/// lines go first; a single line longer than the field is cut and ends with `…`.
pub fn prepend(existing: &str, new_line: &str, max_chars: usize) -> String {
    if max_chars == 0 {
        return String::new();
    }
    let new_len = new_line.chars().count();
    if new_len >= max_chars {
        let mut cut: String = new_line.chars().take(max_chars.saturating_sub(1)).collect();
        cut.push('…');
        return cut;
    }
    let mut out = String::from(new_line);
    let mut used = new_len;
    for old in existing.lines().filter(|l| !l.trim().is_empty()) {
        let len = old.chars().count() + 1;
        if used + len > max_chars {
            break;
        }
        out.push('\n');
        out.push_str(old);
        used += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z")
            .expect("valid")
            .with_timezone(&Utc)
    }

    #[test]
    fn a_line_says_when_how_and_what_on_one_line() {
        assert_eq!(
            line(
                at(),
                Mark::Failed,
                "Country 'USA' is not ISO 3166 alpha-2.\nFix it."
            ),
            "2026-11-21T10:00:00Z ✖ Country 'USA' is not ISO 3166 alpha-2. Fix it."
        );
    }

    #[test]
    fn newest_first_and_oldest_dropped_whole() {
        let a = prepend("", "one", 100);
        let b = prepend(&a, "two", 100);
        assert_eq!(b, "two\none");
        assert_eq!(prepend(&b, "three", 13), "three\ntwo\none");
        assert_eq!(prepend(&b, "three", 12), "three\ntwo");
        assert_eq!(prepend(&b, "a very long line indeed", 10), "a very lo…");
    }

    proptest! {
        #[test]
        fn never_longer_than_the_field_and_newest_on_top(
            lines in proptest::collection::vec("[a-zé✔ ]{0,30}", 0..20),
            new in "[a-z✖]{1,30}",
            max in 1usize..200,
        ) {
            let existing = lines.join("\n");
            let out = prepend(&existing, &new, max);
            prop_assert!(out.chars().count() <= max);
            let first = out.lines().next().unwrap_or("");
            if new.chars().count() < max {
                prop_assert_eq!(first, new.as_str());
            } else {
                prop_assert!(first.ends_with('…'));
            }
        }
    }
}
