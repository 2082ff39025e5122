//! The behaviour every [`PartnerCenter`] must show, as plain async functions over
//! `&dyn PartnerCenter`: the HTTP adapter against the sandbox and the in-memory Partner Center
//! both run them (`tests/tests/partner_center_client.rs`, `tests/tests/memory_fakes.rs`), so a use
//! case tested on the fake behaves as it will on the service.
//!
//! What the port alone cannot do — Microsoft sharing a referral, Microsoft changing one, time
//! passing — each implementation plays through [`PartnerCenterSide`]: the sandbox through its
//! control API, the fake through its control methods.
//!
//! Every function makes its own referrals and CRM ids, so the functions can share one Partner
//! Center and run in any order; they move its clock only forward. They panic with a message on
//! the first broken promise, like any test assertion.
//!
//! Beyond the port's doc comments the contract fixes what the sync relies on from the service:
//! the fields Partner Center fills in on create; strings compared without case, an exact
//! `externalReferenceId` preferred; `updatedDateTime gt` as the reconciliation's filter; JSON
//! Patch `add` and `replace` as RFC 6902 has them; a new eTag on every write; the state machine
//! with `Closed` final; visibility only upwards; the create-time validation naming the field.

use crate::sandbox_control as control;
use std::future::Future;

use chrono::{DateTime, Duration, Utc};
use cosell_sandbox::Sandbox;
use cosell_shared::domain::outbound::{empty_team_op, is_microsoft_referral, microsoft_referral};
use cosell_shared::partner_center::{PartnerCenter, PartnerCenterError, PatchOp, PcResult};
use cosell_shared::referral::{Direction, Referral, ReferralType, Status, Substatus};
use cosell_shared::testing::MemoryPartnerCenter;
use serde_json::{Value, json};

use crate::store_contract::Ids;

/// Everyone but the connector: what the contract needs beyond the port.
pub trait PartnerCenterSide: Sync {
    /// Microsoft shares a co-sell opportunity: the partner's incoming referral (`New/Pending`,
    /// with a customer contact and a solution) and Microsoft's own referral (`organizationId`
    /// `msft`) in the same engagement. `partial` is merged over the defaults. Returns the
    /// partner's referral.
    fn incoming_co_sell(&self, partial: Value) -> impl Future<Output = Referral> + Send;
    /// Microsoft passes on a lead: the partner's referral alone in its engagement.
    fn incoming_lead(&self, partial: Value) -> impl Future<Output = Referral> + Send;
    /// Microsoft changes a referral (JSON merge patch); returns it as stored.
    fn microsoft_edits(&self, id: &str, change: Value) -> impl Future<Output = Referral> + Send;
    /// Partner Center's clock moves on by `by`; returns its time after the move.
    fn advance_clock(&self, by: Duration) -> impl Future<Output = DateTime<Utc>> + Send;
}

/// The sandbox plays Microsoft through its control API.
impl PartnerCenterSide for Sandbox {
    async fn incoming_co_sell(&self, partial: Value) -> Referral {
        sandbox_incoming(self, "co-sell", partial).await
    }

    async fn incoming_lead(&self, partial: Value) -> Referral {
        sandbox_incoming(self, "lead", partial).await
    }

    async fn microsoft_edits(&self, id: &str, change: Value) -> Referral {
        let path = format!("/_sandbox/partner-center/referrals/{id}");
        let doc = control(self, reqwest::Method::PATCH, &path, change).await;
        serde_json::from_value(doc).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    async fn advance_clock(&self, by: Duration) -> DateTime<Utc> {
        let clock = control(
            self,
            reqwest::Method::POST,
            "/_sandbox/clock/advance",
            json!({"seconds": by.num_seconds()}),
        )
        .await;
        clock["now"]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| panic!("the sandbox clock answered {clock}"))
    }
}

