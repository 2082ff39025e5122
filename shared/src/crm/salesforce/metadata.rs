//! The connector's fields and objects in a Salesforce org, read with describe and created
//! through the Tooling API (docs/salesforce.md, "Metadata"): the custom fields on Opportunity
//! and Lead, the solution-link object with its master-detail to Opportunity, the catalog object,
//! the hold stage in the opportunity stages, and a permission set assigned to the integration
//! user that grants what a field created through the API grants no one.

use std::collections::HashMap;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};

use super::http::Target;
use super::mapping::{Record, soql_quote};
use super::{SalesforceConfig, SalesforceCrm, SalesforceSetupError};
use crate::crm::schema::{ColumnType, CrmSchema, Identity, ItemKind, ItemState, SchemaItem, Spec};
use crate::crm::{CrmError, CrmResult};

const SETTING: &str = "COSELL_SALESFORCE_FIELDS";

/// Lines a long text area shows in the page layout.
const VISIBLE_LINES: u32 = 10;

/// A field as describe lists it, for the integration user.
#[derive(Debug, Clone, Default)]
struct Described {
    kind: String,
    length: usize,
    updateable: bool,
    external_id: bool,
    required: bool,
    restricted: bool,
    reference_to: Vec<String>,
    values: Vec<String>,
}

/// An object as describe shows it to the integration user.
#[derive(Debug, Clone, Default)]
struct Object {
    createable: bool,
    updateable: bool,
    deletable: bool,
    /// By lower-cased name: Salesforce matches names case-insensitively.
    fields: HashMap<String, Described>,
}

impl Object {
    fn field(&self, name: &str) -> Option<&Described> {
        self.fields.get(&name.to_ascii_lowercase())
    }
}

/// A field the connector needs on an object.
#[derive(Debug, Clone)]
struct Wanted {
    name: String,
    column: ColumnType,
    /// The connector writes it.
    written: bool,
}

impl Wanted {
    fn new(name: &str, column: ColumnType) -> Wanted {
        Wanted {
            name: name.to_string(),
            column,
            written: true,
        }
    }

    fn text(name: &str, length: usize, min: usize) -> Wanted {
        Wanted::new(name, ColumnType::Text { length, min })
    }

    fn read_only(mut self) -> Wanted {
        self.written = false;
        self
    }
}

/// A name the product may create: the org's own custom name, not a standard one and not one
/// of a managed package (`ns__Name__c`), which only the package installs.
fn creatable(name: &str) -> bool {
    name.strip_suffix("__c")
        .is_some_and(|stem| !stem.is_empty() && !stem.contains("__"))
}

/// What the permission set already grants, by lower-cased field or object name.
#[derive(Debug, Default)]
struct Grants {
    set_id: Option<String>,
    fields: HashMap<String, (String, bool, bool)>,
    objects: HashMap<String, (String, [bool; 4])>,
    assigned: bool,
}

/// The schema side of the Salesforce adapter.
pub struct SalesforceSchema {
    crm: SalesforceCrm,
}

impl SalesforceSchema {
    pub fn new(config: SalesforceConfig) -> Result<SalesforceSchema, SalesforceSetupError> {
        Ok(SalesforceSchema {
            crm: SalesforceCrm::new(config)?,
        })
    }

