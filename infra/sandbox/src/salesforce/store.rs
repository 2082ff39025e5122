//! Records and the rules every write goes through, whoever makes it (an API client or a human
//! seller through the control API): known and writable fields, value types and lengths,
//! restricted picklists, lookups to existing records, required fields, unique values, and the
//! fields Salesforce maintains itself (audit fields, `IsClosed`/`IsWon` from the stage).

use std::collections::{BTreeMap, HashMap};

use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value, json};

use super::State;
use super::errors::{ErrorItem, SfError};
use super::ids;
use super::schema::{Field, FieldType, SObject};

/// A record: canonical field names to values; every field of the object is present (`null`
/// when empty), as a `GET` without `fields` returns it.
pub type Record = Map<String, Value>;

/// A deleted record, for `GET /sobjects/X/deleted/`.
#[derive(Debug, Clone)]
pub struct Deleted {
    pub object: String,
    pub id: String,
    pub at: DateTime<Utc>,
}

/// Everything a failed all-or-none batch rolls back.
#[derive(Debug, Clone, Default)]
pub struct Data {
    /// Object name → id → record; ids sort in creation order.
    pub tables: BTreeMap<String, BTreeMap<String, Record>>,
    pub deleted: Vec<Deleted>,
    /// The last number used per key prefix.
    seq: HashMap<String, u64>,
}

impl Data {
    pub fn next_id(&mut self, prefix: &str) -> String {
        let n = self.seq.entry(prefix.to_string()).or_insert(0);
        *n += 1;
        ids::make_id(prefix, *n)
    }
}

/// Datetimes as Salesforce writes them: milliseconds and a `+0000` offset.
pub fn sf_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// Parses the datetime forms Salesforce accepts: RFC 3339 (`Z` or `+01:00`) and its own
/// `+0000` form.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Who makes a write: `LastModifiedById` and, on create, `CreatedById` and `OwnerId`.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub user_id: &'a str,
    pub now: DateTime<Utc>,
}

/// What an upsert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upserted {
    Created(String),
    Updated(String),
    /// Several records carry the key; nothing was written.
    Ambiguous(Vec<String>),
}

fn label(field: &Field) -> String {
    field.name.trim_end_matches("__c").replace('_', " ")
}

fn field_error(code: &'static str, field: &Field, message: String) -> SfError {
    SfError::bad_request(ErrorItem::new(code, message).with_fields(vec![field.name.clone()]))
}

impl State {
    /// The objects the current request sees: the caller's view while the REST API serves a
    /// request (see `State::view`), the whole schema otherwise.
    pub fn objects(&self) -> &[SObject] {
        self.view.as_deref().unwrap_or(&self.schema)
    }

    /// An object by its API name, case-insensitively, as the current request sees it.
    pub fn object(&self, name: &str) -> Option<&SObject> {
        self.objects()
            .iter()
            .find(|o| o.name.eq_ignore_ascii_case(name))
    }

    /// An object of the whole schema, whatever the current request sees: the Tooling API and
    /// the permission rules look past field-level security.
    pub(super) fn schema_object(&self, name: &str) -> Option<&SObject> {
        self.schema
            .iter()
            .find(|o| o.name.eq_ignore_ascii_case(name))
    }

    /// An object named in a URL; an unknown one is a 404 as on Salesforce.
    pub fn object_or_404(&self, name: &str) -> Result<SObject, SfError> {
        self.object(name).cloned().ok_or_else(SfError::not_found)
    }

    pub fn table(&self, object: &str) -> impl Iterator<Item = &Record> {
        self.data
            .tables
            .get(object)
            .into_iter()
            .flat_map(|t| t.values())
    }

    /// A live record by id (15 or 18 characters).
    pub fn record(&self, object: &str, id: &str) -> Option<&Record> {
        let id = ids::canonical(id)?;
        self.data.tables.get(object)?.get(&id)
    }

    pub fn is_deleted(&self, object: &str, id: &str) -> bool {
        let id = ids::canonical(id).unwrap_or_default();
        self.data
            .deleted
            .iter()
            .any(|d| d.object == object && d.id == id)
    }

