//! Tables and columns as data. Real Dataverse environments are customised, so the simulator
//! reads every rule (types, lengths, required flags, lookups, state models) from these
//! definitions, which tests change at start-up ([`super::Config::tables`]) or at run time
//! (the schema control routes).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The language of every label the sandbox writes: English (1033), what the metadata API's
/// `UserLocalizedLabel` shows the application user.
pub const LANGUAGE: i64 = 1033;

/// One text of a metadata `Label`, in one language (`LocalizedLabels[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalizedLabel {
    pub label: String,
    pub language_code: i64,
}

/// A label in [`LANGUAGE`] only.
pub fn label(text: &str) -> Vec<LocalizedLabel> {
    vec![LocalizedLabel {
        label: text.into(),
        language_code: LANGUAGE,
    }]
}

/// One entity set a lookup may point at, with the navigation property a client binds it with
/// (`customerid_account@odata.bind`); single-target lookups use the column name itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LookupTarget {
    /// The name before `@odata.bind`.
    pub navigation: String,
    /// Entity set of the target table, e.g. `accounts`.
    pub table: String,
}

/// Column types the Web API distinguishes when it validates a write. Serialised with a `type`
/// tag so the control API can add columns: `{"name":"x","type":"string","maxLength":2}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum FieldType {
    /// Single-line text; longer values are refused.
    String {
        /// In characters.
        max_length: usize,
    },
    /// Multi-line text.
    Memo {
        /// In characters.
        max_length: usize,
    },
    /// Rounded to two decimals on write (docs/dataverse.md, "Standard columns": Money, 2
    /// decimals).
    Money,
    /// A number kept as written.
    Decimal,
    /// A whole number in a range (`closeprobability` is 0–100).
    Integer {
        /// Smallest accepted value (default: Int32's).
        #[serde(default = "i32_min")]
        min: i64,
        /// Largest accepted value (default: Int32's).
        #[serde(default = "i32_max")]
        max: i64,
    },
    /// Yes/No.
    Boolean,
    /// Stored and returned as UTC with whole seconds.
    DateTime,
    /// `YYYY-MM-DD` (Dataverse "DateOnly").
    Date,
    /// A unique identifier (primary keys).
    Guid,
    /// Read as `_<name>_value`, written with `<navigation>@odata.bind`.
    Lookup {
        /// The tables it may point at, each with its navigation property.
        targets: Vec<LookupTarget>,
    },
    /// A choice column.
    Picklist {
        /// Accepted values; empty accepts any integer.
        #[serde(default)]
        options: Vec<i64>,
    },
    /// `statecode`: values and their statuses come from [`TableDef::states`].
    State,
    /// `statuscode`, paired with `statecode`.
    Status,
}

fn i32_min() -> i64 {
    i32::MIN.into()
}

fn i32_max() -> i64 {
    i32::MAX.into()
}

impl FieldType {
    /// The EDM type named in conversion errors, as OData reports them.
    pub fn edm(&self) -> &'static str {
        match self {
            FieldType::String { .. } | FieldType::Memo { .. } => "Edm.String",
            FieldType::Money | FieldType::Decimal => "Edm.Decimal",
            FieldType::Integer { .. }
            | FieldType::Picklist { .. }
            | FieldType::State
            | FieldType::Status => "Edm.Int32",
            FieldType::Boolean => "Edm.Boolean",
            FieldType::DateTime => "Edm.DateTimeOffset",
            FieldType::Date => "Edm.Date",
            FieldType::Guid | FieldType::Lookup { .. } => "Edm.Guid",
        }
    }
}

