//! The Web API's metadata (docs/dataverse.md, "Metadata (`cosell crm setup` and `cosell
//! doctor`)"): table, column and relationship definitions, read and written under
//! `/api/data/v9.x/` like data. They are views of, and changes to, the same [`TableDef`]s the
//! data API validates rows against, so a column created here can be queried and written at
//! once. Publishers and solutions are ordinary rows (`publishers`, `solutions`); their rules
//! are checked here when such a row is written ([`check_row`]), and every metadata create
//! records a `solutioncomponents` row in the solution it went into.
//!
//! Choices where the documentation is silent (docs/sandbox.md, "Dataverse metadata and the
//! bare org"):
//! - A create without `MSCRM.SolutionUniqueName` goes into the `Default` solution, as
//!   Dataverse adds such components to its default solution, so its names need the default
//!   publisher's prefix (`new_`).
//! - The refusal codes are the sandbox's ([`super::error`], `CODE_NAME_IN_USE` and after).
//! - Definitions take `$select`, `$filter` and `$expand` (`Attributes` on tables, `OptionSet`
//!   on choice columns); `$orderby`, `$top`, `$skip` and `$count` are refused.
//! - A PUT may not turn change tracking off once on (the platform cannot), nor change a
//!   table's names, key, ownership or type code.
//! - Besides the documented Boolean, String and Memo columns, a local Picklist can be created,
//!   so a partner's choice column can be played; options sent without a `Value`, and status
//!   reasons inserted without one, are numbered from the publisher's option value prefix
//!   followed by four digits.
//! - Definitions keep their `MetadataId` across starts and resets: it is derived from the
//!   names, as a real environment's ids do not change under a client.

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use cosell_odata::{Filter, parse_select};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::api::{Ctx, json_body, json_response, method_not_allowed};
use super::error::{
    CODE_DEFINITION, CODE_IMMUTABLE, CODE_LENGTH, CODE_NAME_IN_USE, CODE_PUBLISHER_PREFIX,
    CODE_SCHEMA_NAME, CODE_SOLUTION, DvError,
};
use super::path::{Key, parse_key, split_key_segment};
use super::schema::{
    self, DEFAULT_SOLUTION, Field, FieldType, LANGUAGE, LocalizedLabel, LookupTarget, OptionLabel,
    StatusOption, TableDef, TableMeta,
};
use super::store::State;

/// The namespace of every metadata type name.
const NS: &str = "Microsoft.Dynamics.CRM.";

/// Longest `MaxLength` of a single-line text column (docs/dataverse.md, "Metadata").
const MAX_STRING_LENGTH: i64 = 4000;
/// Longest `MaxLength` of a multi-line text column (docs/dataverse.md, "Metadata").
const MAX_MEMO_LENGTH: i64 = 1_048_576;
/// A text column created without `MaxLength` gets these (the platform's defaults, inferred).
const DEFAULT_STRING_LENGTH: i64 = 100;
const DEFAULT_MEMO_LENGTH: i64 = 2000;

/// `solutioncomponents.componenttype` values.
const COMPONENT_TABLE: i64 = 1;
const COMPONENT_COLUMN: i64 = 2;
const COMPONENT_RELATIONSHIP: i64 = 10;

/// An id derived from what it names, so definitions keep their `MetadataId` (and seeded
/// rows their ids) across starts and resets, as a real environment's do.
fn stable_id(kind: &str, name: &str) -> Uuid {
    let text = format!("{kind}:{}", name.to_ascii_lowercase());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    let mut bytes = [0u8; 16];
    for (b, d) in bytes.iter_mut().zip(digest.as_ref()) {
        *b = *d;
    }
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

fn entity_id(table: &TableDef) -> Uuid {
    stable_id("entity", &table.logical_name)
}

fn attribute_id(table: &TableDef, field: &Field) -> Uuid {
    stable_id(
        "attribute",
        &format!("{}.{}", table.logical_name, field.name),
    )
}

/// The id of a seeded publisher row.
pub(super) fn publisher_id(unique_name: &str) -> Uuid {
    stable_id("publisher", unique_name)
}

/// The id of a seeded solution row.
pub(super) fn solution_id(unique_name: &str) -> Uuid {
    stable_id("solution", unique_name)
}

/// A one-to-many relationship created through `POST RelationshipDefinitions`: its lookup is
/// a field of the referencing table; this keeps what the definition says besides.
#[derive(Debug, Clone)]
pub(crate) struct Relationship {
    id: Uuid,
    schema_name: String,
    referenced_entity: String,
    referenced_attribute: String,
    referencing_entity: String,
    referencing_attribute: String,
    navigation: String,
    cascade: Map<String, Value>,
}

// ---------------------------------------------------------------------------------------
// Paths

/// How a definition is addressed: by `MetadataId` or by its name key.
#[derive(Debug, Clone, PartialEq)]
enum DefKey {
    Id(Uuid),
    Name(String),
}

/// What a metadata path addresses.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Entities,
    Entity(DefKey),
    /// A table's columns, optionally cast to a derived type (`StringAttributeMetadata`).
    Attributes(DefKey, Option<String>),
    Attribute(DefKey, DefKey, Option<String>),
    Relationships,
    Relationship(DefKey),
    InsertStatusValue,
    PublishXml,
    PublishAllXml,
}

fn not_found_segment(segment: &str) -> DvError {
    DvError::not_found(format!("Resource not found for the segment '{segment}'."))
}

/// `name(key)` with the key named `key_name` (`LogicalName`, `SchemaName`) or a bare GUID.
fn def_key(segment: &str, inner: &str, key_name: &str) -> Result<DefKey, DvError> {
    match parse_key(inner)? {
        Key::Id(id) => Ok(DefKey::Id(id)),
        Key::Alternate(pairs) => match pairs.as_slice() {
            [(name, Value::String(v))] if name == key_name => Ok(DefKey::Name(v.clone())),
            [(name, Value::String(v))] if name == "MetadataId" => Uuid::parse_str(v)
                .map(DefKey::Id)
                .map_err(|_| DvError::bad_request("Bad Request - Error in query syntax.")),
            _ => Err(DvError::bad_request(format!(
                "The key in '{segment}' is not defined; address a definition by its MetadataId or {key_name}."
            ))),
        },
    }
}

/// A derived-type segment (`Microsoft.Dynamics.CRM.StringAttributeMetadata`), checked.
fn cast(segment: &str) -> Result<String, DvError> {
    let name = segment
        .strip_prefix(NS)
        .ok_or_else(|| not_found_segment(segment))?;
    if ATTRIBUTE_TYPES.contains(&name) {
        Ok(name.to_string())
    } else {
        Err(DvError::bad_request(format!(
            "The type '{segment}' is not a type derived from 'Microsoft.Dynamics.CRM.AttributeMetadata'."
        )))
    }
}

fn parse_target(rest: &str) -> Result<Target, DvError> {
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let first = segments.first().copied().unwrap_or("");
    let (head, inner) = split_key_segment(first).unwrap_or((first, ""));
    let keyed = first.contains('(');
    let head = head.strip_prefix(NS).unwrap_or(head);
    let more = segments.get(1..).unwrap_or(&[]);
    match (head, keyed, more) {
        ("EntityDefinitions", false, []) => Ok(Target::Entities),
        ("EntityDefinitions", true, rest) => {
            let table = def_key(first, inner, "LogicalName")?;
            attribute_target(table, rest)
        }
        ("RelationshipDefinitions", false, []) => Ok(Target::Relationships),
        // The only kind the sandbox creates, so the cast lists them all.
        ("RelationshipDefinitions", false, [c])
            if c.strip_prefix(NS) == Some("OneToManyRelationshipMetadata") =>
        {
            Ok(Target::Relationships)
        }
        ("RelationshipDefinitions", true, rest) => {
            let key = def_key(first, inner, "SchemaName")?;
            match rest {
                [] => Ok(Target::Relationship(key)),
                [c] if c.strip_prefix(NS) == Some("OneToManyRelationshipMetadata") => {
                    Ok(Target::Relationship(key))
                }
                [other, ..] => Err(not_found_segment(other)),
            }
        }
        ("InsertStatusValue", false, []) => Ok(Target::InsertStatusValue),
        ("PublishXml", false, []) => Ok(Target::PublishXml),
        ("PublishAllXml", false, []) => Ok(Target::PublishAllXml),
        ("GlobalOptionSetDefinitions", ..) => {
            Err(DvError::not_implemented("GlobalOptionSetDefinitions"))
        }
        _ => Err(not_found_segment(rest)),
    }
}

/// What follows `EntityDefinitions(key)`.
fn attribute_target(table: DefKey, rest: &[&str]) -> Result<Target, DvError> {
    let Some(first) = rest.first() else {
        return Ok(Target::Entity(table));
    };
    let (head, inner) = split_key_segment(first).unwrap_or((first, ""));
    let keyed = first.contains('(');
    match (head, keyed, rest.get(1..).unwrap_or(&[])) {
        ("Attributes", false, []) => Ok(Target::Attributes(table, None)),
        ("Attributes", false, [c]) => Ok(Target::Attributes(table, Some(cast(c)?))),
        ("Attributes", true, tail) => {
            let key = def_key(first, inner, "LogicalName")?;
            match tail {
                [] => Ok(Target::Attribute(table, key, None)),
                [c] => Ok(Target::Attribute(table, key, Some(cast(c)?))),
                [_, other, ..] => Err(not_found_segment(other)),
            }
        }
        (
            "Keys"
            | "OneToManyRelationships"
            | "ManyToOneRelationships"
            | "ManyToManyRelationships"
            | "Privileges",
            ..,
        ) => Err(DvError::not_implemented(&format!(
            "The navigation property '{head}'"
        ))),
        _ => Err(not_found_segment(first)),
    }
}

// ---------------------------------------------------------------------------------------
// Query options

/// The query options a definition read takes.
#[derive(Debug, Default)]
struct MetaQuery {
    select: Option<Vec<String>>,
    filter: Option<Filter>,
    expand: Vec<String>,
}

