//! A recursive-descent parser for the subset of SOQL the connector uses:
//!
//! ```text
//! query     := SELECT select FROM name [WHERE condition] [ORDER BY order (',' order)*]
//!              [LIMIT integer] [OFFSET integer]
//! select    := COUNT '(' ')' | item (',' item)*
//! item      := path | '(' subquery ')'
//! subquery  := SELECT item (',' item)* FROM [name '.'] name [WHERE …] [ORDER BY …] [LIMIT …]
//!              [OFFSET …]                            -- FROM names a child relationship
//! path      := name ('.' name)*                      -- Account.Name follows a lookup
//! condition := unary (AND unary)* | unary (OR unary)*  -- mixing needs parentheses, as in SOQL
//! unary     := NOT unary | '(' condition ')' | path op literal | path [NOT] IN '(' literal, … ')'
//!            | path LIKE string
//! op        := = | != | <> | < | <= | > | >=
//! literal   := 'string' | number | TRUE | FALSE | NULL | 2024-05-01 | 2024-05-01T00:00:00Z
//! order     := path [ASC | DESC] [NULLS (FIRST | LAST)]
//! ```
//!
//! Keywords and names are case-insensitive. Errors are `MALFORMED_QUERY` naming the row and
//! column of the offending token, as Salesforce's do.

use chrono::{DateTime, NaiveDate, Utc};

use super::errors::{ErrorItem, SfError};

/// Where a token starts: 1-based row and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub row: usize,
    pub column: usize,
}

/// A value written in a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// Escapes resolved, except `\%` and `\_`, which stay escaped for LIKE.
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
    Date(NaiveDate),
    Datetime(DateTime<Utc>),
}

/// A comparison operator (`<>` is read as `!=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A field reference as written, with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub parts: Vec<String>,
    pub pos: Pos,
}

impl Path {
    /// The path as written, for error messages.
    pub fn text(&self) -> String {
        self.parts.join(".")
    }
}

/// A WHERE clause, before names are resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    Compare {
        path: Path,
        op: Op,
        value: Literal,
        value_pos: Pos,
    },
    In {
        path: Path,
        negated: bool,
        values: Vec<(Literal, Pos)>,
    },
    Like {
        path: Path,
        pattern: String,
        value_pos: Pos,
    },
}

/// One ORDER BY key.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub path: Path,
    pub descending: bool,
    pub nulls_last: bool,
}

/// One entry of a select list.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A field, possibly through lookups.
    Field(Path),
    /// A parent-to-child subquery; its `object` is the child relationship's name.
    Children(Box<Query>),
}

/// What a query returns: a count, or fields and child records.
#[derive(Debug, Clone, PartialEq)]
pub enum Select {
    Count,
    Items(Vec<Item>),
}

/// A parsed query (or subquery).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub select: Select,
    /// The object, or in a subquery the child relationship (`Contacts` or `Account.Contacts`).
    pub object: String,
    pub object_pos: Pos,
    pub filter: Option<Condition>,
    pub order: Vec<Order>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
    /// Where `OFFSET` was written, for the error when a subquery may not have one.
    pub offset_pos: Option<Pos>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A name or keyword (may contain dots: `Account.Name`).
    Word(String),
    Str(String),
    Num(f64, String),
    Date(NaiveDate),
    Datetime(DateTime<Utc>),
    Op(Op),
    Comma,
    Open,
    Close,
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => w.clone(),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Num(_, raw) => raw.clone(),
            Tok::Date(d) => d.to_string(),
            Tok::Datetime(t) => t.to_rfc3339(),
            Tok::Op(op) => match op {
                Op::Eq => "=",
                Op::Ne => "!=",
                Op::Lt => "<",
                Op::Le => "<=",
                Op::Gt => ">",
                Op::Ge => ">=",
            }
            .into(),
            Tok::Comma => ",".into(),
            Tok::Open => "(".into(),
            Tok::Close => ")".into(),
            Tok::End => "<EOF>".into(),
        }
    }
}