/// A column. `required` is Dataverse's ApplicationRequired level (see
/// [`super::Config::enforce_required`]); `read_only` columns are maintained by the service.
/// (No `deny_unknown_fields`: serde cannot combine it with the flattened type; the control
/// route checks the keys against [`Field::KEYS`] instead.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Field {
    /// Logical name; for a lookup, the name inside `_<name>_value`.
    pub name: String,
    /// The type and its limits.
    #[serde(flatten)]
    pub kind: FieldType,
    /// ApplicationRequired: creates must set it, updates must not clear it.
    #[serde(default)]
    pub required: bool,
    /// Maintained by the service; writes are dropped or refused
    /// ([`super::Config::reject_read_only_writes`]).
    #[serde(default)]
    pub read_only: bool,
    /// Value a new row gets when the create does not set the column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// The metadata API's `SchemaName`, as a metadata create sent it (case included); derived
    /// from the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_name: Option<String>,
    /// The metadata API's `DisplayName`; derived from the name when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub display_name: Vec<LocalizedLabel>,
    /// A column a solution added (`IsCustomAttribute`), not one the platform ships.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub custom: bool,
    /// The labels of a choice column's options, as a metadata create sent them; an option
    /// without one is labelled with its value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub option_labels: Vec<OptionLabel>,
}

/// One option of a choice column, as `$expand=OptionSet` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OptionLabel {
    pub value: i64,
    pub label: Vec<LocalizedLabel>,
}

impl Field {
    /// Every key a field definition may have, across all types.
    pub const KEYS: &[&str] = &[
        "name",
        "type",
        "required",
        "readOnly",
        "default",
        "maxLength",
        "min",
        "max",
        "targets",
        "options",
        "schemaName",
        "displayName",
        "custom",
        "optionLabels",
    ];

    pub(crate) fn new(name: &str, kind: FieldType) -> Field {
        Field {
            name: name.into(),
            kind,
            required: false,
            read_only: false,
            default: None,
            schema_name: None,
            display_name: Vec::new(),
            custom: false,
            option_labels: Vec::new(),
        }
    }

    /// A solution's column: the connector's, or one created through the metadata API.
    pub(crate) fn custom(mut self) -> Field {
        self.custom = true;
        self
    }

    fn required(mut self) -> Field {
        self.required = true;
        self
    }

    fn read_only(mut self) -> Field {
        self.read_only = true;
        self
    }

    fn default(mut self, v: Value) -> Field {
        self.default = Some(v);
        self
    }

    /// The property name in rows, `$select`, `$filter` and `$orderby`.
    pub fn column(&self) -> String {
        match self.kind {
            FieldType::Lookup { .. } => format!("_{}_value", self.name),
            _ => self.name.clone(),
        }
    }

    /// Lookups are read as `_x_value` and written only by binding.
    pub fn is_lookup(&self) -> bool {
        matches!(self.kind, FieldType::Lookup { .. })
    }
}

/// A status reason within a state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusOption {
    /// The `statuscode` value.
    pub value: i64,
    /// Shown in error messages.
    pub label: String,
}

/// A `statecode` value, its default `statuscode` and the statuses that belong to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateOption {
    /// The `statecode` value.
    pub value: i64,
    /// Shown in error messages (`OpportunityState.Open`).
    pub label: String,
    /// The status a write that sets only `statecode` gets.
    pub default_status: i64,
    /// The statuses valid with this state.
    pub statuses: Vec<StatusOption>,
}

/// An alternate key: rows can be addressed as `set(col='v')` and upserted by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlternateKey {
    /// Replaces a key of the same name.
    pub name: String,
    /// Column names; a URL key must name exactly these.
    pub columns: Vec<String>,
}

/// A table: how the Web API names it and everything a write is checked against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TableDef {
    /// The name in URLs (`opportunities`).
    pub entity_set: String,
    /// The name in messages and `lookuplogicalname` annotations (`opportunity`).
    pub logical_name: String,
    /// The GUID column (`opportunityid`).
    pub primary_key: String,
    /// Columns in the order rows show them.
    pub fields: Vec<Field>,
    /// The statecode/statuscode model; empty for a table without one.
    pub states: Vec<StateOption>,
    /// `ChangeTrackingEnabled`; when off, `Prefer: odata.track-changes` is ignored.
    pub change_tracking: bool,
    /// Keys rows can be addressed and upserted by, besides the primary key.
    #[serde(default)]
    pub alternate_keys: Vec<AlternateKey>,
    /// What the metadata API says about the table besides the above.
    #[serde(default)]
    pub metadata: TableMeta,
}

