//! The Tooling API under `/services/data/vNN.N/tooling/` (docs/salesforce.md, "Metadata"),
//! over the same schema data the REST API serves, so what it creates is usable at once:
//!
//! - `POST tooling/sobjects/CustomField` `{"FullName": "Object.Name__c", "Metadata": {…}}` adds
//!   a field under field-level security (see `permissions.rs`);
//! - `POST tooling/sobjects/CustomObject` `{"FullName": "Name__c", "Metadata": {…}}` adds an
//!   object with Salesforce's standard fields;
//! - `GET tooling/query?q=` runs SOQL over `StandardValueSet` (the `OpportunityStage` set, built
//!   from the org's stages), `CustomField` and `CustomObject` (the org's custom fields and
//!   objects, whoever created them);
//! - `PATCH tooling/sobjects/StandardValueSet/{id}` with the whole `Metadata` replaces the
//!   stage list; `GET tooling/sobjects/{CustomField|CustomObject|StandardValueSet}/{id}` reads
//!   one row.
//!
//! Answers: 201 `{"id","success":true,"errors":[],"warnings":[],"infos":[]}`, 204 for the
//! PATCH. Refusals use the REST API's error array; the codes where Salesforce documents none
//! are the sandbox's choice: `REQUIRED_FIELD_MISSING` for an absent setting,
//! `FIELD_INTEGRITY_EXCEPTION` for a setting out of range or a type not simulated,
//! `DUPLICATE_DEVELOPER_NAME` for a name already used (inferred), `INVALID_TYPE` for an
//! unknown object.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::State;
use super::api::{json_object, method_not_allowed};
use super::errors::{ErrorItem, SfError};
use super::ids;
use super::permissions::{is_developer_name, is_setup_object};
use super::query::render;
use super::schema::{Field, FieldType, SObject, Stage, s, system_fields};
use super::soql::{self, Item, Select};
use super::store::Record;

const STANDARD_VALUE_SET: &str = "StandardValueSet";
const CUSTOM_FIELD: &str = "CustomField";
const CUSTOM_OBJECT: &str = "CustomObject";
/// The one standard value set the sandbox has.
const OPPORTUNITY_STAGE: &str = "OpportunityStage";
/// Longest label of a field or an object.
const LABEL_MAX: usize = 40;
/// Longest developer name before `__c`.
const NAME_MAX: usize = 40;
const TEXT_LENGTH: (i64, i64) = (1, 255);
const LONG_TEXT_LENGTH: (i64, i64) = (256, 131_072);
const FORECAST_CATEGORIES: &[&str] = &[
    "Omitted", "Pipeline", "BestCase", "Forecast", "Commit", "Closed",
];
const SHARING_MODELS: &[&str] = &[
    "Private",
    "Read",
    "ReadWrite",
    "ReadWriteTransfer",
    "FullAccess",
    "ControlledByParent",
];
/// Digits of generated key prefixes.
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A Tooling API request, after authentication and the budget (`rest` follows `tooling/`).
pub(super) fn handle(
    state: &mut State,
    method: &Method,
    rest: &[&str],
    query: &HashMap<String, String>,
    body: &Bytes,
    version: &str,
) -> Result<Response, SfError> {
    match rest {
        ["query"] if method == Method::GET => tooling_query(state, query, version),
        ["query"] => Err(method_not_allowed(method, "GET")),
        ["sobjects", kind] if kind.eq_ignore_ascii_case(CUSTOM_FIELD) => match *method {
            Method::POST => created(create_field(state, body)?),
            _ => Err(method_not_allowed(method, "POST")),
        },
        ["sobjects", kind] if kind.eq_ignore_ascii_case(CUSTOM_OBJECT) => match *method {
            Method::POST => created(create_object(state, body)?),
            _ => Err(method_not_allowed(method, "POST")),
        },
        ["sobjects", kind, id] => row(state, method, kind, id, body, version),
        _ => Err(SfError::not_found()),
    }
}

fn created(id: String) -> Result<Response, SfError> {
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"id": id, "success": true, "errors": [], "warnings": [], "infos": []})),
    )
        .into_response())
}

fn integrity(field: &str, message: impl Into<String>) -> SfError {
    SfError::bad_request(
        ErrorItem::new("FIELD_INTEGRITY_EXCEPTION", message).with_fields(vec![field.to_string()]),
    )
}

fn missing(field: &str) -> SfError {
    SfError::bad_request(
        ErrorItem::new(
            "REQUIRED_FIELD_MISSING",
            format!("Required fields are missing: [{field}]"),
        )
        .with_fields(vec![field.to_string()]),
    )
}

fn duplicate_name(field: &str, message: String) -> SfError {
    SfError::bad_request(
        ErrorItem::new("DUPLICATE_DEVELOPER_NAME", message).with_fields(vec![field.to_string()]),
    )
}