async fn sandbox_incoming(sandbox: &Sandbox, kind: &str, partial: Value) -> Referral {
    let path = format!("/_sandbox/partner-center/incoming?kind={kind}");
    let doc = control(sandbox, reqwest::Method::POST, &path, partial).await;
    serde_json::from_value(doc).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The in-memory Partner Center plays Microsoft through its control methods.
impl PartnerCenterSide for MemoryPartnerCenter {
    async fn incoming_co_sell(&self, partial: Value) -> Referral {
        MemoryPartnerCenter::incoming_co_sell(self, partial)
    }

    async fn incoming_lead(&self, partial: Value) -> Referral {
        MemoryPartnerCenter::incoming_lead(self, partial)
    }

    async fn microsoft_edits(&self, id: &str, change: Value) -> Referral {
        self.microsoft_edit(id, change)
            .unwrap_or_else(|| panic!("no referral {id} for Microsoft to change"))
    }

    async fn advance_clock(&self, by: Duration) -> DateTime<Utc> {
        self.advance(by)
    }
}

/// Runs the whole contract, one promise after another, on one Partner Center.
pub async fn run_all(pc: &dyn PartnerCenter, side: &impl PartnerCenterSide) {
    let ids = Ids::new();
    get_reads_a_referral_and_an_unknown_id_is_none(pc, side, &ids).await;
    a_create_fills_in_what_partner_center_owns_and_is_found_by_its_external_reference(
        pc, side, &ids,
    )
    .await;
    find_by_external_reference_prefers_the_exact_case(pc, side, &ids).await;
    engagement_referrals_has_both_sides_of_a_co_sell(pc, side, &ids).await;
    a_connected_referral_joins_the_partners_engagement_as_microsofts(pc, side, &ids).await;
    list_changed_since_brings_every_change_after_since_oldest_first(pc, side, &ids).await;
    a_patch_under_a_stale_etag_fails_and_changes_nothing(pc, side, &ids).await;
    a_microsoft_edit_makes_the_etag_read_before_it_stale(pc, side, &ids).await;
    add_sets_a_member_the_referral_lacks_and_replace_changes_a_set_one(pc, side, &ids).await;
    patching_an_unknown_referral_is_not_found(pc, side, &ids).await;
    server_fields_cannot_be_patched(pc, side, &ids).await;
    a_closed_referral_keeps_its_terminal_state(pc, side, &ids).await;
    a_status_move_the_lifecycle_forbids_is_rejected_naming_status(pc, side, &ids).await;
    a_visible_deal_is_not_made_private_again(pc, side, &ids).await;
    microsofts_referral_is_not_the_partners_to_change(pc, side, &ids).await;
    a_rejected_create_names_the_field_and_creates_nothing(pc, side, &ids).await;
    // Last: fourteen days pass for every referral of this Partner Center.
    an_unanswered_incoming_referral_expires_after_fourteen_days(pc, side, &ids).await;
}

// ----- helpers -----

/// A private deal the partner registers from its CRM.
fn deal(name: &str, crm_id: &str, country: &str) -> Referral {
    serde_json::from_value(json!({
        "name": name,
        "externalReferenceId": crm_id,
        "type": "Independent",
        "qualification": "SalesQualified",
        "customerProfile": {
            "name": "Contoso",
            "address": {"city": "Oslo", "postalCode": "0150", "country": country}
        },
        "consent": {
            "consentToToShareInfoWithOthers": false,
            "consentToContact": true,
            "consentToShareReferralWithMicrosoftSellers": false
        },
        "details": {"dealValue": 12000, "currency": "USD"}
    }))
    .unwrap_or_else(|e| panic!("deal: {e}"))
}

/// A co-sell deal: shared, Microsoft's help asked for, a customer contact and a solution.
fn co_sell_deal(name: &str, crm_id: &str) -> Referral {
    serde_json::from_value(json!({
        "name": name,
        "externalReferenceId": crm_id,
        "type": "Shared",
        "qualification": "SalesQualified",
        "customerProfile": {
            "name": "Contoso",
            "address": {"city": "Oslo", "postalCode": "0150", "country": "NO"},
            "team": [{"firstName": "Kari", "lastName": "Nordmann", "email": "kari@contoso.example"}]
        },
        "consent": {
            "consentToToShareInfoWithOthers": true,
            "consentToContact": true,
            "consentToShareReferralWithMicrosoftSellers": true
        },
        "details": {
            "dealValue": 50000,
            "currency": "EUR",
            "requirements": {"solutions": [{"id": "SOL-CONTRACT-1", "name": "Contract Solution", "type": "Name"}]}
        },
        "inviteContext": {"assistanceRequestCode": "CustomerTechnicalArchitecture"},
        "target": [{"type": "SolutionProfile", "id": "SOL-CONTRACT-1"}]
    }))
    .unwrap_or_else(|e| panic!("co-sell deal: {e}"))
}

fn id(r: &Referral) -> &str {
    r.id.as_deref()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| panic!("a referral without an id: {r:?}"))
}

fn etag(r: &Referral) -> &str {
    r.e_tag
        .as_deref()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("a referral without an eTag: {r:?}"))
}

fn ok<T>(result: PcResult<T>, doing: &str) -> T {
    result.unwrap_or_else(|err| panic!("{doing}: unexpected error: {err:?}"))
}

fn updated_at(r: &Referral) -> DateTime<Utc> {
    r.updated_date_time
        .as_deref()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("a referral without a readable updatedDateTime: {r:?}"))
}

async fn create(pc: &dyn PartnerCenter, body: &Referral) -> Referral {
    ok(
        pc.create_referral(body).await,
        &format!("create {:?}", body.name),
    )
}

/// The referral as Partner Center holds it now; it must be there.
async fn get(pc: &dyn PartnerCenter, id: &str) -> Referral {
    ok(pc.get_referral(id).await, &format!("get {id}"))
        .unwrap_or_else(|| panic!("referral {id} is not in Partner Center"))
}

async fn patch(
    pc: &dyn PartnerCenter,
    id: &str,
    e_tag: Option<&str>,
    ops: &[PatchOp],
) -> PcResult<Option<String>> {
    pc.patch_referral(id, e_tag, ops).await
}