/// How the metadata API describes a table beyond what the data API needs (docs/dataverse.md,
/// "Metadata"). Everything is optional so a table added through the control API, or written
/// by hand in a test, gets names derived from its logical name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct TableMeta {
    /// `SchemaName` (`Opportunity`, or as a metadata create sent it).
    pub schema_name: Option<String>,
    /// `PrimaryNameAttribute`: the column that names a row.
    pub primary_name: Option<String>,
    /// `DisplayName`.
    pub display_name: Vec<LocalizedLabel>,
    /// `DisplayCollectionName`.
    pub display_collection_name: Vec<LocalizedLabel>,
    /// `Description`.
    pub description: Vec<LocalizedLabel>,
    /// `OwnershipType` `OrganizationOwned` rather than `UserOwned`.
    pub organization_owned: bool,
    /// `IsCustomEntity`: a solution's table, not one the platform ships.
    pub custom: bool,
    /// `HasNotes`.
    pub has_notes: bool,
    /// `HasActivities`.
    pub has_activities: bool,
    /// `ObjectTypeCode`; custom tables get theirs when created (10000 and up).
    pub object_type_code: Option<i64>,
    /// Other EntityMetadata properties a create or a PUT sent, given back as sent so a
    /// client that reads a definition and PUTs it back loses nothing.
    pub other: Map<String, Value>,
}

impl TableDef {
    /// A column by logical name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// A column by logical name, to change its definition.
    pub fn field_mut(&mut self, name: &str) -> Option<&mut Field> {
        self.fields.iter_mut().find(|f| f.name == name)
    }

    /// The field behind a row property (`name`, or `_parentaccountid_value`).
    pub fn field_by_column(&self, column: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.column() == column)
    }

    /// The lookup field and target a `<navigation>@odata.bind` names.
    pub fn navigation(&self, nav: &str) -> Option<(&Field, &LookupTarget)> {
        self.fields.iter().find_map(|f| match &f.kind {
            FieldType::Lookup { targets } => {
                targets.iter().find(|t| t.navigation == nav).map(|t| (f, t))
            }
            _ => None,
        })
    }

    /// The state model entry of a `statecode` value.
    pub fn state(&self, value: i64) -> Option<&StateOption> {
        self.states.iter().find(|s| s.value == value)
    }

    /// The OData type name used in error messages.
    pub fn type_name(&self) -> String {
        format!("Microsoft.Dynamics.CRM.{}", self.logical_name)
    }
}

fn s(max_length: usize) -> FieldType {
    FieldType::String { max_length }
}

fn memo(max_length: usize) -> FieldType {
    FieldType::Memo { max_length }
}

fn lookup(targets: &[(&str, &str)]) -> FieldType {
    FieldType::Lookup {
        targets: targets
            .iter()
            .map(|(navigation, table)| LookupTarget {
                navigation: (*navigation).into(),
                table: (*table).into(),
            })
            .collect(),
    }
}

fn state(value: i64, label: &str, default_status: i64, statuses: &[(i64, &str)]) -> StateOption {
    StateOption {
        value,
        label: label.into(),
        default_status,
        statuses: statuses
            .iter()
            .map(|(value, label)| StatusOption {
                value: *value,
                label: (*label).into(),
            })
            .collect(),
    }
}

/// Active/Inactive, the state model of most tables.
fn active_inactive() -> Vec<StateOption> {
    vec![
        state(0, "Active", 1, &[(1, "Active")]),
        state(1, "Inactive", 2, &[(2, "Inactive")]),
    ]
}

