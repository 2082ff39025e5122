//! The org's schema as data: objects, their fields with type and flags, and the opportunity
//! stages. Real orgs are heavily customised, so the control API can add fields and change flags,
//! and every rule the simulator enforces reads this data rather than hard-coded names.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Config;

/// A field's data type, named as in describe results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum FieldType {
    /// The record id (read-only).
    Id,
    String {
        length: usize,
    },
    Textarea {
        length: usize,
    },
    Url {
        #[serde(default = "default_url_length")]
        length: usize,
    },
    Email,
    Phone,
    /// A picklist; a restricted one refuses values not in the list.
    Picklist {
        values: Vec<String>,
        #[serde(default)]
        restricted: bool,
    },
    /// `Opportunity.StageName`: a restricted picklist whose values are the configured stages.
    StageName,
    /// A checkbox (`boolean` in describe results); never null.
    Boolean,
    Currency {
        #[serde(default = "default_precision")]
        precision: u32,
        #[serde(default = "default_scale")]
        scale: u32,
    },
    Double {
        #[serde(default = "default_precision")]
        precision: u32,
        #[serde(default)]
        scale: u32,
    },
    Percent {
        #[serde(default = "default_percent_precision")]
        precision: u32,
        #[serde(default)]
        scale: u32,
    },
    Date,
    Datetime,
    /// A lookup to a record of one of `referenceTo`.
    Reference {
        #[serde(rename = "referenceTo")]
        reference_to: Vec<String>,
        /// Deleting the referenced record deletes this one (as contact roles go with their
        /// opportunity); otherwise the lookup is cleared.
        #[serde(default, rename = "cascadeDelete")]
        cascade_delete: bool,
    },
}

fn default_url_length() -> usize {
    255
}
fn default_precision() -> u32 {
    18
}
fn default_scale() -> u32 {
    2
}
fn default_percent_precision() -> u32 {
    3
}

impl FieldType {
    /// The type name describe results use.
    pub fn describe_name(&self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::String { .. } => "string",
            FieldType::Textarea { .. } => "textarea",
            FieldType::Url { .. } => "url",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Picklist { .. } | FieldType::StageName => "picklist",
            FieldType::Boolean => "boolean",
            FieldType::Currency { .. } => "currency",
            FieldType::Double { .. } => "double",
            FieldType::Percent { .. } => "percent",
            FieldType::Date => "date",
            FieldType::Datetime => "datetime",
            FieldType::Reference { .. } => "reference",
        }
    }

    /// Largest text length; `None` for non-text types.
    pub fn max_length(&self) -> Option<usize> {
        match self {
            FieldType::String { length }
            | FieldType::Textarea { length }
            | FieldType::Url { length } => Some(*length),
            FieldType::Email => Some(80),
            FieldType::Phone => Some(40),
            FieldType::Picklist { .. } | FieldType::StageName => Some(255),
            FieldType::Id | FieldType::Reference { .. } => Some(18),
            _ => None,
        }
    }

    /// How SOQL compares and what literal it takes.
    pub fn kind(&self) -> ValueKind {
        match self {
            FieldType::Id | FieldType::Reference { .. } => ValueKind::Id,
            FieldType::String { .. }
            | FieldType::Textarea { .. }
            | FieldType::Url { .. }
            | FieldType::Email
            | FieldType::Phone
            | FieldType::Picklist { .. }
            | FieldType::StageName => ValueKind::Text,
            FieldType::Boolean => ValueKind::Boolean,
            FieldType::Currency { .. } | FieldType::Double { .. } | FieldType::Percent { .. } => {
                ValueKind::Number
            }
            FieldType::Date => ValueKind::Date,
            FieldType::Datetime => ValueKind::Datetime,
        }
    }
}

/// The families of values, for validation and SOQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Id,
    Text,
    Boolean,
    Number,
    Date,
    Datetime,
}