/// A patch that must succeed; returns the new eTag, which must be the referral's now.
async fn patched(pc: &dyn PartnerCenter, id: &str, e_tag: Option<&str>, ops: &[PatchOp]) -> String {
    let new = ok(
        patch(pc, id, e_tag, ops).await,
        &format!("patch {id} with {ops:?}"),
    )
    .unwrap_or_else(|| panic!("patch {id}: no new eTag came back"));
    assert_eq!(
        get(pc, id).await.e_tag.as_deref(),
        Some(new.as_str()),
        "the eTag a patch returns is the referral's eTag after it"
    );
    new
}

/// A patch Partner Center must refuse as `Rejected` without changing the referral; returns the
/// target it named.
async fn refused(
    pc: &dyn PartnerCenter,
    id: &str,
    e_tag: Option<&str>,
    ops: &[PatchOp],
) -> Option<String> {
    let before = get(pc, id).await;
    let target = match patch(pc, id, e_tag, ops).await {
        Err(PartnerCenterError::Rejected { target, .. }) => target,
        other => panic!("patch {id} with {ops:?}: expected Rejected, got {other:?}"),
    };
    assert_eq!(
        get(pc, id).await,
        before,
        "a refused patch {ops:?} changes nothing, the eTag included"
    );
    target
}

fn replace(path: &str, value: Value) -> PatchOp {
    PatchOp::replace(path, value)
}

fn add(path: &str, value: Value) -> PatchOp {
    PatchOp {
        op: "add",
        path: path.into(),
        value,
    }
}

fn status_of(r: &Referral) -> (Option<Status>, Option<Substatus>) {
    (r.status.clone(), r.substatus.clone())
}

// ----- the promises -----

pub async fn get_reads_a_referral_and_an_unknown_id_is_none(
    pc: &dyn PartnerCenter,
    side: &impl PartnerCenterSide,
    ids: &Ids,
) {
    let name = ids.next("Fabrikam rollout");
    let shared = side.incoming_co_sell(json!({"name": name})).await;
    let read = get(pc, id(&shared)).await;
    assert_eq!(
        read, shared,
        "get reads the referral as Partner Center holds it"
    );
    assert_eq!(read.name.as_deref(), Some(name.as_str()));
    assert_eq!(
        status_of(&read),
        (Some(Status::New), Some(Substatus::Pending)),
        "an incoming referral arrives New/Pending"
    );
    assert_eq!(read.direction, Some(Direction::Incoming));
    etag(&read);
    assert!(read.engagement_id.as_deref().is_some_and(|e| !e.is_empty()));

    // Partner Center varies the case of ids; any case reads the same referral.
    let upper = ok(
        pc.get_referral(&id(&shared).to_uppercase()).await,
        "get by the id in capitals",
    );
    assert_eq!(upper.map(|r| r.id), Some(shared.id.clone()));

    for unknown in ["00000000-0000-0000-0000-000000000000", &ids.next("missing")] {
        assert_eq!(
            pc.get_referral(unknown).await,
            Ok(None),
            "an unknown id reads as None"
        );
    }
}

pub async fn a_create_fills_in_what_partner_center_owns_and_is_found_by_its_external_reference(
    pc: &dyn PartnerCenter,
    _side: &impl PartnerCenterSide,
    ids: &Ids,
) {
    let crm_id = ids.next("O'Brien & Sons #42");
    let mut body = deal("Contoso ERP", &crm_id, "NO");
    // What the client sends of Partner Center's own fields is not taken.
    body.id = Some("chosen-by-the-client".into());
    body.status = Some(Status::New);
    body.substatus = Some(Substatus::Pending);
    let created = create(pc, &body).await;

    assert_ne!(
        id(&created),
        "chosen-by-the-client",
        "Partner Center picks the id"
    );
    assert!(
        created
            .engagement_id
            .as_deref()
            .is_some_and(|e| !e.is_empty()),
        "a new referral starts its own engagement: {created:?}"
    );
    etag(&created);
    assert_eq!(
        status_of(&created),
        (Some(Status::Active), Some(Substatus::Accepted)),
        "a referral the partner creates starts Active/Accepted"
    );
    assert_eq!(created.direction, Some(Direction::Outgoing));
    assert!(created.created_date_time.is_some() && created.updated_date_time.is_some());
    assert!(created.accepted_date_time.is_some());
    assert!(
        created
            .organization_id
            .as_deref()
            .is_some_and(|o| !o.is_empty() && !o.eq_ignore_ascii_case("msft")),
        "the partner's own referral carries the partner's organisation: {:?}",
        created.organization_id
    );
    assert!(!is_microsoft_referral(&created));
    assert_eq!(created.name.as_deref(), Some("Contoso ERP"));
    assert_eq!(
        created.external_reference_id.as_deref(),
        Some(crm_id.as_str())
    );
    assert_eq!(
        created.customer_profile, body.customer_profile,
        "what the client sent is kept"
    );
    assert_eq!(
        get(pc, id(&created)).await,
        created,
        "what create returns is what get reads"
    );

    let plain_id = ids.next("0061x00000AbCdEAAV");
    let plain = create(pc, &deal("Plain", &plain_id, "US")).await;
    for (crm, referral) in [(&crm_id, &created), (&plain_id, &plain)] {
        let found = ok(pc.find_by_external_reference(crm).await, "find")
            .unwrap_or_else(|| panic!("no referral found for {crm}"));
        assert_eq!(found.id, referral.id, "find {crm}");
    }
    assert_eq!(
        pc.find_by_external_reference(&ids.next("no-such-record"))
            .await,
        Ok(None)
    );
}