/// The system columns every table has. `ownerid` is read-only here because the sandbox does
/// not simulate `systemusers`; it is the creating user.
pub(crate) fn system_fields(primary_key: &str) -> Vec<Field> {
    let users = [("systemuser", "systemusers")];
    vec![
        Field::new(primary_key, FieldType::Guid),
        Field::new("statecode", FieldType::State).default(Value::from(0)),
        Field::new("statuscode", FieldType::Status),
        Field::new("createdon", FieldType::DateTime).read_only(),
        Field::new("modifiedon", FieldType::DateTime).read_only(),
        Field::new("createdby", lookup(&users)).read_only(),
        Field::new("modifiedby", lookup(&users)).read_only(),
        Field::new("ownerid", lookup(&users)).read_only(),
        Field::new(
            "versionnumber",
            FieldType::Integer {
                min: 0,
                max: i64::MAX,
            },
        )
        .read_only(),
    ]
}

/// Active/Inactive, the state model a table created through the metadata API gets.
pub(crate) fn custom_table_states() -> Vec<StateOption> {
    active_inactive()
}

/// A table with the system columns. A table without a state model (publishers, solutions)
/// has no `statecode`/`statuscode` either, as in Dataverse.
fn table(
    entity_set: &str,
    logical_name: &str,
    primary_key: &str,
    states: Vec<StateOption>,
    fields: Vec<Field>,
) -> TableDef {
    let mut all = system_fields(primary_key);
    if states.is_empty() {
        all.retain(|f| !matches!(f.kind, FieldType::State | FieldType::Status));
    }
    all.extend(fields);
    TableDef {
        entity_set: entity_set.into(),
        logical_name: logical_name.into(),
        primary_key: primary_key.into(),
        fields: all,
        states,
        change_tracking: true,
        alternate_keys: Vec::new(),
        metadata: TableMeta::default(),
    }
}

impl TableDef {
    /// The names the metadata API shows: the display names, the primary name column, the
    /// object type code (the platform's, for standard tables) and the ownership.
    fn described(
        mut self,
        display: &str,
        collection: &str,
        primary_name: &str,
        object_type_code: i64,
        organization_owned: bool,
    ) -> TableDef {
        self.metadata.display_name = label(display);
        self.metadata.display_collection_name = label(collection);
        self.metadata.primary_name = Some(primary_name.into());
        self.metadata.object_type_code = Some(object_type_code);
        self.metadata.organization_owned = organization_owned;
        self
    }

    /// A table a solution added (`IsCustomEntity`).
    fn custom(mut self) -> TableDef {
        self.metadata.custom = true;
        self
    }
}

/// The connector's columns on the opportunity (docs/dataverse.md, "Connector columns"). Their
/// types are the sandbox's choice; the real solution's schema is not public.
fn connector_fields() -> Vec<Field> {
    vec![
        Field::new("cosell_syncwithpartnercenter", FieldType::Boolean).default(Value::Bool(false)),
        Field::new("cosell_referralid", s(100)),
        Field::new("cosell_referrallink", s(500)),
        // One of the six assistanceRequestCode values, or empty.
        Field::new("cosell_microsofthelp", s(100)),
        // false = private, true = visible to Microsoft sellers.
        Field::new("cosell_visibility", FieldType::Boolean).default(Value::Bool(false)),
        Field::new("cosell_microsoftcrmid", s(100)),
        Field::new("cosell_microsoftstatus", s(100)),
        Field::new("cosell_audit", memo(100_000)),
        // Services co-sell: the solution area, solution play and partner role as Partner
        // Center spells them, and the customer's marketplace intent (Yes, No, Have not
        // decided), which the seller records. Text: the real solution's schema is not public,
        // and the connector reads them only when its admin names them.
        Field::new("cosell_solutionarea", s(200)),
        Field::new("cosell_solutionplay", s(200)),
        Field::new("cosell_partnerrole", s(100)),
        Field::new("cosell_marketplaceintent", s(50)),
    ]
    .into_iter()
    .map(Field::custom)
    .collect()
}

/// The connector's columns on the lead: which referral it came from, and its Audit trail.
fn connector_lead_fields() -> Vec<Field> {
    vec![
        Field::new("cosell_referralid", s(100)).custom(),
        Field::new("cosell_referrallink", s(500)).custom(),
        Field::new("cosell_audit", memo(100_000)).custom(),
    ]
}

