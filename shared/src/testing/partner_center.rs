//! A [`PartnerCenter`] in memory, with the behaviour of the Referrals API as documented and as
//! the sandbox plays it, so the sync use cases can be tested without HTTP. It passes the same
//! contract suite as the HTTP adapter against the sandbox.
//!
//! Referrals are kept as the JSON documents Partner Center would hold, not as [`Referral`]
//! values: JSON Patch works on the document, and members the model does not name must behave
//! as they would on the service (a `replace` of a member the document lacks fails, an `add`
//! of one sets it).
//!
//! Besides the port, the control side plays everyone else: Microsoft sharing a referral
//! ([`MemoryPartnerCenter::incoming_co_sell`] …) and editing one
//! ([`MemoryPartnerCenter::microsoft_edit`]), the clock, one-shot failures, and what the
//! connector asked for ([`MemoryPartnerCenter::calls`], [`MemoryPartnerCenter::patches`]).
//! An injected failure stands for what the HTTP adapter returns once its own retries are
//! spent; the fake itself never retries.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};

use crate::domain::outbound::iso_country;
use crate::partner_center::{PartnerCenter, PartnerCenterError, PatchOp, PcResult};
use crate::referral::{Referral, Status, Substatus, TransitionRules, check_transition};
use crate::sync::poller::MICROSOFT_ORGANIZATION_ID;

/// Where the referrals' `links` point: the public API, as the service writes them.
const API_BASE_URL: &str = "https://api.partner.microsoft.com";
/// The partner organisation this Partner Center serves (the sandbox's, so payloads from either
/// look alike).
const PARTNER_ORGANIZATION_ID: &str = "5b3c5f6e-1f0a-4d3e-9c52-0a3a1f3c0d11";
const PARTNER_ORGANIZATION_NAME: &str = "Sandbox Partner";
const MICROSOFT_ORGANIZATION_NAME: &str = "Microsoft";
/// The partner's referral admin, on the team of every incoming referral.
const ADMIN_USER: &str = "referral-admin@sandbox.test";
/// Incoming referrals nobody answers expire after this long (documented: 14 days).
const REFERRAL_EXPIRY_DAYS: i64 = 14;

/// Fields the service owns: ignored on create, refused when a patch changes them.
const SERVER_FIELDS: &[&str] = &[
    "id",
    "engagementId",
    "eTag",
    "createdDateTime",
    "updatedDateTime",
    "acceptedDateTime",
    "closedDateTime",
    "expirationDateTime",
    "direction",
    "organizationId",
    "organizationName",
    "links",
];

/// The consent member whose `false` makes a deal private.
const CONSENT_TO_SHARE: &str = "consentToShareReferralWithMicrosoftSellers";

/// How many times each port method was called, faults and refusals included: what a test
/// checks to say "no call to Partner Center" or "one create".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    pub get_referral: usize,
    pub find_by_external_reference: usize,
    pub engagement_referrals: usize,
    pub list_changed_since: usize,
    pub create_referral: usize,
    pub patch_referral: usize,
}

impl Calls {
    pub fn total(&self) -> usize {
        self.get_referral
            + self.find_by_external_reference
            + self.engagement_referrals
            + self.list_changed_since
            + self.create_referral
            + self.patch_referral
    }

    /// The calls that may have changed a referral: a read-only path must make none.
    pub fn writes(&self) -> usize {
        self.create_referral + self.patch_referral
    }
}

