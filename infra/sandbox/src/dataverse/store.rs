//! Rows, their versions and the write rules. The API handlers and the control routes (a human
//! seller's edits) both go through [`State`]'s methods, so the same validation and the same
//! change tracking apply whoever writes.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::Config;
use super::error::DvError;
use super::limits::Limits;
use super::metadata::{self, Relationship};
use super::path::{Key, parse_reference};
use super::schema::{Field, FieldType, TableDef};

/// `systemuserid` of the application user behind the `sandbox-client` app registration: what
/// `_modifiedby_value` shows for API writes.
pub const APP_USER_ID: Uuid = Uuid::from_u128(0x5a1d_b0c5_0000_4000_8000_0000_0000_a001);
/// `systemuserid` of the human seller the control API acts as.
pub const SELLER_USER_ID: Uuid = Uuid::from_u128(0x5a1d_b0c5_0000_4000_8000_0000_0000_b001);
/// The simulated organisation, for `WhoAmI`.
pub const ORGANIZATION_ID: Uuid = Uuid::from_u128(0x5a1d_b0c5_0000_4000_8000_0000_0000_c001);
/// The root business unit, for `WhoAmI`.
pub const BUSINESS_UNIT_ID: Uuid = Uuid::from_u128(0x5a1d_b0c5_0000_4000_8000_0000_0000_d001);

/// Who writes: the user recorded in `_createdby_value`/`_modifiedby_value`, and whether it is a
/// person in the CRM's UI (who closes opportunities by setting their status) or an API client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Actor {
    pub(crate) user: Uuid,
    pub(crate) human: bool,
}

impl Actor {
    pub(crate) fn seller() -> Actor {
        Actor {
            user: SELLER_USER_ID,
            human: true,
        }
    }
}

/// A stored row: its properties as the Web API shows them (lookups as `_x_value`), its version
/// (the number in the weak etag), and what the sandbox tracks beside the columns.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) values: Map<String, Value>,
    pub(crate) version: u64,
    /// Logical name of the table each lookup column points at (for `customerid` that can be
    /// an account or a contact).
    pub(crate) lookup_targets: HashMap<String, String>,
    /// Sum of the opportunity's product lines: the system-calculated revenue.
    pub(crate) lines_total: f64,
}

impl Row {
    pub(crate) fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }

    fn int(&self, column: &str) -> Option<i64> {
        self.values.get(column).and_then(Value::as_i64)
    }
}

/// A deleted row, kept for change tracking.
#[derive(Debug, Clone)]
struct Tombstone {
    set: String,
    id: Uuid,
    version: u64,
}

/// Everything this simulator keeps; reset by `POST /_sandbox/reset`.
#[derive(Debug)]
pub struct State {
    pub(super) config: Config,
    pub(super) tables: Vec<TableDef>,
    rows: HashMap<String, BTreeMap<Uuid, Row>>,
    /// The global row-version counter behind every etag and delta token.
    version: u64,
    tombstones: Vec<Tombstone>,
    pub(super) limits: Limits,
    /// `opportunityclose` activities written by WinOpportunity/LoseOpportunity.
    pub(super) closes: Vec<Value>,
    /// `systemuserid`s of delegated (App+User) callers, by user name.
    users: HashMap<String, Uuid>,
    /// One-to-many relationships created through the metadata API.
    pub(super) relationships: Vec<Relationship>,
}

