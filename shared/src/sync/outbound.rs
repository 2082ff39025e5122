//! CRM → Partner Center: an opportunity with Sync with Partner Center = yes changed (the poller
//! found it); read both sides fresh, decide, write Partner Center, then the CRM's Audit and
//! marker, and record the link.
//!
//! - No link yet: the seller shares a new deal. Validate first (no Partner Center call when the
//!   data cannot make a referral), then look for a referral already carrying this CRM id (a create
//!   whose answer was lost) before creating one.
//! - Linked: the stage moves the referral (accept, decline, won, lost); the shared fields go
//!   through the three-way merge with the last synced projection, so only what the seller
//!   changed is sent, a field both sides changed goes to the later change, and nothing echoes.

use chrono::{DateTime, Utc};

use super::{Handled, SyncError, SyncOptions};
use crate::crm::{Crm, CrmError, Opportunity, OpportunityFields};
use crate::domain::audit;
use crate::domain::inbound;
use crate::domain::marker::{self, Mark};
use crate::domain::merge;
use crate::domain::outbound as rules;
use crate::domain::stage::{self, StatusAction};
use crate::partner_center::{PartnerCenter, PartnerCenterError, PatchOp};
use crate::referral::{Direction, Referral};
use crate::store::{Link, LinkState, Outcome, RecordKind, Store, Timer};

/// How many times an update re-reads the referral after a lost `If-Match` race.
const PRECONDITION_ATTEMPTS: usize = 3;

/// The ports one sync runs against.
pub struct Outbound<'a> {
    pub pc: &'a dyn PartnerCenter,
    pub crm: &'a dyn Crm,
    pub store: &'a dyn Store,
    pub options: &'a SyncOptions,
}

/// Whether a carried snapshot is newer than everything the connector wrote to the record: no
/// link yet, or one whose last sync read the record (outbound) before the snapshot was taken.
/// The inbound sync writes the CRM without learning the time of its write, so it leaves the
/// link without one and the next command reads the record again. Both CRMs stamp changes to
/// the second, so a snapshot from the same second as the last read may be older and is not
/// used either.
fn newer_than_synced(seen: &Opportunity, link: Option<&Link>) -> bool {
    let Some(link) = link else { return true };
    match (seen.modified_at, link.crm_modified_at) {
        (Some(seen_at), Some(synced_at)) => seen_at > synced_at,
        _ => false,
    }
}

/// The journal key of a CRM record that has no referral yet.
fn crm_journal_key(crm_id: &str) -> String {
    format!("crm:{crm_id}")
}