impl MetaQuery {
    fn parse(query: Option<&str>) -> Result<MetaQuery, DvError> {
        let mut q = MetaQuery::default();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "$select" => {
                    q.select = Some(
                        parse_select(&v)
                            .map_err(|e| DvError::bad_request(format!("Invalid $select: {e}")))?,
                    );
                }
                "$filter" => {
                    q.filter = Some(
                        Filter::parse(&v)
                            .map_err(|e| DvError::bad_request(format!("Invalid $filter: {e}")))?,
                    );
                }
                "$expand" => {
                    for item in v.split(',') {
                        let item = item.trim();
                        if item.contains('(') {
                            // Options inside an expansion are real but not simulated.
                            return Err(DvError::not_implemented(
                                "$expand with nested query options on definitions",
                            ));
                        }
                        if !item.is_empty() {
                            q.expand.push(item.to_string());
                        }
                    }
                }
                "$format" => {}
                other if other.starts_with('$') => {
                    return Err(DvError::bad_request(format!(
                        "The query parameter {other} is not supported on definitions."
                    )));
                }
                _ => {}
            }
        }
        Ok(q)
    }

    /// Every `$select`ed name must be a property of the type (`type_name` for the message).
    fn check_select(&self, known: &dyn Fn(&str) -> bool, type_name: &str) -> Result<(), DvError> {
        match self
            .select
            .iter()
            .flatten()
            .find(|name| !known(name.as_str()))
        {
            Some(bad) => Err(DvError::bad_request(format!(
                "Could not find a property named '{bad}' on type '{NS}{type_name}'."
            ))),
            None => Ok(()),
        }
    }

    fn check_expand(&self, allowed: &[&str], type_name: &str) -> Result<(), DvError> {
        match self.expand.iter().find(|e| !allowed.contains(&e.as_str())) {
            Some(bad) => Err(DvError::bad_request(format!(
                "Could not find a navigation property named '{bad}' on type '{NS}{type_name}'."
            ))),
            None => Ok(()),
        }
    }

    fn expands(&self, name: &str) -> bool {
        self.expand.iter().any(|e| e == name)
    }

    fn matches(&self, def: &Map<String, Value>) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches_object(def))
    }

    /// `def` with only the selected properties, `MetadataId` always, and the type annotation
    /// and the expansions kept.
    fn project(&self, def: Map<String, Value>) -> Map<String, Value> {
        let Some(select) = &self.select else {
            return def;
        };
        def.into_iter()
            .filter(|(k, _)| {
                k.starts_with('@') || k == "MetadataId" || select.contains(k) || self.expands(k)
            })
            .collect()
    }

    /// `(A,B)` for `@odata.context`.
    fn context_select(&self) -> String {
        let mut names: Vec<String> = self.select.clone().unwrap_or_default();
        names.extend(self.expand.iter().map(|e| format!("{e}()")));
        if names.is_empty() {
            String::new()
        } else {
            format!("({})", names.join(","))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Property names

/// The EntityMetadata properties Dataverse defines: a create or PUT may send any of them
/// (the ones the sandbox does not model are kept as sent), nothing else.
const ENTITY_PROPERTIES: &[&str] = &[
    "ActivityTypeMask",
    "AutoCreateAccessTeams",
    "AutoRouteToOwnerQueue",
    "CanBeInCustomEntityAssociation",
    "CanBeInManyToMany",
    "CanBePrimaryEntityInRelationship",
    "CanBeRelatedEntityInRelationship",
    "CanChangeHierarchicalRelationship",
    "CanChangeTrackingBeEnabled",
    "CanCreateAttributes",
    "CanCreateCharts",
    "CanCreateForms",
    "CanCreateViews",
    "CanEnableSyncToExternalSearchIndex",
    "CanModifyAdditionalSettings",
    "CanTriggerWorkflow",
    "ChangeTrackingEnabled",
    "CollectionSchemaName",
    "DaysSinceRecordLastModified",
    "Description",
    "DisplayCollectionName",
    "DisplayName",
    "EnforceStateTransitions",
    "EntityColor",
    "EntityHelpUrl",
    "EntityHelpUrlEnabled",
    "EntitySetName",
    "ExternalCollectionName",
    "ExternalName",
    "HasActivities",
    "HasChanged",
    "HasEmailAddresses",
    "HasFeedback",
    "HasNotes",
    "IconLargeName",
    "IconMediumName",
    "IconSmallName",
    "IconVectorName",
    "IntroducedVersion",
    "IsActivity",
    "IsActivityParty",
    "IsAIRUpdated",
    "IsAuditEnabled",
    "IsAvailableOffline",
    "IsBPFEntity",
    "IsBusinessProcessEnabled",
    "IsChildEntity",
    "IsConnectionsEnabled",
    "IsCustomEntity",
    "IsCustomizable",
    "IsDocumentManagementEnabled",
    "IsDocumentRecommendationsEnabled",
    "IsDuplicateDetectionEnabled",
    "IsEnabledForCharts",
    "IsEnabledForExternalChannels",
    "IsEnabledForTrace",
    "IsImportable",
    "IsInteractionCentricEnabled",
    "IsIntersect",
    "IsKnowledgeManagementEnabled",
    "IsLogicalEntity",
    "IsMailMergeEnabled",
    "IsManaged",
    "IsMappable",
    "IsOfflineInMobileClient",
    "IsOneNoteIntegrationEnabled",
    "IsOptimisticConcurrencyEnabled",
    "IsPrivate",
    "IsQuickCreateEnabled",
    "IsReadingPaneEnabled",
    "IsReadOnlyInMobileClient",
    "IsRenameable",
    "IsRetrieveAuditEnabled",
    "IsRetrieveMultipleAuditEnabled",
    "IsSLAEnabled",
    "IsSolutionAware",
    "IsStateModelAware",
    "IsValidForAdvancedFind",
    "IsValidForQueue",
    "IsVisibleInMobile",
    "IsVisibleInMobileClient",
    "LogicalCollectionName",
    "LogicalName",
    "MetadataId",
    "MobileOfflineFilters",
    "ObjectTypeCode",
    "OwnerId",
    "OwnerIdType",
    "OwningBusinessUnit",
    "OwnershipType",
    "PrimaryIdAttribute",
    "PrimaryImageAttribute",
    "PrimaryNameAttribute",
    "RecurrenceBaseEntityLogicalName",
    "ReportViewName",
    "SchemaName",
    "SettingOf",
    "Settings",
    "SyncToExternalSearchIndex",
    "TableType",
    "UsesBusinessDataLabelTable",
];

/// EntityMetadata's navigation properties: accepted in a body (and ignored, as an update of
/// the definition does not touch them), never `$select`ed.
const ENTITY_NAVIGATION: &[&str] = &[
    "Attributes",
    "Keys",
    "ManyToManyRelationships",
    "ManyToOneRelationships",
    "OneToManyRelationships",
    "Privileges",
];

/// Properties of a table the sandbox models; the rest go to [`TableMeta::other`].
const ENTITY_MODELLED: &[&str] = &[
    "MetadataId",
    "LogicalName",
    "SchemaName",
    "EntitySetName",
    "LogicalCollectionName",
    "CollectionSchemaName",
    "PrimaryIdAttribute",
    "PrimaryNameAttribute",
    "ObjectTypeCode",
    "ChangeTrackingEnabled",
    "IsCustomEntity",
    "IsManaged",
    "IsActivity",
    "IsIntersect",
    "HasNotes",
    "HasActivities",
    "OwnershipType",
    "DisplayName",
    "DisplayCollectionName",
    "Description",
];

/// What a PUT may not change (it may repeat them, as a client PUTting back what it read does).
const ENTITY_IMMUTABLE: &[&str] = &[
    "MetadataId",
    "LogicalName",
    "SchemaName",
    "EntitySetName",
    "LogicalCollectionName",
    "CollectionSchemaName",
    "PrimaryIdAttribute",
    "PrimaryNameAttribute",
    "ObjectTypeCode",
    "IsCustomEntity",
    "IsManaged",
    "IsActivity",
    "IsIntersect",
    "OwnershipType",
];

/// AttributeMetadata's own properties.
const ATTRIBUTE_PROPERTIES: &[&str] = &[
    "AttributeOf",
    "AttributeType",
    "AttributeTypeName",
    "AutoNumberFormat",
    "CanBeSecuredForCreate",
    "CanBeSecuredForRead",
    "CanBeSecuredForUpdate",
    "CanModifyAdditionalSettings",
    "ColumnNumber",
    "CreatedOn",
    "DeprecatedVersion",
    "Description",
    "DisplayName",
    "EntityLogicalName",
    "ExternalName",
    "HasChanged",
    "InheritsFrom",
    "IntroducedVersion",
    "IsAuditEnabled",
    "IsCustomAttribute",
    "IsCustomizable",
    "IsDataSourceSecret",
    "IsFilterable",
    "IsGlobalFilterEnabled",
    "IsLogical",
    "IsManaged",
    "IsPrimaryId",
    "IsPrimaryName",
    "IsRenameable",
    "IsRequiredForForm",
    "IsRetrievable",
    "IsSearchable",
    "IsSecured",
    "IsSortableEnabled",
    "IsValidForAdvancedFind",
    "IsValidForCreate",
    "IsValidForForm",
    "IsValidForGrid",
    "IsValidForRead",
    "IsValidForUpdate",
    "IsValidODataAttribute",
    "LinkedAttributeId",
    "LogicalName",
    "MetadataId",
    "ModifiedOn",
    "RequiredLevel",
    "SchemaName",
    "Settings",
    "SourceType",
];

/// The derived attribute types a path may cast to.
const ATTRIBUTE_TYPES: &[&str] = &[
    "BigIntAttributeMetadata",
    "BooleanAttributeMetadata",
    "DateTimeAttributeMetadata",
    "DecimalAttributeMetadata",
    "DoubleAttributeMetadata",
    "EntityNameAttributeMetadata",
    "EnumAttributeMetadata",
    "FileAttributeMetadata",
    "ImageAttributeMetadata",
    "IntegerAttributeMetadata",
    "LookupAttributeMetadata",
    "ManagedPropertyAttributeMetadata",
    "MemoAttributeMetadata",
    "MoneyAttributeMetadata",
    "MultiSelectPicklistAttributeMetadata",
    "PicklistAttributeMetadata",
    "StateAttributeMetadata",
    "StatusAttributeMetadata",
    "StringAttributeMetadata",
    "UniqueIdentifierAttributeMetadata",
];

/// Types derived from EnumAttributeMetadata: they have an `OptionSet`.
const ENUM_TYPES: &[&str] = &[
    "BooleanAttributeMetadata",
    "EntityNameAttributeMetadata",
    "EnumAttributeMetadata",
    "ManagedPropertyAttributeMetadata",
    "MultiSelectPicklistAttributeMetadata",
    "PicklistAttributeMetadata",
    "StateAttributeMetadata",
    "StatusAttributeMetadata",
];

/// The properties a derived attribute type adds to AttributeMetadata's.
fn type_properties(type_name: &str) -> &'static [&'static str] {
    const FORMULA: [&str; 2] = ["FormulaDefinition", "SourceTypeMask"];
    match type_name {
        "StringAttributeMetadata" => &[
            "MaxLength",
            "Format",
            "FormatName",
            "ImeMode",
            "YomiOf",
            "IsLocalizable",
            "DatabaseLength",
            "FormulaDefinition",
            "SourceTypeMask",
        ],
        "MemoAttributeMetadata" => &[
            "MaxLength",
            "Format",
            "FormatName",
            "ImeMode",
            "IsLocalizable",
        ],
        "BooleanAttributeMetadata" => &[
            "DefaultValue",
            "OptionSet",
            "GlobalOptionSet",
            FORMULA[0],
            FORMULA[1],
        ],
        "EnumAttributeMetadata" | "EntityNameAttributeMetadata" => {
            &["OptionSet", "GlobalOptionSet", "DefaultFormValue"]
        }
        "PicklistAttributeMetadata" | "MultiSelectPicklistAttributeMetadata" => &[
            "OptionSet",
            "GlobalOptionSet",
            "DefaultFormValue",
            "ParentPicklistLogicalName",
            "ChildPicklistLogicalNames",
            FORMULA[0],
            FORMULA[1],
        ],
        "StateAttributeMetadata" | "StatusAttributeMetadata" => {
            &["OptionSet", "GlobalOptionSet", "DefaultFormValue"]
        }
        "IntegerAttributeMetadata" | "BigIntAttributeMetadata" => {
            &["MinValue", "MaxValue", "Format", FORMULA[0], FORMULA[1]]
        }
        "MoneyAttributeMetadata" => &[
            "MinValue",
            "MaxValue",
            "Precision",
            "PrecisionSource",
            "ImeMode",
            "CalculationOf",
            "IsBaseCurrency",
            FORMULA[0],
            FORMULA[1],
        ],
        "DecimalAttributeMetadata" | "DoubleAttributeMetadata" => &[
            "MinValue",
            "MaxValue",
            "Precision",
            "ImeMode",
            FORMULA[0],
            FORMULA[1],
        ],
        "DateTimeAttributeMetadata" => &[
            "Format",
            "DateTimeBehavior",
            "CanChangeDateTimeBehavior",
            "ImeMode",
            "MinSupportedValue",
            "MaxSupportedValue",
            FORMULA[0],
            FORMULA[1],
        ],
        "LookupAttributeMetadata" => &["Targets", "Format"],
        _ => &[],
    }
}

/// The OneToManyRelationshipMetadata properties.
const RELATIONSHIP_PROPERTIES: &[&str] = &[
    "AssociatedMenuConfiguration",
    "CascadeConfiguration",
    "DenormalizedAttributeName",
    "EntityKey",
    "HasChanged",
    "IntroducedVersion",
    "IsCustomizable",
    "IsCustomRelationship",
    "IsHierarchical",
    "IsManaged",
    "IsRelationshipAttributeDenormalized",
    "IsValidForAdvancedFind",
    "Lookup",
    "MetadataId",
    "ReferencedAttribute",
    "ReferencedEntity",
    "ReferencedEntityNavigationPropertyName",
    "ReferencingAttribute",
    "ReferencingEntity",
    "ReferencingEntityNavigationPropertyName",
    "RelationshipBehavior",
    "RelationshipType",
    "SchemaName",
    "SecurityTypes",
];

// ---------------------------------------------------------------------------------------
// Labels

fn label_json(labels: &[LocalizedLabel], seed: &str) -> Value {
    let one = |l: &LocalizedLabel| {
        json!({
            "Label": l.label,
            "LanguageCode": l.language_code,
            "IsManaged": false,
            "MetadataId": stable_id("label", &format!("{seed}.{}", l.language_code)).to_string(),
            "HasChanged": null,
        })
    };
    let user = labels
        .iter()
        .find(|l| l.language_code == LANGUAGE)
        .or_else(|| labels.first());
    json!({
        "LocalizedLabels": labels.iter().map(one).collect::<Vec<_>>(),
        "UserLocalizedLabel": user.map_or(Value::Null, one),
    })
}

/// A `Label` from a body: its `LocalizedLabels` (or, without them, its
/// `UserLocalizedLabel`), each a text and a language code.
fn parse_label(v: &Value, property: &str) -> Result<Vec<LocalizedLabel>, DvError> {
    let bad = || {
        DvError::bad_request(format!(
            "The value of '{property}' must be a Label with LocalizedLabels, each with a Label and a LanguageCode."
        ))
    };
    let obj = v.as_object().ok_or_else(bad)?;
    let items: Vec<&Value> = match (obj.get("LocalizedLabels"), obj.get("UserLocalizedLabel")) {
        (Some(Value::Array(a)), _) if !a.is_empty() => a.iter().collect(),
        (_, Some(u)) if u.is_object() => vec![u],
        (Some(Value::Array(_)) | None, _) => Vec::new(),
        _ => return Err(bad()),
    };
    items
        .into_iter()
        .map(|item| {
            let label = item.get("Label").and_then(Value::as_str).ok_or_else(bad)?;
            let language_code = item
                .get("LanguageCode")
                .and_then(Value::as_i64)
                .ok_or_else(bad)?;
            Ok(LocalizedLabel {
                label: label.to_string(),
                language_code,
            })
        })
        .collect()
}

/// A label the definition must have, with at least one text.
fn required_label(
    body: &Map<String, Value>,
    property: &str,
    what: &str,
) -> Result<Vec<LocalizedLabel>, DvError> {
    let labels = match body.get(property) {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => parse_label(v, property)?,
    };
    if labels.iter().all(|l| l.label.trim().is_empty()) {
        return Err(DvError::new(
            StatusCode::BAD_REQUEST,
            CODE_DEFINITION,
            format!("{what} needs a {property} with a label."),
        ));
    }
    Ok(labels)
}

/// Sent labels replace the stored ones; with `MSCRM.MergeLabels: true`, only those of the
/// languages sent.
fn merge_labels(stored: &mut Vec<LocalizedLabel>, sent: Vec<LocalizedLabel>, merge: bool) {
    if !merge {
        *stored = sent;
        return;
    }
    for l in sent {
        match stored
            .iter_mut()
            .find(|s| s.language_code == l.language_code)
        {
            Some(s) => *s = l,
            None => stored.push(l),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Views of the schema

/// A name as the platform capitalises it (`opportunity` → `Opportunity`).
fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

fn table_schema_name(table: &TableDef) -> String {
    table.metadata.schema_name.clone().unwrap_or_else(|| {
        if table.metadata.custom {
            table.logical_name.clone()
        } else {
            capitalise(&table.logical_name)
        }
    })
}

fn field_schema_name(field: &Field) -> String {
    field.schema_name.clone().unwrap_or_else(|| {
        if field.custom {
            field.name.clone()
        } else {
            capitalise(&field.name)
        }
    })
}

/// A table's definition with every property the sandbox models.
fn entity_json(table: &TableDef) -> Map<String, Value> {
    let m = &table.metadata;
    let seed = table.logical_name.as_str();
    let schema_name = table_schema_name(table);
    let mut def = Map::new();
    def.insert("MetadataId".into(), json!(entity_id(table).to_string()));
    def.insert("LogicalName".into(), json!(table.logical_name));
    def.insert("SchemaName".into(), json!(schema_name));
    def.insert("EntitySetName".into(), json!(table.entity_set));
    def.insert("LogicalCollectionName".into(), json!(table.entity_set));
    def.insert(
        "CollectionSchemaName".into(),
        json!(format!("{schema_name}s")),
    );
    def.insert("PrimaryIdAttribute".into(), json!(table.primary_key));
    def.insert("PrimaryNameAttribute".into(), json!(m.primary_name));
    def.insert("ObjectTypeCode".into(), json!(m.object_type_code));
    def.insert("ChangeTrackingEnabled".into(), json!(table.change_tracking));
    def.insert("IsCustomEntity".into(), json!(m.custom));
    def.insert("IsManaged".into(), json!(!m.custom));
    def.insert("IsActivity".into(), json!(false));
    def.insert("IsIntersect".into(), json!(false));
    def.insert("HasNotes".into(), json!(m.has_notes));
    def.insert("HasActivities".into(), json!(m.has_activities));
    def.insert(
        "OwnershipType".into(),
        json!(if m.organization_owned {
            "OrganizationOwned"
        } else {
            "UserOwned"
        }),
    );
    def.insert(
        "DisplayName".into(),
        label_json(&m.display_name, &format!("{seed}.displayname")),
    );
    def.insert(
        "DisplayCollectionName".into(),
        label_json(
            &m.display_collection_name,
            &format!("{seed}.displaycollectionname"),
        ),
    );
    def.insert(
        "Description".into(),
        label_json(&m.description, &format!("{seed}.description")),
    );
    for (k, v) in &m.other {
        def.entry(k.clone()).or_insert_with(|| v.clone());
    }
    def
}

/// How the metadata API types a column: the derived type, `AttributeType` and
/// `AttributeTypeName`.
struct AttributeKind {
    odata: &'static str,
    attribute_type: &'static str,
    type_name: &'static str,
}

fn kind(field: &Field) -> AttributeKind {
    let k = |odata, attribute_type, type_name| AttributeKind {
        odata,
        attribute_type,
        type_name,
    };
    match &field.kind {
        FieldType::String { .. } => k("StringAttributeMetadata", "String", "StringType"),
        FieldType::Memo { .. } => k("MemoAttributeMetadata", "Memo", "MemoType"),
        FieldType::Money => k("MoneyAttributeMetadata", "Money", "MoneyType"),
        FieldType::Decimal => k("DecimalAttributeMetadata", "Decimal", "DecimalType"),
        // `versionnumber` is a BigInt: wider than Int32.
        FieldType::Integer { min, max }
            if *min < i64::from(i32::MIN) || *max > i64::from(i32::MAX) =>
        {
            k("BigIntAttributeMetadata", "BigInt", "BigIntType")
        }
        FieldType::Integer { .. } => k("IntegerAttributeMetadata", "Integer", "IntegerType"),
        FieldType::Boolean => k("BooleanAttributeMetadata", "Boolean", "BooleanType"),
        FieldType::DateTime | FieldType::Date => {
            k("DateTimeAttributeMetadata", "DateTime", "DateTimeType")
        }
        FieldType::Guid => k(
            "UniqueIdentifierAttributeMetadata",
            "Uniqueidentifier",
            "UniqueidentifierType",
        ),
        FieldType::Lookup { targets } => {
            let sets: Vec<&str> = targets.iter().map(|t| t.table.as_str()).collect();
            if field.name == "ownerid" {
                k("LookupAttributeMetadata", "Owner", "OwnerType")
            } else if sets.contains(&"accounts") && sets.contains(&"contacts") {
                k("LookupAttributeMetadata", "Customer", "CustomerType")
            } else {
                k("LookupAttributeMetadata", "Lookup", "LookupType")
            }
        }
        FieldType::Picklist { .. } => k("PicklistAttributeMetadata", "Picklist", "PicklistType"),
        FieldType::State => k("StateAttributeMetadata", "State", "StateType"),
        FieldType::Status => k("StatusAttributeMetadata", "Status", "StatusType"),
    }
}

/// Whether a column of `kind` is listed under the cast `cast`.
fn is_a(kind: &AttributeKind, cast: &str) -> bool {
    kind.odata == cast || (cast == "EnumAttributeMetadata" && ENUM_TYPES.contains(&kind.odata))
}

fn required_level(table: &TableDef, field: &Field) -> &'static str {
    let system = field.name == table.primary_key
        || matches!(field.kind, FieldType::State | FieldType::Status)
        || field.name == "ownerid";
    if system {
        "SystemRequired"
    } else if field.required {
        "ApplicationRequired"
    } else {
        "None"
    }
}

/// A column's definition; `option_set` adds its options (the `$expand=OptionSet` of a
/// choice column).
fn attribute_json(
    state: &State,
    table: &TableDef,
    field: &Field,
    option_set: bool,
) -> Map<String, Value> {
    let k = kind(field);
    let seed = format!("{}.{}", table.logical_name, field.name);
    let primary_key = field.name == table.primary_key;
    let mut a = Map::new();
    a.insert("@odata.type".into(), json!(format!("#{NS}{}", k.odata)));
    a.insert(
        "MetadataId".into(),
        json!(attribute_id(table, field).to_string()),
    );
    a.insert("LogicalName".into(), json!(field.name));
    a.insert("SchemaName".into(), json!(field_schema_name(field)));
    a.insert("EntityLogicalName".into(), json!(table.logical_name));
    a.insert("AttributeType".into(), json!(k.attribute_type));
    a.insert("AttributeTypeName".into(), json!({"Value": k.type_name}));
    a.insert("AttributeOf".into(), Value::Null);
    a.insert("IsPrimaryId".into(), json!(primary_key));
    a.insert(
        "IsPrimaryName".into(),
        json!(table.metadata.primary_name.as_deref() == Some(field.name.as_str())),
    );
    a.insert("IsCustomAttribute".into(), json!(field.custom));
    a.insert("IsManaged".into(), json!(!field.custom));
    // The key can be chosen on create (the product creates rows under its own ids), never
    // changed; what the service maintains can be neither.
    a.insert("IsValidForCreate".into(), json!(!field.read_only));
    a.insert(
        "IsValidForUpdate".into(),
        json!(!field.read_only && !primary_key),
    );
    a.insert("IsValidForRead".into(), json!(true));
    a.insert(
        "RequiredLevel".into(),
        json!({
            "Value": required_level(table, field),
            "CanBeChanged": !primary_key,
            "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
        }),
    );
    let display = if field.display_name.is_empty() {
        schema::label(&capitalise(&field.name))
    } else {
        field.display_name.clone()
    };
    a.insert(
        "DisplayName".into(),
        label_json(&display, &format!("{seed}.displayname")),
    );
    a.insert(
        "Description".into(),
        label_json(&[], &format!("{seed}.description")),
    );
    match &field.kind {
        FieldType::String { max_length } => {
            a.insert("MaxLength".into(), json!(max_length));
            a.insert("Format".into(), json!("Text"));
            a.insert("FormatName".into(), json!({"Value": "Text"}));
            a.insert("DatabaseLength".into(), json!(max_length.saturating_mul(2)));
        }
        FieldType::Memo { max_length } => {
            a.insert("MaxLength".into(), json!(max_length));
            a.insert("Format".into(), json!("TextArea"));
        }
        FieldType::Boolean => {
            let default = field
                .default
                .as_ref()
                .and_then(Value::as_bool)
                .unwrap_or(false);
            a.insert("DefaultValue".into(), json!(default));
        }
        FieldType::Integer { min, max } => {
            a.insert("MinValue".into(), json!(min));
            a.insert("MaxValue".into(), json!(max));
            a.insert("Format".into(), json!("None"));
        }
        FieldType::Money => {
            a.insert("Precision".into(), json!(2));
            a.insert("PrecisionSource".into(), json!(2));
            a.insert("MinValue".into(), json!(-922_337_203_685_477.0));
            a.insert("MaxValue".into(), json!(922_337_203_685_477.0));
        }
        FieldType::Decimal => {
            a.insert("Precision".into(), json!(10));
            a.insert("MinValue".into(), json!(-100_000_000_000.0));
            a.insert("MaxValue".into(), json!(100_000_000_000.0));
        }
        FieldType::DateTime | FieldType::Date => {
            let date_only = matches!(field.kind, FieldType::Date);
            a.insert(
                "Format".into(),
                json!(if date_only { "DateOnly" } else { "DateAndTime" }),
            );
            a.insert(
                "DateTimeBehavior".into(),
                json!({"Value": if date_only { "DateOnly" } else { "UserLocal" }}),
            );
        }
        FieldType::Lookup { targets } => {
            let logical: Vec<String> = targets
                .iter()
                .map(|t| {
                    state
                        .table_def(&t.table)
                        .map(|x| x.logical_name.clone())
                        .unwrap_or_else(|| t.table.trim_end_matches('s').to_string())
                })
                .collect();
            a.insert("Targets".into(), json!(logical));
        }
        FieldType::Guid | FieldType::Picklist { .. } | FieldType::State | FieldType::Status => {}
    }
    if option_set {
        a.insert("OptionSet".into(), options_json(table, field, &seed));
        a.insert("GlobalOptionSet".into(), Value::Null);
    }
    a
}

/// A choice column's `OptionSet`.
fn options_json(table: &TableDef, field: &Field, seed: &str) -> Value {
    let labelled = |value: i64, labels: &[LocalizedLabel], extra: Map<String, Value>| {
        let mut o = Map::new();
        o.insert("Value".into(), json!(value));
        o.insert(
            "Label".into(),
            label_json(labels, &format!("{seed}.option.{value}")),
        );
        o.insert(
            "Description".into(),
            label_json(&[], &format!("{seed}.option.{value}.description")),
        );
        o.extend(extra);
        Value::Object(o)
    };
    let option = |value: i64, text: &str, extra: Map<String, Value>| {
        labelled(value, &schema::label(text), extra)
    };
    let (kind, options) = match &field.kind {
        FieldType::Status => (
            "Status",
            table
                .states
                .iter()
                .flat_map(|st| {
                    st.statuses.iter().map(|s| {
                        option(
                            s.value,
                            &s.label,
                            Map::from_iter([("State".to_string(), json!(st.value))]),
                        )
                    })
                })
                .collect(),
        ),
        FieldType::State => (
            "State",
            table
                .states
                .iter()
                .map(|st| {
                    option(
                        st.value,
                        &st.label,
                        Map::from_iter([
                            ("DefaultStatus".to_string(), json!(st.default_status)),
                            ("InvariantName".to_string(), json!(st.label)),
                        ]),
                    )
                })
                .collect(),
        ),
        FieldType::Picklist { options } => (
            "Picklist",
            options
                .iter()
                .map(
                    |v| match field.option_labels.iter().find(|l| l.value == *v) {
                        Some(l) => labelled(*v, &l.label, Map::new()),
                        None => option(*v, &v.to_string(), Map::new()),
                    },
                )
                .collect(),
        ),
        FieldType::Boolean => {
            return json!({
                "MetadataId": stable_id("optionset", seed).to_string(),
                "Name": format!("{}_{}", table.logical_name, field.name),
                "OptionSetType": "Boolean",
                "IsGlobal": false,
                "TrueOption": option(1, "Yes", Map::new()),
                "FalseOption": option(0, "No", Map::new()),
            });
        }
        _ => ("Picklist", Vec::<Value>::new()),
    };
    json!({
        "MetadataId": stable_id("optionset", seed).to_string(),
        "Name": format!("{}_{}", table.logical_name, field.name),
        "OptionSetType": kind,
        "IsGlobal": false,
        "Options": options,
    })
}

fn relationship_json(r: &Relationship) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "@odata.type".into(),
        json!(format!("#{NS}OneToManyRelationshipMetadata")),
    );
    m.insert("MetadataId".into(), json!(r.id.to_string()));
    m.insert("SchemaName".into(), json!(r.schema_name));
    m.insert("RelationshipType".into(), json!("OneToManyRelationship"));
    m.insert("IsCustomRelationship".into(), json!(true));
    m.insert("IsManaged".into(), json!(false));
    m.insert("ReferencedEntity".into(), json!(r.referenced_entity));
    m.insert("ReferencedAttribute".into(), json!(r.referenced_attribute));
    m.insert("ReferencingEntity".into(), json!(r.referencing_entity));
    m.insert(
        "ReferencingAttribute".into(),
        json!(r.referencing_attribute),
    );
    m.insert(
        "ReferencingEntityNavigationPropertyName".into(),
        json!(r.navigation),
    );
    m.insert(
        "ReferencedEntityNavigationPropertyName".into(),
        json!(r.schema_name),
    );
    m.insert(
        "CascadeConfiguration".into(),
        Value::Object(r.cascade.clone()),
    );
    m
}

// ---------------------------------------------------------------------------------------
// Finding definitions

fn table_by_key<'s>(state: &'s State, key: &DefKey) -> Result<&'s TableDef, DvError> {
    let found = state.tables.iter().find(|t| match key {
        DefKey::Id(id) => entity_id(t) == *id,
        DefKey::Name(n) => t.logical_name.eq_ignore_ascii_case(n),
    });
    found.ok_or_else(|| match key {
        DefKey::Id(id) => DvError::not_found(format!(
            "Could not find an entity with the MetadataId {id}."
        )),
        DefKey::Name(n) => {
            DvError::not_found(format!("Could not find an entity with the name '{n}'."))
        }
    })
}