/// The platform itself, for rows it seeds or maintains.
fn system_actor() -> Actor {
    Actor {
        user: APP_USER_ID,
        human: false,
    }
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn today(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// What the body of a write changes, validated against the table.
#[derive(Default)]
struct Changes {
    values: Vec<(String, Value)>,
    /// Lookup column → target logical name (`None` when cleared).
    targets: Vec<(String, Option<String>)>,
    /// Field names set by the body, for the required and status rules.
    touched: Vec<String>,
}

impl State {
    /// A fresh environment: the configured schema and the seeded currencies, nothing else.
    pub fn new(config: &Config) -> State {
        let mut state = State {
            config: config.clone(),
            tables: config.tables.clone(),
            rows: HashMap::new(),
            version: 0,
            tombstones: Vec::new(),
            limits: Limits::new(config.request_limit, config.request_window),
            closes: Vec::new(),
            users: HashMap::new(),
            relationships: Vec::new(),
        };
        state.seed_currencies();
        state.seed_solutions();
        state
    }

    /// The configured publishers and solutions, under ids derived from their unique names so
    /// they are the same after every start and reset.
    fn seed_solutions(&mut self) {
        let (Some(publishers), Some(solutions)) = (
            self.table_def("publishers").cloned(),
            self.table_def("solutions").cloned(),
        ) else {
            return;
        };
        let now = Utc::now();
        for p in self.config.publishers.clone() {
            let mut after = self.new_row(&publishers, metadata::publisher_id(&p.unique_name));
            after.insert("uniquename".into(), Value::String(p.unique_name.clone()));
            after.insert(
                "friendlyname".into(),
                Value::String(p.friendly_name.clone()),
            );
            after.insert(
                "customizationprefix".into(),
                Value::String(p.prefix.clone()),
            );
            after.insert(
                "customizationoptionvalueprefix".into(),
                Value::from(p.option_value_prefix),
            );
            self.commit(
                &publishers,
                after,
                HashMap::new(),
                None,
                system_actor(),
                now,
            );
        }
        for s in self.config.solutions.clone() {
            let mut after = self.new_row(&solutions, metadata::solution_id(&s.unique_name));
            let mut targets = HashMap::new();
            after.insert("uniquename".into(), Value::String(s.unique_name.clone()));
            after.insert(
                "friendlyname".into(),
                Value::String(s.friendly_name.clone()),
            );
            after.insert("version".into(), Value::String(s.version.clone()));
            after.insert("ismanaged".into(), Value::Bool(s.managed));
            let publisher = metadata::publisher_id(&s.publisher);
            if self.row("publishers", publisher).is_some() {
                after.insert(
                    "_publisherid_value".into(),
                    Value::String(publisher.to_string()),
                );
                targets.insert("_publisherid_value".into(), "publisher".into());
            }
            self.commit(&solutions, after, targets, None, system_actor(), now);
        }
    }

    /// Writes a row the platform maintains (a solution component) without the write rules,
    /// which refuse such rows from clients.
    pub(super) fn insert_system_row(
        &mut self,
        set: &str,
        values: Vec<(String, Value)>,
        targets: Vec<(String, String)>,
        now: DateTime<Utc>,
    ) -> Option<Uuid> {
        let table = self.table_def(set)?.clone();
        let id = Uuid::new_v4();
        let mut after = self.new_row(&table, id);
        after.extend(values);
        self.commit(
            &table,
            after,
            targets.into_iter().collect(),
            None,
            system_actor(),
            now,
        );
        Some(id)
    }

    fn seed_currencies(&mut self) {
        let Some(table) = self.table_def("transactioncurrencies").cloned() else {
            return;
        };
        let actor = Actor {
            user: APP_USER_ID,
            human: false,
        };
        let now = Utc::now();
        for c in self.config.currencies.clone() {
            let mut after = self.new_row(&table, Uuid::new_v4());
            after.insert("isocurrencycode".into(), Value::String(c.iso.clone()));
            after.insert("currencyname".into(), Value::String(c.name.clone()));
            after.insert("currencysymbol".into(), Value::String(c.symbol.clone()));
            after.insert("exchangerate".into(), number(c.rate));
            after.insert("currencyprecision".into(), Value::from(2));
            after.insert("statuscode".into(), Value::from(1));
            self.commit(&table, after, HashMap::new(), None, actor, now);
        }
    }

    /// The `systemuserid` of an API caller.
    pub(crate) fn user_id(&mut self, username: Option<&str>) -> Uuid {
        match username {
            None => APP_USER_ID,
            Some(name) => *self
                .users
                .entry(name.to_ascii_lowercase())
                .or_insert_with(Uuid::new_v4),
        }
    }

    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    pub(crate) fn table_def(&self, set: &str) -> Option<&TableDef> {
        self.tables.iter().find(|t| t.entity_set == set)
    }

    pub(crate) fn table_def_mut(&mut self, set: &str) -> Option<&mut TableDef> {
        self.tables.iter_mut().find(|t| t.entity_set == set)
    }

    /// The table an entity set names, or the OData 404 for an unknown segment.
    pub(crate) fn table(&self, set: &str) -> Result<&TableDef, DvError> {
        self.table_def(set).ok_or_else(|| {
            DvError::not_found(format!("Resource not found for the segment '{set}'."))
        })
    }

    pub(crate) fn rows(&self, set: &str) -> impl Iterator<Item = &Row> {
        self.rows.get(set).into_iter().flat_map(|m| m.values())
    }

    pub(crate) fn row(&self, set: &str, id: Uuid) -> Option<&Row> {
        self.rows.get(set)?.get(&id)
    }

    /// The id a key names, `None` when no row matches. An alternate key must be one the table
    /// defines.
    pub(crate) fn resolve(&self, set: &str, key: &Key) -> Result<Option<Uuid>, DvError> {
        let table = self.table(set)?;
        let pairs = match key {
            Key::Id(id) => return Ok(self.row(set, *id).map(|_| *id)),
            Key::Alternate(pairs) => pairs,
        };
        if let [(column, Value::String(v))] = pairs.as_slice()
            && *column == table.primary_key
        {
            let id = Uuid::parse_str(v)
                .map_err(|_| DvError::bad_request("Bad Request - Error in query syntax."))?;
            return Ok(self.row(set, id).map(|_| id));
        }
        let mut names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        let defined = table.alternate_keys.iter().any(|k| {
            let mut cols: Vec<&str> = k.columns.iter().map(String::as_str).collect();
            cols.sort_unstable();
            cols == names
        });
        if !defined {
            return Err(DvError::bad_request(format!(
                "The key with columns '{}' is not defined for the entity '{}'.",
                names.join(","),
                table.logical_name
            )));
        }
        let same = |a: &Value, b: &Value| match (a, b) {
            (Value::String(x), Value::String(y)) => x.eq_ignore_ascii_case(y),
            (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
            _ => a == b,
        };
        Ok(self
            .rows(set)
            .find(|r| {
                pairs
                    .iter()
                    .all(|(k, v)| r.values.get(k).is_some_and(|x| same(x, v)))
            })
            .and_then(|r| r.values.get(&table.primary_key))
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok()))
    }

    /// A new row with every column present: defaults, or null.
    fn new_row(&self, table: &TableDef, id: Uuid) -> Map<String, Value> {
        let mut values = Map::new();
        for f in &table.fields {
            values.insert(f.column(), f.default.clone().unwrap_or(Value::Null));
        }
        values.insert(table.primary_key.clone(), Value::String(id.to_string()));
        values
    }

    /// Creates a row. `id` comes from the URL of an upsert; `key_values` are an alternate key's
    /// columns from the URL, which the body overrides (docs/dataverse.md, "Upsert and alternate
    /// keys").
    pub(crate) fn create(
        &mut self,
        set: &str,
        id: Option<Uuid>,
        key_values: &[(String, Value)],
        body: &Map<String, Value>,
        actor: Actor,
        now: DateTime<Utc>,
    ) -> Result<Uuid, DvError> {
        let table = self.table(set)?.clone();
        let mut changes = Changes::default();
        for (k, v) in key_values {
            let field = table.field(k).ok_or_else(|| unknown_property(&table, k))?;
            changes.values.push((k.clone(), coerce(&table, field, v)?));
            changes.touched.push(k.clone());
        }
        let from_body = self.read_body(&table, body, actor)?;
        changes.values.extend(from_body.values);
        changes.targets.extend(from_body.targets);
        changes.touched.extend(from_body.touched);
        let body_id = changes
            .values
            .iter()
            .find(|(k, _)| *k == table.primary_key)
            .and_then(|(_, v)| v.as_str())
            .and_then(|s| Uuid::parse_str(s).ok());
        let id = match (id, body_id) {
            (Some(url), Some(body)) if url != body => {
                return Err(DvError::bad_request(
                    "The primary key in the body does not match the key in the URL.",
                ));
            }
            (url, body) => url.or(body).unwrap_or_else(Uuid::new_v4),
        };
        if self.row(set, id).is_some() {
            return Err(DvError::duplicate());
        }
        let mut after = self.new_row(&table, id);
        let mut targets = HashMap::new();
        for (k, v) in changes.values {
            after.insert(k, v);
        }
        for (k, t) in changes.targets {
            if let Some(t) = t {
                targets.insert(k, t);
            }
        }
        self.default_currency(&table, &mut after, &mut targets);
        self.apply_rules(&table, None, &mut after, &changes.touched, actor, now)?;
        self.check_required(&table, &after, &changes.touched, true)?;
        self.commit(&table, after, targets, None, actor, now);
        Ok(id)
    }

    /// Updates an existing row with the body's changes. Alternate-key columns of an upsert
    /// are dropped from the body by the caller (docs/dataverse.md, "Upsert and alternate keys").
    pub(crate) fn update(
        &mut self,
        set: &str,
        id: Uuid,
        body: &Map<String, Value>,
        actor: Actor,
        now: DateTime<Utc>,
    ) -> Result<(), DvError> {
        let table = self.table(set)?.clone();
        let before = self
            .row(set, id)
            .cloned()
            .ok_or_else(|| DvError::row_missing(&table.logical_name, id))?;
        let changes = self.read_body(&table, body, actor)?;
        if let Some((_, v)) = changes.values.iter().find(|(k, _)| *k == table.primary_key)
            && v.as_str() != Some(id.to_string().as_str())
        {
            return Err(DvError::bad_request(
                "The primary key in the body does not match the key in the URL.",
            ));
        }
        let mut after = before.values.clone();
        let mut targets = before.lookup_targets.clone();
        for (k, v) in changes.values {
            after.insert(k, v);
        }
        for (k, t) in changes.targets {
            match t {
                Some(t) => targets.insert(k, t),
                None => targets.remove(&k),
            };
        }
        self.apply_rules(
            &table,
            Some(&before),
            &mut after,
            &changes.touched,
            actor,
            now,
        )?;
        self.check_required(&table, &after, &changes.touched, false)?;
        self.commit(&table, after, targets, Some(&before), actor, now);
        Ok(())
    }

    /// Deletes a row and removes the links other rows had to it (the sandbox plays every
    /// relationship as "remove link").
    pub(crate) fn delete(
        &mut self,
        set: &str,
        id: Uuid,
        actor: Actor,
        now: DateTime<Utc>,
    ) -> Result<(), DvError> {
        let table = self.table(set)?.clone();
        metadata::check_delete(&table)?;
        if self.rows.get_mut(set).and_then(|m| m.remove(&id)).is_none() {
            return Err(DvError::row_missing(&table.logical_name, id));
        }
        self.version += 1;
        self.tombstones.push(Tombstone {
            set: set.to_string(),
            id,
            version: self.version,
        });
        let id_text = id.to_string();
        for other in self.tables.clone() {
            let linked: Vec<(Uuid, Vec<String>)> = self
                .rows(&other.entity_set)
                .filter_map(|r| {
                    let cols: Vec<String> = other
                        .fields
                        .iter()
                        .filter(|f| f.is_lookup())
                        .map(Field::column)
                        .filter(|c| {
                            r.values.get(c).and_then(Value::as_str) == Some(id_text.as_str())
                                && r.lookup_targets.get(c) == Some(&table.logical_name)
                        })
                        .collect();
                    let rid = r.values.get(&other.primary_key)?.as_str()?;
                    (!cols.is_empty()).then(|| Uuid::parse_str(rid).ok().map(|u| (u, cols)))?
                })
                .collect();
            for (rid, cols) in linked {
                let Some(before) = self.row(&other.entity_set, rid).cloned() else {
                    continue;
                };
                let mut after = before.values.clone();
                let mut targets = before.lookup_targets.clone();
                for c in cols {
                    after.insert(c.clone(), Value::Null);
                    targets.remove(&c);
                }
                self.commit(&other, after, targets, Some(&before), actor, now);
            }
        }
        Ok(())
    }

    /// Stores `after` under a new version, stamping the system columns.
    fn commit(
        &mut self,
        table: &TableDef,
        mut after: Map<String, Value>,
        mut targets: HashMap<String, String>,
        before: Option<&Row>,
        actor: Actor,
        now: DateTime<Utc>,
    ) {
        self.version += 1;
        let user = Value::String(actor.user.to_string());
        after.insert("versionnumber".into(), Value::from(self.version));
        after.insert("modifiedon".into(), Value::String(stamp(now)));
        after.insert("_modifiedby_value".into(), user.clone());
        targets.insert("_modifiedby_value".into(), "systemuser".into());
        if before.is_none() {
            after.insert("createdon".into(), Value::String(stamp(now)));
            after.insert("_createdby_value".into(), user.clone());
            after.insert("_ownerid_value".into(), user);
            targets.insert("_createdby_value".into(), "systemuser".into());
            targets.insert("_ownerid_value".into(), "systemuser".into());
        }
        let Some(id) = after
            .get(&table.primary_key)
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
        else {
            return;
        };
        let row = Row {
            values: after,
            version: self.version,
            lookup_targets: targets,
            lines_total: before.map_or(0.0, |b| b.lines_total),
        };
        self.rows
            .entry(table.entity_set.clone())
            .or_default()
            .insert(id, row);
    }

    /// Validates a write body against the table: properties, types, lookups bound to rows
    /// that exist.
    fn read_body(
        &self,
        table: &TableDef,
        body: &Map<String, Value>,
        actor: Actor,
    ) -> Result<Changes, DvError> {
        let mut changes = Changes::default();
        for (k, v) in body {
            if let Some(nav) = k.strip_suffix("@odata.bind") {
                let (field, target) = table.navigation(nav).ok_or_else(|| {
                    DvError::bad_request(format!(
                        "An undeclared property '{nav}' which only has property annotations in the payload but no property value was found in the payload."
                    ))
                })?;
                if field.read_only {
                    if self.config.reject_read_only_writes && !actor.human {
                        return Err(read_only(table, &field.name));
                    }
                    continue;
                }
                let column = field.column();
                match v {
                    Value::Null => {
                        changes.values.push((column.clone(), Value::Null));
                        changes.targets.push((column, None));
                    }
                    Value::String(reference) => {
                        let (set, key) = parse_reference(reference)?;
                        if set != target.table {
                            return Err(DvError::bad_request(format!(
                                "The entity reference '{reference}' does not point at '{}', the target of navigation property '{nav}'.",
                                target.table
                            )));
                        }
                        let target_table = self.table(&set)?;
                        let id = self.resolve(&set, &key)?.ok_or_else(|| {
                            DvError::invalid(format!(
                                "{} With Id = {key} Does Not Exist",
                                target_table.logical_name
                            ))
                        })?;
                        changes
                            .values
                            .push((column.clone(), Value::String(id.to_string())));
                        changes
                            .targets
                            .push((column, Some(target_table.logical_name.clone())));
                    }
                    _ => {
                        return Err(DvError::bad_request(format!(
                            "The value of '{k}' must be an entity reference such as '/{}(<id>)'.",
                            target.table
                        )));
                    }
                }
                changes.touched.push(field.name.clone());
                continue;
            }
            if k.contains('@') {
                // Instance annotations (`@odata.type`, `x@OData.Community…`) carry no data.
                continue;
            }
            let Some(field) = table.field(k) else {
                return Err(match table.field_by_column(k) {
                    Some(f) if f.is_lookup() => lookup_hint(table, k, f),
                    _ => unknown_property(table, k),
                });
            };
            if field.is_lookup() {
                return Err(lookup_hint(table, k, field));
            }
            if field.read_only {
                if self.config.reject_read_only_writes && !actor.human {
                    return Err(read_only(table, k));
                }
                continue;
            }
            changes.values.push((k.clone(), coerce(table, field, v)?));
            changes.touched.push(k.clone());
        }
        Ok(changes)
    }

    /// Sets the organisation's default currency on a new row that names none, as Dataverse
    /// does for currency-bearing tables.
    fn default_currency(
        &self,
        table: &TableDef,
        after: &mut Map<String, Value>,
        targets: &mut HashMap<String, String>,
    ) {
        let column = "_transactioncurrencyid_value";
        if table.field("transactioncurrencyid").is_none()
            || !after.get(column).is_none_or(Value::is_null)
        {
            return;
        }
        let Some(iso) = &self.config.default_currency else {
            return;
        };
        let found = self.rows("transactioncurrencies").find(|r| {
            r.values
                .get("isocurrencycode")
                .and_then(Value::as_str)
                .is_some_and(|c| c.eq_ignore_ascii_case(iso))
        });
        if let Some(id) = found.and_then(|r| r.values.get("transactioncurrencyid")) {
            after.insert(column.into(), id.clone());
            targets.insert(column.into(), "transactioncurrency".into());
        }
    }

    fn check_required(
        &self,
        table: &TableDef,
        after: &Map<String, Value>,
        touched: &[String],
        create: bool,
    ) -> Result<(), DvError> {
        if !self.config.enforce_required {
            return Ok(());
        }
        let missing: Vec<&str> = table
            .fields
            .iter()
            .filter(|f| f.required && (create || touched.contains(&f.name)))
            .filter(|f| after.get(&f.column()).is_none_or(Value::is_null))
            .map(|f| f.name.as_str())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(DvError::invalid(format!(
            "The following required fields of '{}' are missing: {}.",
            table.logical_name,
            missing.join(", ")
        )))
    }

    /// The table rules a write must satisfy: state/status pairs, closed opportunities,
    /// system-calculated revenue, computed full names.
    fn apply_rules(
        &self,
        table: &TableDef,
        before: Option<&Row>,
        after: &mut Map<String, Value>,
        touched: &[String],
        actor: Actor,
        now: DateTime<Utc>,
    ) -> Result<(), DvError> {
        let touched_has = |n: &str| touched.iter().any(|t| t == n);
        if !table.states.is_empty() {
            let state_value = after.get("statecode").and_then(Value::as_i64).unwrap_or(0);
            let Some(state) = table.state(state_value) else {
                return Err(DvError::invalid(format!(
                    "{state_value} is not a valid state code on {}.",
                    table.logical_name
                )));
            };
            let status_missing = after.get("statuscode").is_none_or(Value::is_null);
            if (touched_has("statecode") && !touched_has("statuscode")) || status_missing {
                after.insert("statuscode".into(), Value::from(state.default_status));
            }
            after.insert("statecode".into(), Value::from(state_value));
            let status = after.get("statuscode").and_then(Value::as_i64).unwrap_or(0);
            if !state.statuses.iter().any(|s| s.value == status) {
                return Err(DvError::invalid(format!(
                    "{status} is not a valid status code for state code {}State.{} on {}.",
                    capitalise(&table.logical_name),
                    state.label,
                    table.logical_name
                )));
            }
        }
        if table.logical_name == "opportunity" {
            self.opportunity_rules(before, after, touched, actor, now)?;
        }
        metadata::check_row(self, table, after, touched)?;
        if table.field("fullname").is_some_and(|f| f.read_only) {
            let part = |n: &str| {
                after
                    .get(n)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let full = format!("{} {}", part("firstname"), part("lastname"))
                .trim()
                .to_string();
            after.insert(
                "fullname".into(),
                if full.is_empty() {
                    Value::Null
                } else {
                    Value::String(full)
                },
            );
        }
        Ok(())
    }

    fn opportunity_rules(
        &self,
        before: Option<&Row>,
        after: &mut Map<String, Value>,
        touched: &[String],
        actor: Actor,
        now: DateTime<Utc>,
    ) -> Result<(), DvError> {
        let before_state = before.and_then(|b| b.int("statecode")).unwrap_or(0);
        let after_state = after.get("statecode").and_then(Value::as_i64).unwrap_or(0);
        if before_state != 0 {
            let only_status = touched
                .iter()
                .all(|t| t == "statecode" || t == "statuscode");
            let reopening = after_state == 0 && only_status && !touched.is_empty();
            if !(reopening && self.config.allow_reopen) {
                return Err(DvError::invalid(
                    "The opportunity is closed and cannot be edited. Reopen it first by setting statecode to 0 (Open).",
                ));
            }
            after.insert("actualvalue".into(), Value::Null);
            after.insert("actualclosedate".into(), Value::Null);
        } else if after_state != 0 {
            if !(actor.human || self.config.allow_opportunity_close_by_patch) {
                return Err(DvError::invalid(
                    "An opportunity is closed with the WinOpportunity or LoseOpportunity action, not by setting statecode.",
                ));
            }
            close_effects(after, after_state, None, None, now);
        }
        let calculated = after
            .get("isrevenuesystemcalculated")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if calculated {
            let total = before.map_or(0.0, |b| b.lines_total);
            after.insert("estimatedvalue".into(), number(round2(total)));
        }
        Ok(())
    }

    /// `WinOpportunity` / `LoseOpportunity`: closes an open opportunity with `Status` and
    /// records the `OpportunityClose` activity.
    pub(crate) fn close_opportunity(
        &mut self,
        won: bool,
        body: &Value,
        actor: Actor,
        now: DateTime<Utc>,
    ) -> Result<(), DvError> {
        let action = if won {
            "WinOpportunity"
        } else {
            "LoseOpportunity"
        };
        let status = body.get("Status").and_then(Value::as_i64).ok_or_else(|| {
            DvError::bad_request(format!("{action} needs the parameter 'Status' (Int32)."))
        })?;
        let Some(close) = body.get("OpportunityClose").and_then(Value::as_object) else {
            return Err(DvError::bad_request(format!(
                "{action} needs the parameter 'OpportunityClose'."
            )));
        };
        if let Some(extra) = body.as_object().and_then(|o| {
            o.keys()
                .find(|k| *k != "Status" && *k != "OpportunityClose")
        }) {
            return Err(DvError::bad_request(format!(
                "The parameter '{extra}' in the request payload is not a valid parameter for the operation '{action}'."
            )));
        }
        const CLOSE_FIELDS: &[&str] = &[
            "subject",
            "description",
            "actualrevenue",
            "actualend",
            "category",
            "opportunityid@odata.bind",
            "competitorid@odata.bind",
        ];
        if let Some(k) = close
            .keys()
            .find(|k| !k.starts_with('@') && !CLOSE_FIELDS.contains(&k.as_str()))
        {
            return Err(DvError::bad_request(format!(
                "The property '{k}' does not exist on type 'Microsoft.Dynamics.CRM.opportunityclose'. Make sure to only use property names that are defined by the type."
            )));
        }
        let reference = close
            .get("opportunityid@odata.bind")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                DvError::bad_request("OpportunityClose needs 'opportunityid@odata.bind'.")
            })?;
        let (set, key) = parse_reference(reference)?;
        let table = self.table(&set)?.clone();
        if table.logical_name != "opportunity" {
            return Err(DvError::bad_request(format!(
                "'opportunityid@odata.bind' must point at an opportunity, not '{reference}'."
            )));
        }
        let id = self.resolve(&set, &key)?.ok_or_else(|| {
            DvError::invalid(format!("opportunity With Id = {key} Does Not Exist"))
        })?;
        let before = self
            .row(&set, id)
            .cloned()
            .ok_or_else(|| DvError::row_missing("opportunity", id))?;
        let target_state = if won { 1 } else { 2 };
        let state = table.state(target_state).ok_or_else(|| {
            DvError::invalid(format!(
                "The opportunity table has no state {target_state}."
            ))
        })?;
        if !state.statuses.iter().any(|s| s.value == status) {
            return Err(DvError::invalid(format!(
                "{status} is not a valid status code for state code OpportunityState.{} on opportunity.",
                state.label
            )));
        }
        if before.int("statecode").unwrap_or(0) != 0 {
            return Err(DvError::invalid(
                "The opportunity is already closed. Reopen it before closing it again.",
            ));
        }
        let revenue = close.get("actualrevenue").and_then(Value::as_f64);
        let end = match close.get("actualend") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_str()
                    .and_then(parse_date)
                    .ok_or_else(|| conversion_error(v, "Edm.DateTimeOffset"))?,
            ),
        };
        let mut after = before.values.clone();
        after.insert("statecode".into(), Value::from(target_state));
        after.insert("statuscode".into(), Value::from(status));
        close_effects(&mut after, target_state, revenue, end, now);
        self.commit(
            &table,
            after,
            before.lookup_targets.clone(),
            Some(&before),
            actor,
            now,
        );
        self.closes.push(json!({
            "activityid": Uuid::new_v4().to_string(),
            "action": action,
            "subject": close.get("subject").cloned().unwrap_or(Value::Null),
            "description": close.get("description").cloned().unwrap_or(Value::Null),
            "actualrevenue": revenue.map_or(Value::Null, number),
            "actualend": close.get("actualend").cloned().unwrap_or(Value::Null),
            "_opportunityid_value": id.to_string(),
            "status": status,
            "createdon": stamp(now),
            "_createdby_value": actor.user.to_string(),
        }));
        Ok(())
    }

    /// Sets the total of an opportunity's product lines; a system-calculated opportunity's
    /// `estimatedvalue` follows it.
    pub(crate) fn set_lines_total(
        &mut self,
        set: &str,
        id: Uuid,
        total: f64,
        actor: Actor,
        now: DateTime<Utc>,
    ) -> Result<(), DvError> {
        let table = self.table(set)?.clone();
        let mut before = self
            .row(set, id)
            .cloned()
            .ok_or_else(|| DvError::row_missing(&table.logical_name, id))?;
        before.lines_total = total;
        let mut after = before.values.clone();
        if after
            .get("isrevenuesystemcalculated")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            after.insert("estimatedvalue".into(), number(round2(total)));
        }
        let targets = before.lookup_targets.clone();
        self.commit(&table, after, targets, Some(&before), actor, now);
        Ok(())
    }

    /// Rows of `set` created or changed after `version`, oldest change first, and the ids of
    /// rows deleted after it that do not exist any more.
    pub(crate) fn changes_since(&self, set: &str, version: u64) -> (Vec<&Row>, Vec<Uuid>) {
        let mut changed: Vec<&Row> = self.rows(set).filter(|r| r.version > version).collect();
        changed.sort_by_key(|r| r.version);
        let mut deleted: Vec<Uuid> = Vec::new();
        for t in &self.tombstones {
            if t.set == set
                && t.version > version
                && self.row(set, t.id).is_none()
                && !deleted.contains(&t.id)
            {
                deleted.push(t.id);
            }
        }
        (changed, deleted)
    }

    /// A row as the Web API returns it: etag first, then the key and the (selected) columns in
    /// schema order; with `annotations`, each lookup's target table.
    pub(crate) fn represent(
        &self,
        table: &TableDef,
        row: &Row,
        select: Option<&[String]>,
        annotations: bool,
    ) -> Value {
        let mut out = Map::new();
        out.insert("@odata.etag".into(), Value::String(row.etag()));
        for f in &table.fields {
            let column = f.column();
            let wanted = f.name == table.primary_key || select.is_none_or(|s| s.contains(&column));
            if !wanted {
                continue;
            }
            let value = row.values.get(&column).cloned().unwrap_or(Value::Null);
            if annotations
                && f.is_lookup()
                && let Some(target) = row.lookup_targets.get(&column)
                && !value.is_null()
            {
                out.insert(
                    format!("{column}@Microsoft.Dynamics.CRM.lookuplogicalname"),
                    Value::String(target.clone()),
                );
            }
            out.insert(column, value);
        }
        Value::Object(out)
    }
}

