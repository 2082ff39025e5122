//! A [`Crm`] in memory, with the promises of the Dataverse and Salesforce adapters (the port's
//! doc comments and the CRM contract suite): look-ups that ignore case, a change feed that
//! brings every synced opportunity once per change, the connector's own writes flagged, a
//! required field that cannot be emptied, and for Dynamics 365 a closed opportunity that is
//! read-only. Its control side plays the seller (edits the connector did not make), counts the
//! calls and fails the next one on request, so a use case can be tested without a network.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};

use crate::crm::{
    Account, AccountFields, CatalogEntry, CatalogSolution, ChangePage, ClearField, Contact,
    ContactFields, Crm, CrmError, CrmId, CrmKind, CrmResult, Lead, LeadFields, Opportunity,
    OpportunityFields,
};
use crate::domain::accounts::AccountKey;

/// The prefix of the feed's cursors; anything else starts the feed again, as an unreadable
/// cursor does on both CRMs.
const CURSOR_PREFIX: &str = "memory:";
/// At most this many accounts per look-up, as the adapters bound theirs.
const CANDIDATE_LIMIT: usize = 50;

#[derive(Debug, Clone)]
struct Row {
    fields: OpportunityFields,
    modified_at: DateTime<Utc>,
    by_connector: bool,
    /// The feed position of the last change.
    seq: u64,
}

struct State {
    kind: CrmKind,
    now: Option<DateTime<Utc>>,
    page_size: usize,
    next_id: u64,
    seq: u64,
    opportunities: BTreeMap<CrmId, Row>,
    leads: BTreeMap<CrmId, LeadFields>,
    /// In creation order: the look-ups answer oldest first.
    accounts: Vec<(CrmId, AccountFields)>,
    contacts: Vec<(CrmId, ContactFields)>,
    /// Opportunity id → solution ids, in the order they were linked.
    solutions: HashMap<CrmId, Vec<String>>,
    /// The solution catalog, in creation order.
    catalog: Vec<CatalogEntry>,
    calls: HashMap<&'static str, usize>,
    faults: HashMap<&'static str, VecDeque<CrmError>>,
}

/// The in-memory CRM. Cheap to make: one per test.
pub struct MemoryCrm {
    state: Mutex<State>,
}

impl Default for MemoryCrm {
    fn default() -> Self {
        MemoryCrm::new(CrmKind::Dynamics)
    }
}

/// A port method, for [`MemoryCrm::calls`] and [`MemoryCrm::fail_next`]: its name in the trait.
pub type Method = &'static str;

/// The port methods that change the CRM.
const WRITES: [Method; 10] = [
    "create_catalog_solution",
    "update_catalog_solution",
    "create_opportunity",
    "update_opportunity",
    "create_lead",
    "update_lead",
    "create_account",
    "create_contact",
    "attach_contact",
    "add_solution_link",
];