pub async fn find_by_external_reference_prefers_the_exact_case(
    pc: &dyn PartnerCenter,
    _side: &impl PartnerCenterSide,
    ids: &Ids,
) {
    // Salesforce ids differ by case alone; Partner Center compares without case.
    let crm_id = ids.next("006Ab");
    let lower = create(pc, &deal("Lower", &crm_id.to_lowercase(), "US")).await;
    let upper = create(pc, &deal("Upper", &crm_id.to_uppercase(), "US")).await;
    for (crm, referral) in [
        (crm_id.to_uppercase(), &upper),
        (crm_id.to_lowercase(), &lower),
    ] {
        let found = ok(pc.find_by_external_reference(&crm).await, "find")
            .unwrap_or_else(|| panic!("no referral found for {crm}"));
        assert_eq!(found.id, referral.id, "the exact {crm} wins");
    }
    let other_case = ok(pc.find_by_external_reference(&crm_id).await, "find")
        .unwrap_or_else(|| panic!("no referral found for {crm_id} in another case"));
    assert!(
        other_case.id == lower.id || other_case.id == upper.id,
        "without an exact match, one that differs only by case: {other_case:?}"
    );
}

pub async fn engagement_referrals_has_both_sides_of_a_co_sell(
    pc: &dyn PartnerCenter,
    side: &impl PartnerCenterSide,
    ids: &Ids,
) {
    let shared = side
        .incoming_co_sell(json!({"name": ids.next("Co-sell")}))
        .await;
    let engagement = shared
        .engagement_id
        .clone()
        .unwrap_or_else(|| panic!("no engagement: {shared:?}"));
    let members = ok(
        pc.engagement_referrals(&engagement).await,
        "engagement_referrals",
    );
    assert_eq!(
        members.len(),
        2,
        "the partner's and Microsoft's: {members:?}"
    );
    assert!(members.iter().any(|r| r.id == shared.id));
    let microsoft: Vec<&Referral> = members.iter().filter(|r| r.id != shared.id).collect();
    assert!(
        microsoft.iter().all(|r| is_microsoft_referral(r)
            && r.organization_id
                .as_deref()
                .is_some_and(|o| o.eq_ignore_ascii_case("msft"))),
        "the other side is Microsoft's: {microsoft:?}"
    );
    assert!(
        members
            .iter()
            .all(|r| r.engagement_id.as_deref() == Some(&engagement))
    );
    // Engagement ids are GUIDs too; their case carries no meaning.
    let upper = ok(
        pc.engagement_referrals(&engagement.to_uppercase()).await,
        "engagement_referrals in capitals",
    );
    assert_eq!(upper.len(), 2);

    let lead = side.incoming_lead(json!({"name": ids.next("Lead")})).await;
    let lead_engagement = lead.engagement_id.clone().unwrap_or_default();
    let members = ok(
        pc.engagement_referrals(&lead_engagement).await,
        "engagement_referrals of a lead",
    );
    assert_eq!(
        members.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![lead.id.clone()],
        "a lead has no Microsoft referral beside it"
    );
    assert_eq!(
        pc.engagement_referrals("00000000-0000-0000-0000-000000000000")
            .await,
        Ok(Vec::new())
    );
}