/// What closing does to the opportunity's own columns.
fn close_effects(
    after: &mut Map<String, Value>,
    state: i64,
    revenue: Option<f64>,
    end: Option<NaiveDate>,
    now: DateTime<Utc>,
) {
    let won = state == 1;
    let end = end.map_or_else(|| today(now), |d| d.format("%Y-%m-%d").to_string());
    if after.get("actualclosedate").is_none_or(Value::is_null) || end != today(now) {
        after.insert("actualclosedate".into(), Value::String(end));
    }
    let actual = match revenue {
        Some(r) => number(round2(r)),
        None if won => after.get("estimatedvalue").cloned().unwrap_or(Value::Null),
        None => Value::Null,
    };
    after.insert("actualvalue".into(), actual);
    after.insert(
        "closeprobability".into(),
        Value::from(if won { 100 } else { 0 }),
    );
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

fn unknown_property(table: &TableDef, name: &str) -> DvError {
    DvError::bad_request(format!(
        "The property '{name}' does not exist on type '{}'. Make sure to only use property names that are defined by the type.",
        table.type_name()
    ))
}

fn lookup_hint(table: &TableDef, name: &str, field: &Field) -> DvError {
    let nav = match &field.kind {
        FieldType::Lookup { targets } => targets
            .iter()
            .map(|t| format!("'{}@odata.bind'", t.navigation))
            .collect::<Vec<_>>()
            .join(" or "),
        _ => String::new(),
    };
    DvError::bad_request(format!(
        "The property '{name}' of '{}' is a lookup and cannot be written directly; set it with {nav}.",
        table.type_name()
    ))
}

fn read_only(table: &TableDef, name: &str) -> DvError {
    DvError::invalid(format!(
        "The property '{name}' of '{}' is read-only and is maintained by the system.",
        table.type_name()
    ))
}

fn conversion_error(v: &Value, edm: &str) -> DvError {
    let literal = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    DvError::bad_request(format!(
        "Cannot convert the literal '{literal}' to the expected type '{edm}'."
    ))
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().or_else(|| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.with_timezone(&Utc).date_naive())
    })
}