/// One `patch_referral` call as the connector made it, with what it got back.
#[derive(Debug, Clone, PartialEq)]
pub struct SentPatch {
    pub id: String,
    pub e_tag: Option<String>,
    pub ops: Vec<PatchOp>,
    pub result: PcResult<Option<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Call {
    Get,
    Find,
    Engagement,
    List,
    Create,
    Patch,
}

impl Call {
    const ALL: [(&'static str, Call); 6] = [
        ("get_referral", Call::Get),
        ("find_by_external_reference", Call::Find),
        ("engagement_referrals", Call::Engagement),
        ("list_changed_since", Call::List),
        ("create_referral", Call::Create),
        ("patch_referral", Call::Patch),
    ];

    fn named(name: &str) -> Option<Call> {
        Call::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, call)| *call)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    CoSell,
    Lead,
    Pipeline,
}

#[derive(Debug, Clone, Copy)]
enum Clock {
    /// The wall clock moved by an offset, as the sandbox keeps time.
    Wall { offset: Duration },
    /// Time stands still until moved: deterministic stamps.
    Fixed(DateTime<Utc>),
}

#[derive(Debug, Clone)]
struct Stored {
    doc: Map<String, Value>,
    /// When the referral last changed, in the order of all changes: what breaks ties between
    /// changes stamped with the same time (a clock that stands still).
    changed: u64,
}

impl Stored {
    fn id(&self) -> &str {
        str_at(&self.doc, "id")
    }
    fn engagement_id(&self) -> &str {
        str_at(&self.doc, "engagementId")
    }
    /// Microsoft's side of an engagement: the partner may read it, never write it.
    fn is_microsofts(&self) -> bool {
        str_at(&self.doc, "organizationId").eq_ignore_ascii_case(MICROSOFT_ORGANIZATION_ID)
    }
}

struct State {
    /// In creation order, which is the order lists come back in.
    referrals: Vec<Stored>,
    changes: u64,
    clock: Clock,
    calls: Calls,
    patches: Vec<SentPatch>,
    creates: Vec<Referral>,
    faults: HashMap<Call, VecDeque<PartnerCenterError>>,
    lost_create_answers: usize,
    won_min_age: Duration,
    rules: TransitionRules,
}

impl Default for State {
    fn default() -> Self {
        State {
            referrals: Vec::new(),
            changes: 0,
            clock: Clock::Wall {
                offset: Duration::zero(),
            },
            calls: Calls::default(),
            patches: Vec::new(),
            creates: Vec::new(),
            faults: HashMap::new(),
            lost_create_answers: 0,
            won_min_age: Duration::zero(),
            rules: TransitionRules::default(),
        }
    }
}

/// The in-memory Partner Center, as one partner's Referral admin sees it. Cheap to make: one
/// per test.
#[derive(Default)]
pub struct MemoryPartnerCenter {
    state: Mutex<State>,
}

impl MemoryPartnerCenter {
    pub fn new() -> MemoryPartnerCenter {
        MemoryPartnerCenter::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock leaves consistent data: every method
        // changes the state only after its checks.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // ----- the clock -----

    /// The time Partner Center stamps changes with.
    pub fn now(&self) -> DateTime<Utc> {
        self.state().now()
    }

    /// Stops the clock at `now`; it moves only by [`MemoryPartnerCenter::advance`] or another
    /// `set_now` from then on, so every stamp is known to the test.
    pub fn set_now(&self, now: DateTime<Utc>) {
        let mut state = self.state();
        state.clock = Clock::Fixed(now);
        state.expire_referrals();
    }

    /// Moves the clock on (a stopped one stays stopped). Unanswered incoming referrals expire
    /// as time passes, as on the service.
    pub fn advance(&self, by: Duration) -> DateTime<Utc> {
        let mut state = self.state();
        state.clock = match state.clock {
            Clock::Wall { offset } => Clock::Wall {
                offset: offset + by,
            },
            Clock::Fixed(at) => Clock::Fixed(at + by),
        };
        state.expire_referrals();
        state.now()
    }

    // ----- what Microsoft does -----

    /// Microsoft shares a co-sell opportunity: the partner's incoming referral (`New/Pending`,
    /// shared, sales-qualified, with a customer contact and a solution), and Microsoft's own
    /// referral beside it in the engagement. `partial` is merged over the defaults (JSON merge
    /// patch: a `null` removes a member). Returns the partner's referral.
    pub fn incoming_co_sell(&self, partial: Value) -> Referral {
        self.incoming(Kind::CoSell, partial)
    }

    /// Microsoft passes on a marketing-qualified lead: independent, with no Microsoft referral
    /// in its engagement.
    pub fn incoming_lead(&self, partial: Value) -> Referral {
        self.incoming(Kind::Lead, partial)
    }

    /// Microsoft shares its own pipeline opportunity: shared, not qualified, with Microsoft's
    /// referral in the engagement.
    pub fn incoming_pipeline(&self, partial: Value) -> Referral {
        self.incoming(Kind::Pipeline, partial)
    }

    fn incoming(&self, kind: Kind, partial: Value) -> Referral {
        let mut state = self.state();
        let now = state.now();
        let mut doc = incoming_defaults(kind, now);
        merge(&mut doc, &partial);
        let Value::Object(mut doc) = doc else {
            panic!("an incoming referral must be a JSON object, not {partial}");
        };
        let engagement = new_guid();
        doc.insert("id".into(), Value::String(new_guid()));
        doc.insert("engagementId".into(), Value::String(engagement.clone()));
        doc.insert("direction".into(), "Incoming".into());
        doc.insert("organizationId".into(), PARTNER_ORGANIZATION_ID.into());
        doc.insert("organizationName".into(), PARTNER_ORGANIZATION_NAME.into());
        doc.entry("status").or_insert_with(|| "New".into());
        doc.entry("substatus").or_insert_with(|| "Pending".into());
        doc.insert(
            "expirationDateTime".into(),
            Value::String(pc_timestamp(now + Duration::days(REFERRAL_EXPIRY_DAYS))),
        );
        let doc = state.insert(doc, now);
        if kind != Kind::Lead {
            let ms = microsoft_side(&doc, &engagement, now);
            state.insert(ms, now);
        }
        readable(&doc)
    }

    /// Puts a referral in Partner Center as given, the way a test wants it to be there already
    /// (a closed deal, a referral of an unusual shape, Microsoft's referral in an existing
    /// engagement with `organizationId` `msft`). The service's fields are filled in where
    /// missing (an id, an engagement, the creation time); the eTag, `updatedDateTime` and the
    /// links are always new. Not a call to the port.
    pub fn seed(&self, referral: &Referral) -> Referral {
        let mut state = self.state();
        let now = state.now();
        let Ok(Value::Object(mut doc)) = serde_json::to_value(referral) else {
            panic!("a referral always writes as a JSON object: {referral:?}");
        };
        let id = match doc.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => new_guid(),
        };
        if state.find(&id).is_some() {
            panic!("a referral with id {id} is already in Partner Center");
        }
        doc.insert("id".into(), Value::String(id));
        if str_at(&doc, "engagementId").is_empty() {
            doc.insert("engagementId".into(), Value::String(new_guid()));
        }
        let doc = state.insert(doc, now);
        readable(&doc)
    }