pub async fn a_connected_referral_joins_the_partners_engagement_as_microsofts(
    pc: &dyn PartnerCenter,
    _side: &impl PartnerCenterSide,
    ids: &Ids,
) {
    let partner = create(pc, &co_sell_deal("Contoso co-sell", &ids.next("crm"))).await;
    let engagement = partner.engagement_id.clone().unwrap_or_default();
    let connected = create(pc, &microsoft_referral(&partner)).await;
    assert_ne!(connected.id, partner.id);
    assert_eq!(
        connected.engagement_id.as_deref(),
        Some(engagement.as_str())
    );
    assert!(
        is_microsoft_referral(&connected)
            && connected
                .organization_id
                .as_deref()
                .is_some_and(|o| o.eq_ignore_ascii_case("msft")),
        "the connected referral is Microsoft's: {connected:?}"
    );
    assert_eq!(
        status_of(&connected),
        (Some(Status::New), Some(Substatus::Pending)),
        "Microsoft has not answered yet"
    );
    assert_eq!(connected.r#type, Some(ReferralType::Shared));
    let members = ok(
        pc.engagement_referrals(&engagement).await,
        "engagement_referrals",
    );
    let mut member_ids: Vec<_> = members.iter().map(|r| r.id.clone()).collect();
    member_ids.sort();
    let mut expected = vec![partner.id.clone(), connected.id.clone()];
    expected.sort();
    assert_eq!(member_ids, expected);
    assert_eq!(
        get(pc, id(&partner)).await,
        partner,
        "the partner's referral is untouched"
    );

    let mut stray = microsoft_referral(&partner);
    stray.engagement_id = Some("00000000-0000-0000-0000-000000000000".into());
    match pc.create_referral(&stray).await {
        Err(PartnerCenterError::Rejected { target, .. }) => {
            assert_eq!(target.as_deref(), Some("engagementId"));
        }
        other => {
            panic!("a connected referral into no engagement: expected Rejected, got {other:?}")
        }
    }
}

pub async fn list_changed_since_brings_every_change_after_since_oldest_first(
    pc: &dyn PartnerCenter,
    side: &impl PartnerCenterSide,
    ids: &Ids,
) {
    let edited_later = side
        .incoming_lead(json!({"name": ids.next("Edited later")}))
        .await;
    let untouched = side
        .incoming_lead(json!({"name": ids.next("Untouched")}))
        .await;
    // Later changes happen an hour on, and a second apart, so each stands clear of the others.
    let since = side.advance_clock(Duration::hours(1)).await;
    side.advance_clock(Duration::seconds(1)).await;
    let patched_later = side
        .incoming_lead(json!({"name": ids.next("Patched later")}))
        .await;
    side.advance_clock(Duration::seconds(1)).await;
    let created = create(pc, &deal("Created after", &ids.next("crm"), "US")).await;
    side.advance_clock(Duration::seconds(1)).await;
    side.microsoft_edits(
        id(&edited_later),
        json!({"details": {"notes": "Microsoft added a note"}}),
    )
    .await;
    side.advance_clock(Duration::seconds(1)).await;
    patched(
        pc,
        id(&patched_later),
        Some(etag(&patched_later)),
        &[replace("/name", json!("Patched after"))],
    )
    .await;

    let ours = [&edited_later, &untouched, &patched_later, &created].map(|r| r.id.clone());
    let ours_in = |listed: &[Referral]| -> Vec<Option<String>> {
        listed
            .iter()
            .filter(|r| ours.contains(&r.id))
            .map(|r| r.id.clone())
            .collect()
    };
    let listed = ok(pc.list_changed_since(since).await, "list_changed_since");
    assert_eq!(
        ours_in(&listed),
        vec![
            created.id.clone(),
            edited_later.id.clone(),
            patched_later.id.clone()
        ],
        "every referral changed after since, once, by its last change, oldest first"
    );
    let stamps: Vec<DateTime<Utc>> = listed.iter().map(updated_at).collect();
    assert!(
        stamps.iter().all(|t| *t > since),
        "nothing changed before since: {stamps:?}"
    );
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "oldest change first: {stamps:?}"
    );

    // Strictly after: a change stamped at `since` itself is not listed.
    let at_created = updated_at(&get(pc, id(&created)).await);
    let listed = ok(
        pc.list_changed_since(at_created).await,
        "list_changed_since",
    );
    assert_eq!(
        ours_in(&listed),
        vec![edited_later.id.clone(), patched_later.id.clone()]
    );
}

pub async fn a_patch_under_a_stale_etag_fails_and_changes_nothing(
    pc: &dyn PartnerCenter,
    _side: &impl PartnerCenterSide,
    ids: &Ids,
) {
    let created = create(pc, &deal("Contoso", &ids.next("crm"), "NO")).await;
    let referral = id(&created);
    let first = etag(&created).to_owned();

    let second = patched(
        pc,
        referral,
        Some(&first),
        &[replace("/name", json!("Contoso phase 2"))],
    )
    .await;
    assert_ne!(second, first, "every write gives a new eTag");
    let read = get(pc, referral).await;
    assert_eq!(read.name.as_deref(), Some("Contoso phase 2"));
    assert!(updated_at(&read) >= updated_at(&created));

    let before = get(pc, referral).await;
    assert_eq!(
        patch(
            pc,
            referral,
            Some(&first),
            &[replace("/name", json!("Lost update"))]
        )
        .await,
        Err(PartnerCenterError::PreconditionFailed)
    );
    assert_eq!(
        get(pc, referral).await,
        before,
        "a patch under a stale eTag changes nothing"
    );

    // Without If-Match the last writer wins.
    let third = patched(
        pc,
        referral,
        None,
        &[replace("/name", json!("Last writer"))],
    )
    .await;
    assert_ne!(third, second);
    assert_eq!(get(pc, referral).await.name.as_deref(), Some("Last writer"));
}