fn table_index(state: &State, key: &DefKey) -> Result<usize, DvError> {
    let logical = table_by_key(state, key)?.logical_name.clone();
    state
        .tables
        .iter()
        .position(|t| t.logical_name == logical)
        .ok_or_else(|| DvError::not_found(format!("Could not find an entity named '{logical}'.")))
}

fn table_by_logical<'s>(state: &'s State, logical: &str) -> Option<&'s TableDef> {
    state
        .tables
        .iter()
        .find(|t| t.logical_name.eq_ignore_ascii_case(logical))
}

fn field_by_key<'t>(table: &'t TableDef, key: &DefKey) -> Result<&'t Field, DvError> {
    table
        .fields
        .iter()
        .find(|f| match key {
            DefKey::Id(id) => attribute_id(table, f) == *id,
            DefKey::Name(n) => f.name.eq_ignore_ascii_case(n),
        })
        .ok_or_else(|| {
            DvError::not_found(format!(
                "Could not find an attribute {} on the entity '{}'.",
                match key {
                    DefKey::Id(id) => format!("with the MetadataId {id}"),
                    DefKey::Name(n) => format!("named '{n}'"),
                },
                table.logical_name
            ))
        })
}

// ---------------------------------------------------------------------------------------
// Solutions

/// The solution a create goes into, and its publisher's prefixes.
struct Home {
    solution_id: Uuid,
    unique_name: String,
    prefix: String,
    option_value_prefix: i64,
}