    /// Microsoft (or the service itself) changes a referral: `change` is a JSON merge patch
    /// over its document (a `null` removes a member). Identity stays; nothing is validated, a
    /// closed referral included, since it is not the partner writing. A new eTag and
    /// `updatedDateTime`, as any change. `None` when there is no such referral.
    pub fn microsoft_edit(&self, id: &str, change: Value) -> Option<Referral> {
        let mut state = self.state();
        let now = state.now();
        state.expire_referrals();
        let index = state.position(id)?;
        let stored = &state.referrals[index];
        let mut doc = Value::Object(stored.doc.clone());
        merge(&mut doc, &change);
        let Value::Object(mut doc) = doc else {
            panic!("a change to a referral must be a JSON object, not {change}");
        };
        for f in ["id", "engagementId", "createdDateTime"] {
            if let Some(v) = stored.doc.get(f) {
                doc.insert(f.into(), v.clone());
            }
        }
        let doc = state.write(index, doc, now);
        Some(readable(&doc))
    }

    /// Microsoft's referral in the engagement of referral `id` (the newest, should there be
    /// several), or `id` itself when it is Microsoft's.
    pub fn microsoft_referral(&self, id: &str) -> Option<Referral> {
        let mut state = self.state();
        state.expire_referrals();
        let stored = state.find(id)?;
        if stored.is_microsofts() {
            return Some(readable(&stored.doc));
        }
        let engagement = stored.engagement_id().to_owned();
        state
            .referrals
            .iter()
            .rev()
            .find(|r| r.is_microsofts() && r.engagement_id().eq_ignore_ascii_case(&engagement))
            .map(|r| readable(&r.doc))
    }

    // ----- reading without calling -----

    /// A referral as it stands, without counting as a call.
    pub fn referral(&self, id: &str) -> Option<Referral> {
        let mut state = self.state();
        state.expire_referrals();
        state.find(id).map(|r| readable(&r.doc))
    }

    /// Every referral, the partner's and Microsoft's, in the order they were created.
    pub fn referrals(&self) -> Vec<Referral> {
        let mut state = self.state();
        state.expire_referrals();
        state.referrals.iter().map(|r| readable(&r.doc)).collect()
    }

    // ----- what the connector asked for -----

    /// How many times each port method has been called.
    pub fn calls(&self) -> Calls {
        self.state().calls
    }

    /// Every `patch_referral` call, in the order made, refused ones included.
    pub fn patches(&self) -> Vec<SentPatch> {
        self.state().patches.clone()
    }

    /// The body of every `create_referral` call, in the order made, refused ones included.
    pub fn creates(&self) -> Vec<Referral> {
        self.state().creates.clone()
    }

    /// Forgets the calls, patches and creates so far: what a test does after setting the scene
    /// through the port.
    pub fn reset_calls(&self) {
        let mut state = self.state();
        state.calls = Calls::default();
        state.patches.clear();
        state.creates.clear();
    }

    // ----- failures -----

    /// Makes the next call of the port method named `call` (`"get_referral"`,
    /// `"find_by_external_reference"`, `"engagement_referrals"`, `"list_changed_since"`,
    /// `"create_referral"`, `"patch_referral"`) fail with `error`, before it does anything.
    /// Several queue up, one per call. Panics on another name, so a typo cannot make a test
    /// pass.
    pub fn fail_next(&self, call: &str, error: PartnerCenterError) {
        let Some(call) = Call::named(call) else {
            let names: Vec<&str> = Call::ALL.iter().map(|(n, _)| *n).collect();
            panic!("'{call}' is not a Partner Center call; one of {names:?}");
        };
        self.state()
            .faults
            .entry(call)
            .or_default()
            .push_back(error);
    }

    /// The next `create_referral` is carried out (the referral exists, when it was valid) but
    /// its answer is lost: the call returns a transient error with no status, as a dropped
    /// connection does. The adapter never sends a create again after that.
    pub fn lose_next_create_answer(&self) {
        self.state().lost_create_answers += 1;
    }

    // ----- rules the documentation leaves open -----

    /// Refuses `Closed/Won` on the partner's own deals until they are this old (Partner Center
    /// may refuse a Won soon after creation; off by default, as in the sandbox).
    pub fn set_won_min_age(&self, age: Duration) {
        self.state().won_min_age = age;
    }

    /// Whether `Closed/Error` is accepted (undocumented for the API; refused by default).
    pub fn set_allow_error_substatus(&self, allow: bool) {
        self.state().rules.allow_error_substatus = allow;
    }
}

impl State {
    fn now(&self) -> DateTime<Utc> {
        match self.clock {
            Clock::Wall { offset } => Utc::now() + offset,
            Clock::Fixed(at) => at,
        }
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.referrals
            .iter()
            .position(|r| r.id().eq_ignore_ascii_case(id))
    }

    fn find(&self, id: &str) -> Option<&Stored> {
        self.position(id).map(|i| &self.referrals[i])
    }