impl MemoryCrm {
    /// A CRM that behaves as `kind` does where the two differ (the field each requires; Dynamics
    /// 365 keeps a closed opportunity read-only).
    pub fn new(kind: CrmKind) -> MemoryCrm {
        MemoryCrm {
            state: Mutex::new(State {
                kind,
                now: None,
                page_size: 50,
                next_id: 0,
                seq: 0,
                opportunities: BTreeMap::new(),
                leads: BTreeMap::new(),
                accounts: Vec::new(),
                contacts: Vec::new(),
                solutions: HashMap::new(),
                catalog: Vec::new(),
                calls: HashMap::new(),
                faults: HashMap::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every method checks before it changes anything, so a panicked test leaves whole data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The time the CRM stamps changes with, from now on (the system clock until set). Both
    /// CRMs keep modification times to the second; so does this one.
    pub fn set_now(&self, now: DateTime<Utc>) {
        self.state().now = Some(now);
    }

    /// Opportunities per page of the change feed.
    pub fn set_page_size(&self, size: usize) {
        self.state().page_size = size.max(1);
    }

    /// The next call of `method` fails with `error` (several queue up, one per call).
    pub fn fail_next(&self, method: Method, error: CrmError) {
        self.state()
            .faults
            .entry(method)
            .or_default()
            .push_back(error);
    }

    /// How many times `method` was called (failed calls included).
    pub fn calls(&self, method: Method) -> usize {
        self.state().calls.get(method).copied().unwrap_or(0)
    }

    /// How many calls changed, or tried to change, the CRM.
    pub fn writes(&self) -> usize {
        let state = self.state();
        WRITES
            .iter()
            .map(|m| state.calls.get(m).copied().unwrap_or(0))
            .sum()
    }

    /// A seller creates an opportunity in the CRM's own screens.
    pub fn seller_creates(&self, fields: OpportunityFields) -> CrmId {
        let mut state = self.state();
        let id = state.new_id("opportunity");
        state.put_opportunity(&id, fields, false);
        id
    }

    /// A seller edits an opportunity; `false` when there is none.
    pub fn seller_edits(&self, id: &str, edit: impl FnOnce(&mut OpportunityFields)) -> bool {
        let mut state = self.state();
        let Some(mut fields) = state.opportunities.get(id).map(|r| r.fields.clone()) else {
            return false;
        };
        edit(&mut fields);
        state.put_opportunity(id, fields, false);
        true
    }

    /// A seller deletes an opportunity (and with it its solution links).
    pub fn seller_deletes(&self, id: &str) {
        let mut state = self.state();
        state.opportunities.remove(id);
        state.solutions.remove(id);
    }

    /// An opportunity as it stands, read without counting a call.
    pub fn opportunity(&self, id: &str) -> Option<Opportunity> {
        self.state().read_opportunity(id)
    }

    /// Every opportunity, in id order.
    pub fn opportunities(&self) -> Vec<Opportunity> {
        let state = self.state();
        state
            .opportunities
            .keys()
            .filter_map(|id| state.read_opportunity(id))
            .collect()
    }

    /// Every lead, in id order.
    pub fn leads(&self) -> Vec<Lead> {
        self.state()
            .leads
            .iter()
            .map(|(id, fields)| Lead {
                id: id.clone(),
                fields: fields.clone(),
            })
            .collect()
    }

    /// Every account, oldest first.
    pub fn accounts(&self) -> Vec<Account> {
        self.state()
            .accounts
            .iter()
            .map(|(id, fields)| Account {
                id: id.clone(),
                fields: fields.clone(),
            })
            .collect()
    }

    /// Every contact, oldest first.
    pub fn contacts(&self) -> Vec<Contact> {
        self.state()
            .contacts
            .iter()
            .map(|(id, fields)| Contact {
                id: id.clone(),
                fields: fields.clone(),
            })
            .collect()
    }

    /// The solution ids linked to an opportunity, in the order linked.
    pub fn solution_links_of(&self, id: &str) -> Vec<String> {
        self.state().solutions.get(id).cloned().unwrap_or_default()
    }

    /// Counts the call and answers the fault queued for it, if any.
    fn call(&self, method: Method) -> CrmResult<MutexGuard<'_, State>> {
        let mut state = self.state();
        *state.calls.entry(method).or_default() += 1;
        match state.faults.get_mut(method).and_then(VecDeque::pop_front) {
            Some(error) => Err(error),
            None => Ok(state),
        }
    }
}

impl State {
    fn now(&self) -> DateTime<Utc> {
        self.now.unwrap_or_else(Utc::now).trunc_subsecs(0)
    }

    fn new_id(&mut self, what: &str) -> CrmId {
        self.next_id += 1;
        format!("{what}-{:06}", self.next_id)
    }

    fn required(&self) -> ClearField {
        match self.kind {
            CrmKind::Dynamics => ClearField::Currency,
            CrmKind::Salesforce => ClearField::CloseDate,
        }
    }

    fn put_opportunity(&mut self, id: &str, fields: OpportunityFields, by_connector: bool) {
        self.seq += 1;
        let row = Row {
            fields,
            modified_at: self.now(),
            by_connector,
            seq: self.seq,
        };
        self.opportunities.insert(id.to_string(), row);
    }

    fn read_opportunity(&self, id: &str) -> Option<Opportunity> {
        let row = self.opportunities.get(id)?;
        let mut fields = row.fields.clone();
        fields.clear.clear();
        Some(Opportunity {
            id: id.to_string(),
            fields,
            modified_at: Some(row.modified_at),
            modified_by_connector: row.by_connector,
        })
    }
}

fn rejected(field: &str, message: impl Into<String>) -> CrmError {
    CrmError::Rejected {
        message: message.into(),
        field: Some(field.to_string()),
    }
}

fn not_found(what: &str, id: &str) -> CrmError {
    CrmError::NotFound {
        what: format!("{what} {id}"),
    }
}

fn clear(fields: &mut OpportunityFields, field: ClearField) {
    match field {
        ClearField::DealValue => fields.deal_value = None,
        ClearField::Currency => fields.currency = None,
        ClearField::CloseDate => fields.close_date = None,
        ClearField::Description => fields.description = None,
        ClearField::MicrosoftHelp => fields.microsoft_help = None,
        ClearField::Contact => fields.contact_id = None,
        ClearField::MicrosoftStatus => fields.microsoft_status = None,
        ClearField::MicrosoftCrmId => fields.microsoft_crm_id = None,
        ClearField::SolutionArea => fields.solution_area = None,
        ClearField::SolutionPlay => fields.solution_play = None,
        ClearField::PartnerRole => fields.partner_role = None,
    }
}

/// `base` with every `Some` of `change` written over it, then its clears applied where the same
/// write does not also set the field (a field both set and cleared is set).
fn overlay(base: &OpportunityFields, change: &OpportunityFields) -> OpportunityFields {
    macro_rules! over {
        ($out:ident, $($f:ident),*) => {$(
            if change.$f.is_some() {
                $out.$f = change.$f.clone();
            }
        )*};
    }
    let mut out = base.clone();
    over!(
        out,
        name,
        deal_value,
        currency,
        close_date,
        description,
        state,
        account_id,
        contact_id,
        sync_with_partner_center,
        referral_id,
        referral_link,
        microsoft_help,
        visibility,
        microsoft_crm_id,
        microsoft_status,
        audit,
        solution_area,
        solution_play,
        partner_role,
        marketplace_intent
    );
    for field in &change.clear {
        if !sets(change, *field) {
            clear(&mut out, *field);
        }
    }
    out.clear.clear();
    out
}

fn sets(change: &OpportunityFields, field: ClearField) -> bool {
    match field {
        ClearField::DealValue => change.deal_value.is_some(),
        ClearField::Currency => change.currency.is_some(),
        ClearField::CloseDate => change.close_date.is_some(),
        ClearField::Description => change.description.is_some(),
        ClearField::MicrosoftHelp => change.microsoft_help.is_some(),
        ClearField::Contact => change.contact_id.is_some(),
        ClearField::MicrosoftStatus => change.microsoft_status.is_some(),
        ClearField::MicrosoftCrmId => change.microsoft_crm_id.is_some(),
        ClearField::SolutionArea => change.solution_area.is_some(),
        ClearField::SolutionPlay => change.solution_play.is_some(),
        ClearField::PartnerRole => change.partner_role.is_some(),
    }
}

fn lead_overlay(base: &LeadFields, change: &LeadFields) -> LeadFields {
    macro_rules! over {
        ($out:ident, $($f:ident),*) => {$(
            if change.$f.is_some() {
                $out.$f = change.$f.clone();
            }
        )*};
    }
    let mut out = base.clone();
    over!(
        out,
        topic,
        first_name,
        last_name,
        company,
        email,
        phone,
        postal_code,
        country,
        description,
        state,
        referral_id,
        referral_link,
        audit
    );
    out
}

#[async_trait]
impl Crm for MemoryCrm {
    fn kind(&self) -> CrmKind {
        self.state().kind
    }

    fn can_clear(&self, field: ClearField) -> bool {
        field != self.state().required()
    }

    async fn get_opportunity(&self, id: &str) -> CrmResult<Option<Opportunity>> {
        Ok(self.call("get_opportunity")?.read_opportunity(id))
    }

    async fn find_opportunity_by_referral(
        &self,
        referral_id: &str,
    ) -> CrmResult<Option<Opportunity>> {
        let state = self.call("find_opportunity_by_referral")?;
        let id = state.opportunities.iter().find_map(|(id, row)| {
            row.fields
                .referral_id
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(referral_id))
                .then(|| id.clone())
        });
        Ok(id.and_then(|id| state.read_opportunity(&id)))
    }

    async fn create_opportunity(&self, fields: &OpportunityFields) -> CrmResult<CrmId> {
        let mut state = self.call("create_opportunity")?;
        if fields.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
            return Err(rejected("name", "an opportunity needs a name"));
        }
        if let Some(referral_id) = fields.referral_id.as_deref()
            && state.opportunities.values().any(|r| {
                r.fields
                    .referral_id
                    .as_deref()
                    .is_some_and(|x| x.eq_ignore_ascii_case(referral_id))
            })
        {
            // Both CRMs keep the referral identifier unique (an alternate key, an External ID).
            return Err(rejected(
                "referral_id",
                format!("an opportunity already has referral id {referral_id}"),
            ));
        }
        let id = state.new_id("opportunity");
        let written = overlay(&OpportunityFields::default(), fields);
        state.put_opportunity(&id, written, true);
        Ok(id)
    }

    async fn update_opportunity(&self, id: &str, fields: &OpportunityFields) -> CrmResult<()> {
        let mut state = self.call("update_opportunity")?;
        let Some(row) = state.opportunities.get(id) else {
            return Err(not_found("opportunity", id));
        };
        let required = state.required();
        if fields.clears(required) && !sets(fields, required) {
            return Err(rejected(
                &format!("{required:?}"),
                "the CRM requires this field",
            ));
        }
        let before = row.fields.clone();
        let after = overlay(&before, fields);
        let was_closed = before.state.is_some_and(|s| s.is_closed());
        if state.kind == CrmKind::Dynamics
            && was_closed
            && after.state == before.state
            && after != before
        {
            // Dataverse keeps a closed opportunity read-only: only reopening, or closing it the
            // other way, changes it.
            return Err(CrmError::Rejected {
                message: "the opportunity is closed and read-only".into(),
                field: None,
            });
        }
        if after != before {
            state.put_opportunity(id, after, true);
        }
        Ok(())
    }

    async fn get_lead(&self, id: &str) -> CrmResult<Option<Lead>> {
        let state = self.call("get_lead")?;
        Ok(state.leads.get(id).map(|fields| Lead {
            id: id.to_string(),
            fields: fields.clone(),
        }))
    }

    async fn find_lead_by_referral(&self, referral_id: &str) -> CrmResult<Option<Lead>> {
        let state = self.call("find_lead_by_referral")?;
        Ok(state.leads.iter().find_map(|(id, fields)| {
            fields
                .referral_id
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(referral_id))
                .then(|| Lead {
                    id: id.clone(),
                    fields: fields.clone(),
                })
        }))
    }

