//! `$filter`: recursive-descent parser and evaluator.
//!
//! Grammar (keywords case-insensitive, property names case-sensitive):
//!
//! ```text
//! filter     = or END
//! or         = and *( "or" and )
//! and        = unary *( "and" unary )
//! unary      = "not" unary / primary
//! primary    = "(" or ")" / function / lambda / comparison
//! function   = ("contains" / "startswith" / "endswith") "(" path "," string ")"
//! lambda     = path "/" ("any" / "all") "(" [ var ":" or ] ")"
//! comparison = path ("eq" / "ne" / "gt" / "ge" / "lt" / "le") literal
//! path       = name *( "/" name )
//! literal    = string / number / guid / datetime / date / "true" / "false" / "null"
//! ```

use std::cmp::Ordering;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime};
use serde_json::{Map, Value};

use crate::MAX_DEPTH;
use crate::error::ODataError;
use crate::lexer::{Tok, Token, tokenize};
use crate::value::{Num, cmp_ci, parse_date, parse_datetime, resolve};

/// A parsed `$filter` expression, ready to test JSON rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    expr: Expr,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    // n-ary rather than binary so a long `a and b and c …` chain stays
    // shallow for evaluation and drop.
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Compare {
        path: Vec<String>,
        op: CmpOp,
        value: Literal,
    },
    Text {
        func: TextFn,
        path: Vec<String>,
        needle: String,
    },
    Lambda {
        path: Vec<String>,
        quantifier: Quantifier,
        /// `None` for `path/any()`, which asks whether the collection is
        /// non-empty.
        body: Option<(String, Box<Expr>)>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    fn from_word(word: &str) -> Option<Self> {
        const OPS: [(&str, CmpOp); 6] = [
            ("eq", CmpOp::Eq),
            ("ne", CmpOp::Ne),
            ("gt", CmpOp::Gt),
            ("ge", CmpOp::Ge),
            ("lt", CmpOp::Lt),
            ("le", CmpOp::Le),
        ];
        OPS.iter()
            .find(|(name, _)| word.eq_ignore_ascii_case(name))
            .map(|&(_, op)| op)
    }

    /// Applies the operator to an ordering; `None` means the two values
    /// are of kinds that cannot be compared, which only `ne` accepts.
    fn holds(self, ord: Option<Ordering>) -> bool {
        match self {
            Self::Eq => ord == Some(Ordering::Equal),
            Self::Ne => ord != Some(Ordering::Equal),
            Self::Gt => ord == Some(Ordering::Greater),
            Self::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
            Self::Lt => ord == Some(Ordering::Less),
            Self::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextFn {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quantifier {
    Any,
    All,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Null,
    Bool(bool),
    Number(Num),
    /// A quoted string, with its date-time reading when it has one so a
    /// quoted date-time still compares as an instant.
    String {
        text: String,
        instant: Option<DateTime<FixedOffset>>,
    },
    Guid(String),
    DateTime(DateTime<FixedOffset>),
    Date(NaiveDate),
}

impl Filter {
    /// Parses a `$filter` value (already percent-decoded).
    pub fn parse(s: &str) -> Result<Filter, ODataError> {
        let tokens = tokenize(s)?;
        let mut parser = Parser {
            tokens: &tokens,
            at: 0,
            depth: 0,
        };
        let expr = parser.or()?;
        if parser.peek().kind != Tok::End {
            return Err(parser.unexpected("'and', 'or' or end of input"));
        }
        Ok(Filter { expr })
    }

    /// Whether `row` satisfies the filter; see the crate docs for the
    /// comparison rules.
    pub fn matches(&self, row: &Value) -> bool {
        match row {
            Value::Object(object) => self.matches_object(object),
            // No property of a value that is not an object exists.
            _ => self.matches_object(&Map::new()),
        }
    }

    /// [`Filter::matches`] on a row held as a JSON object, so a store can test its rows
    /// without copying each into a [`Value`] first.
    pub fn matches_object(&self, row: &Map<String, Value>) -> bool {
        eval(&self.expr, row, &mut Vec::new())
    }

    /// Every property path the filter reads, `/`-joined, first occurrence
    /// first and without duplicates. Paths inside a lambda are given from
    /// the row: `team/any(t:t/email eq 'x')` lists `team/email`.
    pub fn properties(&self) -> Vec<String> {
        let mut out = Vec::new();
        collect_properties(&self.expr, &mut Vec::new(), &mut out);
        out
    }
}

struct Parser<'t> {
    tokens: &'t [Token],
    at: usize,
    /// Current nesting of parentheses, `not` and lambdas. Filters come
    /// from HTTP clients, and unbounded recursion would let one request
    /// overflow the server's stack.
    depth: usize,
}

impl<'t> Parser<'t> {
    fn peek(&self) -> &'t Token {
        // `tokenize` always ends with `End`, and `advance` never passes it.
        &self.tokens[self.at.min(self.tokens.len() - 1)]
    }

    fn peek_second(&self) -> &'t Token {
        &self.tokens[(self.at + 1).min(self.tokens.len() - 1)]
    }

    fn advance(&mut self) -> &'t Token {
        let token = self.peek();
        if token.kind != Tok::End {
            self.at += 1;
        }
        token
    }

    fn unexpected(&self, expected: &'static str) -> ODataError {
        let token = self.peek();
        ODataError::Unexpected {
            found: token.describe(),
            position: token.pos,
            expected,
        }
    }

    fn expect(&mut self, kind: &Tok, expected: &'static str) -> Result<(), ODataError> {
        if &self.peek().kind == kind {
            self.advance();
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn nested<T>(
        &mut self,
        parse: impl FnOnce(&mut Self) -> Result<T, ODataError>,
    ) -> Result<T, ODataError> {
        if self.depth >= MAX_DEPTH {
            // Callers have just consumed the token that opens the level.
            let opener = &self.tokens[self.at.saturating_sub(1)];
            return Err(ODataError::TooDeep {
                position: opener.pos,
                limit: MAX_DEPTH,
            });
        }
        self.depth += 1;
        let result = parse(self);
        self.depth -= 1;
        result
    }

    fn or(&mut self) -> Result<Expr, ODataError> {
        let mut terms = vec![self.and()?];
        while self.peek().is_keyword("or") {
            self.advance();
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.swap_remove(0)
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self) -> Result<Expr, ODataError> {
        let mut terms = vec![self.unary()?];
        while self.peek().is_keyword("and") {
            self.advance();
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.swap_remove(0)
        } else {
            Expr::And(terms)
        })
    }

    fn unary(&mut self) -> Result<Expr, ODataError> {
        if self.peek().is_keyword("not") {
            self.advance();
            return self.nested(|p| Ok(Expr::Not(Box::new(p.unary()?))));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ODataError> {
        let token = self.peek();
        match &token.kind {
            Tok::LParen => {
                self.advance();
                let inner = self.nested(Self::or)?;
                self.expect(&Tok::RParen, "'and', 'or' or ')'")?;
                Ok(inner)
            }
            Tok::Word(name) if self.peek_second().kind == Tok::LParen => {
                self.advance();
                self.function(name, token.pos)
            }
            Tok::Word(_) => self.path_expression(),
            _ => Err(self.unexpected("a filter expression")),
        }
    }

    fn function(&mut self, name: &str, position: usize) -> Result<Expr, ODataError> {
        let func = match name.to_ascii_lowercase().as_str() {
            "contains" => TextFn::Contains,
            "startswith" => TextFn::StartsWith,
            "endswith" => TextFn::EndsWith,
            _ => {
                return Err(ODataError::UnknownFunction {
                    name: name.to_owned(),
                    position,
                });
            }
        };
        self.expect(&Tok::LParen, "'('")?;
        let path = self.path()?;
        self.expect(&Tok::Comma, "','")?;
        let Tok::Str(needle) = &self.peek().kind else {
            return Err(self.unexpected("a string literal"));
        };
        self.advance();
        self.expect(&Tok::RParen, "')'")?;
        Ok(Expr::Text {
            func,
            path,
            needle: needle.clone(),
        })
    }

    /// One property name; dotted words (qualified names) are not
    /// properties of a JSON row.
    fn name(&mut self) -> Result<String, ODataError> {
        let token = self.peek();
        match &token.kind {
            Tok::Word(word) if word.contains('.') => Err(ODataError::InvalidName {
                name: word.clone(),
                position: token.pos,
            }),
            Tok::Word(word) => {
                self.advance();
                Ok(word.clone())
            }
            _ => Err(self.unexpected("a property name")),
        }
    }

    /// `name *("/" name)`, stopping before `/any(` or `/all(`, which the
    /// caller handles.
    fn path(&mut self) -> Result<Vec<String>, ODataError> {
        let mut segments = vec![self.name()?];
        while self.peek().kind == Tok::Slash {
            let next = self.peek_second();
            let after = &self.tokens[(self.at + 2).min(self.tokens.len() - 1)];
            if (next.is_keyword("any") || next.is_keyword("all")) && after.kind == Tok::LParen {
                break;
            }
            self.advance();
            segments.push(self.name()?);
        }
        Ok(segments)
    }

    fn path_expression(&mut self) -> Result<Expr, ODataError> {
        let path = self.path()?;
        if self.peek().kind == Tok::Slash {
            self.advance();
            let quantifier = if self.advance().is_keyword("any") {
                Quantifier::Any
            } else {
                Quantifier::All
            };
            return self.nested(|p| p.lambda(path, quantifier));
        }
        let Some(op) = (match &self.peek().kind {
            Tok::Word(word) => CmpOp::from_word(word),
            _ => None,
        }) else {
            return Err(self.unexpected("a comparison operator"));
        };
        self.advance();
        let value = self.literal()?;
        Ok(Expr::Compare { path, op, value })
    }

    fn lambda(&mut self, path: Vec<String>, quantifier: Quantifier) -> Result<Expr, ODataError> {
        self.expect(&Tok::LParen, "'('")?;
        if quantifier == Quantifier::Any && self.peek().kind == Tok::RParen {
            self.advance();
            return Ok(Expr::Lambda {
                path,
                quantifier,
                body: None,
            });
        }
        let variable = self.name()?;
        self.expect(&Tok::Colon, "':' after the lambda variable")?;
        let body = self.or()?;
        self.expect(&Tok::RParen, "'and', 'or' or ')'")?;
        Ok(Expr::Lambda {
            path,
            quantifier,
            body: Some((variable, Box::new(body))),
        })
    }

    fn literal(&mut self) -> Result<Literal, ODataError> {
        let token = self.peek();
        let literal = match &token.kind {
            Tok::Str(text) => Literal::String {
                text: text.clone(),
                instant: parse_datetime(text),
            },
            Tok::Number(n) => Literal::Number(*n),
            Tok::Guid(g) => Literal::Guid(g.clone()),
            Tok::DateTime(dt) => Literal::DateTime(*dt),
            Tok::Date(d) => Literal::Date(*d),
            _ if token.is_keyword("null") => Literal::Null,
            _ if token.is_keyword("true") => Literal::Bool(true),
            _ if token.is_keyword("false") => Literal::Bool(false),
            _ => return Err(self.unexpected("a literal value")),
        };
        self.advance();
        Ok(literal)
    }
}

/// Lambda variables in scope, innermost last.
type Scope<'a> = Vec<(&'a str, &'a Value)>;

/// Resolves a path that may start with a lambda variable; any other path
/// is read from the row itself.
fn lookup<'a>(
    path: &[String],
    row: &'a Map<String, Value>,
    scope: &Scope<'a>,
) -> Option<&'a Value> {
    // A parsed path has at least one segment.
    let (head, rest) = path.split_first()?;
    match scope.iter().rev().find(|(var, _)| var == head) {
        Some(&(_, element)) => resolve(element, rest),
        None => resolve(row.get(head)?, rest),
    }
}

fn eval<'a>(expr: &'a Expr, row: &'a Map<String, Value>, scope: &mut Scope<'a>) -> bool {
    match expr {
        Expr::And(terms) => terms.iter().all(|t| eval(t, row, scope)),
        Expr::Or(terms) => terms.iter().any(|t| eval(t, row, scope)),
        Expr::Not(inner) => !eval(inner, row, scope),
        Expr::Compare { path, op, value } => compare(lookup(path, row, scope), *op, value),
        Expr::Text { func, path, needle } => {
            let Some(Value::String(haystack)) = lookup(path, row, scope) else {
                return false;
            };
            let (haystack, needle) = (haystack.to_lowercase(), needle.to_lowercase());
            match func {
                TextFn::Contains => haystack.contains(&needle),
                TextFn::StartsWith => haystack.starts_with(&needle),
                TextFn::EndsWith => haystack.ends_with(&needle),
            }
        }
        Expr::Lambda {
            path,
            quantifier,
            body,
        } => {
            let Some(Value::Array(items)) = lookup(path, row, scope) else {
                return false;
            };
            let Some((variable, body)) = body else {
                return !items.is_empty();
            };
            let mut test = |item: &'a Value| {
                scope.push((variable.as_str(), item));
                let result = eval(body, row, scope);
                scope.pop();
                result
            };
            match quantifier {
                Quantifier::Any => items.iter().any(&mut test),
                Quantifier::All => items.iter().all(&mut test),
            }
        }
    }
}

