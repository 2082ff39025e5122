//! Runs a parsed SOQL query against the records: names are resolved against the schema (with
//! the errors Salesforce gives for unknown columns, relationships and mistyped literals), rows
//! are filtered, ordered and cut, and each row is rendered with its `attributes`, any parent
//! fields nested under the relationship name, and each parent-to-child subquery's records
//! nested under the child relationship name as a query result of their own. A subquery runs
//! once per parent row, inside the one request.

use std::cmp::Ordering;

use chrono::NaiveDate;
use serde_json::{Map, Value, json};

use super::State;
use super::errors::SfError;
use super::ids;
use super::schema::{Field, SObject, ValueKind};
use super::soql::{self, Condition, Item, Literal, Op, Path, Query, Select, query_error};
use super::store::{Record, parse_datetime};

/// A field path resolved against the schema.
#[derive(Debug, Clone)]
struct Resolved {
    /// Each lookup followed: (lookup field, parent object, relationship name).
    hops: Vec<(String, String, String)>,
    field: Field,
}

/// A query with its names resolved, ready to run (a subquery has one per child relationship).
#[derive(Debug)]
struct Plan {
    object: SObject,
    filter: Option<Filter>,
    /// (key, descending, nulls last)
    order: Vec<(Resolved, bool, bool)>,
    /// `None` for `COUNT()`.
    items: Option<Vec<Planned>>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// A select item with its names resolved.
#[derive(Debug)]
enum Planned {
    Field(Resolved),
    Children(Children),
}

/// A parent-to-child subquery: under `name`, the child records whose `lookup` holds the
/// parent's id.
#[derive(Debug)]
struct Children {
    name: String,
    lookup: String,
    plan: Box<Plan>,
}

/// What every part of one query's planning needs.
struct Ctx<'a> {
    src: &'a str,
    max_levels: usize,
}

/// How many levels of parent-to-child relationship a query may have, the outer object being
/// the first: five from API version 58.0, two before (docs/salesforce.md, "Queries and paging").
fn max_levels(version: &str) -> usize {
    let major = version
        .trim_start_matches(['v', 'V'])
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .unwrap_or(u32::MAX);
    if major >= 58 { 5 } else { 2 }
}

/// The rows a query selected, rendered, before paging.
#[derive(Debug)]
pub struct Rows {
    pub total: usize,
    pub records: Vec<Value>,
}

/// The `attributes` every record carries.
pub fn attributes(object: &str, id: &str, version: &str) -> Value {
    json!({"type": object, "url": format!("/services/data/{version}/sobjects/{object}/{id}")})
}

/// A record with `attributes` first, then `fields` (all fields when `None`).
pub fn render(obj: &SObject, rec: &Record, fields: Option<&[&Field]>, version: &str) -> Value {
    let id = rec.get("Id").and_then(Value::as_str).unwrap_or_default();
    let mut out = Map::new();
    out.insert("attributes".into(), attributes(&obj.name, id, version));
    match fields {
        Some(fields) => {
            for f in fields {
                out.insert(
                    f.name.clone(),
                    rec.get(&f.name).cloned().unwrap_or(Value::Null),
                );
            }
        }
        None => {
            for f in &obj.fields {
                out.insert(
                    f.name.clone(),
                    rec.get(&f.name).cloned().unwrap_or(Value::Null),
                );
            }
        }
    }
    Value::Object(out)
}

impl State {
    fn resolve(&self, src: &str, obj: &SObject, path: &Path) -> Result<Resolved, SfError> {
        let mut current = obj.clone();
        let mut hops = Vec::new();
        let (last, rels) = path
            .parts
            .split_last()
            .ok_or_else(|| query_error("MALFORMED_QUERY", src, path.pos, "empty field path"))?;
        for rel in rels {
            let lookup = current.relationship(rel).cloned().ok_or_else(|| {
                query_error(
                    "INVALID_FIELD",
                    src,
                    path.pos,
                    &format!(
                        "Didn't understand relationship '{rel}' in field path. Custom relationships end in '__r'; check the describe result for the names."
                    ),
                )
            })?;
            let target = lookup
                .reference_to()
                .first()
                .and_then(|t| self.object(t))
                .cloned()
                .ok_or_else(|| {
                    query_error(
                        "INVALID_FIELD",
                        src,
                        path.pos,
                        &format!("Relationship '{rel}' points to no queryable object"),
                    )
                })?;
            hops.push((
                lookup.name.clone(),
                target.name.clone(),
                lookup.relationship_name().unwrap_or_default(),
            ));
            current = target;
        }
        let field = current.field(last).cloned().ok_or_else(|| {
            query_error(
                "INVALID_FIELD",
                src,
                path.pos,
                &format!(
                    "No such column '{last}' on entity '{}'. Custom fields end in '__c'; check the describe result for the names.",
                    current.name
                ),
            )
        })?;
        Ok(Resolved { hops, field })
    }

