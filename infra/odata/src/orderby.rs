//! `$orderby`: a comma-separated list of `path [asc|desc]`.

use std::cmp::Ordering;

use serde_json::Value;

use crate::error::ODataError;
use crate::lexer::{Tok, tokenize};
use crate::value::{order_values, resolve};

/// Sort direction of one `$orderby` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Asc,
    Desc,
}

/// A parsed `$orderby`: keys in priority order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    keys: Vec<(String, Direction)>,
}

impl OrderBy {
    /// Parses an `$orderby` value such as `createdDateTime desc, name`.
    pub fn parse(s: &str) -> Result<OrderBy, ODataError> {
        let tokens = tokenize(s)?;
        let mut at = 0;
        // `tokenize` ends with `End`, so indexing stops there.
        let peek = |at: usize| &tokens[at.min(tokens.len() - 1)];
        let unexpected = |at: usize, expected: &'static str| {
            let token = peek(at);
            ODataError::Unexpected {
                found: token.describe(),
                position: token.pos,
                expected,
            }
        };
        let mut keys = Vec::new();
        loop {
            let mut segments = Vec::new();
            loop {
                let token = peek(at);
                match &token.kind {
                    Tok::Word(word) if word.contains('.') => {
                        return Err(ODataError::InvalidName {
                            name: word.clone(),
                            position: token.pos,
                        });
                    }
                    Tok::Word(word) => segments.push(word.as_str()),
                    _ => return Err(unexpected(at, "a property name")),
                }
                at += 1;
                if peek(at).kind != Tok::Slash {
                    break;
                }
                at += 1;
            }
            let direction = if peek(at).is_keyword("desc") {
                at += 1;
                Direction::Desc
            } else {
                if peek(at).is_keyword("asc") {
                    at += 1;
                }
                Direction::Asc
            };
            keys.push((segments.join("/"), direction));
            match peek(at).kind {
                Tok::Comma => at += 1,
                Tok::End => return Ok(OrderBy { keys }),
                _ => return Err(unexpected(at, "'asc', 'desc', ',' or end of input")),
            }
        }
    }

    /// The keys in priority order, each a `/`-joined path and a direction.
    pub fn keys(&self) -> &[(String, Direction)] {
        &self.keys
    }

    /// Compares two rows key by key with the same value rules as filters
    /// (see the crate docs). Missing and null sort first ascending, last
    /// descending. Rows equal on every key compare `Equal`, so a stable
    /// sort keeps their original order.
    pub fn compare(&self, a: &Value, b: &Value) -> Ordering {
        self.keys
            .iter()
            .map(|(path, direction)| {
                let segments: Vec<&str> = path.split('/').collect();
                let ord = order_values(resolve(a, &segments), resolve(b, &segments));
                match direction {
                    Direction::Asc => ord,
                    Direction::Desc => ord.reverse(),
                }
            })
            .find(|ord| ord.is_ne())
            .unwrap_or(Ordering::Equal)
    }

    /// Every path the ordering reads, in key order, without duplicates.
    pub fn properties(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (path, _) in &self.keys {
            if !out.contains(path) {
                out.push(path.clone());
            }
        }
        out
    }
}