/// A non-empty text setting.
fn meta_str<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A yes/no setting; the Metadata API's JSON also writes them as `"true"`/`"false"`.
fn meta_bool(m: &Map<String, Value>, key: &str) -> Result<bool, SfError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(SfError::json_parser(format!(
            "Cannot deserialize {key} from {other}: expected true or false"
        ))),
    }
}

/// A number setting, written as a number or a numeric string.
fn meta_number(m: &Map<String, Value>, key: &str) -> Result<Option<f64>, SfError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => s.trim().parse::<f64>().map(Some).map_err(|_| {
            SfError::json_parser(format!("Cannot deserialize {key} from '{s}': not a number"))
        }),
        Some(other) => Err(SfError::json_parser(format!(
            "Cannot deserialize {key} from {other}: not a number"
        ))),
    }
}

/// A whole-number setting.
fn meta_int(m: &Map<String, Value>, key: &str) -> Result<Option<i64>, SfError> {
    match meta_number(m, key)? {
        Some(n) if n.fract() == 0.0 && n.abs() < 1e15 => Ok(Some(n as i64)),
        Some(n) => Err(SfError::json_parser(format!(
            "Cannot deserialize {key} from {n}: not a whole number"
        ))),
        None => Ok(None),
    }
}

fn in_range(field: &str, value: i64, (min, max): (i64, i64), what: &str) -> Result<(), SfError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(integrity(
        field,
        format!("{field}: {what} must be between {min} and {max}, not {value}"),
    ))
}

fn label_of(m: &Map<String, Value>, key: &str) -> Result<String, SfError> {
    let label = meta_str(m, key).ok_or_else(|| missing(key))?;
    if label.chars().count() > LABEL_MAX {
        return Err(integrity(
            key,
            format!("{key}: at most {LABEL_MAX} characters, not '{label}'"),
        ));
    }
    Ok(label.to_string())
}

/// A custom field's or object's API name, `Name__c` (the suffix in any case), spelt with
/// `__c`. A namespace (`ns__Name__c`) is refused: only its package may create such names.
fn custom_name(name: &str, what: &str) -> Result<String, SfError> {
    let stem = name
        .len()
        .checked_sub(3)
        .filter(|&i| name.is_char_boundary(i) && name[i..].eq_ignore_ascii_case("__c"))
        .map(|i| &name[..i]);
    let Some(stem) = stem else {
        return Err(integrity(
            "FullName",
            format!("The {what} name '{name}' must end in __c"),
        ));
    };
    if !is_developer_name(stem) || stem.chars().count() > NAME_MAX {
        return Err(integrity(
            "FullName",
            format!(
                "The {what} name '{name}' must begin with a letter and use at most {NAME_MAX} letters, digits and single underscores before __c"
            ),
        ));
    }
    Ok(format!("{stem}__c"))
}

impl State {
    /// The id of a Tooling API row, the same each time it is shown.
    fn tooling_id(&mut self, key: String, prefix: &str) -> String {
        if let Some(id) = self.tooling_ids.get(&key) {
            return id.clone();
        }
        let id = self.data.next_id(prefix);
        self.tooling_ids.insert(key, id.clone());
        id
    }

    /// A key prefix no object has: `a01`, `a02`, … as Salesforce numbers custom objects.
    fn free_key_prefix(&self) -> String {
        (1..BASE62.len() * BASE62.len())
            .map(|n| {
                format!(
                    "a{}{}",
                    BASE62[n / BASE62.len()] as char,
                    BASE62[n % BASE62.len()] as char
                )
            })
            .find(|p| !self.schema.iter().any(|o| &o.key_prefix == p))
            .unwrap_or_else(|| "a00".into())
    }