    /// Counts the call and returns the failure queued for it, if any.
    fn begin(&mut self, call: Call) -> PcResult<()> {
        let calls = &mut self.calls;
        *match call {
            Call::Get => &mut calls.get_referral,
            Call::Find => &mut calls.find_by_external_reference,
            Call::Engagement => &mut calls.engagement_referrals,
            Call::List => &mut calls.list_changed_since,
            Call::Create => &mut calls.create_referral,
            Call::Patch => &mut calls.patch_referral,
        } += 1;
        match self.faults.get_mut(&call).and_then(VecDeque::pop_front) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Stamps and stores a new referral; returns it as stored.
    fn insert(&mut self, mut doc: Map<String, Value>, now: DateTime<Utc>) -> Map<String, Value> {
        doc.entry("createdDateTime")
            .or_insert_with(|| Value::String(pc_timestamp(now)));
        stamp(&mut doc, now);
        self.changes += 1;
        self.referrals.push(Stored {
            doc: doc.clone(),
            changed: self.changes,
        });
        doc
    }

    /// Stamps `doc` and makes it referral `index`; returns it as stored.
    fn write(
        &mut self,
        index: usize,
        mut doc: Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Map<String, Value> {
        stamp(&mut doc, now);
        self.changes += 1;
        let stored = &mut self.referrals[index];
        stored.doc = doc.clone();
        stored.changed = self.changes;
        doc
    }

    /// Incoming referrals nobody answered in time become `Closed/Expired`; the service does it
    /// on its own, so it shows at whatever call comes next.
    fn expire_referrals(&mut self) {
        let now = self.now();
        let due: Vec<usize> = self
            .referrals
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                !r.is_microsofts()
                    && str_at(&r.doc, "status") == "New"
                    && str_at(&r.doc, "direction") == "Incoming"
                    && parse_time(str_at(&r.doc, "createdDateTime")).is_some_and(|created| {
                        created + Duration::days(REFERRAL_EXPIRY_DAYS) <= now
                    })
            })
            .map(|(i, _)| i)
            .collect();
        for index in due {
            let mut doc = self.referrals[index].doc.clone();
            doc.insert("status".into(), "Closed".into());
            doc.insert("substatus".into(), "Expired".into());
            doc.insert(
                "statusReason".into(),
                "Not answered within the allowed time".into(),
            );
            self.write(index, doc, now);
        }
    }

    fn create(&mut self, referral: &Referral) -> PcResult<Referral> {
        let Ok(Value::Object(mut doc)) = serde_json::to_value(referral) else {
            return Err(rejected("the referral cannot be written as JSON", None));
        };
        validate(&doc)?;
        self.expire_referrals();
        let now = self.now();
        // A create naming an engagement is Microsoft's connected referral in it.
        let connected = match doc.get("engagementId") {
            None | Some(Value::Null) => None,
            Some(Value::String(e)) if e.is_empty() => None,
            Some(Value::String(e)) => Some(self.connected_engagement(e, &doc)?),
            Some(_) => {
                return Err(rejected(
                    "engagementId must be a string.",
                    Some("engagementId"),
                ));
            }
        };
        let microsofts = connected.is_some();
        let engagement = connected.unwrap_or_else(new_guid);
        doc.retain(|k, _| !k.starts_with("@odata."));
        for f in SERVER_FIELDS {
            doc.remove(*f);
        }
        let ts = pc_timestamp(now);
        doc.insert("id".into(), Value::String(new_guid()));
        doc.insert("engagementId".into(), Value::String(engagement));
        doc.insert("direction".into(), "Outgoing".into());
        doc.insert("createdDateTime".into(), Value::String(ts.clone()));
        if microsofts {
            // The connected referral is Microsoft's side of the deal, and Microsoft has not
            // answered yet.
            doc.insert("organizationId".into(), MICROSOFT_ORGANIZATION_ID.into());
            doc.insert(
                "organizationName".into(),
                MICROSOFT_ORGANIZATION_NAME.into(),
            );
            doc.insert("type".into(), "Shared".into());
            doc.insert("status".into(), "New".into());
            doc.insert("substatus".into(), "Pending".into());
        } else {
            doc.insert("organizationId".into(), PARTNER_ORGANIZATION_ID.into());
            doc.insert("organizationName".into(), PARTNER_ORGANIZATION_NAME.into());
            // Deals the partner creates are accepted from the start, whatever status was sent.
            doc.insert("status".into(), "Active".into());
            doc.insert("substatus".into(), "Accepted".into());
            doc.insert("acceptedDateTime".into(), Value::String(ts));
        }
        let doc = self.insert(doc, now);
        read(&doc)
    }

    /// A create that names an engagement is the second half of a shared deal: the connected
    /// referral inviting Microsoft into the partner's engagement. Returns the engagement id as
    /// stored. A second one is not refused: a client that makes two should be seen making two.
    fn connected_engagement(&self, posted: &str, doc: &Map<String, Value>) -> PcResult<String> {
        let in_engagement = |r: &&Stored| r.engagement_id().eq_ignore_ascii_case(posted);
        let Some(own) = self
            .referrals
            .iter()
            .filter(in_engagement)
            .find(|r| !r.is_microsofts())
        else {
            let why = if self.referrals.iter().any(|r| in_engagement(&r)) {
                "holds no referral of this partner"
            } else {
                "does not name an existing engagement"
            };
            return Err(rejected(
                &format!(
                    "engagementId '{posted}' {why}; a referral posted with an engagementId joins the partner's own engagement."
                ),
                Some("engagementId"),
            ));
        };
        if !targets_microsoft(doc) {
            return Err(rejected(
                "target must include {\"type\": \"BusinessProfileLocation\", \"id\": \"msft\"}: a referral posted into an existing engagement is the connected referral that invites Microsoft.",
                Some("target"),
            ));
        }
        Ok(own.engagement_id().to_owned())
    }

