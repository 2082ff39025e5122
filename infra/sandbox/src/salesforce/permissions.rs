//! Permission sets and field-level security (docs/salesforce.md, "Metadata": "Field-level
//! security").
//!
//! `PermissionSet`, `FieldPermissions`, `ObjectPermissions` and `PermissionSetAssignment` are
//! ordinary records, written with `POST sobjects/<Object>` and read with SOQL; the rules here
//! are the ones Salesforce adds to the generic write rules (which field a row may name, which
//! permission needs which, no two rows for the same thing).
//!
//! Field-level security: a field marked [`Field::needs_grant`] (every field the Tooling API
//! creates) is seen by an API user only through a `FieldPermissions` row of a permission set
//! assigned to them: `PermissionsRead` makes it visible, `PermissionsEdit` writable. Until
//! then describe leaves it out, SOQL naming it is `INVALID_FIELD` "No such column", and a
//! write naming it is `INVALID_FIELD`. A required field (a master-detail) is visible to every
//! user, as Salesforce gives it no `FieldPermissions`. The control API (a seller, an admin)
//! is not subject to it.
//!
//! Simplification: object permissions are stored and checked for consistency but not
//! enforced; an object created through the Tooling API is readable and writable by API users
//! without an `ObjectPermissions` row.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::State;
use super::errors::{ErrorItem, SfError};
use super::schema::{Field, FieldType, SObject, object, s};
use super::store::Record;

pub const PERMISSION_SET: &str = "PermissionSet";
pub const FIELD_PERMISSIONS: &str = "FieldPermissions";
pub const OBJECT_PERMISSIONS: &str = "ObjectPermissions";
pub const ASSIGNMENT: &str = "PermissionSetAssignment";

/// Objects whose records describe the org rather than hold business data: no custom fields,
/// no field or object permissions.
pub fn is_setup_object(name: &str) -> bool {
    [
        PERMISSION_SET,
        FIELD_PERMISSIONS,
        OBJECT_PERMISSIONS,
        ASSIGNMENT,
        "OpportunityStage",
    ]
    .iter()
    .any(|n| n.eq_ignore_ascii_case(name))
}

/// Fields Salesforce maintains on every record: always visible, never granted.
const SYSTEM_FIELDS: &[&str] = &[
    "Id",
    "OwnerId",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
    "IsDeleted",
];

/// The permission objects every org has.
pub fn objects() -> Vec<SObject> {
    // Deleting a permission set deletes its rows and assignments, as on Salesforce.
    let parent = || {
        Field::new(
            "ParentId",
            FieldType::Reference {
                reference_to: vec![PERMISSION_SET.into()],
                cascade_delete: true,
            },
        )
        .required()
    };
    let flag = |n: &str| Field::new(n, FieldType::Boolean).default(json!(false));
    vec![
        object(
            PERMISSION_SET,
            "0PS",
            false,
            vec![
                Field::new("Name", s(80)).required().unique(),
                Field::new("Label", s(80)).required(),
                Field::new("Description", s(255)),
                Field::new("IsOwnedByProfile", FieldType::Boolean).read_only(),
                Field::new("NamespacePrefix", s(15)).read_only(),
            ],
        ),
        object(
            FIELD_PERMISSIONS,
            "01k",
            false,
            vec![
                parent().child_relationship("FieldPerms"),
                Field::new("SobjectType", s(40)).required(),
                Field::new("Field", s(255)).required(),
                flag("PermissionsRead"),
                flag("PermissionsEdit"),
            ],
        ),
        object(
            OBJECT_PERMISSIONS,
            "110",
            false,
            vec![
                parent().child_relationship("ObjectPerms"),
                Field::new("SobjectType", s(40)).required(),
                flag("PermissionsRead"),
                flag("PermissionsCreate"),
                flag("PermissionsEdit"),
                flag("PermissionsDelete"),
                flag("PermissionsViewAllRecords"),
                flag("PermissionsModifyAllRecords"),
            ],
        ),
        object(
            ASSIGNMENT,
            "0Pa",
            false,
            vec![
                Field::new(
                    "AssigneeId",
                    FieldType::Reference {
                        reference_to: vec!["User".into()],
                        cascade_delete: true,
                    },
                )
                .required()
                .child_relationship("PermissionSetAssignments"),
                Field::new(
                    "PermissionSetId",
                    FieldType::Reference {
                        reference_to: vec![PERMISSION_SET.into()],
                        cascade_delete: true,
                    },
                )
                .required()
                .child_relationship("Assignments"),
            ],
        ),
    ]
}

