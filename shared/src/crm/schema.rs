//! What the connector needs in the partner's CRM, item by item: the columns and fields it reads
//! and writes, the tables and objects it keeps solutions in, the hold stage, change tracking, and
//! what lets the connector's own user use them. `cosell crm setup` creates what is missing;
//! `cosell doctor` reports it. Each CRM adapter finds the items by reading its metadata API and
//! creates them through it (docs/dataverse.md and docs/salesforce.md, "Metadata").

use async_trait::async_trait;

use super::CrmResult;

/// What kind of thing an item is, for people reading the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Publisher,
    Solution,
    Table,
    Column,
    Relationship,
    ChangeTracking,
    StatusReason,
    Stage,
    PermissionSet,
    FieldPermission,
    ObjectPermission,
    Assignment,
}

impl ItemKind {
    pub fn label(self) -> &'static str {
        match self {
            ItemKind::Publisher => "publisher",
            ItemKind::Solution => "solution",
            ItemKind::Table => "table",
            ItemKind::Column => "column",
            ItemKind::Relationship => "lookup",
            ItemKind::ChangeTracking => "change tracking",
            ItemKind::StatusReason => "status reason",
            ItemKind::Stage => "stage",
            ItemKind::PermissionSet => "permission set",
            ItemKind::FieldPermission => "field access",
            ItemKind::ObjectPermission => "object access",
            ItemKind::Assignment => "assignment",
        }
    }
}

/// The shape a column or field must have for the connector to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    /// Yes/No (Dataverse Boolean, Salesforce Checkbox), created with default No.
    YesNo,
    /// Single-line text, created this long; any text column at least `min` long will do.
    Text { length: usize, min: usize },
    /// Text that must be unique and usable as an upsert key (Salesforce External ID).
    ExternalId { length: usize },
    /// A URL (Salesforce Url; Dataverse text).
    Url,
    /// Multi-line text, created this long; at least `min` will do.
    LongText { length: usize, min: usize },
    /// A choice among these values (Salesforce picklist); `restricted` refuses others.
    Choice {
        values: Vec<String>,
        restricted: bool,
    },
    /// A lookup to `target`; `required` makes it the record's parent.
    Lookup { target: String, required: bool },
    /// A standard column or field of any type: it only has to exist.
    Any,
}

impl ColumnType {
    /// How the plan describes it.
    pub fn describe(&self) -> String {
        match self {
            ColumnType::YesNo => "Yes/No".into(),
            ColumnType::Text { length: 0, .. } => "text".into(),
            ColumnType::Text { length, .. } => format!("text ({length})"),
            ColumnType::ExternalId { length } => format!("text ({length}), unique External ID"),
            ColumnType::Url => "URL".into(),
            ColumnType::LongText { length, .. } => format!("multiline text ({length})"),
            ColumnType::Choice { values, .. } => format!("choice ({})", values.join(", ")),
            ColumnType::Any => "existing".into(),
            ColumnType::Lookup { target, required } => {
                format!(
                    "lookup to {target}{}",
                    if *required { ", required" } else { "" }
                )
            }
        }
    }
}

/// What the adapter found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemState {
    /// There and usable.
    InPlace,
    /// Not there: setup creates it.
    Missing,
    /// There but not usable as it is; a person must change it (setup leaves it alone).
    Unusable(String),
    /// Not there, and setup cannot create it: why, and what to do.
    Manual(String),
}

/// One thing the connector needs, where it stands, and how to create it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaItem {
    pub kind: ItemKind,
    /// Where it is: `opportunity.cosell_audit`, `Opportunity.Audit__c`, `cosell_solutionlinks`.
    pub name: String,
    /// Its shape, as the plan shows it.
    pub detail: String,
    pub state: ItemState,
    /// What the adapter needs to create it.
    pub spec: Spec,
}

impl SchemaItem {
    pub fn new(kind: ItemKind, name: impl Into<String>, detail: impl Into<String>) -> SchemaItem {
        SchemaItem {
            kind,
            name: name.into(),
            detail: detail.into(),
            state: ItemState::InPlace,
            spec: Spec::None,
        }
    }

    pub fn state(mut self, state: ItemState) -> SchemaItem {
        self.state = state;
        self
    }

    pub fn spec(mut self, spec: Spec) -> SchemaItem {
        self.spec = spec;
        self
    }

    pub fn is_missing(&self) -> bool {
        matches!(self.state, ItemState::Missing)
    }

    pub fn in_place(&self) -> bool {
        matches!(self.state, ItemState::InPlace)
    }
}

/// How an item is created; the adapter that listed it reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    None,
    Publisher,
    Solution,
    /// A table or object, with the name column every row has.
    Table {
        /// Dataverse: the entity set; Salesforce: the object.
        set: String,
        /// Dataverse: the logical name; Salesforce: the object again.
        logical: String,
        /// The primary name column.
        primary_name: String,
    },
    Column {
        /// Dataverse: the table's logical name; Salesforce: the object.
        table: String,
        name: String,
        column: ColumnType,
    },
    ChangeTracking {
        table: String,
    },
    StatusReason {
        table: String,
        state: i64,
        value: i64,
        label: String,
    },
    Stage {
        name: String,
    },
    PermissionSet,
    FieldPermission {
        /// `Object.Field__c`.
        field: String,
        edit: bool,
    },
    ObjectPermission {
        object: String,
        /// The connector deletes its records (solution links), not only reads and writes them.
        delete: bool,
    },
    Assignment,
}

/// The CRM's user the connector signs in as, and what the CRM says about its use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Dataverse: the application user's `UserId`; Salesforce: the integration user's id.
    pub user_id: String,
    /// The organization's id.
    pub organization: Option<String>,
    /// Salesforce: `DailyApiRequests` remaining and the day's maximum.
    pub daily_api_requests: Option<(u64, u64)>,
}

/// Reading and creating what the connector needs in a CRM.
#[async_trait]
pub trait CrmSchema: Send + Sync {
    /// Every item, in the order setup creates them, each with what the CRM has now. Reads only.
    async fn inspect(&self) -> CrmResult<Vec<SchemaItem>>;

    /// Creates one item [`CrmSchema::inspect`] listed as missing. Items are created in the
    /// order listed; a later one may rely on an earlier one.
    async fn create(&self, item: &SchemaItem) -> CrmResult<()>;

    /// Once everything was created: what makes it visible to people (Dataverse publishes the
    /// changed tables).
    async fn finish(&self, created: &[SchemaItem]) -> CrmResult<()>;

    /// Who the connector is in the CRM (Dataverse `WhoAmI`, Salesforce its user and `/limits`).
    async fn identity(&self) -> CrmResult<Identity>;

    /// ISO codes of the currencies the CRM has (Dataverse `transactioncurrencies`; Salesforce
    /// `CurrencyType` in a multi-currency org, else the corporate currency).
    async fn currencies(&self) -> CrmResult<Vec<String>>;
}