    fn patch(
        &mut self,
        id: &str,
        e_tag: Option<&str>,
        ops: &[PatchOp],
    ) -> PcResult<Option<String>> {
        if let Some(op) = ops.iter().find(|op| op.op != "add" && op.op != "replace") {
            return Err(rejected(
                &format!(
                    "Only the replace and add operations are supported, not {}.",
                    op.op
                ),
                None,
            ));
        }
        if let Some(op) = ops
            .iter()
            .find(|op| !op.path.is_empty() && !op.path.starts_with('/'))
        {
            return Err(rejected(
                &format!(
                    "The request body must be a JSON Patch document: '{}' is not a JSON pointer",
                    op.path
                ),
                None,
            ));
        }
        self.expire_referrals();
        let now = self.now();
        let index = self
            .position(id)
            .ok_or_else(|| PartnerCenterError::NotFound { id: id.to_owned() })?;
        let old = &self.referrals[index];
        if old.is_microsofts() {
            // The service answers 403, which the adapter reports as Auth.
            return Err(PartnerCenterError::Auth {
                kind: crate::partner_center::AuthFailure::Forbidden,
                message: format!(
                    "PATCH /v1.0/engagements/referrals/{id} answered 403: This referral belongs to another organization and cannot be changed."
                ),
            });
        }
        if !etag_matches(e_tag.unwrap_or("*"), str_at(&old.doc, "eTag")) {
            return Err(PartnerCenterError::PreconditionFailed);
        }
        let mut value = Value::Object(old.doc.clone());
        for (i, op) in ops.iter().enumerate() {
            apply(&mut value, op).map_err(|()| {
                rejected(
                    &format!(
                        "The patch cannot be applied: operation '/{i}' failed at path '{}': path is invalid",
                        op.path
                    ),
                    None,
                )
            })?;
        }
        let Value::Object(mut new) = value else {
            return Err(rejected(
                "The patch must leave the referral an object.",
                None,
            ));
        };
        self.check_update(&old.doc, &mut new, now)?;
        let doc = self.write(index, new, now);
        Ok(Some(str_at(&doc, "eTag").to_owned()))
    }

    /// What every update of the partner's referral must pass: not closed, no server field
    /// moved, a legal status move, visibility only upwards, and the partner's own deals still
    /// valid.
    fn check_update(
        &self,
        old: &Map<String, Value>,
        new: &mut Map<String, Value>,
        now: DateTime<Utc>,
    ) -> PcResult<()> {
        let from = status_pair(old);
        if from.0.is_terminal() {
            return Err(rejected(
                &format!(
                    "The referral is closed ({}/{}); no further changes are allowed.",
                    str_at(old, "status"),
                    str_at(old, "substatus")
                ),
                None,
            ));
        }
        for f in SERVER_FIELDS {
            if new.get(*f) != old.get(*f) {
                return Err(rejected(&format!("{f} is read-only."), Some(f)));
            }
        }
        for field in ["status", "substatus"] {
            if !new.contains_key(field)
                && let Some(v) = old.get(field)
            {
                new.insert(field.into(), v.clone());
            }
        }
        let to = status_pair(new);
        check_transition((&from.0, &from.1), (&to.0, &to.1), &self.rules)
            .map_err(|e| rejected(&e.to_string(), Some("status")))?;
        check_visibility(old, new)?;
        let outgoing = str_at(old, "direction") == "Outgoing";
        if outgoing && matches!(to, (Status::Closed, Substatus::Won)) {
            check_won_age(old, self.won_min_age, now)?;
        }
        if outgoing {
            validate(new)?;
        }
        Ok(())
    }
}

#[async_trait]
impl PartnerCenter for MemoryPartnerCenter {
    async fn get_referral(&self, id: &str) -> PcResult<Option<Referral>> {
        let mut state = self.state();
        state.begin(Call::Get)?;
        state.expire_referrals();
        state.find(id).map(|r| read(&r.doc)).transpose()
    }

    async fn find_by_external_reference(&self, crm_id: &str) -> PcResult<Option<Referral>> {
        let mut state = self.state();
        state.begin(Call::Find)?;
        state.expire_referrals();
        // The service compares strings without regard to case; the adapter prefers an exact
        // match among what comes back.
        let wanted = crm_id.to_lowercase();
        let found: Vec<&Stored> = state
            .referrals
            .iter()
            .filter(|r| {
                r.doc
                    .get("externalReferenceId")
                    .and_then(Value::as_str)
                    .is_some_and(|e| e.to_lowercase() == wanted)
            })
            .collect();
        let exact = found
            .iter()
            .find(|r| str_at(&r.doc, "externalReferenceId") == crm_id)
            .or_else(|| found.first());
        exact.map(|r| read(&r.doc)).transpose()
    }

