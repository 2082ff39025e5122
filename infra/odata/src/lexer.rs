//! Tokeniser shared by the `$filter` and `$orderby` parsers.
//!
//! OData writes GUIDs, dates and date-times unquoted, and they overlap
//! with numbers (`2024-05-01`) and identifiers (`deadbeef-…`), so the lexer
//! tries the longest literal shapes first and then insists that a literal
//! ends at a delimiter: `6592a1b0-0000` is reported as an invalid literal
//! instead of being split into tokens that would fail later with a
//! confusing message.

use chrono::{DateTime, FixedOffset, NaiveDate};

use crate::error::ODataError;
use crate::value::{Num, scan_date, scan_datetime};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    LParen,
    RParen,
    Comma,
    Colon,
    Slash,
    /// Identifiers and keywords; keywords are recognised by the parser,
    /// case-insensitively, so property names keep their exact case.
    Word(String),
    Str(String),
    Number(Num),
    Guid(String),
    DateTime(DateTime<FixedOffset>),
    Date(NaiveDate),
    /// Any other character. The grammar accepts none, but lexing it as a
    /// token lets the parser report it with what it expected there.
    Symbol(char),
    End,
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) kind: Tok,
    /// 0-based character position of the token's first character.
    pub(crate) pos: usize,
    /// The token as written, for error messages.
    pub(crate) raw: String,
}

impl Token {
    /// How an error message names this token.
    pub(crate) fn describe(&self) -> String {
        match self.kind {
            Tok::End => "end of input".to_owned(),
            Tok::Str(_) => format!("string {}", self.raw),
            _ => format!("token '{}'", self.raw),
        }
    }

    pub(crate) fn is_keyword(&self, keyword: &str) -> bool {
        matches!(&self.kind, Tok::Word(w) if w.eq_ignore_ascii_case(keyword))
    }
}

/// Characters that may continue a literal; a literal followed by one of
/// these was not really a literal.
fn continues_literal(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'+')
}

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

/// Word characters include `.` so that a namespace-qualified call such as
/// `Microsoft.Dynamics.CRM.Today()` is named whole in the error; the
/// parser rejects dotted words as property names.
fn is_word_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.')
}

/// Length of an 8-4-4-4-12 hex GUID at the start of `b`.
fn scan_guid(b: &[u8]) -> Option<usize> {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let mut i = 0;
    for (n, len) in GROUPS.iter().enumerate() {
        if n > 0 {
            (b.get(i) == Some(&b'-')).then_some(())?;
            i += 1;
        }
        let group = b.get(i..i + len)?;
        group.iter().all(u8::is_ascii_hexdigit).then_some(())?;
        i += len;
    }
    Some(i)
}

/// Length of `-?digits[.digits][e[±]digits]` at the start of `b`, and
/// whether it is a decimal rather than an integer.
fn scan_number(b: &[u8]) -> Option<(usize, bool)> {
    let digits_from = |i: usize| {
        b[i.min(b.len())..]
            .iter()
            .take_while(|d| d.is_ascii_digit())
            .count()
    };
    let mut i = usize::from(b.first() == Some(&b'-'));
    let int_len = digits_from(i);
    if int_len == 0 {
        return None;
    }
    i += int_len;
    let mut decimal = false;
    if b.get(i) == Some(&b'.') && digits_from(i + 1) > 0 {
        i += 1 + digits_from(i + 1);
        decimal = true;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        let exp_len = digits_from(i + 1 + sign);
        if exp_len > 0 {
            i += 1 + sign + exp_len;
            decimal = true;
        }
    }
    Some((i, decimal))
}

struct Lexer<'s> {
    src: &'s str,
    bytes: &'s [u8],
    at: usize,
    /// Character count of `src[..at]`, kept incrementally so positions are
    /// in characters (what a person counts) without rescanning.
    chars: usize,
}

impl<'s> Lexer<'s> {
    fn token(&mut self, kind: Tok, len: usize) -> Token {
        let raw = &self.src[self.at..self.at + len];
        let token = Token {
            kind,
            pos: self.chars,
            raw: raw.to_owned(),
        };
        self.at += len;
        self.chars += raw.chars().count();
        token
    }

    fn invalid_literal(&self, reason: &'static str) -> ODataError {
        let len = self.bytes[self.at..]
            .iter()
            .take_while(|&&b| continues_literal(b))
            .count()
            .max(1);
        ODataError::InvalidLiteral {
            text: self.src[self.at..self.at + len].to_owned(),
            position: self.chars,
            reason,
        }
    }

    /// A literal of `len` bytes is only accepted if it ends at a delimiter.
    fn ends_cleanly(&self, len: usize) -> bool {
        !self
            .bytes
            .get(self.at + len)
            .is_some_and(|&b| continues_literal(b))
    }

    fn string(&mut self) -> Result<Token, ODataError> {
        let mut value = String::new();
        let mut i = self.at + 1;
        loop {
            let Some(offset) = self.src[i..].find('\'') else {
                return Err(ODataError::UnterminatedString {
                    position: self.chars,
                });
            };
            value.push_str(&self.src[i..i + offset]);
            i += offset + 1;
            // OData escapes a quote by doubling it.
            if self.bytes.get(i) == Some(&b'\'') {
                value.push('\'');
                i += 1;
            } else {
                break;
            }
        }
        let len = i - self.at;
        Ok(self.token(Tok::Str(value), len))
    }