fn solution_error(message: String) -> DvError {
    DvError::new(StatusCode::BAD_REQUEST, CODE_SOLUTION, message)
}

fn text<'v>(row: &'v Map<String, Value>, column: &str) -> &'v str {
    row.get(column).and_then(Value::as_str).unwrap_or("")
}

/// The unmanaged solution `named` (the `Default` solution when none is named) and its
/// publisher.
fn home(state: &State, named: Option<&str>) -> Result<Home, DvError> {
    let name = named.unwrap_or(DEFAULT_SOLUTION);
    let solutions = table_by_logical(state, "solution")
        .map(|t| t.entity_set.clone())
        .unwrap_or_default();
    let row = state
        .rows(&solutions)
        .find(|r| text(&r.values, "uniquename").eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            solution_error(match named {
                Some(n) => format!(
                    "The solution '{n}' named by MSCRM.SolutionUniqueName does not exist."
                ),
                None => format!(
                    "No MSCRM.SolutionUniqueName was given and the environment has no '{DEFAULT_SOLUTION}' solution."
                ),
            })
        })?;
    if row.values.get("ismanaged").and_then(Value::as_bool) == Some(true) {
        return Err(solution_error(format!(
            "The solution '{name}' is managed; components can only be added to an unmanaged solution."
        )));
    }
    let solution_id = Uuid::parse_str(text(&row.values, "solutionid"))
        .map_err(|_| solution_error(format!("The solution '{name}' has no id.")))?;
    let publishers = table_by_logical(state, "publisher")
        .map(|t| t.entity_set.clone())
        .unwrap_or_default();
    let publisher_id = text(&row.values, "_publisherid_value");
    let publisher = state
        .rows(&publishers)
        .find(|p| text(&p.values, "publisherid") == publisher_id)
        .ok_or_else(|| solution_error(format!("The solution '{name}' has no publisher.")))?;
    Ok(Home {
        solution_id,
        unique_name: text(&row.values, "uniquename").to_string(),
        prefix: text(&publisher.values, "customizationprefix").to_string(),
        option_value_prefix: publisher
            .values
            .get("customizationoptionvalueprefix")
            .and_then(Value::as_i64)
            .unwrap_or(10_000),
    })
}

fn solution_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("MSCRM.SolutionUniqueName")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Records that `object` belongs to the solution, once.
fn add_component(
    state: &mut State,
    home: &Home,
    component_type: i64,
    object: Uuid,
    now: DateTime<Utc>,
) {
    let Some(set) = table_by_logical(state, "solutioncomponent").map(|t| t.entity_set.clone())
    else {
        return;
    };
    let solution = home.solution_id.to_string();
    let object = object.to_string();
    let known = state.rows(&set).any(|r| {
        text(&r.values, "objectid") == object && text(&r.values, "_solutionid_value") == solution
    });
    if known {
        return;
    }
    state.insert_system_row(
        &set,
        vec![
            ("objectid".into(), json!(object)),
            ("componenttype".into(), json!(component_type)),
            ("_solutionid_value".into(), json!(solution)),
            ("ismetadata".into(), json!(true)),
        ],
        vec![("_solutionid_value".into(), "solution".into())],
        now,
    );
}

/// A schema name: a letter, then letters, digits and underscores.
fn check_schema_name(name: &str, what: &str) -> Result<(), DvError> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64;
    if valid {
        Ok(())
    } else {
        Err(DvError::new(
            StatusCode::BAD_REQUEST,
            CODE_SCHEMA_NAME,
            format!(
                "The schema name '{name}' of the {what} is not valid: it must start with a letter and hold only letters, digits and underscores (at most 64)."
            ),
        ))
    }
}

