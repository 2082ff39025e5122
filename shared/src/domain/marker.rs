//! The status marker before an opportunity's name: ✔ after a successful sync, ✖ after a failed
//! one. Sellers see at a glance which deals are in step; Partner Center never sees the marker.

/// Outcome of the last sync of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Synced,
    Failed,
}

impl Mark {
    pub fn symbol(self) -> char {
        match self {
            Mark::Synced => '✔',
            Mark::Failed => '✖',
        }
    }
}

/// Marks a previous version (or a seller) may have left: our two symbols, the lighter check and
/// cross that fonts substitute, and the emoji variation selector that can follow them.
fn is_marker_char(c: char) -> bool {
    matches!(c, '✔' | '✖' | '✓' | '✗' | '\u{FE0F}')
}

/// The name without any leading markers or leading blanks, as it goes to Partner Center.
pub fn strip(name: &str) -> &str {
    let mut rest = name.trim_start();
    while let Some(c) = rest.chars().next().filter(|c| is_marker_char(*c)) {
        rest = rest[c.len_utf8()..].trim_start();
    }
    rest
}

/// The name with exactly one marker for `mark`, or none when markers are switched off. Any
/// marker already there is replaced, so a name never collects two.
pub fn apply(name: &str, mark: Mark, enabled: bool) -> String {
    let bare = strip(name);
    if enabled {
        format!("{} {bare}", mark.symbol())
    } else {
        bare.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table() {
        let cases = [
            ("Contoso", Mark::Synced, true, "✔ Contoso"),
            ("✔ Contoso", Mark::Failed, true, "✖ Contoso"),
            ("✖ ✔ Contoso", Mark::Synced, true, "✔ Contoso"),
            ("✔️ Contoso", Mark::Synced, true, "✔ Contoso"),
            ("✓Contoso", Mark::Synced, true, "✔ Contoso"),
            ("✔ Contoso", Mark::Synced, false, "Contoso"),
            ("Contoso ✔ inside", Mark::Synced, true, "✔ Contoso ✔ inside"),
            ("", Mark::Failed, true, "✖ "),
        ];
        for (name, mark, enabled, want) in cases {
            assert_eq!(apply(name, mark, enabled), want, "{name:?}");
        }
        assert_eq!(strip("  ✔ ✖  Deal "), "Deal ");
        assert_eq!(strip("  Deal"), "Deal");
    }

    proptest! {
        #[test]
        fn never_doubled_and_strip_undoes_apply(name in ".{0,40}", synced: bool, enabled: bool) {
            let mark = if synced { Mark::Synced } else { Mark::Failed };
            let once = apply(&name, mark, enabled);
            prop_assert_eq!(apply(&once, mark, enabled), once.clone());
            prop_assert_eq!(strip(&once), strip(&name));
            let markers = once.chars().take_while(|c| is_marker_char(*c) || c.is_whitespace()).filter(|c| is_marker_char(*c)).count();
            prop_assert!(markers <= 1);
        }
    }
}
