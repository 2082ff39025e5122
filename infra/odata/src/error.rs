//! The one error type for every query option this crate parses.

/// Why a `$filter`, `$orderby` or `$select` value was rejected.
///
/// Every variant carries the 0-based *character* position in the input, so
/// a sandbox endpoint can return the message verbatim in its OData error
/// body and a developer can find the mistake in their query string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ODataError {
    /// The parser met a token (or the end of input) where the grammar
    /// needs something else; `found` reads like `token 'foo'` or
    /// `end of input`.
    #[error("unexpected {found} at position {position}: expected {expected}")]
    Unexpected {
        found: String,
        position: usize,
        expected: &'static str,
    },
    /// A `'` that is never closed.
    #[error("unterminated string literal starting at position {position}")]
    UnterminatedString { position: usize },
    /// Text shaped like a literal that is not one, such as `2024-13-01`,
    /// `12abc` or a truncated GUID.
    #[error("invalid literal '{text}' at position {position}: {reason}")]
    InvalidLiteral {
        text: String,
        position: usize,
        reason: &'static str,
    },
    /// A function call other than the ones this crate evaluates.
    #[error(
        "unknown function '{name}' at position {position}: expected contains, startswith or endswith"
    )]
    UnknownFunction { name: String, position: usize },
    /// A `$select`/`$orderby` item or path segment that is not a plain
    /// identifier.
    #[error("invalid property name '{name}' at position {position}")]
    InvalidName { name: String, position: usize },
    /// Nesting beyond [`crate::MAX_DEPTH`]; see there for why it is capped.
    #[error("expression nests deeper than {limit} levels at position {position}")]
    TooDeep { position: usize, limit: usize },
}

impl ODataError {
    /// The 0-based character position the error refers to.
    pub fn position(&self) -> usize {
        match self {
            Self::Unexpected { position, .. }
            | Self::UnterminatedString { position }
            | Self::InvalidLiteral { position, .. }
            | Self::UnknownFunction { position, .. }
            | Self::InvalidName { position, .. }
            | Self::TooDeep { position, .. } => *position,
        }
    }
}