    async fn engagement_referrals(&self, engagement_id: &str) -> PcResult<Vec<Referral>> {
        let mut state = self.state();
        state.begin(Call::Engagement)?;
        state.expire_referrals();
        let wanted = engagement_id.to_lowercase();
        state
            .referrals
            .iter()
            .filter(|r| r.engagement_id().to_lowercase() == wanted)
            .map(|r| read(&r.doc))
            .collect()
    }

    async fn list_changed_since(&self, since: DateTime<Utc>) -> PcResult<Vec<Referral>> {
        let mut state = self.state();
        state.begin(Call::List)?;
        state.expire_referrals();
        // The adapter writes `since` with the service's seven fractional digits, rounded down,
        // and the filter is `gt`: a change stamped in the same 100 ns tick is not after it.
        let since = truncate_to_ticks(since);
        let mut changed: Vec<(DateTime<Utc>, u64, &Stored)> = state
            .referrals
            .iter()
            .filter_map(|r| {
                parse_time(str_at(&r.doc, "updatedDateTime")).map(|t| (t, r.changed, r))
            })
            .filter(|(t, _, _)| *t > since)
            .collect();
        changed.sort_by_key(|(t, seq, _)| (*t, *seq));
        changed.into_iter().map(|(_, _, r)| read(&r.doc)).collect()
    }

    async fn create_referral(&self, referral: &Referral) -> PcResult<Referral> {
        let mut state = self.state();
        state.creates.push(referral.clone());
        state.begin(Call::Create)?;
        let lost = state.lost_create_answers > 0;
        if lost {
            state.lost_create_answers -= 1;
        }
        let result = state.create(referral);
        if lost {
            return Err(PartnerCenterError::Transient {
                status: None,
                retry_after: None,
                message: "POST /v1.0/engagements/referrals: the connection failed before an answer arrived".into(),
            });
        }
        result
    }

    async fn patch_referral(
        &self,
        id: &str,
        e_tag: Option<&str>,
        ops: &[PatchOp],
    ) -> PcResult<Option<String>> {
        let mut state = self.state();
        let result = match state.begin(Call::Patch) {
            Ok(()) => state.patch(id, e_tag, ops),
            Err(e) => Err(e),
        };
        state.patches.push(SentPatch {
            id: id.to_owned(),
            e_tag: e_tag.map(str::to_owned),
            ops: ops.to_vec(),
            result: result.clone(),
        });
        result
    }
}

fn rejected(message: &str, target: Option<&str>) -> PartnerCenterError {
    PartnerCenterError::Rejected {
        message: message.to_owned(),
        target: target.map(str::to_owned),
    }
}

fn str_at<'a>(doc: &'a Map<String, Value>, key: &str) -> &'a str {
    doc.get(key).and_then(Value::as_str).unwrap_or("")
}

fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Opaque and already quoted, as the service writes it.
fn new_etag() -> String {
    format!("\"{}\"", uuid::Uuid::new_v4())
}

/// Partner Center writes timestamps with seven fractional digits (100 ns ticks) and a `Z`.
fn pc_timestamp(t: DateTime<Utc>) -> String {
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos() / 100
    )
}