    /// The value at the end of `r`'s lookups, `Null` when a lookup is empty.
    fn value_of(&self, rec: &Record, r: &Resolved) -> Value {
        let mut rec = rec;
        for (lookup, target, _) in &r.hops {
            match rec
                .get(lookup)
                .and_then(Value::as_str)
                .and_then(|id| self.record(target, id))
            {
                Some(parent) => rec = parent,
                None => return Value::Null,
            }
        }
        rec.get(&r.field.name).cloned().unwrap_or(Value::Null)
    }

    /// Runs a SOQL query; `version` goes into the records' URLs.
    pub fn run_query(&self, src: &str, version: &str) -> Result<Rows, SfError> {
        let q = soql::parse(src)?;
        let obj = self.object(&q.object).cloned().ok_or_else(|| {
            query_error(
                "INVALID_TYPE",
                src,
                q.object_pos,
                &format!(
                    "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name.",
                    q.object
                ),
            )
        })?;
        let ctx = Ctx {
            src,
            max_levels: max_levels(version),
        };
        let plan = self.plan(&ctx, obj, &q, 1)?;
        let rows = self.rows(&plan, None);
        let Some(items) = &plan.items else {
            return Ok(Rows {
                total: rows.len(),
                records: vec![],
            });
        };
        let records: Vec<Value> = rows
            .iter()
            .map(|rec| self.render_row(&plan.object, items, rec, version))
            .collect();
        Ok(Rows {
            total: records.len(),
            records,
        })
    }

    /// Resolves a query (at `level`: 1 for the outer one) against `obj`, refusing what
    /// Salesforce refuses before any row is read.
    fn plan(&self, ctx: &Ctx<'_>, obj: SObject, q: &Query, level: usize) -> Result<Plan, SfError> {
        let src = ctx.src;
        let filter = q
            .filter
            .as_ref()
            .map(|c| self.plan_condition(src, &obj, c))
            .transpose()?;
        let order = q
            .order
            .iter()
            .map(|o| {
                Ok((
                    self.resolve(src, &obj, &o.path)?,
                    o.descending,
                    o.nulls_last,
                ))
            })
            .collect::<Result<Vec<_>, SfError>>()?;
        let items = match &q.select {
            Select::Count => None,
            Select::Items(items) => {
                let mut seen: Vec<String> = Vec::new();
                let mut out = Vec::new();
                for item in items {
                    let (planned, key, pos, text) = match item {
                        Item::Field(p) => {
                            let r = self.resolve(src, &obj, p)?;
                            let key = format!(
                                "{}.{}",
                                r.hops
                                    .iter()
                                    .map(|h| h.2.as_str())
                                    .collect::<Vec<_>>()
                                    .join("."),
                                r.field.name
                            );
                            (Planned::Field(r), key, p.pos, p.text())
                        }
                        Item::Children(sub) => {
                            let children = self.plan_children(ctx, &obj, q, sub, level)?;
                            let key = format!("({})", children.name);
                            (
                                Planned::Children(children),
                                key,
                                sub.object_pos,
                                sub.object.clone(),
                            )
                        }
                    };
                    let key = key.to_ascii_lowercase();
                    if seen.contains(&key) {
                        return Err(query_error(
                            "MALFORMED_QUERY",
                            src,
                            pos,
                            &format!("duplicate field selected: {text}"),
                        ));
                    }
                    seen.push(key);
                    out.push(planned);
                }
                Some(out)
            }
        };
        if q.offset.is_some_and(|o| o > 2000) {
            return Err(SfError::bad_request(super::errors::ErrorItem::new(
                "NUMBER_OUTSIDE_VALID_RANGE",
                "Maximum SOQL offset allowed is 2000",
            )));
        }
        Ok(Plan {
            object: obj,
            filter,
            order,
            items,
            limit: q.limit,
            offset: q.offset,
        })
    }