/// A `MALFORMED_QUERY` pointing at `pos` in `query`, in Salesforce's layout: the query's line,
/// a caret under the column, then the position and the reason.
pub fn query_error(code: &'static str, query: &str, pos: Pos, reason: &str) -> SfError {
    let line = query.lines().nth(pos.row.saturating_sub(1)).unwrap_or("");
    let caret = format!("{}^", " ".repeat(pos.column.saturating_sub(1)));
    SfError::bad_request(ErrorItem::new(
        code,
        format!(
            "\n{line}\n{caret}\nERROR at Row:{}:Column:{}\n{reason}",
            pos.row, pos.column
        ),
    ))
}

struct Lexer<'a> {
    src: &'a str,
    chars: Vec<(usize, char)>,
    i: usize,
}

impl<'a> Lexer<'a> {
    fn pos_of(&self, byte: usize) -> Pos {
        let before = &self.src[..byte.min(self.src.len())];
        let row = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Pos { row, column }
    }

    fn peek(&self, k: usize) -> Option<char> {
        self.chars.get(self.i + k).map(|(_, c)| *c)
    }

    fn byte(&self) -> usize {
        self.chars.get(self.i).map_or(self.src.len(), |(b, _)| *b)
    }

    fn err(&self, byte: usize, reason: &str) -> SfError {
        query_error("MALFORMED_QUERY", self.src, self.pos_of(byte), reason)
    }

    fn tokens(mut self) -> Result<Vec<(Tok, Pos)>, SfError> {
        let mut out = Vec::new();
        loop {
            while self.peek(0).is_some_and(char::is_whitespace) {
                self.i += 1;
            }
            let start = self.byte();
            let pos = self.pos_of(start);
            let Some(c) = self.peek(0) else {
                out.push((Tok::End, pos));
                return Ok(out);
            };
            let tok = match c {
                ',' => self.one(Tok::Comma),
                '(' => self.one(Tok::Open),
                ')' => self.one(Tok::Close),
                '=' => self.one(Tok::Op(Op::Eq)),
                '!' if self.peek(1) == Some('=') => {
                    self.i += 2;
                    Tok::Op(Op::Ne)
                }
                '<' => {
                    self.i += 1;
                    match self.peek(0) {
                        Some('=') => self.one(Tok::Op(Op::Le)),
                        Some('>') => self.one(Tok::Op(Op::Ne)),
                        _ => Tok::Op(Op::Lt),
                    }
                }
                '>' => {
                    self.i += 1;
                    match self.peek(0) {
                        Some('=') => self.one(Tok::Op(Op::Ge)),
                        _ => Tok::Op(Op::Gt),
                    }
                }
                '\'' => self.string(start)?,
                c if c.is_ascii_digit()
                    || (c == '-' && self.peek(1).is_some_and(|d| d.is_ascii_digit())) =>
                {
                    self.number_or_date(start)?
                }
                c if c.is_alphabetic() || c == '_' => {
                    let word = self.take_while(|c| c.is_alphanumeric() || c == '_' || c == '.');
                    Tok::Word(word)
                }
                other => return Err(self.err(start, &format!("unexpected token: '{other}'"))),
            };
            out.push((tok, pos));
        }
    }

    fn one(&mut self, t: Tok) -> Tok {
        self.i += 1;
        t
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek(0).filter(|c| f(*c)) {
            s.push(c);
            self.i += 1;
        }
        s
    }