fn truncate_to_ticks(t: DateTime<Utc>) -> DateTime<Utc> {
    t - Duration::nanoseconds(i64::from(t.timestamp_subsec_nanos() % 100))
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// What a port call answers: the document as the adapter would read it off the wire. A
/// document the model cannot read is what the adapter reports as a transient failure.
fn read(doc: &Map<String, Value>) -> PcResult<Referral> {
    serde_json::from_value(Value::Object(doc.clone())).map_err(|e| PartnerCenterError::Transient {
        status: Some(200),
        retry_after: None,
        message: format!("Partner Center's referral could not be read: {e}"),
    })
}

/// What the control side answers: a document the model cannot read is the test's own doing.
fn readable(doc: &Map<String, Value>) -> Referral {
    match read(doc) {
        Ok(r) => r,
        Err(e) => panic!("the referral as changed by the test is unreadable: {e}"),
    }
}

/// Server-side fields of a referral that has just been written: a new eTag and update time, the
/// dates that follow from its status, and its links.
fn stamp(doc: &mut Map<String, Value>, now: DateTime<Utc>) {
    let ts = pc_timestamp(now);
    doc.insert("eTag".into(), Value::String(new_etag()));
    doc.insert("updatedDateTime".into(), Value::String(ts.clone()));
    match str_at(doc, "status") {
        "Active" if doc.get("acceptedDateTime").is_none_or(Value::is_null) => {
            doc.insert("acceptedDateTime".into(), Value::String(ts));
        }
        "Closed" if doc.get("closedDateTime").is_none_or(Value::is_null) => {
            doc.insert("closedDateTime".into(), Value::String(ts));
        }
        _ => {}
    }
    let id = str_at(doc, "id").to_owned();
    let engagement = str_at(doc, "engagementId").to_owned();
    doc.insert(
        "links".into(),
        json!({
            "relatedReferrals": {
                "uri": format!("{API_BASE_URL}/v1.0/engagements/referrals?$filter=engagementId eq '{engagement}'"),
                "method": "GET"
            },
            "self": {"uri": format!("{API_BASE_URL}/v1.0/engagements/referrals/{id}"), "method": "GET"}
        }),
    );
}

fn etag_matches(given: &str, current: &str) -> bool {
    let norm = |s: &str| {
        s.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_owned()
    };
    given.trim() == "*" || norm(given) == norm(current)
}

fn status_pair(doc: &Map<String, Value>) -> (Status, Substatus) {
    (
        Status::from(str_at(doc, "status")),
        Substatus::from(str_at(doc, "substatus")),
    )
}

/// Whether `target` invites Microsoft: what makes a referral posted into an engagement the
/// connected one.
fn targets_microsoft(doc: &Map<String, Value>) -> bool {
    doc.get("target")
        .and_then(Value::as_array)
        .is_some_and(|t| {
            t.iter().any(|t| {
                t.get("type").and_then(Value::as_str) == Some("BusinessProfileLocation")
                    && t.get("id").and_then(Value::as_str) == Some(MICROSOFT_ORGANIZATION_ID)
            })
        })
}

/// The rules Partner Center enforces on what the partner shares, on create and on every
/// update of the partner's own deals; the target names the field to fix.
fn validate(doc: &Map<String, Value>) -> PcResult<()> {
    let at = |path: &[&str]| -> Option<&Value> {
        let (first, rest) = path.split_first()?;
        rest.iter().try_fold(doc.get(*first)?, |v, p| v.get(p))
    };
    if at(&["name"])
        .and_then(Value::as_str)
        .is_none_or(|n| n.trim().is_empty())
    {
        return Err(rejected("name is required.", Some("name")));
    }
    const COUNTRY: &str = "customerProfile.address.country";
    match at(&["customerProfile", "address", "country"]).and_then(Value::as_str) {
        None | Some("") => {
            return Err(rejected(
                "customerProfile.address.country is required: an ISO 3166 alpha-2 country code.",
                Some(COUNTRY),
            ));
        }
        // Two capital letters of an assigned code; the service takes no other spelling.
        Some(c) if iso_country(c).as_deref() != Some(c) => {
            return Err(rejected(
                &format!(
                    "customerProfile.address.country '{c}' is not an ISO 3166 alpha-2 country code."
                ),
                Some(COUNTRY),
            ));
        }
        Some(_) => {}
    }
    let shared_with_microsoft = at(&["consent", CONSENT_TO_SHARE])
        .and_then(Value::as_bool)
        .unwrap_or(false)
        || targets_microsoft(doc);
    let has_solution = at(&["details", "requirements", "solutions"])
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    if shared_with_microsoft && !has_solution {
        return Err(rejected(
            "details.requirements.solutions: at least one solution is required on a referral shared with Microsoft.",
            Some("details.requirements.solutions"),
        ));
    }
    let help = at(&["inviteContext", "assistanceRequestCode"])
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty() && !c.eq_ignore_ascii_case("Unknown"));
    let has_contact = at(&["customerProfile", "team"])
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    if help && !has_contact {
        return Err(rejected(
            "customerProfile.team: a customer contact is required when inviteContext.assistanceRequestCode asks Microsoft for help.",
            Some("customerProfile.team"),
        ));
    }
    Ok(())
}

/// A deal may become more visible but never less: `type` may go from `Independent` to
/// `Shared` and the share consent from false to true, not back. A document that leaves either
/// out keeps what the referral has.
fn check_visibility(old: &Map<String, Value>, new: &mut Map<String, Value>) -> PcResult<()> {
    if new.get("type").is_none_or(Value::is_null)
        && let Some(v) = old.get("type")
    {
        new.insert("type".into(), v.clone());
    }
    let (was, now) = (str_at(old, "type"), str_at(new, "type"));
    if was.eq_ignore_ascii_case("Shared") && !now.eq_ignore_ascii_case("Shared") {
        return Err(rejected(
            &format!(
                "type cannot change from Shared to {now}: a deal shared with Microsoft stays shared."
            ),
            Some("type"),
        ));
    }
    let target = "consent.consentToShareReferralWithMicrosoftSellers";
    let was_shared = old
        .get("consent")
        .and_then(|c| c.get(CONSENT_TO_SHARE))
        .and_then(Value::as_bool)
        == Some(true);
    if !was_shared {
        return Ok(());
    }
    let consent = new
        .entry("consent")
        .or_insert_with(|| Value::Object(Map::new()));
    if consent.is_null() {
        *consent = Value::Object(Map::new());
    }
    let Some(consent) = consent.as_object_mut() else {
        return Err(rejected("consent must be an object.", Some("consent")));
    };
    match consent.get(CONSENT_TO_SHARE) {
        None | Some(Value::Null) => {
            consent.insert(CONSENT_TO_SHARE.into(), Value::Bool(true));
            Ok(())
        }
        Some(Value::Bool(true)) => Ok(()),
        Some(_) => Err(rejected(
            &format!(
                "{target} cannot go back to false: a deal visible to Microsoft's sellers cannot be made private again."
            ),
            Some(target),
        )),
    }
}

fn check_won_age(
    doc: &Map<String, Value>,
    won_min_age: Duration,
    now: DateTime<Utc>,
) -> PcResult<()> {
    if won_min_age <= Duration::zero() {
        return Ok(());
    }
    let Some(created) = parse_time(str_at(doc, "createdDateTime")) else {
        // Without a creation time there is no age to hold against the deal.
        return Ok(());
    };
    let allowed_from = created + won_min_age;
    if now >= allowed_from {
        return Ok(());
    }
    let hours = won_min_age.num_seconds() as f64 / 3600.0;
    Err(rejected(
        &format!(
            "Won is refused in the first {hours} hours after a deal is created: this referral was created at {}, Closed/Won is accepted from {}.",
            str_at(doc, "createdDateTime"),
            pc_timestamp(allowed_from)
        ),
        Some("substatus"),
    ))
}