    /// Rebuilds the Tooling API's rows from the schema and the stages, so they reflect changes
    /// made through any route (the control API included).
    fn refresh_tooling_rows(&mut self) {
        let mut objects = Vec::new();
        let mut fields = Vec::new();
        for o in &self.schema {
            if o.is_custom() {
                objects.push(o.name.clone());
            }
            for f in o.fields.iter().filter(|f| f.is_custom()) {
                fields.push((o.name.clone(), f.name.clone()));
            }
        }
        let object_ids: HashMap<String, String> = objects
            .iter()
            .map(|o| (o.clone(), self.tooling_id(object_key(o), "01I")))
            .collect();
        let field_ids: Vec<String> = fields
            .iter()
            .map(|(o, f)| self.tooling_id(field_key(o, f), "00N"))
            .collect();

        let mut field_rows = BTreeMap::new();
        for ((o, f), id) in fields.iter().zip(field_ids) {
            let Some(field) = self.schema_object(o).and_then(|obj| obj.field(f)) else {
                continue;
            };
            let table = object_ids.get(o).cloned().unwrap_or_else(|| o.clone());
            let rec = record([
                ("Id", json!(id)),
                ("DeveloperName", json!(f.trim_end_matches("__c"))),
                ("TableEnumOrId", json!(table)),
                ("FullName", json!(format!("{o}.{f}"))),
                ("NamespacePrefix", Value::Null),
                ("Metadata", field_metadata(field)),
            ]);
            field_rows.insert(id, rec);
        }
        let mut object_rows = BTreeMap::new();
        for o in &objects {
            let Some(id) = object_ids.get(o).cloned() else {
                continue;
            };
            let metadata = self
                .object_metadata
                .get(&o.to_ascii_lowercase())
                .cloned()
                .or_else(|| self.schema_object(o).map(object_metadata))
                .unwrap_or(Value::Null);
            let rec = record([
                ("Id", json!(id)),
                ("DeveloperName", json!(o.trim_end_matches("__c"))),
                ("FullName", json!(o)),
                ("NamespacePrefix", Value::Null),
                ("Metadata", metadata),
            ]);
            object_rows.insert(id, rec);
        }
        let set_id = stage_set_id();
        let stage_row = record([
            ("Id", json!(set_id)),
            ("MasterLabel", json!(OPPORTUNITY_STAGE)),
            ("FullName", json!(OPPORTUNITY_STAGE)),
            ("Metadata", stage_metadata(&self.stages)),
        ]);
        let tables = &mut self.data.tables;
        tables.insert(CUSTOM_FIELD.into(), field_rows);
        tables.insert(CUSTOM_OBJECT.into(), object_rows);
        tables.insert(
            STANDARD_VALUE_SET.into(),
            BTreeMap::from([(set_id, stage_row)]),
        );
    }
}

fn object_key(object: &str) -> String {
    format!("object:{}", object.to_ascii_lowercase())
}

fn field_key(object: &str, field: &str) -> String {
    format!("field:{object}.{field}").to_ascii_lowercase()
}

fn record<const N: usize>(pairs: [(&str, Value); N]) -> Record {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The `OpportunityStage` set's id (one per org).
fn stage_set_id() -> String {
    ids::make_id("0Sv", 1)
}

/// The objects a tooling query may name. `Metadata` holds a JSON object; its text type only
/// lets the SOQL engine select it.
fn tooling_schema() -> Vec<SObject> {
    let metadata = || Field::new("Metadata", FieldType::Textarea { length: 131_072 });
    let tooling_object = |name: &str, prefix: &str, fields: Vec<Field>| {
        let mut all = vec![Field::new("Id", FieldType::Id).read_only()];
        all.extend(fields);
        SObject {
            name: name.into(),
            key_prefix: prefix.into(),
            createable: false,
            fields: all,
            label: None,
            from_tooling: false,
        }
    };
    vec![
        tooling_object(
            STANDARD_VALUE_SET,
            "0Sv",
            vec![
                Field::new("MasterLabel", s(255)),
                Field::new("FullName", s(255)),
                metadata(),
            ],
        ),
        tooling_object(
            CUSTOM_FIELD,
            "00N",
            vec![
                Field::new("DeveloperName", s(40)),
                Field::new("TableEnumOrId", s(40)),
                Field::new("FullName", s(255)),
                Field::new("NamespacePrefix", s(15)),
                metadata(),
            ],
        ),
        tooling_object(
            CUSTOM_OBJECT,
            "01I",
            vec![
                Field::new("DeveloperName", s(40)),
                Field::new("FullName", s(255)),
                Field::new("NamespacePrefix", s(15)),
                metadata(),
            ],
        ),
    ]
}

/// The stage list as the standard value set's `Metadata`: one `standardValue` per stage.
fn stage_metadata(stages: &[Stage]) -> Value {
    let values: Vec<Value> = stages
        .iter()
        .map(|st| {
            let p = st.default_probability;
            // Salesforce writes whole probabilities without a fraction.
            let probability = if p.fract() == 0.0 {
                json!(p as i64)
            } else {
                json!(p)
            };
            json!({
                "fullName": st.name,
                "valueName": st.name,
                "label": st.label(),
                "default": false,
                "isActive": st.is_active,
                "closed": st.is_closed,
                "won": st.is_won,
                "probability": probability,
                "forecastCategory": st.forecast_category(),
            })
        })
        .collect();
    json!({"sorted": false, "standardValue": values})
}

/// A stage list from a value set's `Metadata`, checked as the control API's stage list is.
fn stages_from(meta: &Map<String, Value>) -> Result<Vec<Stage>, SfError> {
    let values = meta
        .get("standardValue")
        .and_then(Value::as_array)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing("standardValue"))?;
    let mut stages: Vec<Stage> = Vec::with_capacity(values.len());
    for v in values {
        let o = v
            .as_object()
            .ok_or_else(|| integrity("standardValue", "each standardValue must be an object"))?;
        let name = meta_str(o, "valueName")
            .or_else(|| meta_str(o, "fullName"))
            .ok_or_else(|| missing("valueName"))?;
        if name.chars().count() > 255 {
            return Err(integrity(
                "valueName",
                format!("valueName: at most 255 characters, not '{name}'"),
            ));
        }
        if stages.iter().any(|s| s.name.eq_ignore_ascii_case(name)) {
            return Err(SfError::bad_request(
                ErrorItem::new(
                    "DUPLICATE_VALUE",
                    format!("duplicate value found: the stage '{name}' is listed twice"),
                )
                .with_fields(vec!["valueName".into()]),
            ));
        }
        let (closed, won) = (meta_bool(o, "closed")?, meta_bool(o, "won")?);
        if won && !closed {
            return Err(integrity(
                "won",
                format!("The stage '{name}' is won but not closed"),
            ));
        }
        let probability = meta_number(o, "probability")?.unwrap_or(0.0);
        if !(0.0..=100.0).contains(&probability) {
            return Err(integrity(
                "probability",
                format!("probability: must be between 0 and 100, not {probability}"),
            ));
        }
        let forecast = meta_str(o, "forecastCategory");
        if let Some(f) = forecast.filter(|f| !FORECAST_CATEGORIES.contains(f)) {
            return Err(integrity(
                "forecastCategory",
                format!(
                    "forecastCategory: bad value '{f}'; one of {}",
                    FORECAST_CATEGORIES.join(", ")
                ),
            ));
        }
        let is_active = match o.get("isActive") {
            None | Some(Value::Null) => true,
            Some(_) => meta_bool(o, "isActive")?,
        };
        stages.push(Stage {
            name: name.to_string(),
            is_closed: closed,
            is_won: won,
            is_active,
            default_probability: probability,
            label: meta_str(o, "label")
                .filter(|l| *l != name)
                .map(str::to_string),
            forecast_category: forecast.map(str::to_string),
        });
    }
    if !stages.iter().any(|s| s.is_active) {
        return Err(integrity(
            "standardValue",
            "an org needs at least one active stage",
        ));
    }
    Ok(stages)
}