fn text<'a>(rec: &'a Record, key: &str) -> &'a str {
    rec.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn flag(rec: &Record, key: &str) -> bool {
    rec.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn refused(code: &'static str, field: &str, message: String) -> SfError {
    SfError::bad_request(ErrorItem::new(code, message).with_fields(vec![field.to_string()]))
}

/// The refusal of a name a `FieldPermissions` or `ObjectPermissions` row cannot take. Inferred:
/// Salesforce treats both as restricted picklists of the permissionable names.
fn not_permissionable(field: &str, label: &str, value: &str) -> SfError {
    refused(
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        field,
        format!("{label}: bad value for restricted picklist field: {value}"),
    )
}

/// Whether `name` is a developer name: a letter, then letters, digits and single underscores,
/// not ending in one.
pub fn is_developer_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_')
}

/// A field a `FieldPermissions` row may name: not one Salesforce maintains, not a required
/// one (whoever reads the object reads it).
fn permissionable(f: &Field) -> bool {
    !f.required
        && f.field_type != FieldType::Id
        && !SYSTEM_FIELDS
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&f.name))
}

/// A user's field grants, by lower-cased `Object.Field`: (read, edit), the union of every
/// permission set assigned to them.
type FieldGrants = HashMap<String, (bool, bool)>;