    fn literal_or_word(&mut self) -> Result<Token, ODataError> {
        let rest = &self.bytes[self.at..];
        if let Some(len) = scan_guid(rest).filter(|&len| self.ends_cleanly(len)) {
            let guid = self.src[self.at..self.at + len].to_owned();
            return Ok(self.token(Tok::Guid(guid), len));
        }
        if let Some((len, value)) = scan_datetime(rest).filter(|&(len, _)| self.ends_cleanly(len)) {
            let Some(dt) = value else {
                return Err(self.invalid_literal("not a valid date and time"));
            };
            return Ok(self.token(Tok::DateTime(dt), len));
        }
        if let Some((len, value)) = scan_date(rest).filter(|&(len, _)| self.ends_cleanly(len)) {
            let Some(date) = value else {
                return Err(self.invalid_literal("not a valid date"));
            };
            return Ok(self.token(Tok::Date(date), len));
        }
        if let Some((len, decimal)) = scan_number(rest) {
            if !self.ends_cleanly(len) {
                return Err(self.invalid_literal("not a number, GUID or date-time"));
            }
            let text = &self.src[self.at..self.at + len];
            let int = if decimal { None } else { text.parse().ok() };
            // Integers too large for i128 degrade to f64, like JSON parsers do.
            let num = match int {
                Some(i) => Num::Int(i),
                None => match text.parse::<f64>() {
                    Ok(f) if f.is_finite() => Num::Float(f),
                    _ => return Err(self.invalid_literal("number out of range")),
                },
            };
            return Ok(self.token(Tok::Number(num), len));
        }
        if is_word_start(rest[0]) {
            let len = rest.iter().take_while(|&&b| is_word_char(b)).count();
            let word = self.src[self.at..self.at + len].to_owned();
            return Ok(self.token(Tok::Word(word), len));
        }
        Ok(self.symbol())
    }

    fn symbol(&mut self) -> Token {
        let ch = self.src[self.at..].chars().next().unwrap_or('\0');
        self.token(Tok::Symbol(ch), ch.len_utf8())
    }

    fn next(&mut self) -> Result<Token, ODataError> {
        let skipped = self.bytes[self.at..]
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
        self.at += skipped;
        self.chars += skipped;
        let Some(&b) = self.bytes.get(self.at) else {
            return Ok(Token {
                kind: Tok::End,
                pos: self.chars,
                raw: String::new(),
            });
        };
        match b {
            b'(' => Ok(self.token(Tok::LParen, 1)),
            b')' => Ok(self.token(Tok::RParen, 1)),
            b',' => Ok(self.token(Tok::Comma, 1)),
            b':' => Ok(self.token(Tok::Colon, 1)),
            b'/' => Ok(self.token(Tok::Slash, 1)),
            b'\'' => self.string(),
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' => self.literal_or_word(),
            _ => Ok(self.symbol()),
        }
    }
}

/// Splits `src` into tokens, always ending with a [`Tok::End`] token so
/// the parser can peek without bounds checks.
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, ODataError> {
    let mut lexer = Lexer {
        src,
        bytes: src.as_bytes(),
        at: 0,
        chars: 0,
    };
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next()?;
        let done = token.kind == Tok::End;
        tokens.push(token);
        if done {
            return Ok(tokens);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Tok> {
        tokenize(src).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn literals_are_recognised_by_shape() {
        let k = kinds(
            "6592a1b0-ad2b-4c5b-a68a-47ab4b6c7d3e deadbeef-0000-0000-0000-000000000000 2024-05-01T00:00:00Z 2024-05-01 -12 1.5 'a''b' name",
        );
        assert!(matches!(&k[0], Tok::Guid(g) if g == "6592a1b0-ad2b-4c5b-a68a-47ab4b6c7d3e"));
        assert!(matches!(&k[1], Tok::Guid(_)));
        assert!(matches!(&k[2], Tok::DateTime(_)));
        assert!(matches!(&k[3], Tok::Date(_)));
        assert_eq!(k[4], Tok::Number(Num::Int(-12)));
        assert_eq!(k[5], Tok::Number(Num::Float(1.5)));
        assert_eq!(k[6], Tok::Str("a'b".to_owned()));
        assert_eq!(k[7], Tok::Word("name".to_owned()));
        assert_eq!(k[8], Tok::End);
    }

    #[test]
    fn malformed_literals_are_reported_whole() {
        let err = tokenize("id eq 6592a1b0-ad2b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid literal '6592a1b0-ad2b' at position 6: not a number, GUID or date-time"
        );
        let err = tokenize("d eq 2024-13-01T00:00:00Z").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid literal '2024-13-01T00:00:00Z' at position 5: not a valid date and time"
        );
    }

    #[test]
    fn positions_count_characters() {
        let tokens = tokenize("name eq 'Zoë' and x").unwrap();
        assert_eq!(tokens[3].pos, 14);
        let tokens = tokenize("'é' %").unwrap();
        assert_eq!((&tokens[1].kind, tokens[1].pos), (&Tok::Symbol('%'), 4));
    }

    #[test]
    fn unterminated_string() {
        let err = tokenize("name eq 'O''Brien").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unterminated string literal starting at position 8"
        );
    }
}