/// Names created in a solution start with its publisher's prefix and `_` (docs/dataverse.md,
/// "Metadata").
fn check_prefix(home: &Home, name: &str, what: &str) -> Result<(), DvError> {
    check_schema_name(name, what)?;
    let prefix = format!("{}_", home.prefix.to_ascii_lowercase());
    let lower = name.to_ascii_lowercase();
    if lower.starts_with(&prefix) && lower.len() > prefix.len() {
        return Ok(());
    }
    Err(DvError::new(
        StatusCode::BAD_REQUEST,
        CODE_SCHEMA_NAME,
        format!(
            "The schema name '{name}' of the {what} does not start with '{prefix}', the customization prefix of the publisher of solution '{}'.",
            home.unique_name
        ),
    ))
}

fn name_in_use(message: String) -> DvError {
    DvError::new(StatusCode::BAD_REQUEST, CODE_NAME_IN_USE, message)
}

/// Refuses a column name (or navigation property) the table already uses, its primary key
/// included.
fn check_free(table: &TableDef, logical: &str, navigation: Option<&str>) -> Result<(), DvError> {
    let clash = table.fields.iter().find(|f| {
        f.name.eq_ignore_ascii_case(logical)
            || f.column().eq_ignore_ascii_case(logical)
            || f.column()
                .eq_ignore_ascii_case(&format!("_{logical}_value"))
    });
    if let Some(f) = clash {
        let key = if f.name == table.primary_key {
            " (it is the table's primary key)"
        } else {
            ""
        };
        return Err(name_in_use(format!(
            "The table '{}' already has a column named '{}'{key}.",
            table.logical_name, f.name
        )));
    }
    let nav_clash = |nav: &str| {
        table.fields.iter().any(|f| match &f.kind {
            FieldType::Lookup { targets } => targets
                .iter()
                .any(|t| t.navigation.eq_ignore_ascii_case(nav)),
            _ => false,
        })
    };
    if let Some(nav) = navigation.filter(|n| nav_clash(n)) {
        return Err(name_in_use(format!(
            "The table '{}' already has a navigation property named '{nav}'.",
            table.logical_name
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Bodies

fn definition_error(message: String) -> DvError {
    DvError::new(StatusCode::BAD_REQUEST, CODE_DEFINITION, message)
}

/// The `@odata.type` of a body without `#` and namespace; `None` when absent.
fn odata_type(body: &Map<String, Value>) -> Result<Option<&str>, DvError> {
    match body.get("@odata.type") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) => {
            let t = t.trim_start_matches('#');
            Ok(Some(t.strip_prefix(NS).unwrap_or(t)))
        }
        Some(_) => Err(DvError::bad_request(
            "The value of '@odata.type' must be a type name.",
        )),
    }
}

/// Every property of the body must be one of `known` (annotations aside).
fn check_known(
    body: &Map<String, Value>,
    known: &dyn Fn(&str) -> bool,
    type_name: &str,
) -> Result<(), DvError> {
    match body.keys().find(|k| !k.contains('@') && !known(k)) {
        Some(k) => Err(DvError::bad_request(format!(
            "The property '{k}' does not exist on type '{NS}{type_name}'. Make sure to only use property names that are defined by the type."
        ))),
        None => Ok(()),
    }
}

fn required_str<'b>(
    body: &'b Map<String, Value>,
    property: &str,
    what: &str,
) -> Result<&'b str, DvError> {
    match body.get(property) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.as_str()),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            Err(definition_error(format!("{what} needs a {property}.")))
        }
        Some(_) => Err(DvError::bad_request(format!(
            "The value of '{property}' must be a string."
        ))),
    }
}

fn optional_bool(body: &Map<String, Value>, property: &str) -> Result<Option<bool>, DvError> {
    match body.get(property) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        // Managed properties come as `{"Value": true, …}`.
        Some(Value::Object(o)) if o.get("Value").is_some_and(Value::is_boolean) => {
            Ok(o.get("Value").and_then(Value::as_bool))
        }
        Some(_) => Err(DvError::bad_request(format!(
            "The value of '{property}' must be true or false."
        ))),
    }
}

/// `RequiredLevel` `{"Value": …}`: whether the column is ApplicationRequired.
fn parse_required(body: &Map<String, Value>) -> Result<bool, DvError> {
    let level = match body.get("RequiredLevel") {
        None | Some(Value::Null) => return Ok(false),
        Some(Value::Object(o)) => o.get("Value").and_then(Value::as_str),
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => None,
    };
    match level {
        Some("None" | "Recommended") => Ok(false),
        Some("ApplicationRequired") => Ok(true),
        Some("SystemRequired") => Err(definition_error(
            "A column cannot be created SystemRequired; use ApplicationRequired.".into(),
        )),
        _ => Err(DvError::bad_request(
            "RequiredLevel must be {\"Value\": \"None\" | \"Recommended\" | \"ApplicationRequired\"}.",
        )),
    }
}

/// `MaxLength`, within `1..=max`, or `default` when absent.
fn max_length(
    body: &Map<String, Value>,
    max: i64,
    default: i64,
    what: &str,
) -> Result<usize, DvError> {
    let n = match body.get("MaxLength") {
        None | Some(Value::Null) => default,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| DvError::bad_request("The value of 'MaxLength' must be an integer."))?,
    };
    if !(1..=max).contains(&n) {
        return Err(DvError::new(
            StatusCode::BAD_REQUEST,
            CODE_LENGTH,
            format!("The MaxLength {n} of {what} is out of range: it must be between 1 and {max}."),
        ));
    }
    usize::try_from(n).map_err(|_| DvError::bad_request("MaxLength is out of range."))
}

/// The first option value a publisher's new choices get: its option value prefix followed by
/// four digits (`10000` → `100000000`), as Dataverse numbers them.
fn option_base(home: &Home) -> i64 {
    home.option_value_prefix.saturating_mul(10_000)
}

/// The options of a new local choice column. Each needs a label; an option sent without a
/// `Value` gets the lowest free value from `base` up.
fn parse_options(
    body: &Map<String, Value>,
    what: &str,
    base: i64,
) -> Result<Vec<OptionLabel>, DvError> {
    if body.get("GlobalOptionSet").is_some_and(|v| !v.is_null()) {
        return Err(DvError::not_implemented(
            "A choice column bound to a global choice",
        ));
    }
    let set = body
        .get("OptionSet")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            definition_error(format!(
                "The choice {what} needs an OptionSet with its Options."
            ))
        })?;
    if optional_bool(set, "IsGlobal")? == Some(true) {
        return Err(DvError::not_implemented("Creating a global choice"));
    }
    let items = set
        .get("Options")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            definition_error(format!(
                "The choice {what} needs an OptionSet with at least one option in Options."
            ))
        })?;
    let mut sent: Vec<(Option<i64>, Vec<LocalizedLabel>)> = Vec::new();
    for item in items {
        let option = item.as_object().ok_or_else(|| {
            DvError::bad_request("Each item of 'Options' must be an OptionMetadata object.")
        })?;
        let value = match option.get("Value") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_i64()
                    .filter(|n| i32::try_from(*n).is_ok())
                    .ok_or_else(|| {
                        DvError::bad_request(
                            "The 'Value' of an option must be a whole number within Int32.",
                        )
                    })?,
            ),
        };
        let label = required_label(option, "Label", &format!("An option of the {what}"))?;
        if let Some(v) = value
            && sent.iter().any(|(other, _)| *other == Some(v))
        {
            return Err(name_in_use(format!(
                "The option value {v} is used twice in the {what}."
            )));
        }
        sent.push((value, label));
    }
    let mut used: Vec<i64> = sent.iter().filter_map(|(v, _)| *v).collect();
    let mut options = Vec::new();
    for (value, label) in sent {
        let value = match value {
            Some(v) => v,
            None => {
                let free = (base..).find(|v| !used.contains(v)).unwrap_or(base);
                used.push(free);
                free
            }
        };
        options.push(OptionLabel { value, label });
    }
    Ok(options)
}

/// A column from an AttributeMetadata body: Boolean, String, Memo or a local Picklist
/// (docs/dataverse.md, "Metadata"). The name is the lower-cased `SchemaName`; options sent
/// without a value are numbered from `option_base`.
fn parse_column(body: &Map<String, Value>, option_base: i64) -> Result<Field, DvError> {
    let Some(type_name) = odata_type(body)? else {
        return Err(definition_error(
            "A column needs its '@odata.type' (StringAttributeMetadata, MemoAttributeMetadata, BooleanAttributeMetadata or PicklistAttributeMetadata).".into(),
        ));
    };
    let mut option_labels = Vec::new();
    let known =
        |k: &str| ATTRIBUTE_PROPERTIES.contains(&k) || type_properties(type_name).contains(&k);
    let schema_name = required_str(body, "SchemaName", "A column")?;
    let what = format!("column '{schema_name}'");
    let kind = match type_name {
        "StringAttributeMetadata" => {
            check_known(body, &known, type_name)?;
            FieldType::String {
                max_length: max_length(body, MAX_STRING_LENGTH, DEFAULT_STRING_LENGTH, &what)?,
            }
        }
        "MemoAttributeMetadata" => {
            check_known(body, &known, type_name)?;
            FieldType::Memo {
                max_length: max_length(body, MAX_MEMO_LENGTH, DEFAULT_MEMO_LENGTH, &what)?,
            }
        }
        "BooleanAttributeMetadata" => {
            check_known(body, &known, type_name)?;
            let options = body.get("OptionSet").and_then(Value::as_object);
            let value = |name: &str| {
                options
                    .and_then(|o| o.get(name))
                    .and_then(|o| o.get("Value"))
                    .and_then(Value::as_i64)
            };
            if value("TrueOption") != Some(1) || value("FalseOption") != Some(0) {
                return Err(definition_error(format!(
                    "The Yes/No {what} needs an OptionSet with a TrueOption of Value 1 and a FalseOption of Value 0."
                )));
            }
            FieldType::Boolean
        }
        "PicklistAttributeMetadata" => {
            check_known(body, &known, type_name)?;
            option_labels = parse_options(body, &what, option_base)?;
            FieldType::Picklist {
                options: option_labels.iter().map(|o| o.value).collect(),
            }
        }
        "LookupAttributeMetadata" => {
            return Err(definition_error(
                "A lookup column is created with its relationship: POST RelationshipDefinitions with a OneToManyRelationshipMetadata.".into(),
            ));
        }
        t if ATTRIBUTE_TYPES.contains(&t) => {
            return Err(DvError::not_implemented(&format!("Creating a {t} column")));
        }
        t => {
            return Err(DvError::bad_request(format!(
                "The type '{t}' is not a type derived from '{NS}AttributeMetadata'."
            )));
        }
    };
    let display_name = required_label(body, "DisplayName", &format!("The {what}"))?;
    let mut field = Field::new(&schema_name.to_ascii_lowercase(), kind).custom();
    field.required = parse_required(body)?;
    field.schema_name = Some(schema_name.to_string());
    field.display_name = display_name;
    field.option_labels = option_labels;
    if matches!(field.kind, FieldType::Boolean) {
        let default = optional_bool(body, "DefaultValue")?.unwrap_or(false);
        field.default = Some(Value::Bool(default));
    }
    Ok(field)
}

// ---------------------------------------------------------------------------------------
// Handlers