/// One field of an object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Field {
    pub name: String,
    #[serde(flatten)]
    pub field_type: FieldType,
    /// Must have a value on create and cannot be cleared.
    #[serde(default)]
    pub required: bool,
    /// Usable as the key of an upsert (`PATCH /sobjects/X/{field}/{value}`).
    #[serde(default)]
    pub external_id: bool,
    /// No two records share a value (compared case-insensitively).
    #[serde(default)]
    pub unique: bool,
    /// Maintained by Salesforce; a client that writes it gets `INVALID_FIELD_FOR_INSERT_UPDATE`.
    #[serde(default)]
    pub read_only: bool,
    /// The value a create without this field gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<Value>,
    /// For a lookup: the name the parent's SOQL uses for the records pointing at it, in a
    /// parent-to-child subquery (`OpportunityContactRoles`). Salesforce defines it on the
    /// lookup; without one the lookup cannot be queried from the parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_relationship_name: Option<String>,
    /// What describe calls it; derived from the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Field-level security applies: API users see the field only through a permission set's
    /// `FieldPermissions` assigned to them (docs/salesforce.md, "Metadata": a field created
    /// through the API is granted to no one). Fields the org starts with are as if granted.
    /// A required field is visible to everyone regardless, as Salesforce gives it no
    /// `FieldPermissions`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub needs_grant: bool,
    /// In one API user's view of the schema: readable but not editable for them (a grant with
    /// `PermissionsRead` only). Never stored in the schema itself.
    #[serde(skip)]
    pub edit_denied: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Field {
    pub(super) fn new(name: &str, field_type: FieldType) -> Field {
        Field {
            name: name.to_string(),
            field_type,
            required: false,
            external_id: false,
            unique: false,
            read_only: false,
            default_value: None,
            child_relationship_name: None,
            label: None,
            needs_grant: false,
            edit_denied: false,
        }
    }

    pub(super) fn required(mut self) -> Field {
        self.required = true;
        self
    }

    pub(super) fn read_only(mut self) -> Field {
        self.read_only = true;
        self
    }

    pub(super) fn external_id(mut self) -> Field {
        self.external_id = true;
        self
    }

    pub(super) fn unique(mut self) -> Field {
        self.unique = true;
        self
    }

    pub(super) fn default(mut self, v: Value) -> Field {
        self.default_value = Some(v);
        self
    }

    pub(super) fn child_relationship(mut self, name: &str) -> Field {
        self.child_relationship_name = Some(name.to_string());
        self
    }

    /// The parent-to-child relationship name, for a lookup that declares one.
    pub fn child_relationship_name(&self) -> Option<&str> {
        match self.field_type {
            FieldType::Reference { .. } => self.child_relationship_name.as_deref(),
            _ => None,
        }
    }

    pub fn is_custom(&self) -> bool {
        self.name.ends_with("__c")
    }

    /// The name SOQL uses to follow this lookup to its parent: `AccountId` → `Account`,
    /// `Opportunity__c` → `Opportunity__r`.
    pub fn relationship_name(&self) -> Option<String> {
        if !matches!(self.field_type, FieldType::Reference { .. }) {
            return None;
        }
        if let Some(base) = self.name.strip_suffix("__c") {
            return Some(format!("{base}__r"));
        }
        self.name
            .strip_suffix("Id")
            .filter(|b| !b.is_empty())
            .map(str::to_string)
    }

    pub fn reference_to(&self) -> &[String] {
        match &self.field_type {
            FieldType::Reference { reference_to, .. } => reference_to,
            _ => &[],
        }
    }

    /// What describe and the Tooling API call it.
    pub fn label(&self) -> String {
        self.label
            .clone()
            .unwrap_or_else(|| self.name.trim_end_matches("__c").replace('_', " "))
    }

    /// The describe result of this field (the parts a client is likely to read).
    pub fn describe(&self, stages: &[Stage]) -> Value {
        let (precision, scale) = match self.field_type {
            FieldType::Currency { precision, scale }
            | FieldType::Double { precision, scale }
            | FieldType::Percent { precision, scale } => (precision, scale),
            _ => (0, 0),
        };
        let picklist: Vec<Value> = match &self.field_type {
            FieldType::Picklist { values, .. } => values
                .iter()
                .map(|v| json!({"value": v, "label": v, "active": true, "defaultValue": self.default_value.as_ref() == Some(&json!(v))}))
                .collect(),
            FieldType::StageName => stages
                .iter()
                .filter(|s| s.is_active)
                .map(|s| json!({"value": s.name, "label": s.label(), "active": true, "defaultValue": false}))
                .collect(),
            _ => vec![],
        };
        let system = self.read_only;
        // Field-level security makes a field read-only for one user without making it a
        // system field: it is still not defaulted on create.
        let writable = !system && !self.edit_denied;
        json!({
            "name": self.name,
            "label": self.label(),
            "type": self.field_type.describe_name(),
            "length": self.field_type.max_length().filter(|_| self.field_type.kind() == ValueKind::Text).unwrap_or(0),
            "precision": precision,
            "scale": scale,
            "nillable": !self.required && self.field_type != FieldType::Boolean,
            "createable": writable,
            "updateable": writable,
            "externalId": self.external_id,
            "unique": self.unique,
            "custom": self.is_custom(),
            "defaultedOnCreate": self.default_value.is_some() || system,
            "idLookup": self.external_id || self.field_type == FieldType::Id,
            "referenceTo": self.reference_to(),
            "relationshipName": self.relationship_name(),
            "restrictedPicklist": matches!(self.field_type, FieldType::Picklist { restricted: true, .. } | FieldType::StageName),
            "picklistValues": picklist,
        })
    }
}