pub async fn a_microsoft_edit_makes_the_etag_read_before_it_stale(
    pc: &dyn PartnerCenter,
    side: &impl PartnerCenterSide,
    ids: &Ids,
) {
    let shared = side
        .incoming_co_sell(json!({"name": ids.next("Edited by Microsoft")}))
        .await;
    let referral = id(&shared);
    side.advance_clock(Duration::seconds(1)).await;
    let edited = side
        .microsoft_edits(
            referral,
            json!({"details": {"notes": "Updated by Microsoft"}}),
        )
        .await;
    assert_ne!(
        edited.e_tag, shared.e_tag,
        "Microsoft's edit gives a new eTag"
    );
    assert!(updated_at(&edited) > updated_at(&shared));
    let read = get(pc, referral).await;
    assert_eq!(read, edited);
    assert_eq!(
        read.details.and_then(|d| d.notes).as_deref(),
        Some("Updated by Microsoft")
    );

    assert_eq!(
        patch(
            pc,
            referral,
            Some(etag(&shared)),
            &[replace("/name", json!("Stale rename"))]
        )
        .await,
        Err(PartnerCenterError::PreconditionFailed),
        "the eTag read before Microsoft's edit is stale"
    );
    patched(
        pc,
        referral,
        Some(etag(&edited)),
        &[
            replace("/status", json!("Active")),
            replace("/substatus", json!("Accepted")),
        ],
    )
    .await;
    let accepted = get(pc, referral).await;
    assert_eq!(
        status_of(&accepted),
        (Some(Status::Active), Some(Substatus::Accepted))
    );
    assert!(accepted.accepted_date_time.is_some());
    assert_eq!(
        accepted.details.and_then(|d| d.notes).as_deref(),
        Some("Updated by Microsoft"),
        "a patch changes only what it names"
    );
}

pub async fn add_sets_a_member_the_referral_lacks_and_replace_changes_a_set_one(
    pc: &dyn PartnerCenter,
    _side: &impl PartnerCenterSide,
    ids: &Ids,
) {
    let created = create(pc, &deal("Contoso notes", &ids.next("crm"), "NO")).await;
    let referral = id(&created);
    assert_eq!(created.details.as_ref().and_then(|d| d.notes.clone()), None);

    assert_eq!(
        refused(
            pc,
            referral,
            Some(etag(&created)),
            &[replace("/details/notes", json!("Replace of nothing"))]
        )
        .await,
        None,
        "replace needs the member to be there"
    );
    let notes = |r: &Referral| r.details.as_ref().and_then(|d| d.notes.clone());

    let t = patched(
        pc,
        referral,
        Some(etag(&created)),
        &[add("/details/notes", json!("First note"))],
    )
    .await;
    assert_eq!(
        notes(&get(pc, referral).await).as_deref(),
        Some("First note")
    );
    let t = patched(
        pc,
        referral,
        Some(&t),
        &[replace("/details/notes", json!("Second note"))],
    )
    .await;
    assert_eq!(
        notes(&get(pc, referral).await).as_deref(),
        Some("Second note")
    );
    // `add` sets a member whether or not it is there.
    let t = patched(
        pc,
        referral,
        Some(&t),
        &[add("/details/notes", json!("Third note"))],
    )
    .await;
    assert_eq!(
        notes(&get(pc, referral).await).as_deref(),
        Some("Third note")
    );

    // Operations apply in order, all or none.
    let before = get(pc, referral).await;
    let t2 = patched(
        pc,
        referral,
        Some(&t),
        &[
            add("/statusReason", json!("Customer asked for a pilot")),
            replace("/statusReason", json!("Customer asked for a pilot first")),
            empty_team_op(&before),
        ],
    )
    .await;
    let read = get(pc, referral).await;
    assert_eq!(
        read.status_reason.as_deref(),
        Some("Customer asked for a pilot first")
    );
    assert_eq!(
        read.customer_profile.as_ref().and_then(|c| c.team.clone()),
        Some(Vec::new())
    );
    refused(
        pc,
        referral,
        Some(&t2),
        &[
            replace("/name", json!("Half applied")),
            replace("/details/noSuchMember", json!(1)),
        ],
    )
    .await;
    // A member under a parent the referral lacks cannot be added.
    refused(
        pc,
        referral,
        Some(&t2),
        &[add("/inviteContext/notes", json!("No parent"))],
    )
    .await;
    // Partner Center takes replace and add only.
    refused(
        pc,
        referral,
        Some(&t2),
        &[PatchOp {
            op: "remove",
            path: "/details/notes".into(),
            value: Value::Null,
        }],
    )
    .await;
}

pub async fn patching_an_unknown_referral_is_not_found(
    pc: &dyn PartnerCenter,
    _side: &impl PartnerCenterSide,
    ids: &Ids,
) {
    let unknown = ids.next("no-such-referral");
    for e_tag in [None, Some("\"an-etag\"")] {
        assert_eq!(
            patch(pc, &unknown, e_tag, &[replace("/name", json!("x"))]).await,
            Err(PartnerCenterError::NotFound {
                id: unknown.clone()
            })
        );
    }
}