    async fn create_lead(&self, fields: &LeadFields) -> CrmResult<CrmId> {
        let mut state = self.call("create_lead")?;
        let id = state.new_id("lead");
        state.leads.insert(id.clone(), fields.clone());
        Ok(id)
    }

    async fn update_lead(&self, id: &str, fields: &LeadFields) -> CrmResult<()> {
        let mut state = self.call("update_lead")?;
        let Some(before) = state.leads.get(id) else {
            return Err(not_found("lead", id));
        };
        let after = lead_overlay(before, fields);
        state.leads.insert(id.to_string(), after);
        Ok(())
    }

    async fn account_candidates(&self, key: &AccountKey) -> CrmResult<Vec<Account>> {
        let state = self.call("account_candidates")?;
        let spellings = key.spellings();
        // Both CRMs compare text without regard to case but not to spaces.
        let matches = |value: Option<&str>| {
            value.is_some_and(|v| spellings.iter().any(|s| s.eq_ignore_ascii_case(v)))
        };
        Ok(state
            .accounts
            .iter()
            .filter(|(_, a)| match key {
                AccountKey::PostalCode(_) => matches(a.postal_code.as_deref()),
                AccountKey::Name(_) => matches(Some(&a.name)),
            })
            .take(CANDIDATE_LIMIT)
            .map(|(id, fields)| Account {
                id: id.clone(),
                fields: fields.clone(),
            })
            .collect())
    }