fn compare(actual: Option<&Value>, op: CmpOp, literal: &Literal) -> bool {
    match (actual, literal) {
        (None | Some(Value::Null), Literal::Null) => op == CmpOp::Eq,
        (None | Some(Value::Null), _) => false,
        (Some(_), Literal::Null) => op == CmpOp::Ne,
        (Some(value), _) => op.holds(order_against(value, literal)),
    }
}

/// How a present, non-null JSON value orders against a literal, or `None`
/// when their kinds do not compare (no coercion between strings, numbers
/// and booleans).
fn order_against(value: &Value, literal: &Literal) -> Option<Ordering> {
    match (value, literal) {
        (Value::String(s), Literal::String { text, instant }) => {
            if let Some(lit) = instant
                && let Some(dt) = parse_datetime(s)
            {
                return Some(dt.cmp(lit));
            }
            Some(cmp_ci(s, text))
        }
        (Value::String(s), Literal::Guid(guid)) => Some(cmp_ci(s, guid)),
        (Value::String(s), Literal::DateTime(lit)) => parse_datetime(s).map(|dt| dt.cmp(lit)),
        (Value::String(s), Literal::Date(lit)) => parse_date(s).map(|d| d.cmp(lit)).or_else(|| {
            // A date against a date-time value means midnight UTC that day.
            let midnight = lit.and_time(NaiveTime::MIN).and_utc();
            parse_datetime(s).map(|dt| dt.to_utc().cmp(&midnight))
        }),
        (Value::Number(n), Literal::Number(lit)) => Num::from_json(n).map(|n| n.cmp_num(*lit)),
        (Value::Bool(b), Literal::Bool(lit)) => Some(b.cmp(lit)),
        _ => None,
    }
}