pub async fn server_fields_cannot_be_patched(
    pc: &dyn PartnerCenter,
    _side: &impl PartnerCenterSide,
    ids: &Ids,
) {
    let created = create(pc, &deal("Contoso ids", &ids.next("crm"), "NO")).await;
    let referral = id(&created);
    for (path, field) in [
        ("/engagementId", "engagementId"),
        ("/createdDateTime", "createdDateTime"),
        ("/organizationId", "organizationId"),
        ("/direction", "direction"),
    ] {
        assert_eq!(
            refused(
                pc,
                referral,
                Some(etag(&created)),
                &[replace(path, json!("Incoming"))]
            )
            .await
            .as_deref(),
            Some(field),
            "{field} is Partner Center's"
        );
    }
}

pub async fn a_closed_referral_keeps_its_terminal_state(
    pc: &dyn PartnerCenter,
    side: &impl PartnerCenterSide,
    ids: &Ids,
) {
    let created = create(pc, &deal("Contoso won", &ids.next("crm"), "NO")).await;
    let referral = id(&created);
    let won = patched(
        pc,
        referral,
        Some(etag(&created)),
        &[
            replace("/status", json!("Closed")),
            replace("/substatus", json!("Won")),
        ],
    )
    .await;
    let read = get(pc, referral).await;
    assert!(read.is_closed());
    assert_eq!(
        status_of(&read),
        (Some(Status::Closed), Some(Substatus::Won))
    );
    assert!(read.closed_date_time.is_some());
    for ops in [
        vec![replace("/name", json!("After the end"))],
        vec![
            replace("/status", json!("Active")),
            replace("/substatus", json!("Accepted")),
        ],
        vec![replace("/substatus", json!("Lost"))],
    ] {
        refused(pc, referral, Some(&won), &ops).await;
        refused(pc, referral, None, &ops).await;
    }

    let shared = side
        .incoming_co_sell(json!({"name": ids.next("Declined")}))
        .await;
    let referral = id(&shared);
    let declined = patched(
        pc,
        referral,
        Some(etag(&shared)),
        &[
            replace("/status", json!("Closed")),
            replace("/substatus", json!("Declined")),
            add("/statusReason", json!("Not a fit for us")),
        ],
    )
    .await;
    let read = get(pc, referral).await;
    assert_eq!(
        status_of(&read),
        (Some(Status::Closed), Some(Substatus::Declined))
    );
    assert_eq!(read.status_reason.as_deref(), Some("Not a fit for us"));
    refused(
        pc,
        referral,
        Some(&declined),
        &[
            replace("/status", json!("Active")),
            replace("/substatus", json!("Accepted")),
        ],
    )
    .await;
}

pub async fn a_status_move_the_lifecycle_forbids_is_rejected_naming_status(
    pc: &dyn PartnerCenter,
    side: &impl PartnerCenterSide,
    ids: &Ids,
) {
    let created = create(pc, &deal("Contoso back", &ids.next("crm"), "NO")).await;
    let target = refused(
        pc,
        id(&created),
        Some(etag(&created)),
        &[
            replace("/status", json!("New")),
            replace("/substatus", json!("Pending")),
        ],
    )
    .await;
    assert_eq!(
        target.as_deref(),
        Some("status"),
        "Active never goes back to New"
    );

    let shared = side
        .incoming_co_sell(json!({"name": ids.next("Mismatch")}))
        .await;
    for ops in [
        // Accepted belongs to Active.
        vec![replace("/substatus", json!("Accepted"))],
        // Closed/Error is not documented for the API.
        vec![
            replace("/status", json!("Closed")),
            replace("/substatus", json!("Error")),
        ],
    ] {
        let target = refused(pc, id(&shared), Some(etag(&shared)), &ops).await;
        assert_eq!(target.as_deref(), Some("status"), "{ops:?}");
    }
}

pub async fn a_visible_deal_is_not_made_private_again(
    pc: &dyn PartnerCenter,
    side: &impl PartnerCenterSide,
    ids: &Ids,
) {
    let shared = side
        .incoming_co_sell(json!({"name": ids.next("Visible")}))
        .await;
    let referral = id(&shared);
    let target = refused(
        pc,
        referral,
        Some(etag(&shared)),
        &[replace(
            "/consent/consentToShareReferralWithMicrosoftSellers",
            json!(false),
        )],
    )
    .await;
    assert_eq!(
        target.as_deref(),
        Some("consent.consentToShareReferralWithMicrosoftSellers")
    );
    let target = refused(
        pc,
        referral,
        Some(etag(&shared)),
        &[replace("/type", json!("Independent"))],
    )
    .await;
    assert_eq!(target.as_deref(), Some("type"));

    // A private deal may still become visible.
    let private = create(pc, &deal("Private", &ids.next("crm"), "NO")).await;
    patched(
        pc,
        id(&private),
        Some(etag(&private)),
        &[replace(
            "/consent/consentToShareReferralWithMicrosoftSellers",
            json!(true),
        ), add(
            "/details/requirements",
            json!({"solutions": [{"id": "SOL-CONTRACT-1", "name": "Contract Solution", "type": "Name"}]}),
        )],
    )
    .await;
    let read = get(pc, id(&private)).await;
    assert_eq!(
        read.consent
            .and_then(|c| c.consent_to_share_referral_with_microsoft_sellers),
        Some(true)
    );
}