/// One object (table) of the org.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SObject {
    pub name: String,
    pub key_prefix: String,
    /// API clients may create, update and delete its records. `User` and `OpportunityStage`
    /// are read-only here: the connector only ever reads them.
    pub createable: bool,
    pub fields: Vec<Field>,
    /// What describe calls it; derived from the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Created through the Tooling API (`POST tooling/sobjects/CustomObject`): a record
    /// created without `Name` is named after its id, as Salesforce does for a text name field.
    #[serde(default, skip_serializing_if = "is_false")]
    pub from_tooling: bool,
}

impl SObject {
    /// A field by name, case-insensitively (as Salesforce matches names).
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    pub fn field_mut(&mut self, name: &str) -> Option<&mut Field> {
        self.fields
            .iter_mut()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    pub fn is_custom(&self) -> bool {
        self.name.ends_with("__c")
    }

    /// The lookup field whose relationship name is `rel` (for SOQL paths like `Account.Name`).
    pub fn relationship(&self, rel: &str) -> Option<&Field> {
        self.fields.iter().find(|f| {
            f.relationship_name()
                .is_some_and(|r| r.eq_ignore_ascii_case(rel))
        })
    }

    /// What describe calls it.
    pub fn label(&self) -> String {
        self.label
            .clone()
            .unwrap_or_else(|| self.name.trim_end_matches("__c").replace('_', " "))
    }

    pub fn describe(&self, stages: &[Stage], version: &str) -> Value {
        let name = &self.name;
        json!({
            "name": name,
            "label": self.label(),
            "keyPrefix": self.key_prefix,
            "custom": self.is_custom(),
            "createable": self.createable,
            "updateable": self.createable,
            "deletable": self.createable,
            "queryable": true,
            "urls": {
                "sobject": format!("/services/data/{version}/sobjects/{name}"),
                "describe": format!("/services/data/{version}/sobjects/{name}/describe"),
                "rowTemplate": format!("/services/data/{version}/sobjects/{name}/{{ID}}"),
            },
            "fields": self.fields.iter().map(|f| f.describe(stages)).collect::<Vec<_>>(),
        })
    }
}

/// An opportunity stage (`OpportunityStage`): whether an opportunity in it is closed and won
/// follows from here (docs/salesforce.md, "Objects and fields").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Stage {
    /// The API name, the value `StageName` takes.
    pub name: String,
    #[serde(default)]
    pub is_closed: bool,
    #[serde(default)]
    pub is_won: bool,
    #[serde(default = "yes")]
    pub is_active: bool,
    /// What `Probability` becomes when an opportunity enters the stage without one.
    #[serde(default)]
    pub default_probability: f64,
    /// The picklist label, when it differs from the API name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The forecast category (`Pipeline`, `BestCase`, `Commit`, `Omitted`, `Closed`); derived
    /// from the flags when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast_category: Option<String>,
}

impl Stage {
    pub fn label(&self) -> String {
        self.label.clone().unwrap_or_else(|| self.name.clone())
    }

    /// Salesforce's defaults for the standard stages: won ones are `Closed`, lost ones
    /// `Omitted`, open ones `Pipeline`.
    pub fn forecast_category(&self) -> String {
        if let Some(c) = &self.forecast_category {
            return c.clone();
        }
        match (self.is_closed, self.is_won) {
            (true, true) => "Closed",
            (true, false) => "Omitted",
            _ => "Pipeline",
        }
        .to_string()
    }
}

fn yes() -> bool {
    true
}