    /// Ids of the records whose `field` equals `value` (external ids match case-insensitively
    /// unless configured otherwise).
    pub fn find_by(&self, object: &str, field: &str, value: &str) -> Vec<String> {
        let sensitive = self.config.external_id_case_sensitive;
        self.table(object)
            .filter(|r| {
                r.get(field).and_then(Value::as_str).is_some_and(|v| {
                    if sensitive {
                        v == value
                    } else {
                        v.eq_ignore_ascii_case(value)
                    }
                })
            })
            .filter_map(|r| r.get("Id").and_then(Value::as_str).map(str::to_string))
            .collect()
    }

    /// Checks a write's body against the schema and returns the values to store, by canonical
    /// field name. `current` is the record being updated (`None` on create).
    fn prepare(
        &self,
        obj: &SObject,
        body: &Map<String, Value>,
        current: Option<&Record>,
    ) -> Result<Vec<(String, Value)>, SfError> {
        if !obj.createable {
            return Err(SfError::bad_request(ErrorItem::new(
                "INVALID_TYPE_FOR_OPERATION",
                format!("entity type cannot be inserted or updated: {}", obj.name),
            )));
        }
        let mut values = Vec::new();
        for (key, value) in body {
            if key == "attributes" {
                continue;
            }
            let Some(field) = obj.field(key) else {
                return Err(SfError::bad_request(ErrorItem::new(
                    "INVALID_FIELD",
                    format!("No such column '{key}' on sobject of type {}", obj.name),
                )));
            };
            if field.field_type == FieldType::Id {
                let matches_current = current
                    .and_then(|c| c.get("Id"))
                    .and_then(Value::as_str)
                    .zip(value.as_str().and_then(ids::canonical))
                    .is_some_and(|(a, b)| a == b);
                if matches_current {
                    continue;
                }
                let message = if current.is_none() {
                    "cannot specify Id in an insert call".to_string()
                } else {
                    format!("Id in the body does not match the record: {value}")
                };
                return Err(SfError::bad_request(
                    ErrorItem::new("INVALID_FIELD", message).with_fields(vec!["Id".into()]),
                ));
            }
            // Read-only by field-level security is refused like a system field, as Salesforce
            // words it ("check the security settings of this field").
            if field.read_only || field.edit_denied {
                return Err(field_error(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    field,
                    format!(
                        "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                        field.name
                    ),
                ));
            }
            values.push((field.name.clone(), self.normalize(field, value)?));
        }
        let provided = |name: &str| values.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        let missing: Vec<String> = obj
            .fields
            .iter()
            .filter(|f| f.required && !f.read_only)
            .filter(|f| match (provided(&f.name), current) {
                (Some(v), _) => v.is_null(),
                (None, None) => f.default_value.is_none(),
                (None, Some(_)) => false,
            })
            .map(|f| f.name.clone())
            .collect();
        if !missing.is_empty() {
            return Err(SfError::bad_request(
                ErrorItem::new(
                    "REQUIRED_FIELD_MISSING",
                    format!("Required fields are missing: [{}]", missing.join(", ")),
                )
                .with_fields(missing),
            ));
        }
        let own_id = current.and_then(|c| c.get("Id")).and_then(Value::as_str);
        for (name, value) in &values {
            let (Some(field), Some(v)) = (obj.field(name), value.as_str()) else {
                continue;
            };
            if !field.unique {
                continue;
            }
            if let Some(other) = self
                .find_by(&obj.name, name, v)
                .into_iter()
                .find(|id| Some(id.as_str()) != own_id)
            {
                return Err(field_error(
                    "DUPLICATE_VALUE",
                    field,
                    format!(
                        "duplicate value found: {name} duplicates value on record with id: {other}"
                    ),
                ));
            }
        }
        Ok(values)
    }