/// Every request under a metadata path.
pub(super) fn handle(
    ctx: &Ctx<'_>,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Result<Response, DvError> {
    let target = parse_target(path)?;
    match (target, method.clone()) {
        (Target::Entities, Method::GET) => list_entities(ctx),
        (Target::Entities, Method::POST) => create_entity(ctx, body),
        (Target::Entity(key), Method::GET) => get_entity(ctx, &key),
        (Target::Entity(key), Method::PUT) => put_entity(ctx, &key, body),
        (Target::Attributes(key, cast), Method::GET) => list_attributes(ctx, &key, cast.as_deref()),
        (Target::Attributes(key, None), Method::POST) => create_attribute(ctx, &key, body),
        (Target::Attribute(table, key, cast), Method::GET) => {
            get_attribute(ctx, &table, &key, cast.as_deref())
        }
        (Target::Relationships, Method::GET) => list_relationships(ctx),
        (Target::Relationships, Method::POST) => create_relationship(ctx, body),
        (Target::Relationship(key), Method::GET) => get_relationship(ctx, &key),
        (Target::InsertStatusValue, Method::POST) => insert_status_value(ctx, body),
        (Target::PublishXml, Method::POST) => publish_xml(ctx, body),
        (Target::PublishAllXml, Method::POST) => Ok(StatusCode::NO_CONTENT.into_response()),
        (_, m) => Err(method_not_allowed(&m)),
    }
}

fn entity_known(name: &str) -> bool {
    ENTITY_PROPERTIES.contains(&name)
}

/// The expansions a table read takes: its columns.
fn expand_entity(state: &State, table: &TableDef, q: &MetaQuery, def: &mut Map<String, Value>) {
    if q.expands("Attributes") {
        let attributes: Vec<Value> = table
            .fields
            .iter()
            .map(|f| Value::Object(attribute_json(state, table, f, false)))
            .collect();
        def.insert("Attributes".into(), Value::Array(attributes));
    }
}

fn list_entities(ctx: &Ctx<'_>) -> Result<Response, DvError> {
    let q = MetaQuery::parse(ctx.query)?;
    q.check_select(&entity_known, "EntityMetadata")?;
    q.check_expand(&["Attributes"], "EntityMetadata")?;
    let state = ctx.app.dataverse();
    let value: Vec<Value> = state
        .tables
        .iter()
        .filter_map(|t| {
            let mut def = entity_json(t);
            if !q.matches(&def) {
                return None;
            }
            expand_entity(&state, t, &q, &mut def);
            Some(Value::Object(q.project(def)))
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        json!({
            "@odata.context": format!("{}/$metadata#EntityDefinitions{}", ctx.api(), q.context_select()),
            "value": value,
        }),
    ))
}

fn with_context(context: String, def: Map<String, Value>) -> Value {
    let mut out = Map::new();
    out.insert("@odata.context".into(), Value::String(context));
    out.extend(def);
    Value::Object(out)
}

fn get_entity(ctx: &Ctx<'_>, key: &DefKey) -> Result<Response, DvError> {
    let q = MetaQuery::parse(ctx.query)?;
    q.check_select(&entity_known, "EntityMetadata")?;
    q.check_expand(&["Attributes"], "EntityMetadata")?;
    let state = ctx.app.dataverse();
    let table = table_by_key(&state, key)?;
    let mut def = entity_json(table);
    expand_entity(&state, table, &q, &mut def);
    let context = format!(
        "{}/$metadata#EntityDefinitions{}/$entity",
        ctx.api(),
        q.context_select()
    );
    Ok(json_response(
        StatusCode::OK,
        with_context(context, q.project(def)),
    ))
}

/// Which properties a `$select` on columns may name: AttributeMetadata's, plus the cast's.
fn attribute_known(cast: Option<&str>) -> impl Fn(&str) -> bool + '_ {
    move |name: &str| {
        ATTRIBUTE_PROPERTIES.contains(&name)
            || cast.is_some_and(|c| type_properties(c).contains(&name))
    }
}

/// The expansions a column read may ask for: the options of a choice column's cast.
fn attribute_expansions(q: &MetaQuery, cast: Option<&str>) -> Result<bool, DvError> {
    let type_name = cast.unwrap_or("AttributeMetadata");
    let allowed: &[&str] = if cast.is_some_and(|c| ENUM_TYPES.contains(&c)) {
        &["OptionSet", "GlobalOptionSet"]
    } else {
        &[]
    };
    q.check_expand(allowed, type_name)?;
    Ok(q.expands("OptionSet"))
}

fn list_attributes(ctx: &Ctx<'_>, key: &DefKey, cast: Option<&str>) -> Result<Response, DvError> {
    let q = MetaQuery::parse(ctx.query)?;
    q.check_select(&attribute_known(cast), cast.unwrap_or("AttributeMetadata"))?;
    let option_set = attribute_expansions(&q, cast)?;
    let state = ctx.app.dataverse();
    let table = table_by_key(&state, key)?;
    let value: Vec<Value> = table
        .fields
        .iter()
        .filter(|f| cast.is_none_or(|c| is_a(&kind(f), c)))
        .filter_map(|f| {
            let mut a = attribute_json(&state, table, f, option_set);
            if !q.matches(&a) {
                return None;
            }
            // Items of a cast collection are of that type: no annotation, unless derived.
            if cast == Some(kind(f).odata) {
                a.remove("@odata.type");
            }
            Some(Value::Object(q.project(a)))
        })
        .collect();
    let cast_segment = cast.map(|c| format!("/{NS}{c}")).unwrap_or_default();
    Ok(json_response(
        StatusCode::OK,
        json!({
            "@odata.context": format!(
                "{}/$metadata#EntityDefinitions({})/Attributes{cast_segment}{}",
                ctx.api(),
                entity_id(table),
                q.context_select()
            ),
            "value": value,
        }),
    ))
}

fn get_attribute(
    ctx: &Ctx<'_>,
    table_key: &DefKey,
    key: &DefKey,
    cast: Option<&str>,
) -> Result<Response, DvError> {
    let q = MetaQuery::parse(ctx.query)?;
    q.check_select(&attribute_known(cast), cast.unwrap_or("AttributeMetadata"))?;
    let option_set = attribute_expansions(&q, cast)?;
    let state = ctx.app.dataverse();
    let table = table_by_key(&state, table_key)?;
    let field = field_by_key(table, key)?;
    if let Some(c) = cast
        && !is_a(&kind(field), c)
    {
        return Err(DvError::not_found(format!(
            "The attribute '{}' of the entity '{}' is not a {c}.",
            field.name, table.logical_name
        )));
    }
    let mut a = attribute_json(&state, table, field, option_set);
    if cast == Some(kind(field).odata) {
        a.remove("@odata.type");
    }
    let cast_segment = cast.map(|c| format!("/{NS}{c}")).unwrap_or_default();
    let context = format!(
        "{}/$metadata#EntityDefinitions({})/Attributes{cast_segment}{}/$entity",
        ctx.api(),
        entity_id(table),
        q.context_select()
    );
    Ok(json_response(
        StatusCode::OK,
        with_context(context, q.project(a)),
    ))
}

/// 204 with the new definition's URL, as every create answers (docs/dataverse.md, "Metadata").
fn created(url: String) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        resp.headers_mut().insert("OData-EntityId", v);
    }
    resp
}

/// The body of a POST or PUT of a table definition: JSON, an `EntityMetadata`, and only
/// properties a table has.
fn entity_body(ctx: &Ctx<'_>, body: &[u8], verb: &str) -> Result<Map<String, Value>, DvError> {
    let body = json_body(ctx.headers, body)?;
    match odata_type(&body)? {
        None | Some("EntityMetadata") => {}
        Some(t) => {
            return Err(definition_error(format!(
                "{verb} EntityDefinitions takes a {NS}EntityMetadata, not '{t}'."
            )));
        }
    }
    check_known(
        &body,
        &|k: &str| entity_known(k) || ENTITY_NAVIGATION.contains(&k),
        "EntityMetadata",
    )?;
    Ok(body)
}