impl Outbound<'_> {
    /// Handles `CrmChanged { crm_id }`. Safe to run twice: a version of the opportunity already
    /// synced is skipped, a create first looks for the referral, updates send only differences.
    /// `seen` is the opportunity as the poller read it: used instead of a read unless it could
    /// be older than what the link last synced (a command from before the link, run late).
    pub async fn opportunity_changed(
        &self,
        crm_id: &str,
        seen: Option<Opportunity>,
        now: DateTime<Utc>,
    ) -> Result<Handled, SyncError> {
        let mut changed_at = None;
        self.opportunity_changed_at(crm_id, seen, now, &mut changed_at)
            .await
    }

    /// [`Outbound::opportunity_changed`], noting in `changed_at` the opportunity's modification
    /// time as read, for the end-to-end latency metric.
    pub async fn opportunity_changed_at(
        &self,
        crm_id: &str,
        seen: Option<Opportunity>,
        now: DateTime<Utc>,
        changed_at: &mut Option<DateTime<Utc>>,
    ) -> Result<Handled, SyncError> {
        let link = self.store.link_by_crm(crm_id).await?;
        let seen = seen.filter(|s| s.id == crm_id && newer_than_synced(s, link.as_ref()));
        let opportunity = match seen {
            Some(opportunity) => opportunity,
            None => match self.crm.get_opportunity(crm_id).await? {
                Some(opportunity) => opportunity,
                None => {
                    return Ok(Handled::Skipped {
                        reason: format!("opportunity {crm_id} is no longer in the CRM"),
                    });
                }
            },
        };
        *changed_at = opportunity.modified_at;
        if opportunity.fields.sync_with_partner_center != Some(true) {
            return Ok(Handled::Skipped {
                reason: "Sync with Partner Center is off".into(),
            });
        }
        let mut key = format!(
            "crm:{crm_id}:{}",
            super::poller::opportunity_version(&opportunity)
        );
        // A held Won that has come due is new work for a version already handled.
        if let Some(until) = link.as_ref().and_then(|l| l.state.won_held_until)
            && until <= now
        {
            key.push_str(&format!(":won-due:{}", until.timestamp()));
        }
        super::under_claim(
            self.store,
            self.options,
            &key,
            now,
            "opportunity",
            crm_id,
            // Boxed: the sync is a large future, and nesting it unboxed doubles the stack it needs.
            Box::pin(async {
                match link {
                    Some(link) => self.update(&opportunity, link, now).await,
                    None => self.share(&opportunity, None, now).await,
                }
            }),
        )
        .await
    }

    /// Makes sure Microsoft's connected referral is in the engagement of `partner` (the
    /// partner's own referral of a co-sell deal): looks first, so a lost answer, a redelivery or
    /// a crash between the two creates never makes a second one. `Ok(true)` when it is there.
    /// `created_now`: the partner's referral was created by this attempt, so its engagement
    /// can hold no other referral yet and is not read. Answers Microsoft's referral.
    async fn invite_microsoft(
        &self,
        partner: &Referral,
        created_now: bool,
    ) -> Result<Referral, PartnerCenterError> {
        let Some(engagement) = partner.engagement_id.as_deref() else {
            return Err(PartnerCenterError::Transient {
                status: None,
                retry_after: None,
                message: "the referral has no engagement id yet".into(),
            });
        };
        if !created_now {
            let members = self.pc.engagement_referrals(engagement).await?;
            if let Some(microsoft) = members.into_iter().find(rules::is_microsoft_referral) {
                return Ok(microsoft);
            }
        }
        self.pc
            .create_referral(&rules::microsoft_referral(partner))
            .await
    }

    /// Invites Microsoft for a co-sell deal, turning a refusal into the Audit line the seller
    /// reads (with ✖); transient failures go back to the queue.
    async fn invite_or_explain(
        &self,
        partner: &Referral,
        created_now: bool,
    ) -> Result<Result<Referral, String>, SyncError> {
        match self.invite_microsoft(partner, created_now).await {
            Ok(microsoft) => Ok(Ok(microsoft)),
            Err(PartnerCenterError::Rejected { message, target }) => Ok(Err(match target {
                Some(t) => format!(
                    "Not shared with Microsoft: Partner Center refused Microsoft's referral ({t}): {message}"
                ),
                None => format!(
                    "Not shared with Microsoft: Partner Center refused Microsoft's referral: {message}"
                ),
            })),
            Err(e) => Err(e.into()),
        }
    }

    /// A new deal the seller shares: validate, find or create the referral, invite Microsoft to
    /// a co-sell deal, write back. `found` is the referral when the caller has read it already
    /// (its creation was announced before the answer to the create arrived).
    pub(super) async fn share(
        &self,
        opportunity: &Opportunity,
        found: Option<Referral>,
        now: DateTime<Utc>,
    ) -> Result<Handled, SyncError> {
        let crm_id = opportunity.id.as_str();
        if let Some(referral_id) = opportunity.fields.referral_id.as_deref() {
            // Came from Partner Center; its own sync records the link.
            return Ok(Handled::Skipped {
                reason: format!(
                    "the opportunity stands for referral {referral_id}, whose sync links it"
                ),
            });
        }
        let fields = &opportunity.fields;
        let account = match fields.account_id.as_deref() {
            Some(id) => self.crm.get_account(id).await?.map(|a| a.fields),
            None => None,
        };
        let contact = match fields.contact_id.as_deref() {
            Some(id) => self.crm.get_contact(id).await?.map(|c| c.fields),
            None => None,
        };
        let solutions = self.crm.solution_links(crm_id).await?;
        let mut problems =
            match rules::validate(fields, account.as_ref(), contact.as_ref(), &solutions) {
                Ok(()) => Vec::new(),
                Err(problems) => problems,
            };
        problems.extend(rules::validate_services(fields, &self.options.services));
        if !solutions.is_empty() {
            // Only a deal that links solutions pays for reading the catalog.
            let catalog: Vec<String> = match self.crm.catalog().await {
                Ok(rows) => rows.into_iter().map(|e| e.solution.solution_id).collect(),
                Err(e) if e.is_transient() => return Err(e.into()),
                // A CRM set up before the catalog existed has no catalog table: no catalog,
                // so any solution may be linked, as before.
                Err(e) => {
                    tracing::warn!(error = %e, "the solution catalog cannot be read; solutions are not checked against it");
                    Vec::new()
                }
            };
            problems.extend(rules::validate_catalog(&solutions, &catalog));
        }
        if !problems.is_empty() {
            let reason = format!("Not shared with Partner Center: {}", problems.join(" "));
            self.mark(opportunity, Mark::Failed, &reason, None, now)
                .await?;
            self.journal(&crm_journal_key(crm_id), now, Outcome::Failed, &reason)
                .await?;
            return Ok(Handled::Failed { reason });
        }

        // A create whose answer was lost committed all the same: an attempt after one that may
        // have created the referral finds it before creating.
        let found = match found {
            Some(referral) => Some(referral),
            None if super::tried_before(self.store, &crm_journal_key(crm_id)).await? => {
                self.pc.find_by_external_reference(crm_id).await?
            }
            None => None,
        };
        let created_now = found.is_none();
        let referral = match found {
            Some(existing) => existing,
            None => {
                let body = rules::new_referral(
                    fields,
                    account.as_ref(),
                    contact.as_ref(),
                    &solutions,
                    crm_id,
                );
                match self.pc.create_referral(&body).await {
                    Ok(created) => created,
                    Err(PartnerCenterError::Rejected { message, target }) => {
                        let reason = match target {
                            Some(t) => {
                                format!("Partner Center refused the referral ({t}): {message}")
                            }
                            None => format!("Partner Center refused the referral: {message}"),
                        };
                        self.mark(opportunity, Mark::Failed, &reason, None, now)
                            .await?;
                        self.journal(&crm_journal_key(crm_id), now, Outcome::Failed, &reason)
                            .await?;
                        return Ok(Handled::Failed { reason });
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let Some(referral_id) = referral.id.clone() else {
            return Err(SyncError::PartnerCenter(PartnerCenterError::Transient {
                status: None,
                retry_after: None,
                message: "the created referral has no id".into(),
            }));
        };
        let deal = rules::deal_type(fields);
        let mut message = format!("Shared with Partner Center as a {deal} deal");
        let mut invited = None;
        let mut mark = Mark::Synced;
        if deal == rules::DealType::CoSell {
            match self.invite_or_explain(&referral, created_now).await? {
                Ok(microsoft) => {
                    invited = Some(microsoft);
                    message.push_str(" and with Microsoft");
                }
                Err(why) => {
                    mark = Mark::Failed;
                    message = format!("{message}; {why}");
                }
            }
        }
        // What Partner Center made of the deal (its status; visibility for co-sell) becomes the
        // CRM's too, and the first base: the next poll then finds nothing to send.
        let crm_now = rules::crm_projection(fields);
        let first = merge::merge(
            &crm_now,
            &crm_now,
            &inbound::referral_projection(&referral, None),
            None,
            None,
        );
        let identity = OpportunityFields {
            referral_id: Some(referral_id.clone()),
            referral_link: Some(self.options.referral_link(&referral_id)),
            ..first.crm_update()
        };
        self.mark(opportunity, mark, &message, Some(identity), now)
            .await?;
        let mut projection = first.merged.clone();
        projection.status = inbound::referral_projection(&referral, None).status;
        let mut link = Link {
            referral_id: referral_id.clone(),
            crm_id: crm_id.to_string(),
            record: RecordKind::Opportunity,
            crm_kind: self.crm.kind(),
            engagement_id: referral.engagement_id.clone(),
            synced: Some(projection),
            referral_etag: referral.e_tag.clone(),
            crm_modified_at: opportunity.modified_at,
            terminal: referral.is_closed(),
            last_error: None,
            version: 1,
            state: LinkState {
                microsoft_invited: invited.is_some(),
                ..LinkState::default()
            },
        };
        if let Some(microsoft) = &invited {
            super::remember_related(self.store, &mut link, microsoft).await?;
        }
        self.store.put_link(&link).await?;
        let outcome = if mark == Mark::Failed {
            Outcome::Failed
        } else {
            Outcome::Synced
        };
        self.journal(&referral_id, now, outcome, &message).await?;
        Ok(Handled::Created {
            crm_id: referral_id,
        })
    }

    /// A linked opportunity changed: move the referral's status, merge the shared fields.
    async fn update(
        &self,
        opportunity: &Opportunity,
        mut link: Link,
        now: DateTime<Utc>,
    ) -> Result<Handled, SyncError> {
        if link.record != RecordKind::Opportunity {
            return Ok(Handled::Skipped {
                reason: "leads only come from Partner Center".into(),
            });
        }
        let referral_id = link.referral_id.clone();
        for _ in 0..PRECONDITION_ATTEMPTS {
            let Some(referral) = self.pc.get_referral(&referral_id).await? else {
                let reason =
                    format!("referral {referral_id} is no longer visible in Partner Center");
                self.mark(opportunity, Mark::Failed, &reason, None, now)
                    .await?;
                self.journal(&referral_id, now, Outcome::Failed, &reason)
                    .await?;
                return Ok(Handled::Failed { reason });
            };
            match self.apply(opportunity, &referral, &mut link, now).await {
                Err(SyncError::PartnerCenter(PartnerCenterError::PreconditionFailed)) => {
                    // Changed in Partner Center since it was read: read again, merge again.
                    continue;
                }
                other => return other,
            }
        }
        Err(SyncError::PartnerCenter(
            PartnerCenterError::PreconditionFailed,
        ))
    }

    async fn apply(
        &self,
        opportunity: &Opportunity,
        referral: &Referral,
        link: &mut Link,
        now: DateTime<Utc>,
    ) -> Result<Handled, SyncError> {
        let referral_id = link.referral_id.clone();
        let (status, substatus) = match (&referral.status, &referral.substatus) {
            (Some(s), Some(sub)) => (s.clone(), sub.clone()),
            _ => {
                return Ok(Handled::Skipped {
                    reason: "the referral has no status".into(),
                });
            }
        };
        let incoming = referral.direction == Some(Direction::Incoming);
        let crm_state = opportunity
            .fields
            .state
            .unwrap_or(crate::crm::OpportunityState::Active);
        let mut action = stage::status_action(crm_state, &status, &substatus, incoming);
        if let StatusAction::Refused { message } = &action {
            self.mark(opportunity, Mark::Failed, message, None, now)
                .await?;
            self.journal(&referral_id, now, Outcome::Failed, message)
                .await?;
            return Ok(Handled::Failed {
                reason: message.clone(),
            });
        }
        // Only the stage decides whether edits go: a decline sends the decline and its reason,
        // never the edits made on hold.
        let sends_edits = stage::sends_edits(crm_state, &status, &substatus, incoming);

        let mut lines: Vec<(Mark, String)> = Vec::new();
        let mut timer_change: Option<Option<Timer>> = None;
        // The hold's Audit line, also journaled: Dataverse keeps a won opportunity read-only.
        let mut held: Option<String> = None;
        if action == StatusAction::Won {
            let created = parse_time(referral.created_date_time.as_deref());
            match stage::won_held_until(created, self.options.won_hold, now) {
                Some(until) => {
                    action = StatusAction::None;
                    if link.state.won_held_until != Some(until) {
                        held = Some(format!(
                            "Won is held: Partner Center may refuse a deal marked won within {} hours of its creation, so it is sent after {} UTC",
                            self.options.won_hold.as_secs() / 3600,
                            until.format("%Y-%m-%d %H:%M")
                        ));
                        lines.extend(held.clone().map(|h| (Mark::Synced, h)));
                        link.state.won_held_until = Some(until);
                        timer_change = Some(Some(Timer {
                            key: won_timer_key(&link.crm_id),
                            due: until,
                            crm_id: link.crm_id.clone(),
                            referral_id: Some(referral_id.clone()),
                        }));
                    }
                }
                None if link.state.won_held_until.is_some() => {
                    link.state.won_held_until = None;
                    timer_change = Some(None);
                }
                None => {}
            }
        } else if link.state.won_held_until.is_some() {
            // The seller changed their mind while the Won waited.
            link.state.won_held_until = None;
            timer_change = Some(None);
        }

        let base = link.synced.clone().unwrap_or_default();
        let crm_now = rules::crm_projection(&opportunity.fields);
        let mut pc_now = inbound::referral_projection(referral, None);
        // Microsoft's status and MSX id come with Microsoft's referral, which only the inbound
        // sync reads: here they are what was last synced, never "emptied".
        pc_now.microsoft_status.clone_from(&base.microsoft_status);
        if pc_now.microsoft_crm_id.is_none() {
            pc_now.microsoft_crm_id.clone_from(&base.microsoft_crm_id);
        }
        let times = super::change_times(
            &mut link.state,
            &base,
            &crm_now,
            &pc_now,
            opportunity.modified_at,
            updated_at(referral),
            now,
        );
        let merged = merge::merge_by_field(&base, &crm_now, &pc_now, &|f| {
            times.get(&f).copied().unwrap_or((None, None))
        });

        let mut ops: Vec<PatchOp> = Vec::new();
        let contact_removed = sends_edits && merged.contact_removed_to_pc;
        if sends_edits {
            ops.extend(rules::patch_ops(referral, &merged.to_pc));
        }
        if contact_removed {
            ops.push(rules::empty_team_op(referral));
        }
        // A linked deal that is (or has just become) co-sell reaches Microsoft: type and target
        // as a co-sell referral has them, then Microsoft's referral in the engagement.
        let co_sell = merged.merged.microsoft_help.is_some();
        let converting = sends_edits && co_sell && !incoming && !referral.is_closed();
        if converting {
            ops.extend(rules::co_sell_conversion_ops(referral));
        }
        ops.extend(action.patch_ops());
        for refusal in merged.refusal_lines() {
            lines.push((Mark::Failed, refusal));
        }
        for conflict in super::unreported_conflicts(&mut link.state, &merged) {
            lines.push((Mark::Synced, conflict));
        }

        let e_tag = if ops.is_empty() {
            referral.e_tag.clone()
        } else {
            match self
                .pc
                .patch_referral(&referral_id, referral.e_tag.as_deref(), &ops)
                .await
            {
                Ok(e_tag) => e_tag.or_else(|| referral.e_tag.clone()),
                Err(PartnerCenterError::Rejected { message, target }) => {
                    let reason = match target {
                        Some(t) => format!("Partner Center refused the change ({t}): {message}"),
                        None => format!("Partner Center refused the change: {message}"),
                    };
                    self.mark(opportunity, Mark::Failed, &reason, None, now)
                        .await?;
                    link.last_error = Some(reason.clone());
                    self.save(link.clone()).await?;
                    self.journal(&referral_id, now, Outcome::Failed, &reason)
                        .await?;
                    return Ok(Handled::Failed { reason });
                }
                Err(e) => return Err(e.into()),
            }
        };
        let mut sent = describe(&action, &merged, sends_edits, contact_removed);
        if converting && !link.state.microsoft_invited {
            let mut after = referral.clone();
            after.r#type = Some(crate::referral::ReferralType::Shared);
            let code = rules::help_code(merged.merged.microsoft_help.as_deref());
            let context = after.invite_context.get_or_insert_with(Default::default);
            context.assistance_request_code = code;
            after
                .consent
                .get_or_insert_with(Default::default)
                .consent_to_share_referral_with_microsoft_sellers = Some(true);
            match self.invite_or_explain(&after, false).await? {
                Ok(microsoft) => {
                    link.state.microsoft_invited = true;
                    super::remember_related(self.store, link, &microsoft).await?;
                    let text = sent.get_or_insert_with(String::new);
                    if text.is_empty() {
                        text.push_str("Shared with Microsoft");
                    } else {
                        text.push_str("; shared with Microsoft");
                    }
                }
                Err(why) => lines.push((Mark::Failed, why)),
            }
        }
        if let Some(message) = &sent {
            lines.push((Mark::Synced, message.clone()));
        }
        let failed = lines.iter().any(|(m, _)| *m == Mark::Failed);
        let to_crm = merged.crm_update();
        if !lines.is_empty() || to_crm != OpportunityFields::default() {
            self.write_crm(opportunity, to_crm, &lines, failed, now)
                .await?;
        }
        match timer_change {
            Some(Some(timer)) => self.store.put_timer(&timer).await?,
            Some(None) => {
                self.store
                    .delete_timer(&won_timer_key(&link.crm_id))
                    .await?
            }
            None => {}
        }

        let mut synced = if sends_edits {
            merged.merged.clone()
        } else {
            base.clone()
        };
        let crm_after = merged.to_crm.apply_to(&crm_now);
        let pc_after = if sends_edits {
            merged.to_pc.apply_to(&pc_now)
        } else {
            pc_now.clone()
        };
        super::prune_seen(&mut link.state, &synced, &crm_after, &pc_after);
        synced.status = Some(action.status_after(&status, &substatus));
        synced.microsoft_status = pc_now
            .microsoft_status
            .clone()
            .or(base.microsoft_status.clone());
        synced.microsoft_crm_id = pc_now
            .microsoft_crm_id
            .clone()
            .or(base.microsoft_crm_id.clone());
        link.synced = Some(synced);
        link.referral_etag = e_tag;
        link.crm_modified_at = opportunity.modified_at;
        link.terminal = action.is_terminal() || status.is_terminal();
        link.last_error = None;
        self.save(link.clone()).await?;
        if let Some(message) = &held {
            self.journal(&referral_id, now, Outcome::Synced, message)
                .await?;
        }
        match sent {
            Some(message) => {
                self.journal(&referral_id, now, Outcome::Synced, &message)
                    .await?;
                Ok(Handled::Updated {
                    crm_id: link.crm_id.clone(),
                    fields: merged.pc_field_names(),
                })
            }
            None => Ok(Handled::Unchanged),
        }
    }

    /// The ✔/✖ marker and Audit lines, plus `extra` fields, on the opportunity.
    async fn mark(
        &self,
        opportunity: &Opportunity,
        mark: Mark,
        message: &str,
        extra: Option<OpportunityFields>,
        now: DateTime<Utc>,
    ) -> Result<(), SyncError> {
        self.write_crm(
            opportunity,
            extra.unwrap_or_default(),
            &[(mark, message.to_string())],
            mark == Mark::Failed,
            now,
        )
        .await
    }

    async fn write_crm(
        &self,
        opportunity: &Opportunity,
        mut fields: OpportunityFields,
        lines: &[(Mark, String)],
        failed: bool,
        now: DateTime<Utc>,
    ) -> Result<(), SyncError> {
        let current = opportunity.fields.name.as_deref().unwrap_or("");
        let bare = fields
            .name
            .clone()
            .unwrap_or_else(|| marker::strip(current).to_string());
        let mark = if failed { Mark::Failed } else { Mark::Synced };
        let marked = marker::apply(&bare, mark, self.options.marker);
        fields.name = (marked != current).then_some(marked);
        let mut audit_text = opportunity.fields.audit.clone().unwrap_or_default();
        // Oldest first, so the newest ends on top.
        for (m, line) in lines.iter().rev() {
            audit_text = audit::prepend(
                &audit_text,
                &audit::line(now, *m, line),
                self.options.audit_max_chars,
            );
        }
        if !lines.is_empty() {
            fields.audit = Some(audit_text);
        }
        super::fit_write(self.crm, &mut fields, &opportunity.fields);
        if fields == OpportunityFields::default() {
            return Ok(());
        }
        match self.crm.update_opportunity(&opportunity.id, &fields).await {
            Ok(()) => Ok(()),
            // The seller sees the journal through `cosell status`; the referral side is done.
            Err(CrmError::Rejected { message, .. }) => {
                tracing::warn!(crm_id = %opportunity.id, %message, "the CRM refused the connector's Audit/marker write");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn save(&self, link: Link) -> Result<(), SyncError> {
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

fn updated_at(referral: &Referral) -> Option<DateTime<Utc>> {
    parse_time(referral.updated_date_time.as_deref())
}

fn parse_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    text.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The timer of a held Won: one per opportunity.
pub fn won_timer_key(crm_id: &str) -> String {
    format!("won:{crm_id}")
}

/// The Audit line for what went to Partner Center, if anything did.
fn describe(
    action: &StatusAction,
    merged: &merge::Merge,
    sends_edits: bool,
    contact_removed: bool,
) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(what) = action.describe() {
        parts.push(what);
    }
    let mut fields = merged.pc_field_names();
    if contact_removed {
        fields.push("customer contact (removed)");
    }
    if sends_edits && !fields.is_empty() {
        parts.push(format!("sent to Partner Center: {}", fields.join(", ")));
    }
    (!parts.is_empty()).then(|| {
        let mut text = parts.join("; ");
        if let Some(first) = text.get(..1) {
            text = first.to_uppercase() + &text[1..];
        }
        text
    })
}