    fn string(&mut self, start: usize) -> Result<Tok, SfError> {
        self.i += 1;
        let mut s = String::new();
        loop {
            let Some(c) = self.peek(0) else {
                return Err(self.err(start, "unterminated string literal"));
            };
            self.i += 1;
            match c {
                '\'' => return Ok(Tok::Str(s)),
                '\\' => {
                    let esc = self.peek(0);
                    self.i += 1;
                    match esc {
                        Some('n') => s.push('\n'),
                        Some('r') => s.push('\r'),
                        Some('t') => s.push('\t'),
                        Some('b') => s.push('\u{8}'),
                        Some('f') => s.push('\u{c}'),
                        Some(c @ ('\'' | '"' | '\\')) => s.push(c),
                        // Kept escaped: only LIKE gives them meaning.
                        Some(c @ ('%' | '_')) => {
                            s.push('\\');
                            s.push(c);
                        }
                        _ => {
                            return Err(self.err(
                                self.byte().saturating_sub(1),
                                "Invalid string literal: illegal escape sequence",
                            ));
                        }
                    }
                }
                c => s.push(c),
            }
        }
    }

    fn number_or_date(&mut self, start: usize) -> Result<Tok, SfError> {
        let text =
            self.take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '.' | '+'));
        if text.len() >= 10 && text.as_bytes().get(4) == Some(&b'-') {
            if let Ok(d) = NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
                return Ok(Tok::Date(d));
            }
            let parsed = DateTime::parse_from_rfc3339(&text)
                .or_else(|_| DateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f%z"));
            return match parsed {
                Ok(t) => Ok(Tok::Datetime(t.with_timezone(&Utc))),
                Err(_) => {
                    Err(self.err(start, &format!("invalid date or dateTime literal: {text}")))
                }
            };
        }
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(Tok::Num(n, text)),
            _ => Err(self.err(start, &format!("unexpected token: '{text}'"))),
        }
    }
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<(Tok, Pos)>,
    i: usize,
}

const RESERVED: &[&str] = &[
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC", "DESC",
    "NULLS", "LIMIT", "OFFSET", "NULL", "TRUE", "FALSE", "GROUP", "HAVING", "WITH", "FOR",
];