    /// A subquery of `parent_q` (on `parent`): its FROM must name one of the parent's child
    /// relationships, and it is planned against the child object.
    fn plan_children(
        &self,
        ctx: &Ctx<'_>,
        parent: &SObject,
        parent_q: &Query,
        sub: &Query,
        level: usize,
    ) -> Result<Children, SfError> {
        let src = ctx.src;
        let rel = match sub.object.split_once('.') {
            Some((owner, rel)) if owner.eq_ignore_ascii_case(&parent.name) => Some(rel),
            Some(_) => None,
            None => Some(sub.object.as_str()),
        };
        let (child, lookup, name) = rel
            .and_then(|rel| self.child_relationship(&parent.name, rel))
            .ok_or_else(|| {
                query_error(
                    "INVALID_TYPE",
                    src,
                    sub.object_pos,
                    &format!(
                        "Didn't understand relationship '{}' in FROM part of query call. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names.",
                        sub.object
                    ),
                )
            })?;
        if level + 1 > ctx.max_levels {
            return Err(query_error(
                "MALFORMED_QUERY",
                src,
                sub.object_pos,
                &format!(
                    "SOQL statements cannot query more than {} levels of parent-to-child relationships",
                    ctx.max_levels
                ),
            ));
        }
        // Documented: a subquery may skip rows only under a parent query that returns one row.
        if let Some(pos) = sub.offset_pos
            && parent_q.limit != Some(1)
        {
            return Err(query_error(
                "MALFORMED_QUERY",
                src,
                pos,
                "OFFSET is allowed in a subquery only when the outer query has LIMIT 1",
            ));
        }
        let plan = self.plan(ctx, child, sub, level + 1)?;
        Ok(Children {
            name,
            lookup,
            plan: Box::new(plan),
        })
    }

    /// The child object, its lookup field and the relationship's own spelling, for the
    /// relationship `name` of `parent`.
    fn child_relationship(&self, parent: &str, name: &str) -> Option<(SObject, String, String)> {
        // The caller's view: a lookup they cannot read is no relationship for them.
        self.objects().iter().find_map(|o| {
            o.fields.iter().find_map(|f| {
                let rel = f.child_relationship_name()?;
                let points_here = f.reference_to().iter().any(|t| t == parent);
                (points_here && rel.eq_ignore_ascii_case(name))
                    .then(|| (o.clone(), f.name.clone(), rel.to_string()))
            })
        })
    }

    /// The records a plan selects, in order, cut by OFFSET and LIMIT; `parent` keeps only the
    /// children of one record: (lookup field, parent id).
    fn rows(&self, plan: &Plan, parent: Option<(&str, &str)>) -> Vec<&Record> {
        let mut rows: Vec<&Record> = self
            .table(&plan.object.name)
            .filter(|r| {
                parent.is_none_or(|(lookup, id)| r.get(lookup).and_then(Value::as_str) == Some(id))
            })
            .filter(|r| plan.filter.as_ref().is_none_or(|f| self.eval(r, f)))
            .collect();
        if !plan.order.is_empty() {
            rows.sort_by(|a, b| {
                for (r, desc, nulls_last) in &plan.order {
                    let (va, vb) = (self.value_of(a, r), self.value_of(b, r));
                    let ord = match (va.is_null(), vb.is_null()) {
                        (true, true) => Ordering::Equal,
                        (true, false) => {
                            if *nulls_last {
                                Ordering::Greater
                            } else {
                                Ordering::Less
                            }
                        }
                        (false, true) => {
                            if *nulls_last {
                                Ordering::Less
                            } else {
                                Ordering::Greater
                            }
                        }
                        (false, false) => {
                            let o = compare_values(r.field.field_type.kind(), &va, &vb)
                                .unwrap_or(Ordering::Equal);
                            if *desc { o.reverse() } else { o }
                        }
                    };
                    if ord != Ordering::Equal {
                        return ord;
                    }
                }
                Ordering::Equal
            });
        }
        rows.into_iter()
            .skip(plan.offset.unwrap_or(0))
            .take(plan.limit.unwrap_or(usize::MAX))
            .collect()
    }