/// A field's settings as the Tooling API's `Metadata` names them.
fn field_metadata(f: &Field) -> Value {
    let keys = || json!({"externalId": f.external_id, "unique": f.unique});
    let (kind, extra) = match &f.field_type {
        FieldType::Boolean => {
            let on = f.default_value.as_ref().and_then(Value::as_bool) == Some(true);
            ("Checkbox", json!({"defaultValue": on.to_string()}))
        }
        FieldType::String { length } => {
            let mut e = keys();
            e["length"] = json!(length);
            ("Text", e)
        }
        FieldType::Textarea { length } if *length > 255 => {
            ("LongTextArea", json!({"length": length, "visibleLines": 3}))
        }
        FieldType::Textarea { .. } => ("TextArea", json!({})),
        FieldType::Url { .. } => ("Url", json!({})),
        FieldType::Email => ("Email", keys()),
        FieldType::Phone => ("Phone", json!({})),
        FieldType::Picklist { values, restricted } => {
            let entries: Vec<Value> = values
                .iter()
                .map(|v| {
                    json!({"fullName": v, "label": v, "default": f.default_value.as_ref() == Some(&json!(v))})
                })
                .collect();
            (
                "Picklist",
                json!({"valueSet": {"restricted": restricted, "valueSetDefinition": {"sorted": false, "value": entries}}}),
            )
        }
        FieldType::StageName => ("Picklist", json!({})),
        FieldType::Currency { precision, scale } => {
            ("Currency", json!({"precision": precision, "scale": scale}))
        }
        FieldType::Double { precision, scale } => {
            let mut e = keys();
            e["precision"] = json!(precision);
            e["scale"] = json!(scale);
            ("Number", e)
        }
        FieldType::Percent { precision, scale } => {
            ("Percent", json!({"precision": precision, "scale": scale}))
        }
        FieldType::Date => ("Date", json!({})),
        FieldType::Datetime => ("DateTime", json!({})),
        FieldType::Reference {
            reference_to,
            cascade_delete,
        } => {
            let relationship = f
                .child_relationship_name()
                .map(|c| c.strip_suffix("__r").unwrap_or(c));
            let target = reference_to.first();
            if f.required && *cascade_delete {
                (
                    "MasterDetail",
                    json!({"referenceTo": target, "relationshipName": relationship}),
                )
            } else {
                let constraint = if *cascade_delete {
                    "Cascade"
                } else {
                    "SetNull"
                };
                (
                    "Lookup",
                    json!({"referenceTo": target, "relationshipName": relationship, "deleteConstraint": constraint}),
                )
            }
        }
        FieldType::Id => ("Id", json!({})),
    };
    let mut m = Map::new();
    m.insert("label".into(), json!(f.label()));
    m.insert("type".into(), json!(kind));
    if let Value::Object(extra) = extra {
        m.extend(extra);
    }
    if f.field_type != FieldType::Boolean {
        m.insert("required".into(), json!(f.required));
    }
    Value::Object(m)
}

