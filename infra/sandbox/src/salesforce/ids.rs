//! Salesforce record ids: 15 case-sensitive characters (a 3-character key prefix naming the
//! object, a 2-character instance, a reserved `0`, and a 9-character base-62 number), plus a
//! 3-character suffix that encodes which of the 15 are upper-case letters, so the 18-character
//! form survives case-insensitive systems. Clients get the 18-character form; the 15-character
//! form is accepted on lookup.

/// Digits in ASCII order, so ids of one object sort in creation order.
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// The alphabet of the case-encoding suffix: 32 symbols for the 5 bits of each chunk.
const SUFFIX: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
/// The instance part of every generated id (any two alphanumerics would do).
const INSTANCE: &str = "5g";

/// The `n`th id of an object with key prefix `prefix` (3 characters), in 18-character form.
pub fn make_id(prefix: &str, n: u64) -> String {
    let mut digits = [b'0'; 9];
    let mut rest = n;
    for d in digits.iter_mut().rev() {
        *d = BASE62[(rest % 62) as usize];
        rest /= 62;
    }
    let id15 = format!("{prefix}{INSTANCE}0{}", String::from_utf8_lossy(&digits));
    let suffix = suffix(&id15);
    id15 + &suffix
}

/// The 3-character case suffix of a 15-character id.
fn suffix(id15: &str) -> String {
    id15.as_bytes()
        .chunks(5)
        .map(|chunk| {
            let bits = chunk
                .iter()
                .enumerate()
                .filter(|(_, c)| c.is_ascii_uppercase())
                .fold(0usize, |acc, (i, _)| acc | (1 << i));
            SUFFIX[bits] as char
        })
        .collect()
}

/// The canonical 18-character form of a 15- or 18-character id, or `None` when `id` is not
/// shaped like one. An 18-character id may have lost its case (its suffix restores it).
pub fn canonical(id: &str) -> Option<String> {
    if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    match id.len() {
        15 => Some(format!("{id}{}", suffix(id))),
        18 => {
            let (body, tail) = id.split_at(15);
            let mut restored = Vec::with_capacity(18);
            for (chunk, s) in body.as_bytes().chunks(5).zip(tail.bytes()) {
                let bits = SUFFIX.iter().position(|&c| c == s.to_ascii_uppercase())?;
                for (i, c) in chunk.iter().enumerate() {
                    restored.push(if bits & (1 << i) != 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    });
                }
            }
            let body = String::from_utf8(restored).ok()?;
            let suffix = suffix(&body);
            Some(body + &suffix)
        }
        _ => None,
    }
}

/// Whether `id` (canonical) belongs to the object with key prefix `prefix`.
pub fn has_prefix(id: &str, prefix: &str) -> bool {
    id.get(..3) == Some(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eighteen_character_ids_encode_the_case_of_the_fifteen() {
        // Every letter upper-case in the first chunk gives suffix symbol 31 ('5').
        assert_eq!(suffix("ABCDE0000000000"), "5AA");
        assert_eq!(suffix("00000aaaaa0000A"), "AAQ");
        let id = make_id("006", 62 * 62 + 10);
        assert_eq!(id.len(), 18);
        assert!(id.starts_with("0065g0000000"));
        assert_eq!(canonical(&id[..15]).as_deref(), Some(id.as_str()));
        assert_eq!(canonical(&id.to_lowercase()).as_deref(), Some(id.as_str()));
    }

    #[test]
    fn ids_sort_in_creation_order_and_keep_their_prefix() {
        let a = make_id("a0X", 61);
        let b = make_id("a0X", 62);
        assert!(a < b);
        assert!(has_prefix(&b, "a0X"));
        assert!(!has_prefix(&b, "006"));
    }

    #[test]
    fn malformed_ids_are_refused() {
        assert_eq!(canonical("006"), None);
        assert_eq!(canonical("0065g000000abc!"), None);
        assert_eq!(canonical("0065g000000abcd999"), None);
    }
}
