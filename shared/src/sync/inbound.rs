//! Partner Center → CRM: a referral changed (a webhook, or reconciliation found it); read it
//! fresh, decide, write the CRM, write the CRM id back to the referral, record the link.

use chrono::{DateTime, Utc};

use super::{Handled, SyncError, SyncOptions};
use crate::crm::{AccountFields, Crm, CrmError, Opportunity, OpportunityFields};
use crate::domain::accounts;
use crate::domain::audit;
use crate::domain::classify::{Kind, classify};
use crate::domain::inbound::{self, Changed};
use crate::domain::marker::{self, Mark};
use crate::domain::merge;
use crate::domain::outbound::is_microsoft_referral;
use crate::domain::projection::Projection;
use crate::partner_center::{PartnerCenter, PartnerCenterError, PatchOp};
use crate::referral::{Direction, Referral, ReferralType};
use crate::store::{Link, Outcome, RecordKind, Store};

/// What the three-way merge leaves for an inbound update.
struct InboundMerge {
    changed: Changed,
    /// Partner Center's customer contacts were emptied: the opportunity's goes too.
    contact_removed: bool,
    synced: Projection,
    /// Conflicts and refusals, for the Audit line.
    notes: Vec<String>,
    /// The opportunity as the merge read it: the write builds on it without reading it again.
    existing: Opportunity,
}

/// What an event is about, once the partner's own referral is found.
enum Found {
    /// No referral of ours in the engagement is synced.
    Nothing,
    /// This version of ours, and of Microsoft's beside it, is synced already.
    Synced,
    // Boxed: a referral is large, and the other answers carry nothing.
    Own {
        own: Box<Referral>,
        link: Option<Box<Link>>,
        related: Related,
    },
}

/// Microsoft's referral beside ours, as far as this sync has read it.
enum Related {
    /// Read now: `None` when the engagement has none.
    Read(Option<Box<Referral>>),
    /// Not read: the link's last synced view of it stands.
    Unread,
}

/// The ports one sync runs against.
pub struct Inbound<'a> {
    pub pc: &'a dyn PartnerCenter,
    pub crm: &'a dyn Crm,
    pub store: &'a dyn Store,
    pub options: &'a SyncOptions,
}

/// Sets `externalReferenceId`. JSON Patch `replace` fails on a member the referral does not
/// have yet (a new incoming referral has none), while `add` sets it either way.
fn external_reference_op(crm_id: &str) -> PatchOp {
    PatchOp {
        op: "add",
        path: "/externalReferenceId".into(),
        value: serde_json::Value::String(crm_id.to_string()),
    }
}