/// The connector's own tables: solution links and the solution catalog.
fn connector_tables() -> Vec<TableDef> {
    let custom = |f: Field| f.custom();
    vec![
        // Logical name `cosell_solutionlink`: the primary key of a table named
        // `cosell_solution` would be `cosell_solutionid`, which docs/dataverse.md ("Connector
        // columns") gives to the Partner Center solution id column.
        table(
            "cosell_solutionlinks",
            "cosell_solutionlink",
            "cosell_solutionlinkid",
            active_inactive(),
            vec![
                Field::new("cosell_name", s(200)),
                Field::new("cosell_solutionid", s(100)).required(),
                Field::new(
                    "cosell_opportunityid",
                    lookup(&[("cosell_opportunityid", "opportunities")]),
                )
                .required(),
            ],
        )
        .described(
            "Solution link",
            "Solution links",
            "cosell_name",
            10000,
            true,
        ),
        table(
            "cosell_solutioncatalogs",
            "cosell_solutioncatalog",
            "cosell_solutioncatalogid",
            active_inactive(),
            vec![
                Field::new("cosell_name", s(200)).required(),
                Field::new("cosell_solutionid", s(100)).required(),
                Field::new("cosell_description", memo(2000)),
            ],
        )
        .described(
            "Solution catalog",
            "Solution catalogs",
            "cosell_name",
            10001,
            true,
        ),
    ]
    .into_iter()
    .map(|mut t| {
        for f in &mut t.fields {
            if f.name.starts_with("cosell_") {
                *f = custom(f.clone());
            }
        }
        t.custom()
    })
    .collect()
}

/// The standard tables of docs/dataverse.md ("Standard columns") plus the connector's, as a
/// fresh environment with the connector solution installed has them.
pub fn standard_tables() -> Vec<TableDef> {
    let mut tables = platform_tables();
    for t in &mut tables {
        match t.logical_name.as_str() {
            "opportunity" => t.fields.extend(connector_fields()),
            "lead" => t.fields.extend(connector_lead_fields()),
            _ => {}
        }
    }
    tables.extend(connector_tables());
    tables
}

/// The standard tables of a Dynamics 365 Sales environment before the connector's setup:
/// no connector columns or tables, and change tracking off on the opportunity, which the
/// product's setup turns on (docs/dataverse.md, "Metadata").
pub fn bare_tables() -> Vec<TableDef> {
    let mut tables = platform_tables();
    for t in &mut tables {
        if t.logical_name == "opportunity" {
            t.change_tracking = false;
        }
    }
    tables
}