    /// One selected record: `attributes`, then the items in the order they were selected; a
    /// subquery becomes a nested query result, or `null` when it found no child.
    fn render_row(&self, obj: &SObject, items: &[Planned], rec: &Record, version: &str) -> Value {
        let id = rec.get("Id").and_then(Value::as_str).unwrap_or_default();
        let mut out = Map::new();
        out.insert("attributes".into(), attributes(&obj.name, id, version));
        for item in items {
            match item {
                Planned::Field(r) => self.put(&mut out, rec, &r.hops, &r.field.name, version),
                Planned::Children(c) => {
                    let children = self.rows(&c.plan, Some((&c.lookup, id)));
                    let value = match (&c.plan.items, children.is_empty()) {
                        (Some(items), false) => {
                            let records: Vec<Value> = children
                                .iter()
                                .map(|child| self.render_row(&c.plan.object, items, child, version))
                                .collect();
                            json!({"totalSize": records.len(), "done": true, "records": records})
                        }
                        _ => Value::Null,
                    };
                    out.insert(c.name.clone(), value);
                }
            }
        }
        Value::Object(out)
    }

    /// Writes a selected value into a rendered row, nesting parent fields under their
    /// relationship name (`"Account": {"attributes": …, "Name": …}`, or `null`).
    fn put(
        &self,
        out: &mut Map<String, Value>,
        rec: &Record,
        hops: &[(String, String, String)],
        field: &str,
        version: &str,
    ) {
        let Some(((lookup, target, rel), rest)) = hops.split_first() else {
            out.insert(
                field.to_string(),
                rec.get(field).cloned().unwrap_or(Value::Null),
            );
            return;
        };
        let parent = rec
            .get(lookup)
            .and_then(Value::as_str)
            .and_then(|id| self.record(target, id));
        let Some(parent) = parent else {
            out.entry(rel.clone()).or_insert(Value::Null);
            return;
        };
        let entry = out.entry(rel.clone()).or_insert(Value::Null);
        if !entry.is_object() {
            let id = parent.get("Id").and_then(Value::as_str).unwrap_or_default();
            let mut m = Map::new();
            m.insert("attributes".into(), attributes(target, id, version));
            *entry = Value::Object(m);
        }
        if let Some(m) = entry.as_object_mut() {
            self.put(m, parent, rest, field, version);
        }
    }

    fn plan_condition(&self, src: &str, obj: &SObject, c: &Condition) -> Result<Filter, SfError> {
        Ok(match c {
            Condition::And(parts) => Filter::And(
                parts
                    .iter()
                    .map(|p| self.plan_condition(src, obj, p))
                    .collect::<Result<_, _>>()?,
            ),
            Condition::Or(parts) => Filter::Or(
                parts
                    .iter()
                    .map(|p| self.plan_condition(src, obj, p))
                    .collect::<Result<_, _>>()?,
            ),
            Condition::Not(inner) => Filter::Not(Box::new(self.plan_condition(src, obj, inner)?)),
            Condition::Compare {
                path,
                op,
                value,
                value_pos,
            } => {
                let r = self.resolve(src, obj, path)?;
                let value = check_literal(src, &r.field, value, *value_pos)?;
                Filter::Compare(r, *op, value)
            }
            Condition::In {
                path,
                negated,
                values,
            } => {
                let r = self.resolve(src, obj, path)?;
                let values = values
                    .iter()
                    .map(|(v, pos)| check_literal(src, &r.field, v, *pos))
                    .collect::<Result<_, _>>()?;
                Filter::In(r, *negated, values)
            }
            Condition::Like {
                path,
                pattern,
                value_pos,
            } => {
                let r = self.resolve(src, obj, path)?;
                if r.field.field_type.kind() != ValueKind::Text {
                    return Err(query_error(
                        "INVALID_FIELD",
                        src,
                        *value_pos,
                        &format!(
                            "invalid operator on {} field: LIKE",
                            r.field.field_type.describe_name()
                        ),
                    ));
                }
                Filter::Like(r, pattern.clone())
            }
        })
    }

    fn eval(&self, rec: &Record, plan: &Filter) -> bool {
        match plan {
            Filter::And(parts) => parts.iter().all(|p| self.eval(rec, p)),
            Filter::Or(parts) => parts.iter().any(|p| self.eval(rec, p)),
            Filter::Not(inner) => !self.eval(rec, inner),
            Filter::Compare(r, op, lit) => compare(&r.field, &self.value_of(rec, r), *op, lit),
            Filter::In(r, negated, lits) => {
                let v = self.value_of(rec, r);
                let hit = lits.iter().any(|l| compare(&r.field, &v, Op::Eq, l));
                hit != *negated
            }
            Filter::Like(r, pattern) => self
                .value_of(rec, r)
                .as_str()
                .is_some_and(|v| soql::like(pattern, v)),
        }
    }
}