    async fn create_account(&self, fields: &AccountFields) -> CrmResult<CrmId> {
        let mut state = self.call("create_account")?;
        if fields.name.trim().is_empty() {
            return Err(rejected("name", "an account needs a name"));
        }
        let id = state.new_id("account");
        state.accounts.push((id.clone(), fields.clone()));
        Ok(id)
    }

    async fn find_contact_by_email(&self, email: &str) -> CrmResult<Option<Contact>> {
        let state = self.call("find_contact_by_email")?;
        Ok(state.contacts.iter().find_map(|(id, fields)| {
            fields
                .email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
                .then(|| Contact {
                    id: id.clone(),
                    fields: fields.clone(),
                })
        }))
    }

    async fn create_contact(&self, fields: &ContactFields) -> CrmResult<CrmId> {
        let mut state = self.call("create_contact")?;
        if fields.last_name.trim().is_empty() {
            return Err(rejected("last_name", "a contact needs a last name"));
        }
        let id = state.new_id("contact");
        state.contacts.push((id.clone(), fields.clone()));
        Ok(id)
    }

    async fn attach_contact(&self, opportunity_id: &str, contact_id: &str) -> CrmResult<()> {
        let mut state = self.call("attach_contact")?;
        let Some(row) = state.opportunities.get(opportunity_id) else {
            return Err(not_found("opportunity", opportunity_id));
        };
        if !state.contacts.iter().any(|(id, _)| id == contact_id) {
            return Err(not_found("contact", contact_id));
        }
        if row.fields.contact_id.as_deref() == Some(contact_id) {
            return Ok(());
        }
        let mut fields = row.fields.clone();
        fields.contact_id = Some(contact_id.to_string());
        state.put_opportunity(opportunity_id, fields, true);
        Ok(())
    }