/// One JSON Patch (RFC 6902) `add` or `replace` over `doc`: `replace` needs the member to be
/// there, `add` needs only its parent.
fn apply(doc: &mut Value, op: &PatchOp) -> Result<(), ()> {
    if op.op == "replace" {
        *doc.pointer_mut(&op.path).ok_or(())? = op.value.clone();
        return Ok(());
    }
    let Some((parent, last)) = op.path.rsplit_once('/') else {
        // The empty path: the whole document.
        *doc = op.value.clone();
        return Ok(());
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    match doc.pointer_mut(parent).ok_or(())? {
        Value::Object(members) => {
            members.insert(last, op.value.clone());
            Ok(())
        }
        Value::Array(items) => {
            let at = if last == "-" {
                items.len()
            } else if !last.is_empty()
                && last.bytes().all(|b| b.is_ascii_digit())
                && (last == "0" || !last.starts_with('0'))
            {
                last.parse::<usize>().map_err(|_| ())?
            } else {
                return Err(());
            };
            if at > items.len() {
                return Err(());
            }
            items.insert(at, op.value.clone());
            Ok(())
        }
        _ => Err(()),
    }
}

/// JSON merge patch (RFC 7386): objects merge member by member, `null` removes, anything else
/// replaces.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(members) = target {
        for (key, value) in patch {
            if value.is_null() {
                members.remove(key);
            } else {
                merge(members.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// What Microsoft sends, before the test's own changes: the sandbox's defaults, so a scenario
/// reads the same on either.
fn incoming_defaults(kind: Kind, now: DateTime<Utc>) -> Value {
    let (ty, qualification, share) = match kind {
        Kind::CoSell => ("Shared", "SalesQualified", true),
        Kind::Lead => ("Independent", "MarketingQualified", false),
        Kind::Pipeline => ("Shared", "None", true),
    };
    json!({
        "name": "Fabrikam cloud migration",
        "type": ty,
        "qualification": qualification,
        "customerProfile": {
            "name": "Fabrikam",
            "size": "51to250employees",
            "address": {
                "addressLine1": "1 Main Street",
                "city": "Bellevue",
                "state": "WA",
                "postalCode": "98004",
                "country": "US"
            },
            "team": [{
                "firstName": "Sue",
                "lastName": "Smith",
                "email": "sue.smith@fabrikam.example",
                "phoneNumber": "+1 425 555 0100"
            }]
        },
        "consent": {
            "consentToToShareInfoWithOthers": true,
            "consentToContact": true,
            "consentToShareReferralWithMicrosoftSellers": share
        },
        "details": {
            "notes": "The customer wants to move its line-of-business apps to the cloud.",
            "dealValue": 30000,
            "currency": "USD",
            "closingDateTime": pc_timestamp(now + Duration::days(45)),
            "requirements": {
                "solutions": [{"id": "SOL-SANDBOX-0001", "name": "Sandbox Migration Service", "type": "Name"}]
            }
        },
        "inviteContext": {
            "notes": "Microsoft seller notes",
            "assistanceRequestCode": "Unknown",
            "invitedBy": {"organizationId": MICROSOFT_ORGANIZATION_ID, "organizationName": MICROSOFT_ORGANIZATION_NAME}
        },
        "target": [{"type": "SolutionProfile", "id": "SOL-SANDBOX-0001"}],
        "team": [{"firstName": "Referral", "lastName": "Admin", "email": ADMIN_USER}]
    })
}

/// An opportunity id in Microsoft's sales system (MSX), in the `7-XXXXXXXXXX` shape it has.
fn new_msx_id() -> String {
    let digits = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    format!("7-{}", digits.get(..10).unwrap_or(&digits))
}

/// Microsoft's own referral beside the partner's in a shared engagement, already accepted on
/// Microsoft's side.
fn microsoft_side(
    partner: &Map<String, Value>,
    engagement: &str,
    now: DateTime<Utc>,
) -> Map<String, Value> {
    let side = json!({
        "name": partner.get("name").cloned().unwrap_or(Value::Null),
        "engagementId": engagement,
        "type": "Shared",
        "qualification": "SalesQualified",
        "status": "Active",
        "substatus": "Accepted",
        "direction": "Outgoing",
        "organizationId": MICROSOFT_ORGANIZATION_ID,
        "organizationName": MICROSOFT_ORGANIZATION_NAME,
        "customerProfile": partner.get("customerProfile").cloned().unwrap_or(Value::Null),
        "details": partner.get("details").cloned().unwrap_or(Value::Null),
        "trackingInfo": {"microsoftMsxId": new_msx_id()},
        "target": [{"type": "BusinessProfileLocation", "id": PARTNER_ORGANIZATION_ID}],
        "createdDateTime": pc_timestamp(now),
        "id": new_guid(),
    });
    match side {
        Value::Object(doc) => doc,
        _ => Map::new(),
    }
}