/// Lambda variables in scope for `properties()`, each with the row path
/// it stands for.
type PathScope<'a> = Vec<(&'a str, Vec<String>)>;

fn expand_path(path: &[String], scope: &PathScope<'_>) -> Vec<String> {
    let bound = path
        .first()
        .and_then(|head| scope.iter().rev().find(|(var, _)| var == head));
    match bound {
        Some((_, prefix)) => prefix.iter().chain(&path[1..]).cloned().collect(),
        None => path.to_vec(),
    }
}

fn push_unique(out: &mut Vec<String>, path: Vec<String>) {
    let joined = path.join("/");
    if !joined.is_empty() && !out.contains(&joined) {
        out.push(joined);
    }
}

fn collect_properties<'a>(expr: &'a Expr, scope: &mut PathScope<'a>, out: &mut Vec<String>) {
    match expr {
        Expr::And(terms) | Expr::Or(terms) => {
            for term in terms {
                collect_properties(term, scope, out);
            }
        }
        Expr::Not(inner) => collect_properties(inner, scope, out),
        Expr::Compare { path, .. } | Expr::Text { path, .. } => {
            push_unique(out, expand_path(path, scope));
        }
        Expr::Lambda { path, body, .. } => {
            let collection = expand_path(path, scope);
            match body {
                None => push_unique(out, collection),
                Some((variable, body)) => {
                    scope.push((variable.as_str(), collection));
                    collect_properties(body, scope, out);
                    scope.pop();
                }
            }
        }
    }
}