    async fn solution_links(&self, opportunity_id: &str) -> CrmResult<Vec<String>> {
        let state = self.call("solution_links")?;
        Ok(state
            .solutions
            .get(opportunity_id)
            .cloned()
            .unwrap_or_default())
    }

    async fn add_solution_link(&self, opportunity_id: &str, solution_id: &str) -> CrmResult<()> {
        let mut state = self.call("add_solution_link")?;
        if !state.opportunities.contains_key(opportunity_id) {
            return Err(not_found("opportunity", opportunity_id));
        }
        let links = state
            .solutions
            .entry(opportunity_id.to_string())
            .or_default();
        if !links.iter().any(|l| l.eq_ignore_ascii_case(solution_id)) {
            links.push(solution_id.to_string());
        }
        Ok(())
    }

    async fn opportunity_changes(&self, cursor: Option<&str>) -> CrmResult<ChangePage> {
        let state = self.call("opportunity_changes")?;
        let after: u64 = cursor
            .and_then(|c| c.strip_prefix(CURSOR_PREFIX))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let mut changed: Vec<(&CrmId, &Row)> = state
            .opportunities
            .iter()
            .filter(|(_, r)| r.seq > after && r.fields.sync_with_partner_center == Some(true))
            .collect();
        changed.sort_by_key(|(_, r)| r.seq);
        let more = changed.len() > state.page_size;
        changed.truncate(state.page_size);
        // The last page moves the cursor past the changes it skipped (Sync = no) too.
        let position = match changed.last() {
            Some((_, r)) if more => r.seq,
            _ => state.seq.max(after),
        };
        let opportunities = changed
            .iter()
            .filter_map(|(id, _)| state.read_opportunity(id))
            .collect();
        Ok(ChangePage {
            opportunities,
            cursor: format!("{CURSOR_PREFIX}{position}"),
            more,
        })
    }

    async fn get_account(&self, id: &str) -> CrmResult<Option<Account>> {
        let state = self.call("get_account")?;
        Ok(state
            .accounts
            .iter()
            .find(|(a, _)| a == id)
            .map(|(id, fields)| Account {
                id: id.clone(),
                fields: fields.clone(),
            }))
    }

    async fn get_contact(&self, id: &str) -> CrmResult<Option<Contact>> {
        let state = self.call("get_contact")?;
        Ok(state
            .contacts
            .iter()
            .find(|(c, _)| c == id)
            .map(|(id, fields)| Contact {
                id: id.clone(),
                fields: fields.clone(),
            }))
    }

    async fn catalog(&self) -> CrmResult<Vec<CatalogEntry>> {
        Ok(self.call("catalog")?.catalog.clone())
    }

    async fn create_catalog_solution(&self, solution: &CatalogSolution) -> CrmResult<CrmId> {
        let mut state = self.call("create_catalog_solution")?;
        let crm_id = state.new_id("catalog");
        state.catalog.push(CatalogEntry {
            crm_id: crm_id.clone(),
            solution: solution.clone(),
        });
        Ok(crm_id)
    }

    async fn update_catalog_solution(
        &self,
        crm_id: &str,
        solution: &CatalogSolution,
    ) -> CrmResult<()> {
        let mut state = self.call("update_catalog_solution")?;
        let entry = state
            .catalog
            .iter_mut()
            .find(|e| e.crm_id == crm_id)
            .ok_or_else(|| not_found("catalog solution", crm_id))?;
        entry.solution = solution.clone();
        Ok(())
    }
}