impl State {
    /// The rules Salesforce adds for the permission objects, on a record about to be stored
    /// (`own_id` is its id on an update). Names are stored in the schema's spelling.
    pub(super) fn check_setup_record(
        &self,
        object: &str,
        rec: &mut Record,
        own_id: Option<&str>,
    ) -> Result<(), SfError> {
        match object {
            PERMISSION_SET => {
                let name = text(rec, "Name");
                if !is_developer_name(name) {
                    return Err(refused(
                        "FIELD_INTEGRITY_EXCEPTION",
                        "Name",
                        format!(
                            "The API name '{name}' must begin with a letter and use only letters, digits and single underscores, not ending in one"
                        ),
                    ));
                }
                Ok(())
            }
            FIELD_PERMISSIONS => self.check_field_permissions(rec, own_id),
            OBJECT_PERMISSIONS => self.check_object_permissions(rec, own_id),
            ASSIGNMENT => {
                let (user, set) = (text(rec, "AssigneeId"), text(rec, "PermissionSetId"));
                let other = self.table(ASSIGNMENT).find(|r| {
                    text(r, "AssigneeId") == user
                        && text(r, "PermissionSetId") == set
                        && Some(text(r, "Id")) != own_id
                });
                if let Some(other) = other {
                    return Err(refused(
                        "DUPLICATE_VALUE",
                        "PermissionSetId",
                        format!(
                            "duplicate value found: the permission set {set} is already assigned to {user} ({})",
                            text(other, "Id")
                        ),
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn check_field_permissions(
        &self,
        rec: &mut Record,
        own_id: Option<&str>,
    ) -> Result<(), SfError> {
        let sobject = text(rec, "SobjectType").to_string();
        let full = text(rec, "Field").to_string();
        let Some((object_part, field_part)) = full.split_once('.') else {
            return Err(not_permissionable("Field", "Field Name", &full));
        };
        if !object_part.eq_ignore_ascii_case(&sobject) {
            return Err(refused(
                "FIELD_INTEGRITY_EXCEPTION",
                "Field",
                format!("Field {full} is not a field of SobjectType {sobject}"),
            ));
        }
        let Some(o) = self
            .schema_object(&sobject)
            .filter(|o| !is_setup_object(&o.name))
        else {
            return Err(not_permissionable("SobjectType", "Object Name", &sobject));
        };
        let Some(f) = o.field(field_part).filter(|f| permissionable(f)) else {
            return Err(not_permissionable("Field", "Field Name", &full));
        };
        let (read, edit) = (flag(rec, "PermissionsRead"), flag(rec, "PermissionsEdit"));
        if edit && !read {
            return Err(refused(
                "FIELD_INTEGRITY_EXCEPTION",
                "PermissionsEdit",
                "Permission Edit depends on permission(s): Read".into(),
            ));
        }
        if edit && f.read_only {
            return Err(refused(
                "FIELD_INTEGRITY_EXCEPTION",
                "PermissionsEdit",
                format!("{full} is read-only and cannot be granted Edit"),
            ));
        }
        let canonical = format!("{}.{}", o.name, f.name);
        let parent = text(rec, "ParentId");
        let other = self.table(FIELD_PERMISSIONS).find(|r| {
            text(r, "ParentId") == parent
                && text(r, "Field").eq_ignore_ascii_case(&canonical)
                && Some(text(r, "Id")) != own_id
        });
        if let Some(other) = other {
            return Err(refused(
                "DUPLICATE_VALUE",
                "Field",
                format!(
                    "duplicate value found: {canonical} duplicates value on record with id: {}",
                    text(other, "Id")
                ),
            ));
        }
        let object_name = o.name.clone();
        rec.insert("SobjectType".into(), json!(object_name));
        rec.insert("Field".into(), json!(canonical));
        Ok(())
    }

    fn check_object_permissions(
        &self,
        rec: &mut Record,
        own_id: Option<&str>,
    ) -> Result<(), SfError> {
        let sobject = text(rec, "SobjectType").to_string();
        let Some(o) = self
            .schema_object(&sobject)
            .filter(|o| o.createable && !is_setup_object(&o.name))
        else {
            return Err(not_permissionable("SobjectType", "Object Name", &sobject));
        };
        // Each permission and the ones it needs, as Salesforce's permission dependencies.
        let needs: [(&str, &[&str]); 5] = [
            ("PermissionsCreate", &["PermissionsRead"]),
            ("PermissionsEdit", &["PermissionsRead"]),
            ("PermissionsDelete", &["PermissionsRead", "PermissionsEdit"]),
            ("PermissionsViewAllRecords", &["PermissionsRead"]),
            (
                "PermissionsModifyAllRecords",
                &[
                    "PermissionsRead",
                    "PermissionsEdit",
                    "PermissionsDelete",
                    "PermissionsViewAllRecords",
                ],
            ),
        ];
        for (permission, required) in needs {
            let missing: Vec<&str> = required
                .iter()
                .filter(|r| !flag(rec, r))
                .map(|r| r.trim_start_matches("Permissions"))
                .collect();
            if flag(rec, permission) && !missing.is_empty() {
                return Err(refused(
                    "FIELD_INTEGRITY_EXCEPTION",
                    permission,
                    format!(
                        "Permission {} depends on permission(s): {}",
                        permission.trim_start_matches("Permissions"),
                        missing.join(", ")
                    ),
                ));
            }
        }
        let parent = text(rec, "ParentId");
        let other = self.table(OBJECT_PERMISSIONS).find(|r| {
            text(r, "ParentId") == parent
                && text(r, "SobjectType").eq_ignore_ascii_case(&o.name)
                && Some(text(r, "Id")) != own_id
        });
        if let Some(other) = other {
            return Err(refused(
                "DUPLICATE_VALUE",
                "SobjectType",
                format!(
                    "duplicate value found: {} duplicates value on record with id: {}",
                    o.name,
                    text(other, "Id")
                ),
            ));
        }
        let object_name = o.name.clone();
        rec.insert("SobjectType".into(), json!(object_name));
        Ok(())
    }

    /// What the permission sets assigned to `user_id` grant on fields.
    fn field_grants(&self, user_id: &str) -> FieldGrants {
        let sets: Vec<&str> = self
            .table(ASSIGNMENT)
            .filter(|r| text(r, "AssigneeId") == user_id)
            .map(|r| text(r, "PermissionSetId"))
            .collect();
        let mut grants = FieldGrants::new();
        for r in self
            .table(FIELD_PERMISSIONS)
            .filter(|r| sets.contains(&text(r, "ParentId")))
        {
            let g = grants
                .entry(text(r, "Field").to_ascii_lowercase())
                .or_default();
            g.0 |= flag(r, "PermissionsRead");
            g.1 |= flag(r, "PermissionsEdit");
        }
        grants
    }

    /// The schema as the API user `user_id` sees it: fields under field-level security that
    /// no assigned permission set lets them read are left out, those it lets them read but
    /// not edit are marked [`Field::edit_denied`]. `None` when no field is under field-level
    /// security, so an org without such fields costs nothing per request.
    pub(super) fn view_for(&self, user_id: &str) -> Option<Vec<SObject>> {
        let governed = |f: &Field| f.needs_grant && !f.required;
        if !self.schema.iter().any(|o| o.fields.iter().any(governed)) {
            return None;
        }
        let grants = self.field_grants(user_id);
        let view = self
            .schema
            .iter()
            .map(|o| {
                let mut o = o.clone();
                let object = o.name.clone();
                o.fields.retain_mut(|f| {
                    if !governed(f) {
                        return true;
                    }
                    let key = format!("{object}.{}", f.name).to_ascii_lowercase();
                    let (read, edit) = grants.get(&key).copied().unwrap_or_default();
                    f.edit_denied = !edit;
                    read
                });
                o
            })
            .collect();
        Some(view)
    }
}