/// A custom object's `Metadata`, for one the org started with.
fn object_metadata(o: &SObject) -> Value {
    let label = o.label();
    let name_label = o.field("Name").map_or_else(|| "Name".into(), Field::label);
    json!({
        "label": label,
        "pluralLabel": format!("{label}s"),
        "nameField": {"label": name_label, "type": "Text"},
        "deploymentStatus": "Deployed",
        "sharingModel": "ReadWrite",
    })
}

/// `GET tooling/query?q=`: SOQL over the Tooling API's objects, in one batch.
fn tooling_query(
    state: &mut State,
    query: &HashMap<String, String>,
    version: &str,
) -> Result<Response, SfError> {
    let Some(q) = query.get("q").filter(|q| !q.trim().is_empty()) else {
        return Err(SfError::bad_request(ErrorItem::new(
            "MALFORMED_QUERY",
            "A query string has to be specified",
        )));
    };
    let parsed = soql::parse(q)?;
    state.refresh_tooling_rows();
    // The SOQL engine resolves names through the request's view: for this request, the
    // Tooling API's objects (the REST API clears the view when the request ends).
    state.view = Some(tooling_schema());
    let rows = state.run_query(q, &format!("{version}/tooling"))?;
    // Salesforce reads Metadata and FullName one row at a time.
    let whole = match &parsed.select {
        Select::Items(items) => items.iter().any(|i| {
            matches!(i, Item::Field(p) if p.parts.len() == 1
                && ["Metadata", "FullName"].iter().any(|n| p.parts[0].eq_ignore_ascii_case(n)))
        }),
        Select::Count => false,
    };
    if whole && rows.total > 1 {
        return Err(SfError::bad_request(ErrorItem::new(
            "MALFORMED_QUERY",
            format!(
                "A query selecting Metadata or FullName must select at most one row; this one selects {}",
                rows.total
            ),
        )));
    }
    let entity = state
        .object(&parsed.object)
        .map_or_else(|| parsed.object.clone(), |o| o.name.clone());
    Ok(axum::Json(json!({
        "size": rows.total,
        "totalSize": rows.total,
        "done": true,
        "queryLocator": null,
        "entityTypeName": entity,
        "records": rows.records,
    }))
    .into_response())
}

/// `GET|PATCH tooling/sobjects/{kind}/{id}`.
fn row(
    state: &mut State,
    method: &Method,
    kind: &str,
    id: &str,
    body: &Bytes,
    version: &str,
) -> Result<Response, SfError> {
    let Some(object) = tooling_schema()
        .into_iter()
        .find(|o| o.name.eq_ignore_ascii_case(kind))
    else {
        return Err(SfError::not_found());
    };
    let id = ids::canonical(id)
        .filter(|i| ids::has_prefix(i, &object.key_prefix))
        .ok_or_else(SfError::not_found)?;
    state.refresh_tooling_rows();
    let exists = state.record(&object.name, &id).is_some();
    match *method {
        Method::GET => {
            let rec = state
                .record(&object.name, &id)
                .ok_or_else(SfError::not_found)?;
            Ok(
                axum::Json(render(&object, rec, None, &format!("{version}/tooling")))
                    .into_response(),
            )
        }
        Method::PATCH if object.name == STANDARD_VALUE_SET => {
            if !exists {
                return Err(SfError::not_found());
            }
            let body = json_object(body)?;
            let meta = body
                .get("Metadata")
                .and_then(Value::as_object)
                .ok_or_else(|| missing("Metadata"))?;
            state.stages = stages_from(meta)?;
            state.sync_stage_records();
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Method::PATCH => Err(SfError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            format!("Changing a {} is not simulated by the sandbox", object.name),
        )),
        _ => Err(method_not_allowed(method, "GET, PATCH")),
    }
}

/// The `FullName` and `Metadata` of a create.
fn create_body(body: &Bytes) -> Result<(String, Map<String, Value>), SfError> {
    let mut body = json_object(body)?;
    let full_name = body
        .get("FullName")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| missing("FullName"))?;
    let meta = match body.remove("Metadata") {
        Some(Value::Object(m)) => m,
        _ => return Err(missing("Metadata")),
    };
    Ok((full_name, meta))
}

