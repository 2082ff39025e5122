//! Tables and columns as data. Real Dataverse environments are customised, so the simulator
//! reads every rule (types, lengths, required flags, lookups, state models) from these
//! definitions, which tests change at start-up ([`super::Config::tables`]) or at run time
//! (the schema control routes).

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    ];

    fn new(name: &str, kind: FieldType) -> Field {
        Field {
            name: name.into(),
            kind,
            required: false,
            read_only: false,
            default: None,
        }
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
fn system_fields(primary_key: &str) -> Vec<Field> {
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

fn table(
    entity_set: &str,
    logical_name: &str,
    primary_key: &str,
    states: Vec<StateOption>,
    fields: Vec<Field>,
) -> TableDef {
    let mut all = system_fields(primary_key);
    all.extend(fields);
    TableDef {
        entity_set: entity_set.into(),
        logical_name: logical_name.into(),
        primary_key: primary_key.into(),
        fields: all,
        states,
        change_tracking: true,
        alternate_keys: Vec::new(),
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
}

/// The standard tables of docs/dataverse.md ("Standard columns") plus the connector's, as a
/// fresh environment with the connector solution installed has them.
pub fn standard_tables() -> Vec<TableDef> {
    let accounts_contacts = [
        ("customerid_account", "accounts"),
        ("customerid_contact", "contacts"),
    ];
    let mut opportunity_fields = vec![
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
    opportunity_fields.extend(connector_fields());
    vec![
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
        ),
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
        ),
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
        ),
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
                // The connector's columns on the lead: which referral it came from, and its
                // Audit trail.
                Field::new("cosell_referralid", s(100)),
                Field::new("cosell_referrallink", s(500)),
                Field::new("cosell_audit", memo(100_000)),
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
        ),
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
        ),
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
        ),
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