/// The tables the platform and Dynamics 365 Sales ship, change tracking on.
fn platform_tables() -> Vec<TableDef> {
    let accounts_contacts = [
        ("customerid_account", "accounts"),
        ("customerid_contact", "contacts"),
    ];
    let opportunity_fields = vec![
        Field::new("name", s(300)).required(),
        Field::new("estimatedvalue", FieldType::Money),
        Field::new("estimatedclosedate", FieldType::Date),
        Field::new("actualvalue", FieldType::Money),
        Field::new("actualclosedate", FieldType::Date),
        Field::new("description", memo(2000)),
        Field::new("closeprobability", FieldType::Integer { min: 0, max: 100 }),
        Field::new("customerid", lookup(&accounts_contacts)).required(),
        Field::new(
            "parentaccountid",
            lookup(&[("parentaccountid", "accounts")]),
        ),
        Field::new(
            "parentcontactid",
            lookup(&[("parentcontactid", "contacts")]),
        ),
        Field::new(
            "transactioncurrencyid",
            lookup(&[("transactioncurrencyid", "transactioncurrencies")]),
        )
        .required(),
        Field::new(
            "originatingleadid",
            lookup(&[("originatingleadid", "leads")]),
        ),
        Field::new("isrevenuesystemcalculated", FieldType::Boolean).default(Value::Bool(false)),
    ];
    let mut tables = vec![
        table(
            "opportunities",
            "opportunity",
            "opportunityid",
            vec![
                state(0, "Open", 1, &[(1, "In Progress"), (2, "On Hold")]),
                state(1, "Won", 3, &[(3, "Won")]),
                state(2, "Lost", 4, &[(4, "Canceled"), (5, "Out-Sold")]),
            ],
            opportunity_fields,
        )
        .described("Opportunity", "Opportunities", "name", 3, false),
        table(
            "accounts",
            "account",
            "accountid",
            active_inactive(),
            vec![
                Field::new("name", s(160)).required(),
                Field::new("accountnumber", s(20)),
                Field::new("address1_line1", s(250)),
                Field::new("address1_city", s(80)),
                Field::new("address1_stateorprovince", s(50)),
                Field::new("address1_postalcode", s(20)),
                Field::new("address1_country", s(80)),
                Field::new("emailaddress1", s(100)),
                Field::new("telephone1", s(50)),
                Field::new("websiteurl", s(200)),
                Field::new(
                    "parentaccountid",
                    lookup(&[("parentaccountid", "accounts")]),
                ),
                Field::new(
                    "primarycontactid",
                    lookup(&[("primarycontactid", "contacts")]),
                ),
                Field::new(
                    "transactioncurrencyid",
                    lookup(&[("transactioncurrencyid", "transactioncurrencies")]),
                ),
            ],
        )
        .described("Account", "Accounts", "name", 1, false),
        table(
            "contacts",
            "contact",
            "contactid",
            active_inactive(),
            vec![
                Field::new("firstname", s(50)),
                Field::new("lastname", s(50)).required(),
                Field::new("fullname", s(160)).read_only(),
                Field::new("emailaddress1", s(100)),
                Field::new("telephone1", s(50)),
                Field::new("jobtitle", s(100)),
                Field::new(
                    "parentcustomerid",
                    lookup(&[
                        ("parentcustomerid_account", "accounts"),
                        ("parentcustomerid_contact", "contacts"),
                    ]),
                ),
                Field::new(
                    "transactioncurrencyid",
                    lookup(&[("transactioncurrencyid", "transactioncurrencies")]),
                ),
            ],
        )
        .described("Contact", "Contacts", "fullname", 2, false),
        table(
            "leads",
            "lead",
            "leadid",
            vec![
                state(0, "Open", 1, &[(1, "New"), (2, "Contacted")]),
                state(1, "Qualified", 3, &[(3, "Qualified")]),
                state(
                    2,
                    "Disqualified",
                    4,
                    &[
                        (4, "Lost"),
                        (5, "Cannot Contact"),
                        (6, "No Longer Interested"),
                        (7, "Canceled"),
                    ],
                ),
            ],
            vec![
                Field::new("subject", s(300)).required(),
                Field::new("firstname", s(50)),
                Field::new("lastname", s(50)),
                Field::new("fullname", s(160)).read_only(),
                Field::new("companyname", s(100)),
                Field::new("emailaddress1", s(100)),
                Field::new("telephone1", s(50)),
                Field::new("address1_line1", s(250)),
                Field::new("address1_city", s(80)),
                Field::new("address1_stateorprovince", s(50)),
                Field::new("address1_postalcode", s(20)),
                Field::new("address1_country", s(80)),
                Field::new("description", memo(2000)),
                Field::new("estimatedamount", FieldType::Money),
                Field::new(
                    "parentaccountid",
                    lookup(&[("parentaccountid", "accounts")]),
                ),
                Field::new(
                    "parentcontactid",
                    lookup(&[("parentcontactid", "contacts")]),
                ),
                Field::new(
                    "qualifyingopportunityid",
                    lookup(&[("qualifyingopportunityid", "opportunities")]),
                ),
                Field::new(
                    "transactioncurrencyid",
                    lookup(&[("transactioncurrencyid", "transactioncurrencies")]),
                ),
            ],
        )
        .described("Lead", "Leads", "fullname", 4, false),
        table(
            "transactioncurrencies",
            "transactioncurrency",
            "transactioncurrencyid",
            active_inactive(),
            vec![
                Field::new("isocurrencycode", s(5)).required(),
                Field::new("currencyname", s(100)).required(),
                Field::new("currencysymbol", s(10)),
                Field::new("exchangerate", FieldType::Decimal).required(),
                Field::new("currencyprecision", FieldType::Integer { min: 0, max: 4 }),
            ],
        )
        .described("Currency", "Currencies", "currencyname", 9105, true),
    ];
    tables.extend(solution_tables());
    tables
}