/// `POST tooling/sobjects/CustomField`.
fn create_field(state: &mut State, body: &Bytes) -> Result<String, SfError> {
    let (full_name, meta) = create_body(body)?;
    let Some((object_name, field_name)) = full_name.split_once('.') else {
        return Err(integrity(
            "FullName",
            format!(
                "FullName '{full_name}' must name the object and the field: <Object>.<Name>__c"
            ),
        ));
    };
    let object = state.schema_object(object_name).cloned().ok_or_else(|| {
        SfError::bad_request(
            ErrorItem::new(
                "INVALID_TYPE",
                format!("Cannot add a field to '{object_name}': no such object"),
            )
            .with_fields(vec!["FullName".into()]),
        )
    })?;
    if is_setup_object(&object.name) {
        return Err(integrity(
            "FullName",
            format!("{} does not take custom fields", object.name),
        ));
    }
    let name = custom_name(field_name, "field")?;
    if let Some(existing) = object.field(&name) {
        return Err(duplicate_name(
            "FullName",
            format!(
                "There is already a field named {} on {}",
                existing.name, object.name
            ),
        ));
    }
    let (field, master_detail) = field_from_metadata(state, &object, &name, &meta)?;
    let initial = field
        .default_value
        .clone()
        .unwrap_or(match field.field_type {
            FieldType::Boolean => Value::Bool(false),
            _ => Value::Null,
        });
    if let Some(table) = state.data.tables.get_mut(&object.name) {
        for rec in table.values_mut() {
            rec.insert(field.name.clone(), initial.clone());
        }
    }
    if let Some(o) = state.schema.iter_mut().find(|o| o.name == object.name) {
        // A detail record is owned through its master: the object loses OwnerId (it has no
        // records, see `relationship`).
        if master_detail {
            o.fields.retain(|f| f.name != "OwnerId");
        }
        o.fields.push(field);
    }
    Ok(state.tooling_id(field_key(&object.name, &name), "00N"))
}

/// A field from its Tooling API `Metadata`; `true` with it when it is a master-detail.
fn field_from_metadata(
    state: &State,
    object: &SObject,
    name: &str,
    meta: &Map<String, Value>,
) -> Result<(Field, bool), SfError> {
    let label = label_of(meta, "label")?;
    let kind = meta_str(meta, "type").ok_or_else(|| missing("type"))?;
    let keys = |mut f: Field| -> Result<Field, SfError> {
        f.external_id = meta_bool(meta, "externalId")?;
        f.unique = meta_bool(meta, "unique")?;
        Ok(f)
    };
    let mut master_detail = false;
    let mut field = match kind {
        "Checkbox" => {
            let on = match meta.get("defaultValue") {
                None | Some(Value::Null) => return Err(missing("defaultValue")),
                Some(_) => meta_bool(meta, "defaultValue")?,
            };
            Field::new(name, FieldType::Boolean).default(json!(on))
        }
        "Text" => {
            let length = meta_int(meta, "length")?.ok_or_else(|| missing("length"))?;
            in_range("length", length, TEXT_LENGTH, "the length of a Text field")?;
            keys(Field::new(
                name,
                FieldType::String {
                    length: length as usize,
                },
            ))?
        }
        "TextArea" => Field::new(name, FieldType::Textarea { length: 255 }),
        "LongTextArea" => {
            let length = meta_int(meta, "length")?.ok_or_else(|| missing("length"))?;
            in_range(
                "length",
                length,
                LONG_TEXT_LENGTH,
                "the length of a LongTextArea field",
            )?;
            meta_int(meta, "visibleLines")?.ok_or_else(|| missing("visibleLines"))?;
            Field::new(
                name,
                FieldType::Textarea {
                    length: length as usize,
                },
            )
        }
        "Url" => Field::new(name, FieldType::Url { length: 255 }),
        "Email" => keys(Field::new(name, FieldType::Email))?,
        "Phone" => Field::new(name, FieldType::Phone),
        "Picklist" => picklist(name, meta)?,
        "Number" | "Currency" | "Percent" => {
            let (default_precision, default_scale) = match kind {
                "Currency" => (18, 2),
                "Percent" => (3, 0),
                _ => (18, 0),
            };
            let precision = meta_int(meta, "precision")?.unwrap_or(default_precision);
            in_range("precision", precision, (1, 18), "precision")?;
            let scale = meta_int(meta, "scale")?.unwrap_or(default_scale);
            in_range("scale", scale, (0, precision), "scale")?;
            let (precision, scale) = (precision as u32, scale as u32);
            match kind {
                "Currency" => Field::new(name, FieldType::Currency { precision, scale }),
                "Percent" => Field::new(name, FieldType::Percent { precision, scale }),
                _ => keys(Field::new(name, FieldType::Double { precision, scale }))?,
            }
        }
        "Date" => Field::new(name, FieldType::Date),
        "DateTime" => Field::new(name, FieldType::Datetime),
        "Lookup" | "MasterDetail" => {
            master_detail = kind == "MasterDetail";
            relationship(state, object, name, meta, master_detail)?
        }
        other => {
            return Err(integrity(
                "type",
                format!(
                    "type: '{other}' is not a field type the sandbox simulates (Checkbox, Text, TextArea, LongTextArea, Url, Email, Phone, Picklist, Number, Currency, Percent, Date, DateTime, Lookup, MasterDetail)"
                ),
            ));
        }
    };
    if !master_detail && kind != "Checkbox" && meta_bool(meta, "required")? {
        field.required = true;
    }
    field.label = Some(label);
    // Granted to no one (docs/salesforce.md, "Metadata": "Field-level security").
    field.needs_grant = true;
    Ok((field, master_detail))
}