/// `POST EntityDefinitions`: a table with its primary name column (docs/dataverse.md,
/// "Metadata").
fn create_entity(ctx: &Ctx<'_>, body: &[u8]) -> Result<Response, DvError> {
    let body = entity_body(ctx, body, "POST")?;
    let schema_name = required_str(&body, "SchemaName", "A table")?;
    check_schema_name(schema_name, "table")?;
    let logical = schema_name.to_ascii_lowercase();
    let what = format!("The table '{schema_name}'");
    let display_name = required_label(&body, "DisplayName", &what)?;
    let display_collection_name = required_label(&body, "DisplayCollectionName", &what)?;
    let description = match body.get("Description") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => parse_label(v, "Description")?,
    };
    let organization_owned = match body.get("OwnershipType") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "UserOwned" => false,
        Some(Value::String(s)) if s == "OrganizationOwned" => true,
        Some(_) => {
            return Err(definition_error(
                "OwnershipType must be UserOwned or OrganizationOwned.".into(),
            ));
        }
    };
    if optional_bool(&body, "IsActivity")? == Some(true) {
        return Err(DvError::not_implemented("Creating an activity table"));
    }
    let entity_set = match body.get("EntitySetName") {
        None | Some(Value::Null) => format!("{logical}s"),
        Some(Value::String(s)) => {
            check_schema_name(s, "entity set")?;
            s.clone()
        }
        Some(_) => {
            return Err(DvError::bad_request(
                "The value of 'EntitySetName' must be a string.",
            ));
        }
    };
    let attributes = body
        .get("Attributes")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let primary = match attributes {
        [Value::Object(a)]
            if odata_type(a)? == Some("StringAttributeMetadata")
                && optional_bool(a, "IsPrimaryName")? == Some(true) =>
        {
            a
        }
        _ => {
            return Err(definition_error(format!(
                "{what} needs Attributes holding exactly one StringAttributeMetadata with IsPrimaryName true."
            )));
        }
    };
    let now = ctx.app.clock.now();
    let mut state = ctx.app.dataverse();
    let home = home(&state, solution_header(ctx.headers).as_deref())?;
    let primary_field = parse_column(primary, option_base(&home))?;
    let primary_schema = field_schema_name(&primary_field);
    check_prefix(&home, schema_name, "table")?;
    check_prefix(&home, &primary_schema, "primary name column")?;
    if let Some(t) = table_by_logical(&state, &logical) {
        return Err(name_in_use(format!(
            "A table named '{}' already exists.",
            t.logical_name
        )));
    }
    if let Some(t) = state
        .tables
        .iter()
        .find(|t| t.entity_set.eq_ignore_ascii_case(&entity_set))
    {
        return Err(name_in_use(format!(
            "The entity set name '{entity_set}' is already used by the table '{}'.",
            t.logical_name
        )));
    }
    let primary_key = format!("{logical}id");
    let mut fields = schema::system_fields(&primary_key);
    let draft = TableDef {
        entity_set: entity_set.clone(),
        logical_name: logical.clone(),
        primary_key: primary_key.clone(),
        fields: fields.clone(),
        states: Vec::new(),
        change_tracking: false,
        alternate_keys: Vec::new(),
        metadata: TableMeta::default(),
    };
    check_free(&draft, &primary_field.name, None)?;
    let primary_name = primary_field.name.clone();
    fields.push(primary_field);
    let object_type_code = state
        .tables
        .iter()
        .filter_map(|t| t.metadata.object_type_code)
        .filter(|c| *c >= 10_000)
        .max()
        .map_or(10_000, |c| c + 1);
    let other: Map<String, Value> = body
        .iter()
        .filter(|(k, _)| {
            !k.contains('@')
                && !ENTITY_MODELLED.contains(&k.as_str())
                && !ENTITY_NAVIGATION.contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let table = TableDef {
        fields,
        states: schema::custom_table_states(),
        change_tracking: optional_bool(&body, "ChangeTrackingEnabled")?.unwrap_or(false),
        metadata: TableMeta {
            schema_name: Some(schema_name.to_string()),
            primary_name: Some(primary_name),
            display_name,
            display_collection_name,
            description,
            organization_owned,
            custom: true,
            has_notes: optional_bool(&body, "HasNotes")?.unwrap_or(false),
            has_activities: optional_bool(&body, "HasActivities")?.unwrap_or(false),
            object_type_code: Some(object_type_code),
            other,
        },
        ..draft
    };
    let id = entity_id(&table);
    state.tables.push(table);
    add_component(&mut state, &home, COMPONENT_TABLE, id, now);
    Ok(created(format!("{}/EntityDefinitions({id})", ctx.api())))
}

/// `POST EntityDefinitions(…)/Attributes`: a Yes/No, text, multi-line text or choice column,
/// usable by the data API at once.
fn create_attribute(ctx: &Ctx<'_>, key: &DefKey, body: &[u8]) -> Result<Response, DvError> {
    let body = json_body(ctx.headers, body)?;
    if optional_bool(&body, "IsPrimaryName")? == Some(true) {
        return Err(definition_error(
            "A table's primary name column is created with the table.".into(),
        ));
    }
    let now = ctx.app.clock.now();
    let mut state = ctx.app.dataverse();
    let index = table_index(&state, key)?;
    let home = home(&state, solution_header(ctx.headers).as_deref())?;
    let field = parse_column(&body, option_base(&home))?;
    check_prefix(&home, &field_schema_name(&field), "column")?;
    let table = state
        .tables
        .get(index)
        .ok_or_else(|| DvError::not_found("The entity is gone."))?;
    check_free(table, &field.name, None)?;
    let (table_id, field_id) = (entity_id(table), attribute_id(table, &field));
    if let Some(t) = state.tables.get_mut(index) {
        t.fields.push(field);
    }
    add_component(&mut state, &home, COMPONENT_COLUMN, field_id, now);
    Ok(created(format!(
        "{}/EntityDefinitions({table_id})/Attributes({field_id})",
        ctx.api()
    )))
}

/// `PUT EntityDefinitions(…)`: replaces the definition (docs/dataverse.md, "Metadata"). What
/// the body leaves out is reset, labels kept with `MSCRM.MergeLabels: true`.
fn put_entity(ctx: &Ctx<'_>, key: &DefKey, body: &[u8]) -> Result<Response, DvError> {
    let body = entity_body(ctx, body, "PUT")?;
    let merge = match ctx
        .headers
        .get("MSCRM.MergeLabels")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            return Err(DvError::bad_request(format!(
                "The MSCRM.MergeLabels header must be true or false, not '{v}'."
            )));
        }
    };
    let now = ctx.app.clock.now();
    let mut state = ctx.app.dataverse();
    let index = table_index(&state, key)?;
    let home = solution_header(ctx.headers)
        .map(|s| home(&state, Some(&s)))
        .transpose()?;
    let current = state
        .tables
        .get(index)
        .cloned()
        .ok_or_else(|| DvError::not_found("The entity is gone."))?;
    let now_json = entity_json(&current);
    for name in ENTITY_IMMUTABLE {
        if let Some(sent) = body.get(*name)
            && !same(sent, now_json.get(*name).unwrap_or(&Value::Null))
        {
            return Err(DvError::new(
                StatusCode::BAD_REQUEST,
                CODE_IMMUTABLE,
                format!(
                    "The {name} of the table '{}' cannot be changed.",
                    current.logical_name
                ),
            ));
        }
    }
    let tracking = match optional_bool(&body, "ChangeTrackingEnabled")? {
        Some(false) if current.change_tracking => {
            return Err(DvError::new(
                StatusCode::BAD_REQUEST,
                CODE_IMMUTABLE,
                format!(
                    "Change tracking is enabled for the table '{}' and cannot be disabled.",
                    current.logical_name
                ),
            ));
        }
        Some(on) => on,
        // Left out: reset, except that change tracking once on stays on.
        None => current.change_tracking,
    };
    let mut meta = current.metadata.clone();
    for (property, stored) in [
        ("DisplayName", &mut meta.display_name),
        ("DisplayCollectionName", &mut meta.display_collection_name),
        ("Description", &mut meta.description),
    ] {
        match body.get(property) {
            None | Some(Value::Null) if merge => {}
            None | Some(Value::Null) => stored.clear(),
            Some(v) => merge_labels(stored, parse_label(v, property)?, merge),
        }
    }
    meta.has_notes = optional_bool(&body, "HasNotes")?.unwrap_or(false);
    meta.has_activities = optional_bool(&body, "HasActivities")?.unwrap_or(false);
    meta.other = body
        .iter()
        .filter(|(k, _)| {
            !k.contains('@')
                && !ENTITY_MODELLED.contains(&k.as_str())
                && !ENTITY_NAVIGATION.contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let id = entity_id(&current);
    if let Some(t) = state.tables.get_mut(index) {
        t.change_tracking = tracking;
        t.metadata = meta;
    }
    if let Some(home) = home {
        add_component(&mut state, &home, COMPONENT_TABLE, id, now);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Whether a value sent back equals the stored one: ids and names without regard to case.
fn same(sent: &Value, stored: &Value) -> bool {
    match (sent, stored) {
        (Value::String(a), Value::String(b)) => a.eq_ignore_ascii_case(b),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => sent == stored,
    }
}

/// `POST RelationshipDefinitions`: a one-to-many relationship and its lookup column on the
/// referencing table, bound through the lookup's `SchemaName` (docs/dataverse.md,
/// "Metadata").
fn create_relationship(ctx: &Ctx<'_>, body: &[u8]) -> Result<Response, DvError> {
    let body = json_body(ctx.headers, body)?;
    match odata_type(&body)? {
        Some("OneToManyRelationshipMetadata") => {}
        Some("ManyToManyRelationshipMetadata") => {
            return Err(DvError::not_implemented(
                "Creating a many-to-many relationship",
            ));
        }
        other => {
            return Err(definition_error(format!(
                "POST RelationshipDefinitions needs '@odata.type' {NS}OneToManyRelationshipMetadata, not '{}'.",
                other.unwrap_or("none")
            )));
        }
    }
    check_known(
        &body,
        &|k: &str| RELATIONSHIP_PROPERTIES.contains(&k),
        "OneToManyRelationshipMetadata",
    )?;
    let schema_name = required_str(&body, "SchemaName", "A relationship")?;
    let referenced = required_str(&body, "ReferencedEntity", "A relationship")?;
    let referencing = required_str(&body, "ReferencingEntity", "A relationship")?;
    let Some(lookup) = body.get("Lookup").and_then(Value::as_object) else {
        return Err(definition_error(
            "A one-to-many relationship needs its Lookup (a LookupAttributeMetadata).".into(),
        ));
    };
    match odata_type(lookup)? {
        None | Some("LookupAttributeMetadata") => {}
        Some(t) => {
            return Err(definition_error(format!(
                "The Lookup of a relationship is a LookupAttributeMetadata, not '{t}'."
            )));
        }
    }
    check_known(
        lookup,
        &|k: &str| {
            ATTRIBUTE_PROPERTIES.contains(&k)
                || type_properties("LookupAttributeMetadata").contains(&k)
        },
        "LookupAttributeMetadata",
    )?;
    let lookup_schema = required_str(lookup, "SchemaName", "The Lookup of a relationship")?;
    let display_name = required_label(lookup, "DisplayName", "The Lookup of a relationship")?;
    let required = parse_required(lookup)?;
    let cascade = match body.get("CascadeConfiguration") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => {
            return Err(DvError::bad_request(
                "CascadeConfiguration must be an object.",
            ));
        }
    };
    let now = ctx.app.clock.now();
    let mut state = ctx.app.dataverse();
    let home = home(&state, solution_header(ctx.headers).as_deref())?;
    check_prefix(&home, schema_name, "relationship")?;
    check_prefix(&home, lookup_schema, "lookup column")?;
    let missing = |name: &str| DvError::invalid(format!("The entity '{name}' does not exist."));
    let referenced_table = table_by_logical(&state, referenced)
        .ok_or_else(|| missing(referenced))?
        .clone();
    let referencing_index = state
        .tables
        .iter()
        .position(|t| t.logical_name.eq_ignore_ascii_case(referencing))
        .ok_or_else(|| missing(referencing))?;
    if let Some(attr) = body.get("ReferencedAttribute").and_then(Value::as_str)
        && !attr.eq_ignore_ascii_case(&referenced_table.primary_key)
    {
        return Err(definition_error(format!(
            "The ReferencedAttribute of a relationship to '{referenced}' must be its primary key '{}'.",
            referenced_table.primary_key
        )));
    }
    if let Some(r) = state
        .relationships
        .iter()
        .find(|r| r.schema_name.eq_ignore_ascii_case(schema_name))
    {
        return Err(name_in_use(format!(
            "A relationship named '{}' already exists.",
            r.schema_name
        )));
    }
    let logical = lookup_schema.to_ascii_lowercase();
    let referencing_table = state
        .tables
        .get(referencing_index)
        .ok_or_else(|| missing(referencing))?;
    check_free(referencing_table, &logical, Some(lookup_schema))?;
    let mut field = Field::new(
        &logical,
        FieldType::Lookup {
            targets: vec![LookupTarget {
                navigation: lookup_schema.to_string(),
                table: referenced_table.entity_set.clone(),
            }],
        },
    )
    .custom();
    field.required = required;
    field.schema_name = Some(lookup_schema.to_string());
    field.display_name = display_name;
    let field_id = attribute_id(referencing_table, &field);
    let relationship = Relationship {
        id: stable_id("relationship", schema_name),
        schema_name: schema_name.to_string(),
        referenced_entity: referenced_table.logical_name.clone(),
        referenced_attribute: referenced_table.primary_key.clone(),
        referencing_entity: referencing_table.logical_name.clone(),
        referencing_attribute: logical,
        navigation: lookup_schema.to_string(),
        cascade,
    };
    let id = relationship.id;
    if let Some(t) = state.tables.get_mut(referencing_index) {
        t.fields.push(field);
    }
    state.relationships.push(relationship);
    add_component(&mut state, &home, COMPONENT_RELATIONSHIP, id, now);
    add_component(&mut state, &home, COMPONENT_COLUMN, field_id, now);
    Ok(created(format!(
        "{}/RelationshipDefinitions({id})",
        ctx.api()
    )))
}

fn relationship_known(name: &str) -> bool {
    RELATIONSHIP_PROPERTIES.contains(&name)
}

fn list_relationships(ctx: &Ctx<'_>) -> Result<Response, DvError> {
    let q = MetaQuery::parse(ctx.query)?;
    q.check_select(&relationship_known, "RelationshipMetadataBase")?;
    q.check_expand(&[], "RelationshipMetadataBase")?;
    let state = ctx.app.dataverse();
    let value: Vec<Value> = state
        .relationships
        .iter()
        .map(relationship_json)
        .filter(|r| q.matches(r))
        .map(|r| Value::Object(q.project(r)))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        json!({
            "@odata.context": format!("{}/$metadata#RelationshipDefinitions{}", ctx.api(), q.context_select()),
            "value": value,
        }),
    ))
}

fn get_relationship(ctx: &Ctx<'_>, key: &DefKey) -> Result<Response, DvError> {
    let q = MetaQuery::parse(ctx.query)?;
    q.check_select(&relationship_known, "RelationshipMetadataBase")?;
    q.check_expand(&[], "RelationshipMetadataBase")?;
    let state = ctx.app.dataverse();
    let r = state
        .relationships
        .iter()
        .find(|r| match key {
            DefKey::Id(id) => r.id == *id,
            DefKey::Name(n) => r.schema_name.eq_ignore_ascii_case(n),
        })
        .ok_or_else(|| DvError::not_found("Could not find the relationship."))?;
    let context = format!(
        "{}/$metadata#RelationshipDefinitions{}/$entity",
        ctx.api(),
        q.context_select()
    );
    Ok(json_response(
        StatusCode::OK,
        with_context(context, q.project(relationship_json(r))),
    ))
}