    fn config(&self) -> &SalesforceConfig {
        &self.crm.config
    }

    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
        what: &str,
    ) -> CrmResult<Value> {
        Ok(self
            .crm
            .http
            .call(
                method,
                Target::Api {
                    segments,
                    query: &[],
                },
                body,
                what,
            )
            .await?
            .body)
    }

    /// The object as the integration user sees it, or `None` when the org has none.
    async fn describe(&self, object: &str) -> CrmResult<Option<Object>> {
        let body = match self
            .call(
                Method::GET,
                &["sobjects", object, "describe"],
                None,
                &format!("object {object}"),
            )
            .await
        {
            Ok(b) => b,
            Err(CrmError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let flag = |v: &Value, k: &str| v.get(k).and_then(Value::as_bool) == Some(true);
        let mut fields = HashMap::new();
        for f in body
            .get("fields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(name) = f.get("name").and_then(Value::as_str) else {
                continue;
            };
            let strings = |k: &str| -> Vec<String> {
                f.get(k)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            let values = f
                .get("picklistValues")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|v| v.get("active").and_then(Value::as_bool) != Some(false))
                .filter_map(|v| v.get("value").and_then(Value::as_str).map(str::to_string))
                .collect();
            fields.insert(
                name.to_ascii_lowercase(),
                Described {
                    kind: f
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    length: f
                        .get("length")
                        .and_then(Value::as_u64)
                        .and_then(|l| usize::try_from(l).ok())
                        .unwrap_or(0),
                    updateable: flag(f, "updateable"),
                    external_id: flag(f, "externalId"),
                    required: f.get("nillable").and_then(Value::as_bool) == Some(false)
                        && f.get("type").and_then(Value::as_str) != Some("boolean")
                        && !flag(f, "defaultedOnCreate"),
                    restricted: flag(f, "restrictedPicklist"),
                    reference_to: strings("referenceTo"),
                    values,
                },
            );
        }
        Ok(Some(Object {
            createable: flag(&body, "createable"),
            updateable: flag(&body, "updateable"),
            deletable: flag(&body, "deletable"),
            fields,
        }))
    }

    async fn permission_set_id(&self) -> CrmResult<Option<String>> {
        let rows = self
            .crm
            .query(&format!(
                "SELECT Id FROM PermissionSet WHERE Name = {}",
                soql_quote(&self.config().permission_set)
            ))
            .await?;
        Ok(rows.first().and_then(id_of))
    }

    async fn grants(&self) -> CrmResult<Grants> {
        let Some(set_id) = self.permission_set_id().await? else {
            return Ok(Grants::default());
        };
        let set = soql_quote(&set_id);
        let mut grants = Grants::default();
        let flag = |r: &Record, k: &str| r.get(k).and_then(Value::as_bool) == Some(true);
        for r in self
            .crm
            .query(&format!(
                "SELECT Id, Field, PermissionsRead, PermissionsEdit FROM FieldPermissions WHERE ParentId = {set}"
            ))
            .await?
        {
            if let (Some(id), Some(field)) = (id_of(&r), r.get("Field").and_then(Value::as_str)) {
                grants.fields.insert(
                    field.to_ascii_lowercase(),
                    (id, flag(&r, "PermissionsRead"), flag(&r, "PermissionsEdit")),
                );
            }
        }
        for r in self
            .crm
            .query(&format!(
                "SELECT Id, SobjectType, PermissionsRead, PermissionsCreate, PermissionsEdit, PermissionsDelete FROM ObjectPermissions WHERE ParentId = {set}"
            ))
            .await?
        {
            if let (Some(id), Some(object)) =
                (id_of(&r), r.get("SobjectType").and_then(Value::as_str))
            {
                grants.objects.insert(
                    object.to_ascii_lowercase(),
                    (
                        id,
                        [
                            flag(&r, "PermissionsRead"),
                            flag(&r, "PermissionsCreate"),
                            flag(&r, "PermissionsEdit"),
                            flag(&r, "PermissionsDelete"),
                        ],
                    ),
                );
            }
        }
        let user = self.crm.http.user_id().await?;
        grants.assigned = !self
            .crm
            .query(&format!(
                "SELECT Id FROM PermissionSetAssignment WHERE PermissionSetId = {set} AND AssigneeId = {}",
                soql_quote(&user)
            ))
            .await?
            .is_empty();
        grants.set_id = Some(set_id);
        Ok(grants)
    }

    /// What is wrong with `found` for a field the connector uses as `wanted`, if anything.
    fn fit(found: &Described, wanted: &ColumnType) -> Option<String> {
        let kind = found.kind.as_str();
        let long_enough = |min: usize| {
            (found.length > 0 && found.length < min).then(|| {
                format!(
                    "holds only {} characters; the connector needs at least {min}",
                    found.length
                )
            })
        };
        let texty = matches!(kind, "string" | "textarea" | "url" | "email" | "phone");
        match wanted {
            ColumnType::YesNo => (kind != "boolean").then(|| format!("is {kind}, not a checkbox")),
            ColumnType::Text { min, .. } | ColumnType::LongText { min, .. } => {
                if texty {
                    long_enough(*min)
                } else {
                    Some(format!("is {kind}, not text"))
                }
            }
            ColumnType::ExternalId { length } => {
                if kind != "string" {
                    Some(format!("is {kind}, not text"))
                } else if !found.external_id {
                    Some(
                        "is not an External ID, which the connector's upserts need (tick External ID and Unique)"
                            .into(),
                    )
                } else {
                    long_enough(*length)
                }
            }
            ColumnType::Url => (!texty).then(|| format!("is {kind}, not a URL or text")),
            ColumnType::Choice { values, .. } => match kind {
                "picklist" if found.restricted => {
                    let missing: Vec<&str> = values
                        .iter()
                        .filter(|v| !found.values.iter().any(|f| f.eq_ignore_ascii_case(v)))
                        .map(String::as_str)
                        .collect();
                    (!missing.is_empty())
                        .then(|| format!("lacks the values {}", missing.join(", ")))
                }
                "picklist" | "string" | "textarea" => None,
                _ => Some(format!("is {kind}, not a picklist")),
            },
            ColumnType::Lookup { target, .. } => {
                if kind != "reference" {
                    Some(format!("is {kind}, not a lookup"))
                } else if !found
                    .reference_to
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(target))
                {
                    Some(format!("does not look up {target}"))
                } else {
                    None
                }
            }
            ColumnType::Any => None,
        }
    }

    /// The field items of one object, and the access each custom field needs.
    fn fields(
        &self,
        items: &mut Vec<SchemaItem>,
        access: &mut Vec<SchemaItem>,
        object: &str,
        found: Option<&Object>,
        wanted: &[Wanted],
        grants: &Grants,
    ) {
        for w in wanted {
            let full = format!("{object}.{}", w.name);
            let kind = if matches!(w.column, ColumnType::Lookup { .. }) {
                ItemKind::Relationship
            } else {
                ItemKind::Column
            };
            let mut item =
                SchemaItem::new(kind, full.as_str(), w.column.describe()).spec(Spec::Column {
                    table: object.to_string(),
                    name: w.name.clone(),
                    column: w.column.clone(),
                });
            let existing = found.and_then(|o| o.field(&w.name));
            let custom = creatable(&w.name);
            item.state = match existing {
                Some(f) => match Self::fit(f, &w.column) {
                    Some(problem) => ItemState::Unusable(format!(
                        "{problem} (change the field, or name another in {SETTING})"
                    )),
                    // A custom field the permission set can make editable is fixed by its
                    // access item below.
                    None if w.written && !f.updateable && !custom => ItemState::Unusable(
                        "is read-only for the integration user (grant Edit in its profile)".into(),
                    ),
                    None => ItemState::InPlace,
                },
                None if custom => ItemState::Missing,
                None => ItemState::Manual(format!(
                    "the org has no field {full} the integration user can read: check the name in {SETTING}, or its field-level security"
                )),
            };
            let usable = matches!(item.state, ItemState::InPlace | ItemState::Missing);
            let required = matches!(w.column, ColumnType::Lookup { required: true, .. })
                || existing.is_some_and(|f| f.required);
            items.push(item);
            // Salesforce gives no FieldPermissions row to a required field: whoever can read
            // the object can read it.
            if !custom || !usable || required {
                continue;
            }
            let visible = existing.is_some_and(|f| !w.written || f.updateable);
            let granted = grants.fields.get(&full.to_ascii_lowercase());
            let state = if visible || granted.is_some_and(|(_, r, e)| *r && (*e || !w.written)) {
                ItemState::InPlace
            } else {
                ItemState::Missing
            };
            access.push(
                SchemaItem::new(
                    ItemKind::FieldPermission,
                    full.as_str(),
                    if w.written { "read and edit" } else { "read" },
                )
                .state(state)
                .spec(Spec::FieldPermission {
                    field: full,
                    edit: w.written,
                }),
            );
        }
    }

    /// The access item of an object the connector reads and writes (and deletes in, `delete`).
    fn object_access(
        object: &str,
        found: Option<&Object>,
        delete: bool,
        grants: &Grants,
    ) -> SchemaItem {
        let effective =
            found.is_some_and(|o| o.createable && o.updateable && (!delete || o.deletable));
        let granted = grants
            .objects
            .get(&object.to_ascii_lowercase())
            .is_some_and(|(_, [r, c, e, d])| *r && *c && *e && (*d || !delete));
        SchemaItem::new(
            ItemKind::ObjectPermission,
            object,
            if delete {
                "read, create, edit, delete"
            } else {
                "read, create, edit"
            },
        )
        .state(if effective || granted {
            ItemState::InPlace
        } else {
            ItemState::Missing
        })
        .spec(Spec::ObjectPermission {
            object: object.to_string(),
            delete,
        })
    }

    fn opportunity_fields(&self) -> Vec<Wanted> {
        let c = self.config();
        let f = &c.fields;
        let mut w = vec![
            Wanted::new(&f.sync_with_partner_center, ColumnType::YesNo),
            Wanted::new(&f.referral_id, ColumnType::ExternalId { length: 100 }),
            Wanted::new(&f.referral_link, ColumnType::Url),
            Wanted::new(
                &f.microsoft_help,
                ColumnType::Choice {
                    values: c.microsoft_help.iter().map(|(_, v)| v.clone()).collect(),
                    restricted: false,
                },
            ),
            Wanted::new(
                &f.visibility,
                ColumnType::Choice {
                    values: vec![c.visibility.private.clone(), c.visibility.visible.clone()],
                    restricted: true,
                },
            ),
            Wanted::text(&f.microsoft_crm_id, 100, 20),
            Wanted::text(&f.microsoft_status, 100, 20),
            Wanted::new(
                &f.audit,
                ColumnType::LongText {
                    length: 100_000,
                    min: 2000,
                },
            ),
        ];
        for name in [&f.solution_area, &f.solution_play, &f.partner_role]
            .into_iter()
            .flatten()
        {
            w.push(Wanted::text(name, 255, 50));
        }
        if let Some(name) = &f.marketplace_intent {
            w.push(
                Wanted::new(
                    name,
                    ColumnType::Choice {
                        values: vec!["Yes".into(), "No".into(), "Have not decided".into()],
                        restricted: true,
                    },
                )
                .read_only(),
            );
        }
        w.push(Wanted::new(&f.deal_value, ColumnType::Any));
        if c.multi_currency {
            w.push(Wanted::new(&f.currency, ColumnType::Any));
        }
        w
    }

    fn lead_fields(&self) -> Vec<Wanted> {
        let f = &self.config().fields;
        let mut w = vec![
            Wanted::new(&f.lead_referral_id, ColumnType::ExternalId { length: 100 }),
            Wanted::new(&f.lead_referral_link, ColumnType::Url),
            Wanted::new(
                &f.lead_audit,
                ColumnType::LongText {
                    length: 100_000,
                    min: 2000,
                },
            ),
        ];
        if let Some(topic) = &f.lead_topic {
            w.push(Wanted::text(topic, 255, 50));
        }
        w
    }

    /// A custom object the connector keeps rows in: its item, then its fields.
    #[allow(clippy::too_many_arguments)]
    async fn own_object(
        &self,
        items: &mut Vec<SchemaItem>,
        access: &mut Vec<SchemaItem>,
        object: &str,
        wanted: &[Wanted],
        delete: bool,
        grants: &Grants,
    ) -> CrmResult<()> {
        let found = self.describe(object).await?;
        let state = match (&found, creatable(object)) {
            (Some(_), _) => ItemState::InPlace,
            (None, true) => ItemState::Missing,
            (None, false) => ItemState::Manual(format!(
                "the org has no object {object} the integration user can read; name a custom one (ending in __c) in {SETTING}"
            )),
        };
        let manual = matches!(state, ItemState::Manual(_));
        items.push(
            SchemaItem::new(ItemKind::Table, object, "custom object, name field Name")
                .state(state)
                .spec(Spec::Table {
                    set: object.to_string(),
                    logical: object.to_string(),
                    primary_name: "Name".into(),
                }),
        );
        if manual {
            return Ok(());
        }
        // A new object comes with its Name field.
        let wanted: Vec<Wanted> = wanted
            .iter()
            .filter(|w| found.is_some() || !w.name.eq_ignore_ascii_case("Name"))
            .cloned()
            .collect();
        self.fields(items, access, object, found.as_ref(), &wanted, grants);
        access.push(Self::object_access(object, found.as_ref(), delete, grants));
        Ok(())
    }

    async fn stage_set(&self) -> CrmResult<(String, Value)> {
        let body = self
            .crm
            .http
            .call(
                Method::GET,
                Target::Api {
                    segments: &["tooling", "query"],
                    query: &[(
                        "q",
                        "SELECT Id, Metadata FROM StandardValueSet WHERE MasterLabel = 'OpportunityStage'",
                    )],
                },
                None,
                "the opportunity stage value set",
            )
            .await?
            .body;
        let record = body
            .get("records")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .cloned()
            .unwrap_or_default();
        match (
            record.get("Id").and_then(Value::as_str),
            record.get("Metadata"),
        ) {
            (Some(id), Some(meta)) => Ok((id.to_string(), meta.clone())),
            _ => Err(CrmError::NotFound {
                what: "the OpportunityStage standard value set".into(),
            }),
        }
    }

    async fn tooling_create(&self, kind: &str, full_name: &str, metadata: Value) -> CrmResult<()> {
        let body = json!({"FullName": full_name, "Metadata": metadata});
        match self
            .call(
                Method::POST,
                &["tooling", "sobjects", kind],
                Some(&body),
                full_name,
            )
            .await
        {
            Ok(_) => Ok(()),
            // The field exists but the integration user cannot see it yet (a field created
            // through the API is granted to no one): the permission set grants it next.
            Err(CrmError::Rejected { message, .. })
                if message.contains("DUPLICATE_DEVELOPER_NAME") =>
            {
                tracing::info!(
                    full_name,
                    "exists already, hidden from the integration user"
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn require_set(&self) -> CrmResult<String> {
        self.permission_set_id()
            .await?
            .ok_or_else(|| CrmError::Rejected {
                message: format!(
                    "the permission set {} does not exist",
                    self.config().permission_set
                ),
                field: None,
            })
    }
}

fn id_of(r: &Record) -> Option<String> {
    r.get("Id").and_then(Value::as_str).map(str::to_string)
}

/// A person's label for an API name: `Sync_with_Partner_Center__c` → `Sync with Partner
/// Center`. Salesforce labels hold 40 characters.
fn label(name: &str) -> String {
    let stem = name.strip_suffix("__c").unwrap_or(name).replace('_', " ");
    stem.chars().take(40).collect()
}

/// The Tooling API metadata of a field.
fn field_metadata(object: &str, name: &str, column: &ColumnType) -> Value {
    let mut m = json!({"label": label(name)});
    let specific = match column {
        ColumnType::YesNo => json!({"type": "Checkbox", "defaultValue": "false"}),
        ColumnType::Text { length, .. } => json!({"type": "Text", "length": length}),
        ColumnType::ExternalId { length } => json!({
            "type": "Text",
            "length": length,
            "externalId": true,
            "unique": true,
            "caseSensitive": false,
        }),
        ColumnType::Url => json!({"type": "Url"}),
        ColumnType::LongText { length, .. } => json!({
            "type": "LongTextArea",
            "length": length,
            "visibleLines": VISIBLE_LINES,
        }),
        ColumnType::Choice { values, restricted } => json!({
            "type": "Picklist",
            "valueSet": {
                "restricted": restricted,
                "valueSetDefinition": {
                    "sorted": false,
                    "value": values
                        .iter()
                        .map(|v| json!({"fullName": v, "label": v, "default": false}))
                        .collect::<Vec<_>>(),
                },
            },
        }),
        ColumnType::Lookup { target, required } => {
            // `Microsoft_Solution__c` → `Microsoft_Solutions`: the relationship Opportunity
            // lists its children under.
            let relationship = format!("{}s", object.strip_suffix("__c").unwrap_or(object));
            if *required {
                // A master-detail: required, and the links go when their opportunity does.
                json!({
                    "type": "MasterDetail",
                    "referenceTo": target,
                    "relationshipName": relationship,
                    "relationshipLabel": label(&relationship),
                })
            } else {
                json!({
                    "type": "Lookup",
                    "referenceTo": target,
                    "relationshipName": relationship,
                    "relationshipLabel": label(&relationship),
                    "deleteConstraint": "SetNull",
                })
            }
        }
        ColumnType::Any => json!({}),
    };
    if let (Some(m), Some(s)) = (m.as_object_mut(), specific.as_object()) {
        m.extend(s.clone());
    }
    m
}

#[async_trait]
impl CrmSchema for SalesforceSchema {
    async fn inspect(&self) -> CrmResult<Vec<SchemaItem>> {
        let c = self.config();
        let f = &c.fields;
        let grants = self.grants().await?;
        let mut items = Vec::new();
        let mut access = Vec::new();

        let opportunity =
            self.describe("Opportunity")
                .await?
                .ok_or_else(|| CrmError::NotFound {
                    what: "the Opportunity object".into(),
                })?;
        self.fields(
            &mut items,
            &mut access,
            "Opportunity",
            Some(&opportunity),
            &self.opportunity_fields(),
            &grants,
        );
        let lead = self.describe("Lead").await?;
        self.fields(
            &mut items,
            &mut access,
            "Lead",
            lead.as_ref(),
            &self.lead_fields(),
            &grants,
        );
        let account = self.describe("Account").await?;
        self.fields(
            &mut items,
            &mut access,
            "Account",
            account.as_ref(),
            &[Wanted::text(&f.account_country, 0, 2)],
            &grants,
        );

        let mut link = vec![
            Wanted::text(&f.solution_id, 100, 36),
            Wanted::new(
                &f.solution_opportunity,
                ColumnType::Lookup {
                    target: "Opportunity".into(),
                    required: true,
                },
            ),
        ];
        if let Some(name) = &f.solution_name {
            link.push(Wanted::text(name, 80, 36));
        }
        self.own_object(
            &mut items,
            &mut access,
            &f.solution_object,
            &link,
            true,
            &grants,
        )
        .await?;
        let mut catalog = vec![
            Wanted::new(
                &f.catalog_solution_id,
                ColumnType::ExternalId { length: 100 },
            ),
            Wanted::text(&f.catalog_name, 80, 40),
        ];
        if let Some(d) = &f.catalog_description {
            catalog.push(Wanted::text(d, 255, 100));
        }
        self.own_object(
            &mut items,
            &mut access,
            &f.catalog_object,
            &catalog,
            false,
            &grants,
        )
        .await?;

        let stages = opportunity
            .field("StageName")
            .map(|s| s.values.clone())
            .unwrap_or_default();
        let has = |s: &str| stages.iter().any(|v| v.eq_ignore_ascii_case(s));
        for (stage, what) in [
            (&c.stages.active, "active"),
            (&c.stages.on_hold, "on hold"),
            (&c.stages.won, "won"),
            (&c.stages.lost, "lost"),
        ] {
            let state = if has(stage) {
                ItemState::InPlace
            } else if stage == &c.stages.on_hold {
                ItemState::Missing
            } else {
                ItemState::Manual(format!(
                    "the org has no active stage {stage}; name the {what} stage in COSELL_SALESFORCE_STAGES"
                ))
            };
            items.push(
                SchemaItem::new(
                    ItemKind::Stage,
                    format!("Opportunity.StageName {stage}"),
                    what,
                )
                .state(state)
                .spec(Spec::Stage {
                    name: stage.clone(),
                }),
            );
        }

        let needs_grants = access.iter().any(SchemaItem::is_missing);
        let set = &c.permission_set;
        items.push(
            SchemaItem::new(
                ItemKind::PermissionSet,
                set.as_str(),
                "grants the fields below",
            )
            .state(if grants.set_id.is_some() || !needs_grants {
                ItemState::InPlace
            } else {
                ItemState::Missing
            })
            .spec(Spec::PermissionSet),
        );
        // Field access depends on object access in Salesforce, so objects come first.
        access.sort_by_key(|i| i.kind != ItemKind::ObjectPermission);
        items.extend(access);
        items.push(
            SchemaItem::new(
                ItemKind::Assignment,
                set.as_str(),
                "to the integration user",
            )
            .state(if grants.assigned || !needs_grants {
                ItemState::InPlace
            } else {
                ItemState::Missing
            })
            .spec(Spec::Assignment),
        );
        Ok(items)
    }

    async fn create(&self, item: &SchemaItem) -> CrmResult<()> {
        let c = self.config();
        match &item.spec {
            Spec::Table { set: object, .. } => {
                let singular = label(object);
                let metadata = json!({
                    "label": singular,
                    "pluralLabel": format!("{singular}s"),
                    "nameField": {"label": "Name", "type": "Text"},
                    "deploymentStatus": "Deployed",
                    "sharingModel": "ReadWrite",
                });
                self.tooling_create("CustomObject", object, metadata).await
            }
            Spec::Column {
                table,
                name,
                column,
            } => {
                self.tooling_create(
                    "CustomField",
                    &format!("{table}.{name}"),
                    field_metadata(table, name, column),
                )
                .await
            }
            Spec::Stage { name } => {
                let (id, mut meta) = self.stage_set().await?;
                let entry = json!({
                    "label": name,
                    "valueName": name,
                    "closed": false,
                    "won": false,
                    "probability": 10,
                    "forecastCategory": "Pipeline",
                    "default": false,
                });
                match meta.get_mut("standardValue").and_then(Value::as_array_mut) {
                    Some(values) => values.push(entry),
                    None => meta["standardValue"] = json!([entry]),
                }
                self.call(
                    Method::PATCH,
                    &["tooling", "sobjects", "StandardValueSet", &id],
                    Some(&json!({"Metadata": meta})),
                    "the opportunity stage value set",
                )
                .await
                .map(|_| ())
            }
            Spec::PermissionSet => {
                let body = json!({
                    "Name": c.permission_set,
                    "Label": label(&c.permission_set),
                    "Description": "Lets the co-sell connector's integration user read and write the connector's fields and objects.",
                });
                self.call(
                    Method::POST,
                    &["sobjects", "PermissionSet"],
                    Some(&body),
                    "permission set",
                )
                .await
                .map(|_| ())
            }
            Spec::ObjectPermission { object, delete } => {
                let set = self.require_set().await?;
                let grant = json!({
                    "PermissionsRead": true,
                    "PermissionsCreate": true,
                    "PermissionsEdit": true,
                    "PermissionsDelete": delete,
                });
                let existing = self
                    .crm
                    .query(&format!(
                        "SELECT Id FROM ObjectPermissions WHERE ParentId = {} AND SobjectType = {}",
                        soql_quote(&set),
                        soql_quote(object)
                    ))
                    .await?;
                match existing.first().and_then(id_of) {
                    Some(id) => self
                        .call(
                            Method::PATCH,
                            &["sobjects", "ObjectPermissions", &id],
                            Some(&grant),
                            object,
                        )
                        .await
                        .map(|_| ()),
                    None => {
                        let mut body = grant;
                        body["ParentId"] = json!(set);
                        body["SobjectType"] = json!(object);
                        self.call(
                            Method::POST,
                            &["sobjects", "ObjectPermissions"],
                            Some(&body),
                            object,
                        )
                        .await
                        .map(|_| ())
                    }
                }
            }
            Spec::FieldPermission { field, edit } => {
                let set = self.require_set().await?;
                let grant = json!({"PermissionsRead": true, "PermissionsEdit": edit});
                let existing = self
                    .crm
                    .query(&format!(
                        "SELECT Id FROM FieldPermissions WHERE ParentId = {} AND Field = {}",
                        soql_quote(&set),
                        soql_quote(field)
                    ))
                    .await?;
                match existing.first().and_then(id_of) {
                    Some(id) => self
                        .call(
                            Method::PATCH,
                            &["sobjects", "FieldPermissions", &id],
                            Some(&grant),
                            field,
                        )
                        .await
                        .map(|_| ()),
                    None => {
                        let object = field.split_once('.').map_or(field.as_str(), |(o, _)| o);
                        let mut body = grant;
                        body["ParentId"] = json!(set);
                        body["SobjectType"] = json!(object);
                        body["Field"] = json!(field);
                        self.call(
                            Method::POST,
                            &["sobjects", "FieldPermissions"],
                            Some(&body),
                            field,
                        )
                        .await
                        .map(|_| ())
                    }
                }
            }
            Spec::Assignment => {
                let set = self.require_set().await?;
                let user = self.crm.http.user_id().await?;
                let body = json!({"AssigneeId": user, "PermissionSetId": set});
                match self
                    .call(
                        Method::POST,
                        &["sobjects", "PermissionSetAssignment"],
                        Some(&body),
                        "permission set assignment",
                    )
                    .await
                {
                    // Assigned between the plan and now: what setup wanted.
                    Err(CrmError::Rejected { message, .. })
                        if message.contains("DUPLICATE_VALUE") =>
                    {
                        Ok(())
                    }
                    other => other.map(|_| ()),
                }
            }
            other => Err(CrmError::Rejected {
                message: format!("Salesforce has no {other:?} to create"),
                field: None,
            }),
        }
    }

    async fn finish(&self, _created: &[SchemaItem]) -> CrmResult<()> {
        // Tooling API changes take effect as they are made; nothing to publish.
        Ok(())
    }

    async fn identity(&self) -> CrmResult<Identity> {
        let user_id = self.crm.http.user_id().await?;
        let limits = self.call(Method::GET, &["limits"], None, "limits").await?;
        let daily = limits.get("DailyApiRequests").and_then(|d| {
            Some((
                d.get("Remaining").and_then(Value::as_u64)?,
                d.get("Max").and_then(Value::as_u64)?,
            ))
        });
        Ok(Identity {
            user_id,
            organization: None,
            daily_api_requests: daily,
        })
    }

    async fn currencies(&self) -> CrmResult<Vec<String>> {
        let c = self.config();
        if !c.multi_currency {
            return Ok(vec![c.corporate_currency.to_ascii_uppercase()]);
        }
        // In a multi-currency org the currency field is a picklist of the active currencies.
        let opportunity = self.describe("Opportunity").await?;
        let values = opportunity
            .as_ref()
            .and_then(|o| o.field(&c.fields.currency))
            .map(|f| f.values.clone())
            .unwrap_or_default();
        Ok(values.iter().map(|v| v.to_ascii_uppercase()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_orgs_own_custom_names_are_created() {
        assert!(creatable("Audit__c"));
        assert!(creatable("Microsoft_Solution__c"));
        assert!(!creatable("Amount"));
        assert!(!creatable("ns__Audit__c"));
        assert!(!creatable("__c"));
    }

    #[test]
    fn field_bodies_carry_the_documented_tooling_types() {
        let e = field_metadata(
            "Opportunity",
            "Referral_Identifier__c",
            &ColumnType::ExternalId { length: 100 },
        );
        assert_eq!(e["type"], "Text");
        assert_eq!(e["externalId"], true);
        assert_eq!(e["unique"], true);
        assert_eq!(e["label"], "Referral Identifier");
        let md = field_metadata(
            "Microsoft_Solution__c",
            "Opportunity__c",
            &ColumnType::Lookup {
                target: "Opportunity".into(),
                required: true,
            },
        );
        assert_eq!(md["type"], "MasterDetail");
        assert_eq!(md["relationshipName"], "Microsoft_Solutions");
        let p = field_metadata(
            "Opportunity",
            "Referral_Visibility__c",
            &ColumnType::Choice {
                values: vec!["Private".into(), "Visible".into()],
                restricted: true,
            },
        );
        assert_eq!(p["valueSet"]["restricted"], true);
        assert_eq!(
            p["valueSet"]["valueSetDefinition"]["value"][1]["fullName"],
            "Visible"
        );
        let long = field_metadata(
            "Lead",
            "Audit__c",
            &ColumnType::LongText {
                length: 100_000,
                min: 2000,
            },
        );
        assert_eq!(long["type"], "LongTextArea");
        assert_eq!(long["visibleLines"], VISIBLE_LINES);
    }

    #[test]
    fn an_existing_field_of_the_wrong_shape_is_named_unusable() {
        let field = |kind: &str| Described {
            kind: kind.into(),
            length: 255,
            updateable: true,
            ..Described::default()
        };
        assert!(SalesforceSchema::fit(&field("boolean"), &ColumnType::YesNo).is_none());
        assert!(
            SalesforceSchema::fit(&field("double"), &ColumnType::YesNo)
                .is_some_and(|p| p.contains("double"))
        );
        assert!(
            SalesforceSchema::fit(&field("string"), &ColumnType::ExternalId { length: 100 })
                .is_some_and(|p| p.contains("External ID"))
        );
        let mut visibility = field("picklist");
        visibility.restricted = true;
        visibility.values = vec!["Private".into()];
        let want = ColumnType::Choice {
            values: vec!["Private".into(), "Visible".into()],
            restricted: true,
        };
        assert!(SalesforceSchema::fit(&visibility, &want).is_some_and(|p| p.contains("Visible")));
        let mut short = field("string");
        short.length = 10;
        assert!(
            SalesforceSchema::fit(
                &short,
                &ColumnType::Text {
                    length: 100,
                    min: 20
                }
            )
            .is_some_and(|p| p.contains("10"))
        );
    }
}