pub async fn microsofts_referral_is_not_the_partners_to_change(
    pc: &dyn PartnerCenter,
    side: &impl PartnerCenterSide,
    ids: &Ids,
) {
    let shared = side
        .incoming_co_sell(json!({"name": ids.next("Microsoft's")}))
        .await;
    let members = ok(
        pc.engagement_referrals(shared.engagement_id.as_deref().unwrap_or_default())
            .await,
        "engagement_referrals",
    );
    let microsoft = members
        .iter()
        .find(|r| is_microsoft_referral(r))
        .unwrap_or_else(|| panic!("no Microsoft referral in {members:?}"));
    let before = get(pc, id(microsoft)).await;
    let answer = patch(
        pc,
        id(microsoft),
        Some(etag(microsoft)),
        &[replace("/name", json!("Renamed by the partner"))],
    )
    .await;
    assert!(
        matches!(answer, Err(PartnerCenterError::Auth { .. })),
        "another organisation's referral is refused (403): {answer:?}"
    );
    assert_eq!(get(pc, id(microsoft)).await, before);
}

pub async fn a_rejected_create_names_the_field_and_creates_nothing(
    pc: &dyn PartnerCenter,
    _side: &impl PartnerCenterSide,
    ids: &Ids,
) {
    let field = "customerProfile.address.country";
    let mut no_country = deal("No country", &ids.next("crm"), "NO");
    if let Some(address) = no_country
        .customer_profile
        .as_mut()
        .and_then(|c| c.address.as_mut())
    {
        address.country = None;
    }
    let mut unnamed = deal("", &ids.next("crm"), "NO");
    unnamed.name = None;
    let mut no_solution = co_sell_deal("No solution", &ids.next("crm"));
    if let Some(details) = no_solution.details.as_mut() {
        details.requirements = None;
    }
    let mut no_contact = co_sell_deal("No contact", &ids.next("crm"));
    if let Some(customer) = no_contact.customer_profile.as_mut() {
        customer.team = None;
    }
    let cases = [
        (deal("Three letters", &ids.next("crm"), "USA"), field),
        (deal("Small letters", &ids.next("crm"), "us"), field),
        (deal("Not a country", &ids.next("crm"), "XX"), field),
        (no_country, field),
        (unnamed, "name"),
        (no_solution, "details.requirements.solutions"),
        (no_contact, "customerProfile.team"),
    ];
    for (body, expected) in cases {
        let crm_id = body.external_reference_id.clone().unwrap_or_default();
        match pc.create_referral(&body).await {
            Err(PartnerCenterError::Rejected { message, target }) => {
                assert_eq!(target.as_deref(), Some(expected), "{message}");
                assert!(
                    message.contains(expected),
                    "the message names {expected}: {message}"
                );
            }
            other => panic!("create {:?}: expected Rejected, got {other:?}", body.name),
        }
        assert_eq!(
            pc.find_by_external_reference(&crm_id).await,
            Ok(None),
            "a refused create makes no referral"
        );
    }
}

pub async fn an_unanswered_incoming_referral_expires_after_fourteen_days(
    pc: &dyn PartnerCenter,
    side: &impl PartnerCenterSide,
    ids: &Ids,
) {
    let unanswered = side
        .incoming_lead(json!({"name": ids.next("Unanswered")}))
        .await;
    let answered = side
        .incoming_co_sell(json!({"name": ids.next("Answered")}))
        .await;
    patched(
        pc,
        id(&answered),
        Some(etag(&answered)),
        &[
            replace("/status", json!("Active")),
            replace("/substatus", json!("Accepted")),
        ],
    )
    .await;
    side.advance_clock(Duration::days(13)).await;
    assert_eq!(
        status_of(&get(pc, id(&unanswered)).await),
        (Some(Status::New), Some(Substatus::Pending)),
        "not yet"
    );
    let since = side
        .advance_clock(Duration::days(1) + Duration::minutes(1))
        .await;
    let expired = get(pc, id(&unanswered)).await;
    assert_eq!(
        status_of(&expired),
        (Some(Status::Closed), Some(Substatus::Expired))
    );
    assert_ne!(expired.e_tag, unanswered.e_tag);
    assert_eq!(
        status_of(&get(pc, id(&answered)).await),
        (Some(Status::Active), Some(Substatus::Accepted)),
        "an answered referral does not expire"
    );
    // The expiry is a change like any other: the reconciliation lists it.
    let listed = ok(
        pc.list_changed_since(since - Duration::minutes(2)).await,
        "list_changed_since",
    );
    assert!(listed.iter().any(|r| r.id == unanswered.id));
}