/// The parameters of `InsertStatusValue` (docs/dataverse.md, "Metadata").
const INSERT_STATUS_PARAMETERS: &[&str] = &[
    "EntityLogicalName",
    "AttributeLogicalName",
    "StateCode",
    "Value",
    "Label",
    "Description",
    "SolutionUniqueName",
    "OptionSetName",
];

/// `POST InsertStatusValue`: a status reason in a state, valid for data writes at once.
fn insert_status_value(ctx: &Ctx<'_>, body: &[u8]) -> Result<Response, DvError> {
    let body = json_body(ctx.headers, body)?;
    if let Some(k) = body
        .keys()
        .find(|k| !k.contains('@') && !INSERT_STATUS_PARAMETERS.contains(&k.as_str()))
    {
        return Err(DvError::bad_request(format!(
            "The parameter '{k}' in the request payload is not a valid parameter for the operation 'InsertStatusValue'."
        )));
    }
    if body.get("OptionSetName").is_some_and(|v| !v.is_null()) {
        return Err(DvError::not_implemented(
            "InsertStatusValue on a global option set",
        ));
    }
    let missing =
        |p: &str| DvError::bad_request(format!("InsertStatusValue needs the parameter '{p}'."));
    let entity = body
        .get("EntityLogicalName")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("EntityLogicalName"))?;
    let attribute = body
        .get("AttributeLogicalName")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("AttributeLogicalName"))?;
    let state_code = body
        .get("StateCode")
        .and_then(Value::as_i64)
        .ok_or_else(|| missing("StateCode"))?;
    let wanted = match body.get("Value") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| DvError::bad_request("The parameter 'Value' must be an integer."))?,
        ),
    };
    let label = required_label(&body, "Label", "A status reason")?;
    let text = label
        .iter()
        .find(|l| l.language_code == LANGUAGE)
        .or_else(|| label.first())
        .map(|l| l.label.clone())
        .unwrap_or_default();
    let solution = body
        .get("SolutionUniqueName")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| solution_header(ctx.headers));
    let now = ctx.app.clock.now();
    let mut state = ctx.app.dataverse();
    let home = home(&state, solution.as_deref())?;
    let index = table_index(&state, &DefKey::Name(entity.to_string()))?;
    let table = state
        .tables
        .get(index)
        .ok_or_else(|| DvError::not_found("The entity is gone."))?;
    let field = field_by_key(table, &DefKey::Name(attribute.to_string()))?;
    if !matches!(field.kind, FieldType::Status) {
        return Err(DvError::invalid(format!(
            "The attribute '{attribute}' of '{entity}' is not a status reason (statuscode) column."
        )));
    }
    if table.state(state_code).is_none() {
        return Err(DvError::invalid(format!(
            "{state_code} is not a state of '{}'.",
            table.logical_name
        )));
    }
    let used: Vec<i64> = table
        .states
        .iter()
        .flat_map(|s| s.statuses.iter().map(|x| x.value))
        .collect();
    let value = match wanted {
        Some(v) if used.contains(&v) => {
            return Err(name_in_use(format!(
                "The status reason value {v} is already used on '{}'.",
                table.logical_name
            )));
        }
        Some(v) => v,
        None => {
            let base = option_base(&home);
            (base..).find(|v| !used.contains(v)).unwrap_or(base)
        }
    };
    let field_id = attribute_id(table, field);
    if let Some(st) = state
        .tables
        .get_mut(index)
        .and_then(|t| t.states.iter_mut().find(|s| s.value == state_code))
    {
        st.statuses.push(StatusOption { value, label: text });
    }
    add_component(&mut state, &home, COMPONENT_COLUMN, field_id, now);
    Ok(json_response(
        StatusCode::OK,
        json!({
            "@odata.context": format!("{}/$metadata#{NS}InsertStatusValueResponse", ctx.api()),
            "NewOptionValue": value,
        }),
    ))
}

/// `POST PublishXml`: the tables named must exist; publishing changes nothing the Web API
/// sees (docs/dataverse.md, "Metadata": the Web API can use new columns before).
fn publish_xml(ctx: &Ctx<'_>, body: &[u8]) -> Result<Response, DvError> {
    let body = json_body(ctx.headers, body)?;
    if let Some(k) = body
        .keys()
        .find(|k| !k.contains('@') && *k != "ParameterXml")
    {
        return Err(DvError::bad_request(format!(
            "The parameter '{k}' in the request payload is not a valid parameter for the operation 'PublishXml'."
        )));
    }
    let xml = body
        .get("ParameterXml")
        .and_then(Value::as_str)
        .ok_or_else(|| DvError::bad_request("PublishXml needs the parameter 'ParameterXml'."))?;
    if !xml.trim_start().starts_with("<importexportxml") {
        return Err(DvError::bad_request(
            "ParameterXml must be an <importexportxml> document.",
        ));
    }
    let state = ctx.app.dataverse();
    let mut rest = xml;
    while let Some(start) = rest.find("<entity>") {
        let after = rest.get(start + "<entity>".len()..).unwrap_or("");
        let end = after.find("</entity>").ok_or_else(|| {
            DvError::bad_request("ParameterXml has an <entity> without </entity>.")
        })?;
        let name = after.get(..end).unwrap_or("").trim();
        if table_by_logical(&state, name).is_none() {
            return Err(DvError::invalid(format!(
                "The entity '{name}' in ParameterXml does not exist."
            )));
        }
        rest = after.get(end..).unwrap_or("");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------
// Rules on publisher, solution and component rows

/// A publisher's customization prefix: 2 to 8 letters or digits, a letter first, not
/// `mscrm…` (docs/dataverse.md, "Metadata").
fn valid_prefix(prefix: &str) -> bool {
    let mut chars = prefix.chars();
    (2..=8).contains(&prefix.len())
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric())
        && !prefix.to_ascii_lowercase().starts_with("mscrm")
}

/// A unique name: letters, digits and underscores, not starting with a digit.
fn valid_unique_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn prefix_error(message: String) -> DvError {
    DvError::new(StatusCode::BAD_REQUEST, CODE_PUBLISHER_PREFIX, message)
}

/// The unique name must be free among the table's other rows.
fn check_unique_name(
    state: &State,
    table: &TableDef,
    after: &Map<String, Value>,
    what: &str,
) -> Result<(), DvError> {
    let name = text(after, "uniquename");
    if !valid_unique_name(name) {
        return Err(DvError::invalid(format!(
            "The unique name '{name}' of the {what} is not valid: use letters, digits and underscores, not starting with a digit."
        )));
    }
    let me = text(after, &table.primary_key);
    let taken = state.rows(&table.entity_set).any(|r| {
        text(&r.values, &table.primary_key) != me
            && text(&r.values, "uniquename").eq_ignore_ascii_case(name)
    });
    if taken {
        return Err(name_in_use(format!(
            "A {what} with the unique name '{name}' already exists."
        )));
    }
    Ok(())
}

/// The rules of `publishers`, `solutions` and `solutioncomponents` rows, on every write
/// (docs/dataverse.md, "Metadata").
pub(super) fn check_row(
    state: &State,
    table: &TableDef,
    after: &Map<String, Value>,
    touched: &[String],
) -> Result<(), DvError> {
    let touched_has = |n: &str| touched.iter().any(|t| t == n);
    match table.logical_name.as_str() {
        "publisher" => {
            if touched_has("uniquename") {
                check_unique_name(state, table, after, "publisher")?;
            }
            if touched_has("customizationprefix") {
                let prefix = text(after, "customizationprefix");
                if !valid_prefix(prefix) {
                    return Err(prefix_error(format!(
                        "The customization prefix '{prefix}' is not valid: it must be 2 to 8 letters or digits, start with a letter, and not start with 'mscrm'."
                    )));
                }
            }
            if touched_has("customizationoptionvalueprefix")
                && let Some(v) = after
                    .get("customizationoptionvalueprefix")
                    .and_then(Value::as_i64)
                && !(10_000..=99_999).contains(&v)
            {
                return Err(prefix_error(format!(
                    "The option value prefix {v} is not valid: it must be between 10000 and 99999."
                )));
            }
            Ok(())
        }
        "solution" => {
            if touched_has("uniquename") {
                check_unique_name(state, table, after, "solution")?;
            }
            let version = text(after, "version");
            let parts: Vec<&str> = version.split('.').collect();
            let valid = (2..=4).contains(&parts.len())
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            if touched_has("version") && !valid {
                return Err(DvError::invalid(format!(
                    "The version '{version}' is not valid: use two to four numbers separated by dots, such as 1.0.0.0."
                )));
            }
            Ok(())
        }
        "solutioncomponent" => Err(component_refusal()),
        _ => Ok(()),
    }
}

fn component_refusal() -> DvError {
    DvError::invalid(
        "Solution components cannot be written directly: metadata creates add them to the solution named by MSCRM.SolutionUniqueName.",
    )
}

/// Deletes the platform refuses: solution components.
pub(super) fn check_delete(table: &TableDef) -> Result<(), DvError> {
    if table.logical_name == "solutioncomponent" {
        return Err(component_refusal());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            parse_target("EntityDefinitions").ok(),
            Some(Target::Entities)
        );
        assert_eq!(
            parse_target("EntityDefinitions(LogicalName='lead')").ok(),
            Some(Target::Entity(DefKey::Name("lead".into())))
        );
        assert_eq!(
            parse_target(
                "EntityDefinitions(LogicalName='opportunity')/Attributes(LogicalName='statuscode')/Microsoft.Dynamics.CRM.StatusAttributeMetadata"
            )
            .ok(),
            Some(Target::Attribute(
                DefKey::Name("opportunity".into()),
                DefKey::Name("statuscode".into()),
                Some("StatusAttributeMetadata".into())
            ))
        );
        assert_eq!(
            parse_target(
                "EntityDefinitions(LogicalName='lead')/Attributes/Microsoft.Dynamics.CRM.MemoAttributeMetadata"
            )
            .ok(),
            Some(Target::Attributes(
                DefKey::Name("lead".into()),
                Some("MemoAttributeMetadata".into())
            ))
        );
        assert!(parse_target("EntityDefinitions(Name='lead')").is_err());
        assert!(
            parse_target(
                "EntityDefinitions(LogicalName='lead')/Attributes/Microsoft.Dynamics.CRM.Nope"
            )
            .is_err()
        );
    }

    #[test]
    fn prefixes() {
        for ok in ["new", "cosell", "ab", "a1234567"] {
            assert!(valid_prefix(ok), "{ok}");
        }
        for bad in ["a", "abcdefghi", "1ab", "mscrmx", "MSCRM1", "a_b", ""] {
            assert!(!valid_prefix(bad), "{bad}");
        }
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(stable_id("entity", "lead"), stable_id("entity", "LEAD"));
        assert_ne!(stable_id("entity", "lead"), stable_id("entity", "account"));
    }

    #[test]
    fn labels_round_trip() {
        let json = label_json(&schema::label("Audit"), "x");
        assert_eq!(json["UserLocalizedLabel"]["Label"], "Audit");
        let back = parse_label(&json, "DisplayName").expect("parses");
        assert_eq!(back, schema::label("Audit"));
        let mut stored = vec![
            LocalizedLabel {
                label: "Revisjon".into(),
                language_code: 1044,
            },
            schema::label("Audit").remove(0),
        ];
        merge_labels(&mut stored, schema::label("Audit trail"), true);
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[1].label, "Audit trail");
        merge_labels(&mut stored, schema::label("Audit"), false);
        assert_eq!(stored.len(), 1);
    }
}