/// The stages a new org has, plus the hold stage the co-sell connector's admin configures
/// ([`Config::hold_stage`]).
pub fn default_stages(config: &Config) -> Vec<Stage> {
    let hold = config
        .hold_stage
        .as_deref()
        .map(|h| (h, false, false, 10.0));
    [
        ("Prospecting", false, false, 10.0),
        ("Qualification", false, false, 10.0),
        ("Needs Analysis", false, false, 20.0),
        ("Value Proposition", false, false, 50.0),
        ("Id. Decision Makers", false, false, 60.0),
        ("Perception Analysis", false, false, 70.0),
        ("Proposal/Price Quote", false, false, 75.0),
        ("Negotiation/Review", false, false, 90.0),
        ("Closed Won", true, true, 100.0),
        ("Closed Lost", true, false, 0.0),
    ]
    .into_iter()
    .chain(hold)
    .map(|(name, is_closed, is_won, p)| Stage {
        name: name.into(),
        is_closed,
        is_won,
        is_active: true,
        default_probability: p,
        label: None,
        forecast_category: None,
    })
    .collect()
}

/// "How can Microsoft help?" (docs/salesforce.md, "Connector fields": the six
/// `assistanceRequestCode` values).
pub const MICROSOFT_HELP_VALUES: &[&str] = &[
    "Workload specific value proposition",
    "Customer technical architecture",
    "Proof of concept or demo",
    "Quotes or licensing",
    "Post sales customer success",
    "General or other",
];

/// Marketplace intent picklist values (inferred: Partner Center's three answers, as a person
/// would label them).
pub const MARKETPLACE_INTENT_VALUES: &[&str] = &["Yes", "No", "Have not decided"];

/// Referral visibility; the values are not public, these are inferred.
pub const VISIBILITY_VALUES: &[&str] = &["Private", "Visible"];

pub(super) fn s(len: usize) -> FieldType {
    FieldType::String { length: len }
}

pub(super) fn reference(to: &str) -> FieldType {
    FieldType::Reference {
        reference_to: vec![to.to_string()],
        cascade_delete: false,
    }
}

fn picklist(values: &[&str]) -> FieldType {
    FieldType::Picklist {
        values: values.iter().map(|v| v.to_string()).collect(),
        restricted: false,
    }
}

/// Fields every object has, maintained by Salesforce.
pub(super) fn system_fields(owner: bool) -> Vec<Field> {
    let mut f = vec![Field::new("Id", FieldType::Id).read_only()];
    if owner {
        f.push(Field::new("OwnerId", reference("User")));
    }
    f.extend([
        Field::new("CreatedDate", FieldType::Datetime).read_only(),
        Field::new("CreatedById", reference("User")).read_only(),
        Field::new("LastModifiedDate", FieldType::Datetime).read_only(),
        Field::new("LastModifiedById", reference("User")).read_only(),
        Field::new("SystemModstamp", FieldType::Datetime).read_only(),
    ]);
    f
}

pub(super) fn object(name: &str, prefix: &str, owner: bool, fields: Vec<Field>) -> SObject {
    let mut all = system_fields(owner);
    all.extend(fields);
    SObject {
        name: name.into(),
        key_prefix: prefix.into(),
        createable: true,
        fields: all,
        label: None,
        from_tooling: false,
    }
}