/// A picklist from `valueSet.valueSetDefinition.value[]`; the value labels are not kept (the
/// sandbox's picklist values are their own labels).
fn picklist(name: &str, meta: &Map<String, Value>) -> Result<Field, SfError> {
    let set = meta
        .get("valueSet")
        .and_then(Value::as_object)
        .ok_or_else(|| missing("valueSet"))?;
    if set.get("valueSetName").is_some_and(|v| !v.is_null()) {
        return Err(integrity(
            "valueSet",
            "valueSet.valueSetName: global value sets are not simulated; list the values in valueSetDefinition",
        ));
    }
    let restricted = meta_bool(set, "restricted")?;
    let entries = set
        .get("valueSetDefinition")
        .and_then(|d| d.get("value"))
        .and_then(Value::as_array)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing("valueSet.valueSetDefinition.value"))?;
    let mut values: Vec<String> = Vec::with_capacity(entries.len());
    let mut default = None;
    for e in entries {
        let e = e
            .as_object()
            .ok_or_else(|| integrity("valueSet", "each picklist value must be an object"))?;
        let value = meta_str(e, "fullName").ok_or_else(|| missing("fullName"))?;
        if value.chars().count() > 255 {
            return Err(integrity(
                "fullName",
                format!("fullName: at most 255 characters, not '{value}'"),
            ));
        }
        if values.iter().any(|v| v.eq_ignore_ascii_case(value)) {
            return Err(integrity(
                "fullName",
                format!("The picklist value '{value}' is listed twice"),
            ));
        }
        if meta_bool(e, "default")? {
            if default.is_some() {
                return Err(integrity(
                    "default",
                    "A picklist can have only one default value",
                ));
            }
            default = Some(value.to_string());
        }
        values.push(value.to_string());
    }
    let field = Field::new(name, FieldType::Picklist { values, restricted });
    Ok(match default {
        Some(d) => field.default(json!(d)),
        None => field,
    })
}

/// A lookup or master-detail: its parent, delete rule and the child relationship
/// `<relationshipName>__r` the parent's SOQL lists the children under.
fn relationship(
    state: &State,
    object: &SObject,
    name: &str,
    meta: &Map<String, Value>,
    master_detail: bool,
) -> Result<Field, SfError> {
    let target_name = meta_str(meta, "referenceTo").ok_or_else(|| missing("referenceTo"))?;
    let target = state
        .schema_object(target_name)
        .filter(|o| !is_setup_object(&o.name))
        .ok_or_else(|| {
            integrity(
                "referenceTo",
                format!("referenceTo: no object named '{target_name}' can be looked up"),
            )
        })?;
    if master_detail && (!target.createable || target.name == "User") {
        return Err(integrity(
            "referenceTo",
            format!("{} cannot be the master of a master-detail", target.name),
        ));
    }
    // Salesforce asks for a value on every existing record, which a new master-detail lacks.
    if master_detail && state.table(&object.name).next().is_some() {
        return Err(integrity(
            "type",
            format!(
                "{} has records: a master-detail can only be added to an object without records",
                object.name
            ),
        ));
    }
    let relationship_name =
        meta_str(meta, "relationshipName").ok_or_else(|| missing("relationshipName"))?;
    let stem = relationship_name
        .strip_suffix("__r")
        .unwrap_or(relationship_name);
    if !is_developer_name(stem) {
        return Err(integrity(
            "relationshipName",
            format!(
                "relationshipName: '{relationship_name}' must begin with a letter and use only letters, digits and single underscores"
            ),
        ));
    }
    let child = format!("{stem}__r");
    let taken = state.schema.iter().flat_map(|o| &o.fields).any(|f| {
        f.reference_to().iter().any(|t| t == &target.name)
            && f.child_relationship_name()
                .is_some_and(|c| c.eq_ignore_ascii_case(&child))
    });
    if taken {
        return Err(duplicate_name(
            "relationshipName",
            format!(
                "There is already a child relationship named {child} on {}",
                target.name
            ),
        ));
    }
    // Restrict (refuse deleting a parent that has children) is kept as SetNull: the connector
    // never deletes parents.
    let cascade = if master_detail {
        true
    } else {
        match meta_str(meta, "deleteConstraint").unwrap_or("SetNull") {
            "SetNull" | "Restrict" => false,
            "Cascade" => true,
            other => {
                return Err(integrity(
                    "deleteConstraint",
                    format!(
                        "deleteConstraint: bad value '{other}'; one of SetNull, Restrict, Cascade"
                    ),
                ));
            }
        }
    };
    let field = Field::new(
        name,
        FieldType::Reference {
            reference_to: vec![target.name.clone()],
            cascade_delete: cascade,
        },
    )
    .child_relationship(&child);
    Ok(if master_detail {
        field.required()
    } else {
        field
    })
}