/// A condition with its names resolved.
#[derive(Debug)]
enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Compare(Resolved, Op, Literal),
    In(Resolved, bool, Vec<Literal>),
    Like(Resolved, String),
}

/// Refuses a literal of the wrong type for its field, as SOQL does (a date must not be quoted,
/// a text must be), and canonicalises ids.
fn check_literal(
    src: &str,
    field: &Field,
    lit: &Literal,
    pos: soql::Pos,
) -> Result<Literal, SfError> {
    let kind = field.field_type.kind();
    let ok = matches!(
        (kind, lit),
        (_, Literal::Null)
            | (ValueKind::Text | ValueKind::Id, Literal::Str(_))
            | (ValueKind::Number, Literal::Num(_))
            | (ValueKind::Boolean, Literal::Bool(_))
            | (ValueKind::Date, Literal::Date(_))
            | (ValueKind::Datetime, Literal::Datetime(_))
    );
    if !ok {
        let (ty, quoting) = match kind {
            ValueKind::Text | ValueKind::Id => ("string", "should be enclosed in quotes"),
            ValueKind::Number => ("number", "should not be enclosed in quotes"),
            ValueKind::Boolean => ("boolean", "should not be enclosed in quotes"),
            ValueKind::Date => ("date", "should not be enclosed in quotes"),
            ValueKind::Datetime => ("dateTime", "should not be enclosed in quotes"),
        };
        return Err(query_error(
            "INVALID_FIELD",
            src,
            pos,
            &format!(
                "value of filter criterion for field '{}' must be of type {ty} and {quoting}",
                field.name
            ),
        ));
    }
    if let (ValueKind::Id, Literal::Str(s)) = (kind, lit) {
        return match ids::canonical(s) {
            Some(id) => Ok(Literal::Str(id)),
            None => Err(query_error(
                "INVALID_QUERY_FILTER_OPERATOR",
                src,
                pos,
                &format!("invalid ID field: {s}"),
            )),
        };
    }
    Ok(lit.clone())
}

/// Orders two stored values of one kind; `None` when either cannot be read as that kind.
fn compare_values(kind: ValueKind, a: &Value, b: &Value) -> Option<Ordering> {
    match kind {
        ValueKind::Text => Some(a.as_str()?.to_lowercase().cmp(&b.as_str()?.to_lowercase())),
        ValueKind::Id => Some(a.as_str()?.cmp(b.as_str()?)),
        ValueKind::Number => a.as_f64()?.partial_cmp(&b.as_f64()?),
        ValueKind::Boolean => Some(a.as_bool()?.cmp(&b.as_bool()?)),
        ValueKind::Date => {
            let d = |v: &Value| NaiveDate::parse_from_str(v.as_str()?, "%Y-%m-%d").ok();
            Some(d(a)?.cmp(&d(b)?))
        }
        ValueKind::Datetime => {
            Some(parse_datetime(a.as_str()?)?.cmp(&parse_datetime(b.as_str()?)?))
        }
    }
}

fn literal_value(lit: &Literal) -> Value {
    match lit {
        // Outside LIKE the escapes mean the characters themselves.
        Literal::Str(s) => json!(s.replace("\\%", "%").replace("\\_", "_")),
        Literal::Num(n) => json!(n),
        Literal::Bool(b) => json!(b),
        Literal::Null => Value::Null,
        Literal::Date(d) => json!(d.format("%Y-%m-%d").to_string()),
        Literal::Datetime(t) => json!(t.to_rfc3339()),
    }
}

/// One comparison with SOQL's null rules: `= null` and `!= null` test presence, `!=` a value
/// is true for an empty field, and ordering operators are false for it.
fn compare(field: &Field, value: &Value, op: Op, lit: &Literal) -> bool {
    let kind = field.field_type.kind();
    if *lit == Literal::Null {
        return match op {
            Op::Eq => value.is_null(),
            Op::Ne => !value.is_null(),
            _ => false,
        };
    }
    if value.is_null() {
        return op == Op::Ne;
    }
    let Some(ord) = compare_values(kind, value, &literal_value(lit)) else {
        return false;
    };
    match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
    }
}