    /// One value, checked against its field's type and stored in Salesforce's form.
    fn normalize(&self, field: &Field, value: &Value) -> Result<Value, SfError> {
        let kind_name = field.field_type.describe_name();
        let parse_error = || {
            SfError::json_parser(format!(
                "Cannot deserialize instance of {kind_name} from {value} for field {}",
                field.name
            ))
        };
        if value.is_null() {
            return Ok(match field.field_type {
                FieldType::Boolean => Value::Bool(false),
                _ => Value::Null,
            });
        }
        match &field.field_type {
            FieldType::Boolean => match value {
                Value::Bool(b) => Ok(Value::Bool(*b)),
                Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
                Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
                _ => Err(parse_error()),
            },
            FieldType::Currency { precision, scale }
            | FieldType::Double { precision, scale }
            | FieldType::Percent { precision, scale } => {
                let n = match value {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                }
                .filter(|n| n.is_finite())
                .ok_or_else(parse_error)?;
                let limit = 10f64.powi(precision.saturating_sub(*scale) as i32);
                if n.abs() >= limit {
                    return Err(field_error(
                        "NUMBER_OUTSIDE_VALID_RANGE",
                        field,
                        format!(
                            "{}: value outside of valid range on numeric field: {n}",
                            label(field)
                        ),
                    ));
                }
                let factor = 10f64.powi(*scale as i32);
                Ok(json!((n * factor).round() / factor))
            }
            FieldType::Date => {
                let s = value.as_str().ok_or_else(parse_error)?;
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
                    .map_err(|_| parse_error())
            }
            FieldType::Datetime => {
                let s = value.as_str().ok_or_else(parse_error)?;
                parse_datetime(s)
                    .map(|t| Value::String(sf_datetime(t)))
                    .ok_or_else(parse_error)
            }
            FieldType::Reference { reference_to, .. } => {
                let raw = value.as_str().ok_or_else(parse_error)?;
                if raw.is_empty() {
                    return Ok(Value::Null);
                }
                let targets: Vec<&SObject> =
                    reference_to.iter().filter_map(|t| self.object(t)).collect();
                let what = reference_to.join("/");
                let Some(id) = ids::canonical(raw) else {
                    return Err(field_error(
                        "MALFORMED_ID",
                        field,
                        format!("{what} ID: id value of incorrect type: {raw}"),
                    ));
                };
                let Some(target) = targets.iter().find(|o| ids::has_prefix(&id, &o.key_prefix))
                else {
                    return Err(field_error(
                        "MALFORMED_ID",
                        field,
                        format!("{what} ID: id value of incorrect type: {raw}"),
                    ));
                };
                if self.record(&target.name, &id).is_none() {
                    return Err(field_error(
                        "INVALID_CROSS_REFERENCE_KEY",
                        field,
                        format!("invalid cross reference id: {raw}"),
                    ));
                }
                Ok(Value::String(id))
            }
            FieldType::Id => Err(parse_error()),
            text => {
                let s = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(parse_error()),
                };
                if s.is_empty() {
                    return Ok(Value::Null);
                }
                if let Some(max) = text.max_length()
                    && s.chars().count() > max
                {
                    return Err(field_error(
                        "STRING_TOO_LONG",
                        field,
                        format!(
                            "{}: data value too large: {} (max length={max})",
                            label(field),
                            s.chars().take(40).collect::<String>()
                        ),
                    ));
                }
                let restricted_ok = match text {
                    FieldType::Picklist {
                        values,
                        restricted: true,
                    } => values.contains(&s),
                    FieldType::StageName => {
                        self.stages.iter().any(|st| st.is_active && st.name == s)
                    }
                    _ => true,
                };
                if !restricted_ok {
                    return Err(field_error(
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        field,
                        format!(
                            "{}: bad value for restricted picklist field: {s}",
                            label(field)
                        ),
                    ));
                }
                if *text == FieldType::Email && !looks_like_email(&s) {
                    return Err(field_error(
                        "INVALID_EMAIL_ADDRESS",
                        field,
                        format!("{}: invalid email address: {s}", label(field)),
                    ));
                }
                Ok(Value::String(s))
            }
        }
    }

    /// Fields Salesforce derives: a person's read-only `Name` from `FirstName` and `LastName`,
    /// an opportunity's `IsClosed`/`IsWon` from its stage, and its `Probability` from the
    /// stage it enters without one.
    fn derive(&self, obj: &SObject, rec: &mut Record, written: &[(String, Value)]) {
        let compound_name =
            obj.field("Name").is_some_and(|f| f.read_only) && obj.field("LastName").is_some();
        if compound_name {
            let part = |k: &str| rec.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let full = format!("{} {}", part("FirstName"), part("LastName"));
            rec.insert("Name".into(), json!(full.trim()));
        }
        if obj.name != "Opportunity" {
            return;
        }
        let stage_name = rec.get("StageName").and_then(Value::as_str).unwrap_or("");
        let Some(stage) = self.stages.iter().find(|s| s.name == stage_name) else {
            return;
        };
        let (closed, won, probability) = (stage.is_closed, stage.is_won, stage.default_probability);
        rec.insert("IsClosed".into(), Value::Bool(closed));
        rec.insert("IsWon".into(), Value::Bool(won));
        let stage_written = written.iter().any(|(n, _)| n == "StageName");
        let probability_written = written.iter().any(|(n, _)| n == "Probability");
        if stage_written && !probability_written && obj.field("Probability").is_some() {
            rec.insert("Probability".into(), json!(probability));
        }
    }

    /// Creates a record and returns its id.
    pub fn create(
        &mut self,
        object: &str,
        body: &Map<String, Value>,
        actor: Actor<'_>,
    ) -> Result<String, SfError> {
        let obj = self.object_or_404(object)?;
        let values = self.prepare(&obj, body, None)?;
        let id = self.data.next_id(&obj.key_prefix);
        let mut rec = Record::new();
        // Every field gets its default, also those the caller cannot see: a grant made later
        // must find a checkbox false, not empty.
        let all_fields = self
            .schema
            .iter()
            .find(|o| o.name == obj.name)
            .map_or(&obj.fields, |o| &o.fields);
        for f in all_fields {
            let v = f.default_value.clone().unwrap_or(match f.field_type {
                FieldType::Boolean => Value::Bool(false),
                _ => Value::Null,
            });
            rec.insert(f.name.clone(), v);
        }
        rec.insert("Id".into(), Value::String(id.clone()));
        for (name, v) in &values {
            rec.insert(name.clone(), v.clone());
        }
        if obj.from_tooling
            && obj.field("Name").is_some()
            && rec.get("Name").is_none_or(Value::is_null)
        {
            rec.insert("Name".into(), Value::String(id.clone()));
        }
        if obj.field("OwnerId").is_some() && rec.get("OwnerId").is_none_or(Value::is_null) {
            rec.insert("OwnerId".into(), json!(actor.user_id));
        }
        let stamp = json!(sf_datetime(actor.now));
        for f in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
            rec.insert(f.into(), stamp.clone());
        }
        for f in ["CreatedById", "LastModifiedById"] {
            rec.insert(f.into(), json!(actor.user_id));
        }
        self.derive(&obj, &mut rec, &values);
        self.check_setup_record(&obj.name, &mut rec, None)?;
        self.data
            .tables
            .entry(obj.name.clone())
            .or_default()
            .insert(id.clone(), rec);
        Ok(id)
    }

    /// Updates a record; every update moves its audit fields, even when nothing changed.
    pub fn update(
        &mut self,
        object: &str,
        id: &str,
        body: &Map<String, Value>,
        actor: Actor<'_>,
    ) -> Result<(), SfError> {
        let obj = self.object_or_404(object)?;
        let Some(current) = self.record(&obj.name, id).cloned() else {
            return Err(self.missing(&obj.name, id));
        };
        let values = self.prepare(&obj, body, Some(&current))?;
        let mut rec = current;
        for (name, v) in &values {
            rec.insert(name.clone(), v.clone());
        }
        let stamp = json!(sf_datetime(actor.now));
        rec.insert("LastModifiedDate".into(), stamp.clone());
        rec.insert("SystemModstamp".into(), stamp);
        rec.insert("LastModifiedById".into(), json!(actor.user_id));
        self.derive(&obj, &mut rec, &values);
        let key = rec
            .get("Id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        self.check_setup_record(&obj.name, &mut rec, Some(&key))?;
        self.data
            .tables
            .entry(obj.name.clone())
            .or_default()
            .insert(key, rec);
        Ok(())
    }

    /// The error for a write to a record that is not there: deleted ones say so.
    pub fn missing(&self, object: &str, id: &str) -> SfError {
        if self.is_deleted(object, id) {
            SfError::new(
                StatusCode::NOT_FOUND,
                "ENTITY_IS_DELETED",
                "entity is deleted",
            )
        } else {
            SfError::not_found()
        }
    }

    /// Deletes a record; records that belong to it go too, lookups to it are cleared.
    pub fn delete(&mut self, object: &str, id: &str, actor: Actor<'_>) -> Result<(), SfError> {
        let obj = self.object_or_404(object)?;
        if !obj.createable {
            return Err(SfError::bad_request(ErrorItem::new(
                "INVALID_TYPE_FOR_OPERATION",
                format!("entity type cannot be deleted: {}", obj.name),
            )));
        }
        let Some(id) = ids::canonical(id).filter(|i| self.record(&obj.name, i).is_some()) else {
            return Err(self.missing(&obj.name, id));
        };
        self.remove(&obj.name, &id, actor.now);
        Ok(())
    }

    fn remove(&mut self, object: &str, id: &str, now: DateTime<Utc>) {
        if let Some(t) = self.data.tables.get_mut(object)
            && t.remove(id).is_some()
        {
            self.data.deleted.push(Deleted {
                object: object.to_string(),
                id: id.to_string(),
                at: now,
            });
        } else {
            return;
        }
        // Children: (object, field, cascade) of every lookup that can point here.
        let children: Vec<(String, String, bool)> = self
            .schema
            .iter()
            .flat_map(|o| {
                o.fields.iter().filter_map(|f| match &f.field_type {
                    FieldType::Reference {
                        reference_to,
                        cascade_delete,
                    } if reference_to.iter().any(|t| t == object) => {
                        Some((o.name.clone(), f.name.clone(), *cascade_delete))
                    }
                    _ => None,
                })
            })
            .collect();
        for (child, field, cascade) in children {
            let hits: Vec<String> = self
                .table(&child)
                .filter(|r| r.get(&field).and_then(Value::as_str) == Some(id))
                .filter_map(|r| r.get("Id").and_then(Value::as_str).map(str::to_string))
                .collect();
            for hit in hits {
                if cascade {
                    self.remove(&child, &hit, now);
                } else if let Some(r) = self
                    .data
                    .tables
                    .get_mut(&child)
                    .and_then(|t| t.get_mut(&hit))
                {
                    r.insert(field.clone(), Value::Null);
                }
            }
        }
    }

    /// Upsert by an external id field: create when no record has the key, update the one that
    /// has it, and report several without writing.
    pub fn upsert(
        &mut self,
        object: &str,
        field: &str,
        key: &str,
        body: &Map<String, Value>,
        update_only: bool,
        actor: Actor<'_>,
    ) -> Result<Upserted, SfError> {
        let obj = self.object_or_404(object)?;
        let key_field = match obj.field(field) {
            Some(f) if f.external_id || f.field_type == FieldType::Id => f.clone(),
            _ => {
                return Err(SfError::new(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    format!(
                        "Provided external ID field does not exist or is not accessible: {field}"
                    ),
                ));
            }
        };
        if key_field.field_type == FieldType::Id {
            // Upsert on Id only ever updates.
            self.update(&obj.name, key, body, actor)?;
            let id = ids::canonical(key).unwrap_or_else(|| key.to_string());
            return Ok(Upserted::Updated(id));
        }
        let mut body = body.clone();
        let in_body = body
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&key_field.name))
            .map(|(k, v)| (k.clone(), v.clone()));
        if let Some((k, v)) = in_body {
            if v.as_str().is_some_and(|s| !s.eq_ignore_ascii_case(key)) {
                return Err(field_error(
                    "INVALID_FIELD",
                    &key_field,
                    format!(
                        "The value of {} in the body does not match the value in the URL: {key}",
                        key_field.name
                    ),
                ));
            }
            body.remove(&k);
        }
        let matches = self.find_by(&obj.name, &key_field.name, key);
        match matches.as_slice() {
            [] if update_only => Err(SfError::not_found()),
            [] => {
                body.insert(key_field.name.clone(), Value::String(key.to_string()));
                self.create(&obj.name, &body, actor).map(Upserted::Created)
            }
            [one] => {
                let one = one.clone();
                self.update(&obj.name, &one, &body, actor)?;
                Ok(Upserted::Updated(one))
            }
            _ => Ok(Upserted::Ambiguous(matches)),
        }
    }
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
        }
        None => false,
    }
}