impl<'a> Parser<'a> {
    fn peek(&self) -> &(Tok, Pos) {
        // The lexer always ends the list with `End`, and nothing moves past it.
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn unexpected(&self) -> SfError {
        let (tok, pos) = self.peek();
        query_error(
            "MALFORMED_QUERY",
            self.src,
            *pos,
            &format!("unexpected token: {}", tok.describe()),
        )
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.peek().0, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let hit = self.is_kw(kw);
        if hit {
            self.i += 1;
        }
        hit
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), SfError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn expect(&mut self, t: Tok) -> Result<(), SfError> {
        if self.peek().0 == t {
            self.i += 1;
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn path(&mut self) -> Result<Path, SfError> {
        match self.peek().clone() {
            (Tok::Word(w), pos) if !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&w)) => {
                let parts: Vec<String> = w.split('.').map(str::to_string).collect();
                if parts.iter().any(String::is_empty) {
                    return Err(self.unexpected());
                }
                self.i += 1;
                Ok(Path { parts, pos })
            }
            _ => Err(self.unexpected()),
        }
    }

    fn query(&mut self) -> Result<Query, SfError> {
        let q = self.select_statement(false)?;
        if self.peek().0 != Tok::End {
            return Err(self.unexpected());
        }
        Ok(q)
    }

    fn item(&mut self) -> Result<Item, SfError> {
        let opens_subquery = self.peek().0 == Tok::Open
            && matches!(self.toks.get(self.i + 1), Some((Tok::Word(w), _)) if w.eq_ignore_ascii_case("SELECT"));
        if !opens_subquery {
            return Ok(Item::Field(self.path()?));
        }
        self.i += 1;
        let sub = self.select_statement(true)?;
        self.expect(Tok::Close)?;
        Ok(Item::Children(Box::new(sub)))
    }

    /// `SELECT … [OFFSET n]`; a subquery (`nested`) has no `COUNT()`.
    fn select_statement(&mut self, nested: bool) -> Result<Query, SfError> {
        self.expect_kw("SELECT")?;
        let select = if !nested
            && self.is_kw("COUNT")
            && self.toks.get(self.i + 1).map(|t| &t.0) == Some(&Tok::Open)
        {
            self.i += 2;
            self.expect(Tok::Close)?;
            Select::Count
        } else {
            let mut items = vec![self.item()?];
            while self.peek().0 == Tok::Comma {
                self.i += 1;
                items.push(self.item()?);
            }
            Select::Items(items)
        };
        self.expect_kw("FROM")?;
        let object = self.path()?;
        // A subquery may name its relationship through the parent: `FROM Account.Contacts`.
        let most = if nested { 2 } else { 1 };
        if object.parts.len() > most {
            return Err(query_error(
                "MALFORMED_QUERY",
                self.src,
                object.pos,
                &format!("unexpected token: {}", object.text()),
            ));
        }
        let filter = if self.eat_kw("WHERE") {
            Some(self.condition()?)
        } else {
            None
        };
        let mut order = Vec::new();
        if self.eat_kw("ORDER") {
            self.expect_kw("BY")?;
            loop {
                let path = self.path()?;
                let descending = if self.eat_kw("DESC") {
                    true
                } else {
                    self.eat_kw("ASC");
                    false
                };
                // SOQL puts nulls first unless told otherwise.
                let nulls_last = if self.eat_kw("NULLS") {
                    if self.eat_kw("LAST") {
                        true
                    } else {
                        self.expect_kw("FIRST")?;
                        false
                    }
                } else {
                    false
                };
                order.push(Order {
                    path,
                    descending,
                    nulls_last,
                });
                if self.peek().0 != Tok::Comma {
                    break;
                }
                self.i += 1;
            }
        }
        let limit = if self.eat_kw("LIMIT") {
            Some(self.integer()?)
        } else {
            None
        };
        let offset_pos = self.is_kw("OFFSET").then(|| self.peek().1);
        let offset = if self.eat_kw("OFFSET") {
            Some(self.integer()?)
        } else {
            None
        };
        Ok(Query {
            select,
            object: object.text(),
            object_pos: object.pos,
            filter,
            order,
            limit,
            offset,
            offset_pos,
        })
    }

    fn integer(&mut self) -> Result<usize, SfError> {
        match self.peek().0.clone() {
            Tok::Num(n, _) if n >= 0.0 && n.fract() == 0.0 && n <= usize::MAX as f64 => {
                self.i += 1;
                Ok(n as usize)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn condition(&mut self) -> Result<Condition, SfError> {
        let first = self.unary()?;
        let (is_and, is_or) = (self.is_kw("AND"), self.is_kw("OR"));
        if !is_and && !is_or {
            return Ok(first);
        }
        let joiner = if is_and { "AND" } else { "OR" };
        let mut parts = vec![first];
        while self.eat_kw(joiner) {
            parts.push(self.unary()?);
        }
        // `a AND b OR c` is ambiguous in SOQL and refused.
        if self.is_kw("AND") || self.is_kw("OR") {
            return Err(self.unexpected());
        }
        Ok(if is_and {
            Condition::And(parts)
        } else {
            Condition::Or(parts)
        })
    }

    fn unary(&mut self) -> Result<Condition, SfError> {
        if self.eat_kw("NOT") {
            return Ok(Condition::Not(Box::new(self.unary()?)));
        }
        if self.peek().0 == Tok::Open {
            self.i += 1;
            let inner = self.condition()?;
            self.expect(Tok::Close)?;
            return Ok(inner);
        }
        let path = self.path()?;
        if self.eat_kw("LIKE") {
            return match self.peek().clone() {
                (Tok::Str(pattern), value_pos) => {
                    self.i += 1;
                    Ok(Condition::Like {
                        path,
                        pattern,
                        value_pos,
                    })
                }
                _ => Err(self.unexpected()),
            };
        }
        let negated = self.is_kw("NOT")
            && matches!(self.toks.get(self.i + 1), Some((Tok::Word(w), _)) if w.eq_ignore_ascii_case("IN"));
        if negated {
            self.i += 1;
        }
        if self.eat_kw("IN") {
            self.expect(Tok::Open)?;
            let mut values = vec![self.literal()?];
            while self.peek().0 == Tok::Comma {
                self.i += 1;
                values.push(self.literal()?);
            }
            self.expect(Tok::Close)?;
            return Ok(Condition::In {
                path,
                negated,
                values,
            });
        }
        let op = match self.peek().0 {
            Tok::Op(op) => op,
            _ => return Err(self.unexpected()),
        };
        self.i += 1;
        let (value, value_pos) = self.literal()?;
        Ok(Condition::Compare {
            path,
            op,
            value,
            value_pos,
        })
    }

    fn literal(&mut self) -> Result<(Literal, Pos), SfError> {
        let (tok, pos) = self.peek().clone();
        let lit = match tok {
            Tok::Str(s) => Literal::Str(s),
            Tok::Num(n, _) => Literal::Num(n),
            Tok::Date(d) => Literal::Date(d),
            Tok::Datetime(t) => Literal::Datetime(t),
            Tok::Word(w) if w.eq_ignore_ascii_case("null") => Literal::Null,
            Tok::Word(w) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Tok::Word(w) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
            _ => return Err(self.unexpected()),
        };
        self.i += 1;
        Ok((lit, pos))
    }
}

/// Parses a query; names are not checked here (see the executor).
pub fn parse(src: &str) -> Result<Query, SfError> {
    let toks = Lexer {
        src,
        chars: src.char_indices().collect(),
        i: 0,
    }
    .tokens()?;
    Parser { src, toks, i: 0 }.query()
}

/// SOQL LIKE: `%` any run, `_` one character, `\%`/`\_` literal; case-insensitive.
pub fn like(pattern: &str, value: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum P {
        Any,
        One,
        Ch(char),
    }
    let mut pat = Vec::new();
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        pat.push(match c {
            '%' => P::Any,
            '_' => P::One,
            '\\' => P::Ch(it.next().unwrap_or('\\')),
            c => P::Ch(c),
        });
    }
    let val: Vec<char> = value.chars().flat_map(char::to_lowercase).collect();
    let pat: Vec<P> = pat
        .into_iter()
        .flat_map(|p| match p {
            P::Ch(c) => c.to_lowercase().map(P::Ch).collect::<Vec<_>>(),
            other => vec![other],
        })
        .collect();
    // dp[j]: pattern[..i] matches value[..j]
    let mut dp = vec![false; val.len() + 1];
    dp[0] = true;
    for p in &pat {
        let mut next = vec![false; val.len() + 1];
        for j in 0..=val.len() {
            next[j] = match p {
                P::Any => dp[j] || (j > 0 && next[j - 1]),
                P::One => j > 0 && dp[j - 1],
                P::Ch(c) => j > 0 && dp[j - 1] && val[j - 1] == *c,
            };
        }
        dp = next;
    }
    dp[val.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_connector_poll() {
        let q = parse(
            "select Id, Name, Account.Name from Opportunity where SystemModstamp > 2024-05-01T00:00:00Z \
             and (StageName IN ('Closed Won', 'Closed Lost') or not Amount >= 10.5) \
             order by SystemModstamp desc nulls last, Name limit 10 offset 2",
        )
        .expect("parses");
        assert_eq!(q.object, "Opportunity");
        let Select::Items(f) = &q.select else {
            panic!("fields expected")
        };
        assert!(matches!(&f[2], Item::Field(p) if p.parts == ["Account", "Name"]));
        assert!(matches!(q.filter, Some(Condition::And(ref parts)) if parts.len() == 2));
        assert_eq!(q.order.len(), 2);
        assert!(q.order[0].descending && q.order[0].nulls_last);
        assert!(!q.order[1].descending && !q.order[1].nulls_last);
        assert_eq!((q.limit, q.offset), (Some(10), Some(2)));
    }

    #[test]
    fn literals_escapes_and_count() {
        let q = parse("SELECT COUNT() FROM Lead WHERE Company = 'O\\'Neil' AND CloseDate = 2024-05-01 AND X != null AND Y NOT IN (1, -2.5)")
            .expect("parses");
        assert_eq!(q.select, Select::Count);
        let Some(Condition::And(parts)) = q.filter else {
            panic!("and expected")
        };
        assert!(
            matches!(&parts[0], Condition::Compare { value: Literal::Str(s), .. } if s == "O'Neil")
        );
        assert!(matches!(
            &parts[1],
            Condition::Compare {
                value: Literal::Date(_),
                ..
            }
        ));
        assert!(matches!(
            &parts[2],
            Condition::Compare {
                op: Op::Ne,
                value: Literal::Null,
                ..
            }
        ));
        assert!(
            matches!(&parts[3], Condition::In { negated: true, values, .. } if values.len() == 2)
        );
    }

    #[test]
    fn errors_name_the_position() {
        let e = parse("SELECT Id FROM Opportunity WHERE").expect_err("incomplete");
        assert_eq!(e.items[0].code, "MALFORMED_QUERY");
        assert!(
            e.items[0].message.contains("Row:1:Column:33"),
            "{}",
            e.items[0].message
        );
        assert!(e.items[0].message.contains("<EOF>"));
        let e =
            parse("SELECT Id FROM Opportunity WHERE A = 1 AND B = 2 OR C = 3").expect_err("mixed");
        assert!(
            e.items[0].message.contains("Column:50"),
            "{}",
            e.items[0].message
        );
        let e = parse("SELECT Id\nFROM Lead WHERE Name = 'x").expect_err("unterminated");
        assert!(
            e.items[0].message.contains("Row:2:Column:24"),
            "{}",
            e.items[0].message
        );
        assert!(parse("SELECT FROM Lead").is_err());
        let e = parse("SELECT Id FROM Lead WHERE Name LIKE 5").expect_err("like needs a string");
        assert!(
            e.items[0].message.contains("Column:37"),
            "{}",
            e.items[0].message
        );
        assert!(parse("SELECT Id FROM Lead LIMIT -1").is_err());
    }

    #[test]
    fn subqueries_nest_in_the_select_list() {
        let q = parse(
            "SELECT Id, (SELECT ContactId, Contact.Name FROM OpportunityContactRoles \
             WHERE IsPrimary = true ORDER BY CreatedDate ASC LIMIT 1), Name FROM Opportunity LIMIT 1",
        )
        .expect("parses");
        let Select::Items(items) = &q.select else {
            panic!("items expected")
        };
        assert_eq!(items.len(), 3);
        let Item::Children(sub) = &items[1] else {
            panic!("subquery expected")
        };
        assert_eq!(sub.object, "OpportunityContactRoles");
        assert!(matches!(sub.filter, Some(Condition::Compare { .. })));
        assert_eq!((sub.order.len(), sub.limit, q.limit), (1, Some(1), Some(1)));
        assert!(matches!(&items[2], Item::Field(p) if p.parts == ["Name"]));
        // Parentheses that do not open a SELECT are not a select item.
        assert!(parse("SELECT Id, (Name) FROM Opportunity").is_err());
        let e = parse("SELECT Id, (SELECT Id FROM Contacts FROM Account").expect_err("unclosed");
        assert!(
            e.items[0].message.contains("Column:37"),
            "{}",
            e.items[0].message
        );
        assert!(parse("SELECT Id, (SELECT COUNT() FROM Contacts) FROM Account").is_err());
    }

    #[test]
    fn like_matches_wildcards_case_insensitively() {
        assert!(like("Con%", "contoso"));
        assert!(like("%toso", "CONTOSO"));
        assert!(like("C_ntoso", "Contoso"));
        assert!(!like("C_ntoso", "Cntoso"));
        assert!(like("100\\%", "100%"));
        assert!(!like("100\\%", "1000"));
        assert!(like("%", ""));
    }
}