/// The seeded schema: the standard fields of docs/salesforce.md ("Objects and fields"),
/// `CurrencyIsoCode` only in a multi-currency org, and (unless switched off) the connector's
/// custom fields and objects ("Connector fields").
pub fn seed(config: &Config) -> Vec<SObject> {
    let currency = || {
        Field::new(
            "CurrencyIsoCode",
            FieldType::Picklist {
                values: config.currencies.clone(),
                restricted: true,
            },
        )
        .default(json!(config.corporate_currency))
    };
    let mut opportunity = vec![
        Field::new("Name", s(120)).required(),
        Field::new("StageName", FieldType::StageName).required(),
        Field::new("CloseDate", FieldType::Date).required(),
        Field::new(
            "Amount",
            FieldType::Currency {
                precision: 18,
                scale: 2,
            },
        ),
        Field::new(
            "Probability",
            FieldType::Percent {
                precision: 3,
                scale: 0,
            },
        ),
        Field::new("AccountId", reference("Account")),
        Field::new("ContactId", reference("Contact")),
        Field::new("IsClosed", FieldType::Boolean).read_only(),
        Field::new("IsWon", FieldType::Boolean).read_only(),
        Field::new("Description", FieldType::Textarea { length: 32000 }),
        Field::new("NextStep", s(255)),
        Field::new(
            "LeadSource",
            picklist(&["Web", "Phone Inquiry", "Partner Referral", "Other"]),
        ),
        Field::new(
            "Type",
            picklist(&[
                "Existing Customer - Upgrade",
                "Existing Customer - Replacement",
                "Existing Customer - Downgrade",
                "New Customer",
            ]),
        ),
    ];
    let mut account = vec![
        Field::new("Name", s(255)).required(),
        Field::new("BillingStreet", FieldType::Textarea { length: 255 }),
        Field::new("BillingCity", s(40)),
        Field::new("BillingState", s(80)),
        Field::new("BillingPostalCode", s(20)),
        Field::new("BillingCountry", s(80)),
        Field::new("Phone", FieldType::Phone),
        Field::new("Website", FieldType::Url { length: 255 }),
        Field::new("Description", FieldType::Textarea { length: 32000 }),
    ];
    let mut contact = vec![
        Field::new("FirstName", s(40)),
        Field::new("LastName", s(80)).required(),
        // Salesforce's compound name: FirstName and LastName, read-only.
        Field::new("Name", s(121)).read_only(),
        Field::new("Email", FieldType::Email),
        Field::new("Phone", FieldType::Phone),
        Field::new("Title", s(128)),
        Field::new("AccountId", reference("Account")),
    ];
    let mut lead = vec![
        Field::new("FirstName", s(40)),
        Field::new("LastName", s(80)).required(),
        Field::new("Name", s(121)).read_only(),
        Field::new("Company", s(255)).required(),
        Field::new("Email", FieldType::Email),
        Field::new("Phone", FieldType::Phone),
        Field::new("Title", s(128)),
        Field::new(
            "Status",
            FieldType::Picklist {
                values: [
                    "Open - Not Contacted",
                    "Working - Contacted",
                    "Closed - Converted",
                    "Closed - Not Converted",
                ]
                .iter()
                .map(|v| v.to_string())
                .collect(),
                restricted: true,
            },
        )
        .default(json!("Open - Not Contacted")),
        Field::new("Street", FieldType::Textarea { length: 255 }),
        Field::new("City", s(40)),
        Field::new("State", s(80)),
        Field::new("PostalCode", s(20)),
        Field::new("Country", s(80)),
        Field::new("Description", FieldType::Textarea { length: 32000 }),
        Field::new(
            "LeadSource",
            picklist(&["Web", "Phone Inquiry", "Partner Referral", "Other"]),
        ),
    ];
    if config.multi_currency {
        for fields in [&mut opportunity, &mut account, &mut contact, &mut lead] {
            fields.push(currency());
        }
    }
    if config.connector_fields {
        opportunity.extend([
            Field::new("Sync_with_Partner_Center__c", FieldType::Boolean).default(json!(false)),
            Field::new("Referral_Identifier__c", s(100)).external_id(),
            Field::new("Referral_Link__c", FieldType::Url { length: 255 }),
            Field::new("How_can_Microsoft_help__c", picklist(MICROSOFT_HELP_VALUES)),
            Field::new("Referral_Visibility__c", picklist(VISIBILITY_VALUES)),
            Field::new("Microsoft_CRM_Identifier__c", s(100)),
            Field::new("Microsoft_Status__c", s(100)),
            Field::new("Audit__c", FieldType::Textarea { length: 100_000 }),
            // Services co-sell, as Partner Center spells the values; text, since the allowed
            // lists change with Microsoft's fiscal year.
            Field::new("Solution_Area__c", s(255)),
            Field::new("Solution_Play__c", s(255)),
            Field::new("Partner_Role__c", s(255)),
            // The customer's intent to buy through the marketplace, as the seller records it.
            Field::new(
                "Marketplace_Intent__c",
                FieldType::Picklist {
                    values: MARKETPLACE_INTENT_VALUES
                        .iter()
                        .map(|v| v.to_string())
                        .collect(),
                    restricted: true,
                },
            ),
        ]);
        // Leads the connector creates carry the referral they came from and an Audit trail.
        lead.extend([
            Field::new("Referral_Identifier__c", s(100)).external_id(),
            Field::new("Referral_Link__c", FieldType::Url { length: 255 }),
            Field::new("Audit__c", FieldType::Textarea { length: 100_000 }),
        ]);
    }
    let contact_role = object(
        "OpportunityContactRole",
        "00K",
        false,
        vec![
            Field::new(
                "OpportunityId",
                FieldType::Reference {
                    reference_to: vec!["Opportunity".into()],
                    cascade_delete: true,
                },
            )
            .required()
            .child_relationship("OpportunityContactRoles"),
            Field::new(
                "ContactId",
                FieldType::Reference {
                    reference_to: vec!["Contact".into()],
                    cascade_delete: true,
                },
            )
            .required()
            .child_relationship("OpportunityContactRoles"),
            Field::new(
                "Role",
                picklist(&[
                    "Business User",
                    "Decision Maker",
                    "Economic Buyer",
                    "Economic Decision Maker",
                    "Evaluator",
                    "Executive Sponsor",
                    "Influencer",
                    "Technical Buyer",
                    "Other",
                ]),
            ),
            Field::new("IsPrimary", FieldType::Boolean).default(json!(false)),
        ],
    );
    let mut objects = vec![
        object("Opportunity", "006", true, opportunity),
        object("Account", "001", true, account),
        object("Contact", "003", true, contact),
        object("Lead", "00Q", true, lead),
        contact_role,
        SObject {
            createable: false,
            ..object(
                "User",
                "005",
                false,
                vec![
                    Field::new("Username", s(80)),
                    Field::new("Name", s(121)),
                    Field::new("Email", FieldType::Email),
                    Field::new("IsActive", FieldType::Boolean),
                ],
            )
        },
        SObject {
            createable: false,
            ..object(
                "OpportunityStage",
                "01J",
                false,
                vec![
                    Field::new("ApiName", s(255)),
                    Field::new("MasterLabel", s(255)),
                    Field::new("IsActive", FieldType::Boolean),
                    Field::new("IsClosed", FieldType::Boolean),
                    Field::new("IsWon", FieldType::Boolean),
                    Field::new(
                        "DefaultProbability",
                        FieldType::Percent {
                            precision: 3,
                            scale: 0,
                        },
                    ),
                    Field::new(
                        "SortOrder",
                        FieldType::Double {
                            precision: 9,
                            scale: 0,
                        },
                    ),
                ],
            )
        },
    ];
    // Every org has them; the connector's setup grants its fields through them.
    objects.extend(super::permissions::objects());
    if config.connector_fields {
        objects.push(object(
            "Microsoft_Solution__c",
            "a0X",
            true,
            vec![
                Field::new("Name", s(80)),
                Field::new("Solution_Id__c", s(100)),
                Field::new(
                    "Opportunity__c",
                    FieldType::Reference {
                        reference_to: vec!["Opportunity".into()],
                        cascade_delete: true,
                    },
                )
                .required(),
            ],
        ));
        objects.push(object(
            "Microsoft_Solution_Catalog__c",
            "a0Y",
            true,
            vec![
                Field::new("Name", s(80)),
                Field::new("Solution_Id__c", s(100)).external_id(),
                Field::new("Solution_Area__c", s(255)),
            ],
        ));
    }
    objects
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relationship_names_follow_salesforce_conventions() {
        let cfg = Config::default();
        let schema = seed(&cfg);
        let opp = schema
            .iter()
            .find(|o| o.name == "Opportunity")
            .expect("opp");
        assert_eq!(
            opp.field("accountid").and_then(Field::relationship_name),
            Some("Account".to_string())
        );
        let sol = schema
            .iter()
            .find(|o| o.name == "Microsoft_Solution__c")
            .expect("solution");
        assert_eq!(
            sol.relationship("opportunity__r").map(|f| f.name.as_str()),
            Some("Opportunity__c")
        );
        assert!(opp.field("CurrencyIsoCode").is_none());
        let multi = seed(&Config {
            multi_currency: true,
            ..Config::default()
        });
        assert!(multi[0].field("CurrencyIsoCode").is_some());
    }

    #[test]
    fn fields_round_trip_through_the_control_api_shape() {
        let f: Field = serde_json::from_value(json!({
            "name": "Alt_Referral_Id__c", "type": "string", "length": 64, "externalId": true
        }))
        .expect("parses");
        assert_eq!(f.field_type, FieldType::String { length: 64 });
        assert!(f.external_id && !f.required);
        let back = serde_json::to_value(&f).expect("serialises");
        assert_eq!(back["type"], "string");
        assert_eq!(back["externalId"], true);
    }
}