/// `POST tooling/sobjects/CustomObject`.
fn create_object(state: &mut State, body: &Bytes) -> Result<String, SfError> {
    let (full_name, meta) = create_body(body)?;
    let name = custom_name(&full_name, "object")?;
    if let Some(existing) = state.schema_object(&name) {
        return Err(duplicate_name(
            "FullName",
            format!("There is already an object named {}", existing.name),
        ));
    }
    let label = label_of(&meta, "label")?;
    label_of(&meta, "pluralLabel")?;
    let name_field = meta
        .get("nameField")
        .and_then(Value::as_object)
        .ok_or_else(|| missing("nameField"))?;
    let name_label = label_of(name_field, "label")?;
    match meta_str(name_field, "type") {
        Some("Text") => {}
        Some("AutoNumber") => {
            return Err(integrity(
                "nameField",
                "nameField.type: AutoNumber name fields are not simulated; use Text",
            ));
        }
        Some(other) => {
            return Err(integrity(
                "nameField",
                format!("nameField.type: bad value '{other}'; Text or AutoNumber"),
            ));
        }
        None => return Err(missing("nameField.type")),
    }
    if let Some(status) = meta_str(&meta, "deploymentStatus")
        && !["Deployed", "InDevelopment"].contains(&status)
    {
        return Err(integrity(
            "deploymentStatus",
            format!("deploymentStatus: bad value '{status}'; Deployed or InDevelopment"),
        ));
    }
    if let Some(model) = meta_str(&meta, "sharingModel")
        && !SHARING_MODELS.contains(&model)
    {
        return Err(integrity(
            "sharingModel",
            format!(
                "sharingModel: bad value '{model}'; one of {}",
                SHARING_MODELS.join(", ")
            ),
        ));
    }
    let mut fields = system_fields(true);
    let mut name_f = Field::new("Name", s(80));
    name_f.label = Some(name_label);
    fields.push(name_f);
    fields.push(Field::new("IsDeleted", FieldType::Boolean).read_only());
    let key_prefix = state.free_key_prefix();
    state.schema.push(SObject {
        name: name.clone(),
        key_prefix,
        createable: true,
        fields,
        label: Some(label),
        from_tooling: true,
    });
    state
        .object_metadata
        .insert(name.to_ascii_lowercase(), Value::Object(meta));
    Ok(state.tooling_id(object_key(&name), "01I"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_names_end_in_c_and_carry_no_namespace() {
        assert_eq!(
            custom_name("Audit__c", "field").ok(),
            Some("Audit__c".into())
        );
        assert_eq!(
            custom_name("Audit__C", "field").ok(),
            Some("Audit__c".into())
        );
        assert!(custom_name("Audit", "field").is_err());
        assert!(custom_name("ns__Audit__c", "field").is_err());
        assert!(custom_name("_Audit__c", "field").is_err());
        assert!(custom_name("__c", "field").is_err());
        assert!(custom_name("é__c", "field").is_err());
    }

    #[test]
    fn stage_metadata_reads_back_as_the_same_stages() {
        let stages = vec![
            Stage {
                name: "Prospecting".into(),
                is_closed: false,
                is_won: false,
                is_active: true,
                default_probability: 10.0,
                label: None,
                forecast_category: None,
            },
            Stage {
                name: "Closed Won".into(),
                is_closed: true,
                is_won: true,
                is_active: true,
                default_probability: 100.0,
                label: None,
                forecast_category: Some("Closed".into()),
            },
        ];
        let meta = stage_metadata(&stages);
        assert_eq!(meta["standardValue"][0]["probability"], json!(10));
        assert_eq!(meta["standardValue"][0]["forecastCategory"], "Pipeline");
        let back = stages_from(meta.as_object().expect("object")).expect("valid");
        assert_eq!(
            (
                back[0].name.as_str(),
                back[0].default_probability,
                back[0].label.as_ref()
            ),
            ("Prospecting", 10.0, None)
        );
        assert_eq!(back[0].forecast_category(), "Pipeline");
        assert_eq!(back[1].name, "Closed Won");
        assert!(back[1].is_won && back[1].is_closed);
    }
}