impl Inbound<'_> {
    /// Handles `PartnerCenterChanged { referral_id, event }`. Safe to run twice: a referral
    /// version already synced is skipped, and every write first looks for what exists.
    pub async fn referral_changed(
        &self,
        referral_id: &str,
        event: &str,
        now: DateTime<Utc>,
    ) -> Result<Handled, SyncError> {
        let mut changed_at = None;
        self.referral_changed_at(referral_id, event, now, &mut changed_at)
            .await
    }

    /// [`Inbound::referral_changed`], noting in `changed_at` when Partner Center says the
    /// referral changed (its `updatedDateTime`), for the end-to-end latency metric.
    pub async fn referral_changed_at(
        &self,
        referral_id: &str,
        event: &str,
        now: DateTime<Utc>,
        changed_at: &mut Option<DateTime<Utc>>,
    ) -> Result<Handled, SyncError> {
        let Some(fetched) = self.pc.get_referral(referral_id).await? else {
            return Ok(Handled::Skipped {
                reason: format!("referral {referral_id} is not visible in Partner Center"),
            });
        };
        *changed_at = fetched
            .updated_date_time
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let (own, link, related) = match Box::pin(self.own_referral(fetched, event)).await? {
            Found::Nothing => {
                return Ok(Handled::Skipped {
                    reason: format!(
                        "{event} for {referral_id}: no referral of ours in its engagement is synced"
                    ),
                });
            }
            Found::Synced => {
                return Ok(Handled::Skipped {
                    reason: "this version of the referral is already synced".into(),
                });
            }
            Found::Own { own, link, related } => (own, link.map(|l| *l), related),
        };
        // A new record needs Microsoft's referral; an update of ours alone keeps what the last
        // sync saw of it (its own changes come as events of their own).
        let related = match related {
            Related::Read(r) => Related::Read(r),
            Related::Unread if link.is_none() => {
                Related::Read(self.related_of(&own, None).await?.map(Box::new))
            }
            Related::Unread => Related::Unread,
        };
        let own_id = own.id.clone().unwrap_or_default();
        let related_etag = match &related {
            Related::Read(r) => r.as_ref().and_then(|r| r.e_tag.clone()),
            Related::Unread => link.as_ref().and_then(|l| l.state.related_etag.clone()),
        };
        let key = format!(
            "pc:{}:{}:{}",
            own_id.to_ascii_lowercase(),
            own.e_tag.as_deref().unwrap_or(""),
            related_etag.as_deref().unwrap_or("")
        );
        super::under_claim(
            self.store,
            self.options,
            &key,
            now,
            "referral",
            &own_id,
            // Boxed: the sync is a large future, and nesting it unboxed doubles the stack it needs.
            Box::pin(async {
                match (link, related) {
                    (Some(link), related) => Box::pin(self.update(&own, related, link, now)).await,
                    (None, Related::Read(r)) => {
                        Box::pin(self.create(&own, r.as_deref(), now)).await
                    }
                    (None, Related::Unread) => Box::pin(self.create(&own, None, now)).await,
                }
            }),
        )
        .await
    }

    /// The partner's own referral an event is about, and its link. A `related-referral-*`
    /// event may carry Microsoft's referral id: then ours is the synced one in its engagement,
    /// found through the store when the connector has seen Microsoft's referral before, else by
    /// reading the engagement. A version every side of which is synced already is `Synced`:
    /// the connector's own write coming back, a duplicate webhook, reconciliation repeating.
    async fn own_referral(&self, fetched: Referral, event: &str) -> Result<Found, SyncError> {
        let id = fetched.id.clone().unwrap_or_default();
        let related_event = event.starts_with("related-");
        let link = self.store.link_by_referral(&id).await?;
        if let Some(link) = link {
            let same = link.referral_etag.is_some() && link.referral_etag == fetched.e_tag;
            if !related_event {
                if same {
                    return Ok(Found::Synced);
                }
                return Ok(Found::Own {
                    own: Box::new(fetched),
                    link: Some(Box::new(link)),
                    related: Related::Unread,
                });
            }
            let related = self.related_of(&fetched, None).await?;
            if same
                && related.as_ref().map(|r| r.e_tag.clone())
                    == Some(link.state.related_etag.clone())
            {
                return Ok(Found::Synced);
            }
            return Ok(Found::Own {
                own: Box::new(fetched),
                link: Some(Box::new(link)),
                related: Related::Read(related.map(Box::new)),
            });
        }
        if !related_event {
            return Ok(Found::Own {
                own: Box::new(fetched),
                link: None,
                related: Related::Unread,
            });
        }
        if let Some(beside) = super::link_beside(self.store, &id).await?
            && beside.state.related_etag.is_some()
            && beside.state.related_etag == fetched.e_tag
        {
            return Ok(Found::Synced);
        }
        let Some(engagement) = fetched.engagement_id.as_deref() else {
            return Ok(Found::Nothing);
        };
        let referrals = self.pc.engagement_referrals(engagement).await?;
        for r in &referrals {
            let Some(rid) = r.id.as_deref() else { continue };
            if let Some(link) = self.store.link_by_referral(rid).await? {
                let own = r.clone();
                let related = self.related_of(&own, Some(referrals.clone())).await?;
                return Ok(Found::Own {
                    own: Box::new(own),
                    link: Some(Box::new(link)),
                    related: Related::Read(related.map(Box::new)),
                });
            }
        }
        Ok(Found::Nothing)
    }

    /// Microsoft's referral beside ours: another organisation's referral in the engagement.
    /// `known` is the engagement's referrals when they were read already.
    async fn related_of(
        &self,
        own: &Referral,
        known: Option<Vec<Referral>>,
    ) -> Result<Option<Referral>, SyncError> {
        let shared = own.r#type == Some(ReferralType::Shared);
        let Some(engagement) = own.engagement_id.as_deref().filter(|_| shared) else {
            return Ok(None);
        };
        let referrals = match known {
            Some(r) => r,
            None => self.pc.engagement_referrals(engagement).await?,
        };
        Ok(referrals
            .into_iter()
            .find(|r| r.id != own.id && r.organization_id != own.organization_id))
    }

    async fn create(
        &self,
        own: &Referral,
        related: Option<&Referral>,
        now: DateTime<Utc>,
    ) -> Result<Handled, SyncError> {
        let id = own.id.clone().unwrap_or_default();
        let kind = classify(own);
        if !kind.comes_into_crm(self.options.co_sell_only) {
            // Journaled, so an admin asking why a referral is not in the CRM finds the answer.
            let reason = "a lead, and \"sync co-sell only\" is on".to_string();
            self.journal(&id, now, Outcome::Skipped, &reason).await?;
            return Ok(Handled::Skipped { reason });
        }
        let record = if kind == Kind::Lead {
            RecordKind::Lead
        } else {
            RecordKind::Opportunity
        };
        let projection = inbound::referral_projection(own, related);

        // Never a second record: the referral may already name one, or a previous attempt may
        // have created one before it could record the link.
        if let Some(crm_id) = own
            .external_reference_id
            .as_deref()
            .filter(|x| !x.is_empty())
        {
            let exists = match record {
                RecordKind::Opportunity => match self.crm.get_opportunity(crm_id).await? {
                    // The connector's own new referral, announced before the answer to its
                    // create reached it (or before it recorded the link): finish the share.
                    Some(opportunity)
                        if own.direction == Some(Direction::Outgoing)
                            && opportunity.fields.referral_id.is_none()
                            && opportunity.fields.sync_with_partner_center == Some(true) =>
                    {
                        let outbound = super::outbound::Outbound {
                            pc: self.pc,
                            crm: self.crm,
                            store: self.store,
                            options: self.options,
                        };
                        return outbound.share(&opportunity, Some(own.clone()), now).await;
                    }
                    found => found.is_some(),
                },
                RecordKind::Lead => self.crm.get_lead(crm_id).await?.is_some(),
            };
            if !exists {
                let reason = format!(
                    "referral {id} names CRM record {crm_id}, which no longer exists; it is not recreated"
                );
                self.journal(&id, now, Outcome::Failed, &reason).await?;
                return Ok(Handled::Failed { reason });
            }
            let link = self.new_link(own, crm_id, record, None);
            return self
                .update(
                    own,
                    Related::Read(related.cloned().map(Box::new)),
                    link,
                    now,
                )
                .await;
        }
        // Only an attempt after one that may have created the record looks for it.
        let retry =
            super::tried_before(self.store, &format!("pc:{}", id.to_ascii_lowercase())).await?;
        let found = match record {
            RecordKind::Opportunity if retry => self
                .crm
                .find_opportunity_by_referral(&id)
                .await?
                .map(|o| o.id),
            RecordKind::Lead if retry => self.crm.find_lead_by_referral(&id).await?.map(|l| l.id),
            _ => None,
        };
        let created = match found {
            // A previous attempt created it and may have stopped before its contact or
            // solution links were in place.
            Some(existing) => self
                .complete_record(own, record, &existing)
                .await
                .map(|()| existing),
            None => self.create_record(own, record, &projection, now).await,
        };
        let crm_id = match created {
            Ok(crm_id) => crm_id,
            Err(CrmError::Rejected { message, field }) => {
                let reason = match field {
                    Some(f) => format!("the CRM refused the new record ({f}): {message}"),
                    None => format!("the CRM refused the new record: {message}"),
                };
                self.journal(&id, now, Outcome::Failed, &reason).await?;
                return Ok(Handled::Failed { reason });
            }
            Err(e) => return Err(e.into()),
        };
        let e_tag = self.write_back(own, &crm_id).await?;
        let mut link = self.new_link(own, &crm_id, record, Some(projection));
        link.referral_etag = e_tag.or_else(|| own.e_tag.clone());
        link.state.microsoft_invited = related.is_some_and(is_microsoft_referral);
        if let Some(r) = related {
            super::remember_related(self.store, &mut link, r).await?;
        }
        self.save(link).await?;
        self.journal(&id, now, Outcome::Synced, "created in the CRM")
            .await?;
        Ok(Handled::Created { crm_id })
    }

    fn new_link(
        &self,
        own: &Referral,
        crm_id: &str,
        record: RecordKind,
        synced: Option<Projection>,
    ) -> Link {
        Link {
            referral_id: own.id.clone().unwrap_or_default(),
            crm_id: crm_id.to_string(),
            record,
            crm_kind: self.crm.kind(),
            engagement_id: own.engagement_id.clone(),
            synced,
            referral_etag: own.e_tag.clone(),
            crm_modified_at: None,
            terminal: own.is_closed(),
            last_error: None,
            version: 0,
            state: Default::default(),
        }
    }

    async fn create_record(
        &self,
        own: &Referral,
        record: RecordKind,
        projection: &Projection,
        now: DateTime<Utc>,
    ) -> Result<String, CrmError> {
        let id = own.id.clone().unwrap_or_default();
        let link = self.options.referral_link(&id);
        let audit = audit::line(now, Mark::Synced, "Created from Partner Center");
        if record == RecordKind::Lead {
            let mut lead = inbound::lead_fields(own, &link);
            lead.audit = Some(audit);
            return self.crm.create_lead(&lead).await;
        }
        let account_id = match inbound::account_fields(own) {
            Some(wanted) => match self.matching_account(&wanted).await? {
                Some(id) => Some(id),
                None => Some(self.crm.create_account(&wanted).await?),
            },
            None => None,
        };
        let contact_id = self.customer_contact(own, account_id.as_deref()).await?;
        let mut fields = inbound::opportunity_update(projection, &Changed::all());
        fields.name = Some(marker::apply(
            projection.name.as_deref().unwrap_or(&id),
            Mark::Synced,
            self.options.marker,
        ));
        fields.account_id = account_id;
        fields.contact_id = contact_id.clone();
        fields.sync_with_partner_center = Some(true);
        fields.referral_id = Some(id.clone());
        fields.referral_link = Some(link);
        fields.audit = Some(audit);
        fields.clear.clear();
        // Services co-sell fields are shown as the referral has them; they only come in on create.
        fields.solution_area = own.solution_area.clone().filter(|v| !v.trim().is_empty());
        fields.solution_play = own.solution_play.clone().filter(|v| !v.trim().is_empty());
        fields.partner_role = own.partner_role.clone().filter(|v| !v.trim().is_empty());
        // The create attaches the contact (the port reads back what it writes), and a record
        // made a moment ago has no solution links to look for first.
        let crm_id = self.crm.create_opportunity(&fields).await?;
        for solution in inbound::solution_ids(own) {
            self.crm.link_solution_to_new(&crm_id, &solution).await?;
        }
        Ok(crm_id)
    }

    /// The existing account that is the referral's customer: same name and postal code,
    /// ignoring case and spaces.
    async fn matching_account(&self, wanted: &AccountFields) -> Result<Option<String>, CrmError> {
        for key in accounts::lookups(wanted) {
            let candidates = self.crm.account_candidates(&key).await?;
            if let Some(id) = accounts::pick(candidates, wanted) {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Finds or creates every customer contact of the referral; answers the first, the deal's
    /// customer contact.
    async fn customer_contact(
        &self,
        own: &Referral,
        account_id: Option<&str>,
    ) -> Result<Option<String>, CrmError> {
        let mut contact_id = None;
        for contact in inbound::contact_fields(own, account_id) {
            let email = contact.email.clone().unwrap_or_default();
            let cid = match self.crm.find_contact_by_email(&email).await? {
                Some(c) => c.id,
                None => self.crm.create_contact(&contact).await?,
            };
            contact_id.get_or_insert(cid);
        }
        Ok(contact_id)
    }

    /// Gives an opportunity that exists already (created by an attempt that stopped half-way,
    /// or a seller's record the referral names) what a new one gets besides its fields: the
    /// customer contact when it has none, and a link for every solution not linked yet.
    async fn complete_record(
        &self,
        own: &Referral,
        record: RecordKind,
        crm_id: &str,
    ) -> Result<(), CrmError> {
        if record != RecordKind::Opportunity {
            return Ok(());
        }
        let Some(existing) = self.crm.get_opportunity(crm_id).await? else {
            return Ok(());
        };
        if existing.fields.contact_id.is_none()
            && let Some(contact) = self
                .customer_contact(own, existing.fields.account_id.as_deref())
                .await?
        {
            self.crm.attach_contact(crm_id, &contact).await?;
        }
        let linked = self.crm.solution_links(crm_id).await?;
        for solution in inbound::solution_ids(own) {
            if !linked.iter().any(|l| l.eq_ignore_ascii_case(&solution)) {
                self.crm.add_solution_link(crm_id, &solution).await?;
            }
        }
        Ok(())
    }

    /// Records the CRM id on the referral (`externalReferenceId`), unless it is closed (no
    /// writes after a terminal state) or already there. Returns the new eTag when known.
    async fn write_back(&self, own: &Referral, crm_id: &str) -> Result<Option<String>, SyncError> {
        if own.is_closed() || own.external_reference_id.as_deref() == Some(crm_id) {
            return Ok(None);
        }
        let id = own.id.clone().unwrap_or_default();
        let ops = [external_reference_op(crm_id)];
        match self
            .pc
            .patch_referral(&id, own.e_tag.as_deref(), &ops)
            .await
        {
            Ok(e_tag) => Ok(e_tag),
            // Someone changed the referral meanwhile: the field is ours alone, so writing it
            // without the stale eTag loses nothing.
            Err(PartnerCenterError::PreconditionFailed) => {
                Ok(self.pc.patch_referral(&id, None, &ops).await?)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn update(
        &self,
        own: &Referral,
        related: Related,
        mut link: Link,
        now: DateTime<Utc>,
    ) -> Result<Handled, SyncError> {
        let id = link.referral_id.clone();
        let read = match &related {
            Related::Read(r) => r.as_deref(),
            Related::Unread => None,
        };
        let mut current = inbound::referral_projection(own, read);
        if matches!(related, Related::Unread)
            && let Some(base) = &link.synced
        {
            // Microsoft's side was not read: what the last sync saw of it stands.
            current.microsoft_status = base.microsoft_status.clone();
            current.microsoft_crm_id = base.microsoft_crm_id.clone();
        }
        if let Some(r) = read {
            super::remember_related(self.store, &mut link, r).await?;
        }
        let reported_before = link.state.reported_conflicts.clone();
        let merged = self.merge_with_crm(own, &current, &mut link, now).await?;
        let changed = match (&link.synced, &merged) {
            (_, Some(m)) => m.changed,
            (Some(base), None) => Changed::between(base, &current),
            (None, None) => Changed::all(),
        };
        link.referral_etag = own.e_tag.clone().or(link.referral_etag);
        link.terminal = own.is_closed();
        let contact_removed = merged.as_ref().is_some_and(|m| m.contact_removed);
        if !changed.any() && !contact_removed {
            // Nothing is written, so no conflict was reported: the outbound sync reports it.
            link.state.reported_conflicts = reported_before;
            self.save(link).await?;
            return Ok(Handled::Unchanged);
        }
        let mut names = changed.names();
        if contact_removed {
            names.push("customer contact (removed)");
        }
        let mut message = format!("Updated from Partner Center: {}", names.join(", "));
        if let Some(m) = &merged {
            for line in &m.notes {
                message.push_str("; ");
                message.push_str(line);
            }
        }
        // No projection synced yet: a record the referral named that the connector adopts now.
        // It becomes the referral's record like a new one would.
        let adopting = link.synced.is_none();
        let outcome = match link.record {
            RecordKind::Opportunity => {
                let identity = adopting.then_some(id.as_str());
                match self
                    .update_opportunity(
                        &link.crm_id,
                        written(&current, &changed, contact_removed),
                        &message,
                        identity,
                        merged.as_ref().map(|m| m.existing.clone()),
                        now,
                    )
                    .await
                {
                    Ok(true) if adopting => self
                        .complete_record(own, link.record, &link.crm_id)
                        .await
                        .map(|()| true),
                    other => other,
                }
            }
            RecordKind::Lead => {
                let mut lead = inbound::lead_fields(own, &self.options.referral_link(&id));
                if !adopting {
                    lead.referral_id = None;
                    lead.referral_link = None;
                }
                self.crm
                    .update_lead(&link.crm_id, &lead)
                    .await
                    .map(|()| true)
            }
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => {
                let reason = format!(
                    "CRM record {} linked to referral {id} no longer exists; it is not recreated",
                    link.crm_id
                );
                link.last_error = Some(reason.clone());
                self.save(link).await?;
                self.journal(&id, now, Outcome::Failed, &reason).await?;
                return Ok(Handled::Failed { reason });
            }
            Err(CrmError::Rejected { message: why, .. }) => {
                let reason = format!("the CRM refused the update: {why}");
                self.mark_failed(&link, &reason, now).await?;
                link.last_error = Some(reason.clone());
                self.save(link).await?;
                self.journal(&id, now, Outcome::Failed, &reason).await?;
                return Ok(Handled::Failed { reason });
            }
            Err(e) => return Err(e.into()),
        }
        // The CRM id may still be missing on the referral (an adopted record, or a write-back
        // that failed before the link was recorded).
        if let Some(e_tag) = self.write_back(own, &link.crm_id).await? {
            link.referral_etag = Some(e_tag);
        }
        link.synced = Some(match merged {
            Some(m) => m.synced,
            None => current,
        });
        link.last_error = None;
        let crm_id = link.crm_id.clone();
        self.save(link).await?;
        self.journal(&id, now, Outcome::Synced, &message).await?;
        Ok(Handled::Updated {
            crm_id,
            fields: names,
        })
    }

    /// For a linked opportunity: what the seller changed in the CRM since the last sync is kept
    /// (the outbound sync sends it), a field both sides changed goes to the later change, and
    /// the CRM only gets what Partner Center changed. `None` for a lead, a record adopted now, or
    /// an opportunity that is gone (the update reports that).
    async fn merge_with_crm(
        &self,
        own: &Referral,
        current: &Projection,
        link: &mut Link,
        now: DateTime<Utc>,
    ) -> Result<Option<InboundMerge>, SyncError> {
        let Some(base) = &link.synced else {
            return Ok(None);
        };
        if link.record != RecordKind::Opportunity {
            return Ok(None);
        }
        let Some(existing) = self.crm.get_opportunity(&link.crm_id).await? else {
            return Ok(None);
        };
        let crm_now = crate::domain::outbound::crm_projection(&existing.fields);
        let pc_changed_at = own
            .updated_date_time
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let times = super::change_times(
            &mut link.state,
            base,
            &crm_now,
            current,
            existing.modified_at,
            pc_changed_at,
            now,
        );
        let m = merge::merge_by_field(base, &crm_now, current, &|f| {
            times.get(&f).copied().unwrap_or((None, None))
        });
        // The fields the merge leaves alone flow from Partner Center as before.
        let only_pc = Changed::between(base, current);
        let mut changed = m.to_crm.fields;
        changed.status |= only_pc.status;
        changed.microsoft_status |= only_pc.microsoft_status;
        changed.microsoft_crm_id |= only_pc.microsoft_crm_id;
        // The new base: Partner Center's values, except where the CRM's change is still to be
        // sent (there the base stays, so the outbound sync sees the change).
        let synced = merge::Update {
            fields: m.to_pc.fields,
            values: base.clone(),
        }
        .apply_to(current);
        super::prune_seen(
            &mut link.state,
            &synced,
            &m.to_crm.apply_to(&crm_now),
            current,
        );
        let mut notes = super::unreported_conflicts(&mut link.state, &m);
        notes.extend(m.refusal_lines());
        Ok(Some(InboundMerge {
            changed,
            contact_removed: m.contact_removed_to_crm,
            synced,
            notes,
            existing,
        }))
    }

    /// Writes the changed fields, the ✔ marker and an Audit line, and the connector's own
    /// fields when the opportunity is `adopted_for` a referral. `Ok(false)` when the
    /// opportunity is gone.
    async fn update_opportunity(
        &self,
        crm_id: &str,
        mut fields: OpportunityFields,
        message: &str,
        adopted_for: Option<&str>,
        read: Option<Opportunity>,
        now: DateTime<Utc>,
    ) -> Result<bool, CrmError> {
        let existing = match read {
            Some(o) => o,
            None => match self.crm.get_opportunity(crm_id).await? {
                Some(o) => o,
                None => return Ok(false),
            },
        };
        super::fit_write(self.crm, &mut fields, &existing.fields);
        if let Some(referral_id) = adopted_for {
            fields.sync_with_partner_center = Some(true);
            fields.referral_id = Some(referral_id.to_string());
            fields.referral_link = Some(self.options.referral_link(referral_id));
        }
        let bare = match &fields.name {
            Some(n) => n.clone(),
            None => marker::strip(existing.fields.name.as_deref().unwrap_or("")).to_string(),
        };
        let marked = marker::apply(&bare, Mark::Synced, self.options.marker);
        fields.name = (existing.fields.name.as_deref() != Some(marked.as_str())).then_some(marked);
        fields.audit = Some(audit::prepend(
            existing.fields.audit.as_deref().unwrap_or(""),
            &audit::line(now, Mark::Synced, message),
            self.options.audit_max_chars,
        ));
        self.crm.update_opportunity(crm_id, &fields).await?;
        Ok(true)
    }

    /// ✖ and an Audit line on the opportunity, so the seller sees what to fix. Best effort: if
    /// the CRM refuses this too, the journal still has it.
    async fn mark_failed(
        &self,
        link: &Link,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), SyncError> {
        if link.record != RecordKind::Opportunity {
            return Ok(());
        }
        let Some(existing) = self.crm.get_opportunity(&link.crm_id).await? else {
            return Ok(());
        };
        let name = existing.fields.name.as_deref().unwrap_or("");
        let fields = OpportunityFields {
            name: Some(marker::apply(name, Mark::Failed, self.options.marker))
                .filter(|n| n != name),
            audit: Some(audit::prepend(
                existing.fields.audit.as_deref().unwrap_or(""),
                &audit::line(now, Mark::Failed, reason),
                self.options.audit_max_chars,
            )),
            ..OpportunityFields::default()
        };
        match self.crm.update_opportunity(&link.crm_id, &fields).await {
            Ok(()) | Err(CrmError::Rejected { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn save(&self, mut link: Link) -> Result<(), SyncError> {
        // This sync may have written the CRM, at a time it does not learn: an opportunity the
        // poller read before that write must be read again (see the outbound sync).
        link.crm_modified_at = None;
        super::save_link(self.store, link).await
    }

    async fn journal(
        &self,
        key: &str,
        at: DateTime<Utc>,
        outcome: Outcome,
        message: &str,
    ) -> Result<(), SyncError> {
        super::journal(self.store, key, at, outcome, message).await
    }
}

/// The opportunity fields an inbound update writes: Partner Center's values of the changed
/// fields, emptied where Partner Center emptied them, and the contact removed when its team was.
fn written(current: &Projection, changed: &Changed, contact_removed: bool) -> OpportunityFields {
    let mut fields = inbound::opportunity_update(current, changed);
    if contact_removed {
        fields.clear.push(crate::crm::ClearField::Contact);
    }
    fields
}