/// `publishers`, `solutions` and `solutioncomponents` (docs/dataverse.md, "Metadata"): the
/// publisher's prefix every created name carries, the unmanaged solution creates go into, and
/// what each solution holds. No state model, as in Dataverse.
fn solution_tables() -> Vec<TableDef> {
    vec![
        table(
            "publishers",
            "publisher",
            "publisherid",
            Vec::new(),
            vec![
                Field::new("uniquename", s(256)).required(),
                Field::new("friendlyname", s(256)).required(),
                // 2 to 8 letters or digits; checked when a row is written.
                Field::new("customizationprefix", s(8)).required(),
                // 10000 to 99999; checked when a row is written, with the publisher's message
                // rather than a generic range error.
                Field::new(
                    "customizationoptionvalueprefix",
                    FieldType::Integer {
                        min: i32_min(),
                        max: i32_max(),
                    },
                ),
                Field::new("description", memo(2000)),
            ],
        )
        .described("Publisher", "Publishers", "friendlyname", 7101, true),
        table(
            "solutions",
            "solution",
            "solutionid",
            Vec::new(),
            vec![
                Field::new("uniquename", s(65)).required(),
                Field::new("friendlyname", s(256)).required(),
                Field::new("version", s(256)).required(),
                // Set by a solution import in Dataverse; writable here so a test can play a
                // managed solution (the product refuses to create into one).
                Field::new("ismanaged", FieldType::Boolean).default(Value::Bool(false)),
                Field::new("publisherid", lookup(&[("publisherid", "publishers")])).required(),
                Field::new("description", memo(2000)),
            ],
        )
        .described("Solution", "Solutions", "friendlyname", 7100, true),
        {
            // Written only by metadata creates; no column names a component.
            let mut t = table(
                "solutioncomponents",
                "solutioncomponent",
                "solutioncomponentid",
                Vec::new(),
                vec![
                    Field::new("objectid", FieldType::Guid).read_only(),
                    // 1 table, 2 column, 10 relationship.
                    Field::new(
                        "componenttype",
                        FieldType::Picklist {
                            options: vec![1, 2, 10],
                        },
                    )
                    .read_only(),
                    Field::new("solutionid", lookup(&[("solutionid", "solutions")])).read_only(),
                    Field::new("ismetadata", FieldType::Boolean).read_only(),
                ],
            )
            .described("Solution Component", "Solution Components", "", 7103, true);
            t.metadata.primary_name = None;
            t
        },
    ]
}

/// A currency row seeded into `transactioncurrencies`.
#[derive(Debug, Clone, PartialEq)]
pub struct Currency {
    /// ISO 4217 code (`isocurrencycode`), what the connector looks currencies up by.
    pub iso: String,
    /// `currencyname`.
    pub name: String,
    /// `currencysymbol`.
    pub symbol: String,
    /// Units per base-currency unit.
    pub rate: f64,
}

impl Currency {
    fn new(iso: &str, name: &str, symbol: &str, rate: f64) -> Currency {
        Currency {
            iso: iso.into(),
            name: name.into(),
            symbol: symbol.into(),
            rate,
        }
    }
}