/// Checks a written value against its column type and normalises it the way the service
/// stores it (UTC seconds for date-times, two decimals for money, lowercase GUIDs).
fn coerce(table: &TableDef, field: &Field, v: &Value) -> Result<Value, DvError> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let edm = field.kind.edm();
    let bad = || conversion_error(v, edm);
    match &field.kind {
        FieldType::String { max_length } | FieldType::Memo { max_length } => {
            let s = v.as_str().ok_or_else(bad)?;
            if s.chars().count() > *max_length {
                return Err(DvError::invalid(format!(
                    "A validation error occurred. The length of the '{}' attribute of the '{}' entity exceeded the maximum allowed length of '{max_length}'.",
                    field.name, table.logical_name
                )));
            }
            Ok(v.clone())
        }
        FieldType::Money => Ok(number(round2(v.as_f64().ok_or_else(bad)?))),
        FieldType::Decimal => v.as_f64().map(number).ok_or_else(bad),
        FieldType::Integer { min, max } => {
            let i = v.as_i64().ok_or_else(bad)?;
            if i < *min || i > *max {
                return Err(DvError::invalid(format!(
                    "A validation error occurred. The value {i} of '{}' on record of type '{}' is outside the valid range. Accepted Values: {min} to {max}.",
                    field.name, table.logical_name
                )));
            }
            Ok(Value::from(i))
        }
        FieldType::Boolean => v.as_bool().map(Value::Bool).ok_or_else(bad),
        FieldType::DateTime => v
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| Value::String(stamp(d.with_timezone(&Utc))))
            .ok_or_else(bad),
        FieldType::Date => v
            .as_str()
            .and_then(parse_date)
            .map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
            .ok_or_else(bad),
        FieldType::Guid | FieldType::Lookup { .. } => v
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .map(|u| Value::String(u.to_string()))
            .ok_or_else(bad),
        FieldType::Picklist { options } => {
            let i = v.as_i64().ok_or_else(bad)?;
            if !options.is_empty() && !options.contains(&i) {
                return Err(DvError::invalid(format!(
                    "A validation error occurred. The value {i} of '{}' on record of type '{}' is not one of the allowed options.",
                    field.name, table.logical_name
                )));
            }
            Ok(Value::from(i))
        }
        FieldType::State | FieldType::Status => v.as_i64().map(Value::from).ok_or_else(bad),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::new(&Config::default())
    }

    fn api() -> Actor {
        Actor {
            user: APP_USER_ID,
            human: false,
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    fn account(s: &mut State) -> Uuid {
        s.create(
            "accounts",
            None,
            &[],
            &obj(json!({"name": "Contoso"})),
            api(),
            Utc::now(),
        )
        .expect("account")
    }

    #[test]
    fn currencies_are_seeded_and_the_default_is_bound() {
        let mut s = state();
        assert!(s.rows("transactioncurrencies").count() >= 6);
        let acc = account(&mut s);
        let id = s
            .create(
                "opportunities",
                None,
                &[],
                &obj(json!({"name": "Deal", "customerid_account@odata.bind": format!("/accounts({acc})")})),
                api(),
                Utc::now(),
            )
            .expect("created");
        let row = s.row("opportunities", id).expect("row");
        assert!(row.values["_transactioncurrencyid_value"].is_string());
        assert_eq!(row.values["statuscode"], 1);
        assert_eq!(row.lookup_targets["_customerid_value"], "account");
    }

    #[test]
    fn deleting_an_account_removes_links_and_leaves_a_tombstone() {
        let mut s = state();
        let acc = account(&mut s);
        let child = s
            .create(
                "contacts",
                None,
                &[],
                &obj(json!({"lastname": "Smith", "parentcustomerid_account@odata.bind": format!("accounts({acc})")})),
                api(),
                Utc::now(),
            )
            .expect("contact");
        let watermark = s.version();
        s.delete("accounts", acc, Actor::seller(), Utc::now())
            .expect("deleted");
        let contact = s.row("contacts", child).expect("contact");
        assert!(contact.values["_parentcustomerid_value"].is_null());
        assert_eq!(contact.values["fullname"], "Smith");
        let (_, deleted) = s.changes_since("accounts", watermark);
        assert_eq!(deleted, vec![acc]);
        let (changed, _) = s.changes_since("contacts", watermark);
        assert_eq!(changed.len(), 1);
    }

    #[test]
    fn coercion_normalises_values() {
        let s = state();
        let t = s.table("opportunities").expect("table");
        let f = t.field("estimatedvalue").expect("field");
        assert_eq!(coerce(t, f, &json!(10.005)).expect("ok"), json!(10.01));
        let f = t.field("estimatedclosedate").expect("field");
        assert_eq!(
            coerce(t, f, &json!("2024-05-01T23:00:00Z")).expect("ok"),
            json!("2024-05-01")
        );
        let f = t.field("closeprobability").expect("field");
        assert!(coerce(t, f, &json!(101)).is_err());
        assert!(coerce(t, f, &json!("50")).is_err());
    }
}