/// A few currencies an organisation typically has enabled; USD is the base currency.
pub fn standard_currencies() -> Vec<Currency> {
    vec![
        Currency::new("USD", "US Dollar", "$", 1.0),
        Currency::new("EUR", "Euro", "€", 0.92),
        Currency::new("GBP", "Pound Sterling", "£", 0.79),
        Currency::new("NOK", "Norwegian Krone", "kr", 10.6),
        Currency::new("SEK", "Swedish Krona", "kr", 10.4),
        Currency::new("DKK", "Danish Krone", "kr.", 6.9),
        Currency::new("HUF", "Hungarian Forint", "Ft", 360.0),
        Currency::new("CHF", "Swiss Franc", "CHF", 0.88),
        Currency::new("JPY", "Japanese Yen", "¥", 150.0),
    ]
}

/// The solution a metadata create without `MSCRM.SolutionUniqueName` goes into, as Dataverse
/// adds such components to its default solution.
pub const DEFAULT_SOLUTION: &str = "Default";

/// A row seeded into `publishers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publisher {
    /// `uniquename`.
    pub unique_name: String,
    /// `friendlyname`.
    pub friendly_name: String,
    /// `customizationprefix`: what every name created in its solutions starts with.
    pub prefix: String,
    /// `customizationoptionvalueprefix` (10000–99999): new option values start with it.
    pub option_value_prefix: i64,
}

/// A row seeded into `solutions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solution {
    /// `uniquename`.
    pub unique_name: String,
    /// `friendlyname`.
    pub friendly_name: String,
    /// `version`.
    pub version: String,
    /// `ismanaged`: a managed solution takes no new components.
    pub managed: bool,
    /// The `uniquename` of its publisher, one of [`super::Config::publishers`].
    pub publisher: String,
}

/// Every environment's default publisher, prefix `new` (the platform names it after the
/// organisation).
pub fn default_publisher() -> Publisher {
    Publisher {
        unique_name: "DefaultPublishersandbox".into(),
        friendly_name: "Default Publisher for sandbox".into(),
        prefix: "new".into(),
        option_value_prefix: 10000,
    }
}

/// Every environment's default solution, unmanaged, of the default publisher.
pub fn default_solution() -> Solution {
    Solution {
        unique_name: DEFAULT_SOLUTION.into(),
        friendly_name: "Default Solution".into(),
        version: "1.0".into(),
        managed: false,
        publisher: default_publisher().unique_name,
    }
}

/// The publisher the product's setup creates for the connector's `cosell` names.
pub fn connector_publisher() -> Publisher {
    Publisher {
        unique_name: "CoSellConnectorPublisher".into(),
        friendly_name: "Co-sell connector".into(),
        prefix: "cosell".into(),
        option_value_prefix: 26541,
    }
}

/// The unmanaged solution the product's setup creates the connector's columns in.
pub fn connector_solution() -> Solution {
    Solution {
        unique_name: "CoSellConnector".into(),
        friendly_name: "Co-sell connector".into(),
        version: "1.0.0.0".into(),
        managed: false,
        publisher: connector_publisher().unique_name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_definitions_round_trip_through_the_control_api_shape() {
        let f: Field = serde_json::from_value(serde_json::json!({
            "name": "new_countrycode", "type": "string", "maxLength": 2, "required": true
        }))
        .expect("parses");
        assert_eq!(f.kind, FieldType::String { max_length: 2 });
        assert!(f.required);
        let back = serde_json::to_value(&f).expect("serialises");
        assert_eq!(back["type"], "string");
        assert_eq!(back["maxLength"], 2);
        let l: Field = serde_json::from_value(serde_json::json!({
            "name": "new_partnerid", "type": "lookup",
            "targets": [{"navigation": "new_partnerid", "table": "accounts"}]
        }))
        .expect("parses");
        assert_eq!(l.column(), "_new_partnerid_value");
    }

    #[test]
    fn every_standard_lookup_points_at_a_known_table_or_at_users() {
        let tables = standard_tables();
        for t in &tables {
            for f in &t.fields {
                if let FieldType::Lookup { targets } = &f.kind {
                    for target in targets {
                        assert!(
                            target.table == "systemusers"
                                || tables.iter().any(|x| x.entity_set == target.table),
                            "{}.{} -> {}",
                            t.entity_set,
                            f.name,
                            target.table
                        );
                    }
                }
            }
        }
    }
}
