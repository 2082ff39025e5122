//! The behaviour every [`Crm`] adapter must show, whichever CRM is behind it: what the sync rules
//! rely on through the port alone. Each adapter's test binary runs it against the sandbox (the
//! Dataverse and Salesforce adapters) and the in-memory CRM runs it too, so a use case tested on
//! that one behaves as it will on a partner's CRM.
//!
//! What a CRM does beyond the port (its own field names, stages, throttling, sign-in, rows as the
//! admin sees them) stays in that adapter's own tests.
//!
//! A few steps need a person in the CRM, not the connector: a seller who creates, edits or
//! deletes an opportunity. [`CrmUnderTest`] plays them for each CRM.

use async_trait::async_trait;
use chrono::NaiveDate;
use cosell_shared::crm::{
    AccountFields, CatalogEntry, CatalogSolution, ClearField, ContactFields, Crm, CrmError,
    LeadFields, LeadState, Opportunity, OpportunityFields, OpportunityState, Visibility,
};
use cosell_shared::domain::accounts::AccountKey;

/// A seller's edit of an opportunity, in the CRM's own screens.
#[derive(Debug, Clone, PartialEq)]
pub enum SellerEdit {
    Description(String),
    SyncWithPartnerCenter(bool),
}

/// A CRM behind the port, and a seller working in it.
#[async_trait]
pub trait CrmUnderTest: Send + Sync {
    fn crm(&self) -> &dyn Crm;
    /// A seller creates an opportunity with a customer account and a close date; its id.
    async fn seller_creates(&self, name: &str, sync: bool) -> String;
    async fn seller_edits(&self, id: &str, edit: SellerEdit);
    async fn seller_deletes(&self, id: &str);
}

/// Declares one `#[tokio::test]` per promise of the contract, each on a CRM of its own: `$crm` is
/// an expression giving a future of a [`CrmUnderTest`].
#[macro_export]
macro_rules! crm_contract_tests {
    ($crm:expr) => {
        $crate::crm_contract_tests!(@each $crm;
            an_opportunity_reads_back_as_written_and_is_found_by_its_referral,
            an_update_changes_only_the_fields_it_names,
            states_move_from_hold_to_active_to_won_and_lost,
            leads_are_created_found_and_disqualified,
            account_candidates_share_the_postal_code_or_else_the_name,
            a_contact_is_found_by_email_whatever_its_case_and_attached_once,
            solution_links_are_added_once_each,
            missing_records_read_as_none_and_updates_say_not_found,
            accounts_and_contacts_are_read_by_id,
            the_feed_starts_with_every_synced_opportunity_then_brings_each_edit_once,
            the_connectors_own_writes_are_flagged_in_the_feed,
            an_unreadable_cursor_starts_the_feed_again,
            clearing_fields_empties_them_and_a_required_one_is_refused,
            a_field_both_set_and_cleared_is_set,
            the_solution_catalog_lists_what_was_created_and_updates_in_place,
        );
    };
    (@each $crm:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let under = $crm.await;
            $crate::crm_contract::$name(&under).await;
        }
    )*};
}

fn close_date() -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(2030, 6, 30)
}

async fn account(crm: &dyn Crm, name: &str) -> String {
    crm.create_account(&AccountFields {
        name: name.into(),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("account {name} created: {e}"))
}

/// What every CRM accepts: a name, a customer, a currency, a close date, an open stage.
async fn basic(crm: &dyn Crm, name: &str) -> OpportunityFields {
    OpportunityFields {
        name: Some(name.into()),
        account_id: Some(account(crm, &format!("{name} Ltd")).await),
        currency: Some("USD".into()),
        close_date: close_date(),
        state: Some(OpportunityState::Active),
        ..Default::default()
    }
}

async fn create(crm: &dyn Crm, fields: &OpportunityFields) -> String {
    crm.create_opportunity(fields)
        .await
        .unwrap_or_else(|e| panic!("opportunity created: {e}"))
}

async fn read(crm: &dyn Crm, id: &str) -> Opportunity {
    match crm.get_opportunity(id).await {
        Ok(Some(o)) => o,
        Ok(None) => panic!("opportunity {id} should exist"),
        Err(e) => panic!("opportunity {id} read: {e}"),
    }
}

async fn update(crm: &dyn Crm, id: &str, fields: &OpportunityFields) {
    crm.update_opportunity(id, fields)
        .await
        .unwrap_or_else(|e| panic!("opportunity {id} updated with {fields:?}: {e}"));
}

fn ids(opportunities: &[Opportunity]) -> Vec<String> {
    let mut ids: Vec<String> = opportunities.iter().map(|o| o.id.clone()).collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// Every page of the feed from `cursor` until `more` is false: the opportunities in order and
/// the last cursor.
pub async fn drain(crm: &dyn Crm, cursor: Option<String>) -> (Vec<Opportunity>, String) {
    let mut cursor = cursor;
    let mut all = Vec::new();
    for _ in 0..100 {
        let page = crm
            .opportunity_changes(cursor.as_deref())
            .await
            .unwrap_or_else(|e| panic!("a page of changes: {e}"));
        all.extend(page.opportunities);
        let more = page.more;
        cursor = Some(page.cursor);
        if !more {
            return (all, cursor.unwrap_or_default());
        }
    }
    panic!("the feed never ran dry");
}

pub async fn an_opportunity_reads_back_as_written_and_is_found_by_its_referral(
    under: &impl CrmUnderTest,
) {
    let crm = under.crm();
    let account = crm
        .create_account(&AccountFields {
            name: "Northwind Traders".into(),
            street: Some("1 Main St".into()),
            city: Some("Redmond".into()),
            state: Some("WA".into()),
            postal_code: Some("98052".into()),
            country: Some("US".into()),
        })
        .await
        .unwrap_or_else(|e| panic!("account: {e}"));
    let contact = crm
        .create_contact(&ContactFields {
            first_name: Some("Ana".into()),
            last_name: "Bowman".into(),
            email: Some("ana@northwind.example".into()),
            phone: Some("+1 425 555 0100".into()),
            account_id: Some(account.clone()),
        })
        .await
        .unwrap_or_else(|e| panic!("contact: {e}"));
    let written = OpportunityFields {
        name: Some("Northwind – cloud migration".into()),
        deal_value: Some(125_000.5),
        currency: Some("USD".into()),
        close_date: NaiveDate::from_ymd_opt(2030, 3, 31),
        description: Some("Move 400 seats\nin two waves".into()),
        state: Some(OpportunityState::OnHold),
        account_id: Some(account),
        contact_id: Some(contact),
        sync_with_partner_center: Some(true),
        referral_id: Some("8f2c6c1e-0b6a-4c39-9b7e-1d1f0e3b7a11".into()),
        referral_link: Some("https://partner.microsoft.com/referrals/8f2c".into()),
        microsoft_help: Some("ProofOfConceptOrDemo".into()),
        visibility: Some(Visibility::Visible),
        microsoft_crm_id: Some("7-ABCDEF".into()),
        microsoft_status: Some("Active/Accepted".into()),
        audit: Some("2030-01-01 created from Partner Center".into()),
        ..Default::default()
    };
    let id = create(crm, &written).await;

    let got = read(crm, &id).await;
    assert_eq!(got.id, id);
    assert_eq!(got.fields, written, "every field reads back as written");
    assert!(got.modified_by_connector, "the connector made it");
    assert!(got.modified_at.is_some(), "a modification time");

    let found = crm
        .find_opportunity_by_referral("8f2c6c1e-0b6a-4c39-9b7e-1d1f0e3b7a11")
        .await
        .unwrap_or_else(|e| panic!("find by referral: {e}"));
    assert_eq!(
        found.as_ref(),
        Some(&got),
        "found as get_opportunity reads it"
    );
    let upper = crm
        .find_opportunity_by_referral("8F2C6C1E-0B6A-4C39-9B7E-1D1F0E3B7A11")
        .await
        .unwrap_or_else(|e| panic!("find by referral: {e}"));
    assert_eq!(
        upper.map(|o| o.id),
        Some(id),
        "a referral id is found whatever its case"
    );
    assert_eq!(
        crm.find_opportunity_by_referral("someone-else's").await,
        Ok(None)
    );
}

pub async fn an_update_changes_only_the_fields_it_names(under: &impl CrmUnderTest) {
    let crm = under.crm();
    let fields = OpportunityFields {
        deal_value: Some(5000.0),
        description: Some("before".into()),
        referral_id: Some("ref-only-named".into()),
        visibility: Some(Visibility::Private),
        microsoft_status: Some("New/Pending".into()),
        ..basic(crm, "Contoso").await
    };
    let id = create(crm, &fields).await;
    let before = read(crm, &id).await;

    update(
        crm,
        &id,
        &OpportunityFields {
            name: Some("✔ Contoso".into()),
            audit: Some("synced".into()),
            ..Default::default()
        },
    )
    .await;

    let after = read(crm, &id).await;
    assert_eq!(
        after.fields,
        OpportunityFields {
            name: Some("✔ Contoso".into()),
            audit: Some("synced".into()),
            ..before.fields
        },
        "only the name and Audit changed"
    );
}

pub async fn states_move_from_hold_to_active_to_won_and_lost(under: &impl CrmUnderTest) {
    let crm = under.crm();
    let to = |state| OpportunityFields {
        state: Some(state),
        ..Default::default()
    };
    let held = OpportunityFields {
        state: Some(OpportunityState::OnHold),
        ..basic(crm, "Northwind").await
    };
    let id = create(crm, &held).await;
    assert_eq!(
        read(crm, &id).await.fields.state,
        Some(OpportunityState::OnHold)
    );

    update(crm, &id, &to(OpportunityState::Active)).await;
    assert_eq!(
        read(crm, &id).await.fields.state,
        Some(OpportunityState::Active),
        "accepted"
    );

    // What comes with the win is written with it.
    let won = OpportunityFields {
        audit: Some("won in Partner Center".into()),
        ..to(OpportunityState::Won)
    };
    update(crm, &id, &won).await;
    let got = read(crm, &id).await;
    assert_eq!(got.fields.state, Some(OpportunityState::Won));
    assert_eq!(got.fields.audit.as_deref(), Some("won in Partner Center"));

    // The same command delivered again changes nothing and does not fail.
    update(crm, &id, &won).await;
    assert_eq!(
        read(crm, &id).await.fields.state,
        Some(OpportunityState::Won)
    );

    let lost = create(crm, &basic(crm, "Tailspin").await).await;
    update(crm, &lost, &to(OpportunityState::Lost)).await;
    assert_eq!(
        read(crm, &lost).await.fields.state,
        Some(OpportunityState::Lost)
    );
}

pub async fn leads_are_created_found_and_disqualified(under: &impl CrmUnderTest) {
    let crm = under.crm();
    let written = LeadFields {
        topic: Some("Teams rollout".into()),
        first_name: Some("Kim".into()),
        last_name: Some("Akers".into()),
        company: Some("Wide World Importers".into()),
        email: Some("kim@wwi.example".into()),
        phone: Some("+44 20 7946 0000".into()),
        postal_code: Some("SW1A 1AA".into()),
        country: Some("GB".into()),
        description: Some("Needs 200 seats".into()),
        state: Some(LeadState::Open),
        referral_id: Some("lead-ref-1".into()),
        referral_link: Some("https://partner.microsoft.com/referrals/lead-ref-1".into()),
        audit: Some("created".into()),
    };
    // Where the CRM keeps the topic differs (Salesforce has none and puts it in the
    // description); everything else reads back as written.
    let comparable = |l: &LeadFields| LeadFields {
        topic: None,
        description: None,
        ..l.clone()
    };
    let id = crm
        .create_lead(&written)
        .await
        .unwrap_or_else(|e| panic!("lead created: {e}"));
    let found = crm
        .find_lead_by_referral("LEAD-REF-1")
        .await
        .unwrap_or_else(|e| panic!("find lead: {e}"))
        .unwrap_or_else(|| panic!("the lead is found by its referral id, whatever its case"));
    assert_eq!(found.id, id);
    assert_eq!(comparable(&found.fields), comparable(&written));
    assert!(
        found
            .fields
            .description
            .as_deref()
            .is_some_and(|d| d.contains("Needs 200 seats")),
        "the description is kept: {found:?}"
    );
    assert_eq!(crm.find_lead_by_referral("lead-ref-2").await, Ok(None));

    crm.update_lead(
        &id,
        &LeadFields {
            state: Some(LeadState::Disqualified),
            audit: Some("declined in Partner Center".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("lead disqualified: {e}"));
    let got = crm
        .get_lead(&id)
        .await
        .unwrap_or_else(|e| panic!("read lead: {e}"))
        .unwrap_or_else(|| panic!("the lead exists"));
    assert_eq!(
        got.fields,
        LeadFields {
            state: Some(LeadState::Disqualified),
            audit: Some("declined in Partner Center".into()),
            ..found.fields
        },
        "only the state and Audit changed"
    );
}

pub async fn account_candidates_share_the_postal_code_or_else_the_name(under: &impl CrmUnderTest) {
    let crm = under.crm();
    let make = |name: &str, postal: Option<&str>| AccountFields {
        name: name.into(),
        city: Some("Amsterdam".into()),
        postal_code: postal.map(str::to_string),
        country: Some("NL".into()),
        ..Default::default()
    };
    let new = async |fields: &AccountFields| {
        crm.create_account(fields)
            .await
            .unwrap_or_else(|e| panic!("account {}: {e}", fields.name))
    };
    let spaced = make("Fabrikam", Some("1011 AB"));
    let a = new(&spaced).await;
    let b = new(&make("Fabrikam BV", Some("1011AB"))).await;
    let no_postal = new(&make("Fabrikam", None)).await;
    new(&make("Contoso", Some("2000"))).await;
    let quoted = new(&make("O'Brien & Sons", None)).await;

    let candidates = async |key: AccountKey| {
        let mut found = crm
            .account_candidates(&key)
            .await
            .unwrap_or_else(|e| panic!("candidates for {key:?}: {e}"));
        found.sort_by(|x, y| x.id.cmp(&y.id));
        found
    };
    let by_postal = candidates(AccountKey::PostalCode("1011 ab".into())).await;
    assert_eq!(
        by_postal.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        sorted(vec![a.clone(), b]),
        "the postal code in either spacing, whatever its case"
    );
    let first = by_postal.iter().find(|c| c.id == a);
    assert_eq!(first.map(|c| &c.fields), Some(&spaced), "read in full");

    let by_name = candidates(AccountKey::Name("fabrikam".into())).await;
    assert_eq!(
        by_name.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        sorted(vec![a, no_postal]),
        "the name whatever its case"
    );
    for name in ["O'Brien & Sons", " O'Brien  &  Sons "] {
        let found = candidates(AccountKey::Name(name.into())).await;
        assert_eq!(
            found.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
            vec![quoted.clone()],
            "{name:?}: quotes and extra spaces still find the account"
        );
    }
    assert!(
        candidates(AccountKey::PostalCode("9999 ZZ".into()))
            .await
            .is_empty()
    );
}

pub async fn a_contact_is_found_by_email_whatever_its_case_and_attached_once(
    under: &impl CrmUnderTest,
) {
    let crm = under.crm();
    let account_id = account(crm, "Woodgrove").await;
    let contact = ContactFields {
        first_name: Some("Alan".into()),
        last_name: "Turing".into(),
        email: Some("Alan.Turing@Woodgrove.example".into()),
        phone: Some("+44 161 000 0000".into()),
        account_id: Some(account_id),
    };
    let contact_id = crm
        .create_contact(&contact)
        .await
        .unwrap_or_else(|e| panic!("contact: {e}"));
    let found = crm
        .find_contact_by_email("alan.turing@woodgrove.example")
        .await
        .unwrap_or_else(|e| panic!("find contact: {e}"))
        .unwrap_or_else(|| panic!("the contact is found whatever the email's case"));
    assert_eq!(found.id, contact_id);
    assert_eq!(found.fields, contact);
    assert_eq!(
        crm.find_contact_by_email("nobody@woodgrove.example").await,
        Ok(None)
    );

    let opportunity = create(crm, &basic(crm, "Woodgrove deal").await).await;
    for _ in 0..2 {
        crm.attach_contact(&opportunity, &contact_id)
            .await
            .unwrap_or_else(|e| panic!("attach: {e}"));
    }
    assert_eq!(
        read(crm, &opportunity).await.fields.contact_id,
        Some(contact_id),
        "attached, and attaching again is harmless"
    );
}

pub async fn solution_links_are_added_once_each(under: &impl CrmUnderTest) {
    let crm = under.crm();
    let id = create(crm, &basic(crm, "Relecloud").await).await;
    let other = create(crm, &basic(crm, "Other").await).await;
    assert_eq!(crm.solution_links(&id).await, Ok(vec![]));
    for solution in [
        "sol-azure-migrate",
        "sol-azure-migrate",
        "SOL-AZURE-MIGRATE",
        "sol-sentinel",
    ] {
        crm.add_solution_link(&id, solution)
            .await
            .unwrap_or_else(|e| panic!("link {solution}: {e}"));
    }
    assert_eq!(
        crm.solution_links(&id).await,
        Ok(vec!["sol-azure-migrate".into(), "sol-sentinel".into()]),
        "each solution once, in the order linked"
    );
    assert_eq!(crm.solution_links(&other).await, Ok(vec![]));
}

pub async fn missing_records_read_as_none_and_updates_say_not_found(under: &impl CrmUnderTest) {
    let crm = under.crm();
    let fields = OpportunityFields {
        referral_id: Some("ref-doomed".into()),
        ..basic(crm, "Doomed").await
    };
    let id = create(crm, &fields).await;
    under.seller_deletes(&id).await;
    assert_eq!(crm.get_opportunity(&id).await, Ok(None));
    assert_eq!(
        crm.find_opportunity_by_referral("ref-doomed").await,
        Ok(None)
    );
    let err = crm
        .update_opportunity(
            &id,
            &OpportunityFields {
                description: Some("too late".into()),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(err, Err(CrmError::NotFound { .. })),
        "an update does not recreate it: {err:?}"
    );
    assert_eq!(crm.get_opportunity(&id).await, Ok(None), "still gone");
    // An id the CRM could never have issued is no record either, not an error.
    assert_eq!(crm.get_opportunity("not-an-id").await, Ok(None));
    assert_eq!(crm.get_lead("not-an-id").await, Ok(None));
    assert_eq!(crm.get_account("not-an-id").await, Ok(None));
    assert_eq!(crm.get_contact("not-an-id").await, Ok(None));

    let lead = crm
        .create_lead(&LeadFields {
            topic: Some("Still here".into()),
            company: Some("Here Ltd".into()),
            last_name: Some("Here".into()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("lead: {e}"));
    // An account's id is no lead's.
    let not_a_lead = fields.account_id.clone().unwrap_or_default();
    assert_eq!(crm.get_lead(&not_a_lead).await, Ok(None));
    let err = crm
        .update_lead(
            &not_a_lead,
            &LeadFields {
                state: Some(LeadState::Disqualified),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(err, Err(CrmError::NotFound { .. })), "{err:?}");
    assert!(
        matches!(crm.get_lead(&lead).await, Ok(Some(_))),
        "the real lead is there"
    );
}

pub async fn accounts_and_contacts_are_read_by_id(under: &impl CrmUnderTest) {
    let crm = under.crm();
    let fields = AccountFields {
        name: "Fabrikam Nederland".into(),
        street: Some("Damrak 1".into()),
        city: Some("Amsterdam".into()),
        state: None,
        postal_code: Some("1011 AB".into()),
        country: Some("NL".into()),
    };
    let account = crm
        .create_account(&fields)
        .await
        .unwrap_or_else(|e| panic!("account: {e}"));
    let got = crm.get_account(&account).await;
    assert_eq!(
        got.map(|a| a.map(|a| (a.id, a.fields))),
        Ok(Some((account.clone(), fields)))
    );

    let contact_fields = ContactFields {
        first_name: Some("Ada".into()),
        last_name: "Lovelace".into(),
        email: Some("ada@fabrikam.example".into()),
        phone: Some("+31 20 000 0000".into()),
        account_id: Some(account.clone()),
    };
    let contact = crm
        .create_contact(&contact_fields)
        .await
        .unwrap_or_else(|e| panic!("contact: {e}"));
    let got = crm.get_contact(&contact).await;
    assert_eq!(
        got.map(|c| c.map(|c| (c.id, c.fields))),
        Ok(Some((contact.clone(), contact_fields)))
    );

    // An id of the other kind names no record of this one.
    assert_eq!(crm.get_account(&contact).await, Ok(None));
    assert_eq!(crm.get_contact(&account).await, Ok(None));
}

pub async fn the_feed_starts_with_every_synced_opportunity_then_brings_each_edit_once(
    under: &impl CrmUnderTest,
) {
    let crm = under.crm();
    let shared = under.seller_creates("Shared before deployment", true).await;
    let also = under.seller_creates("Also shared", true).await;
    let private = under.seller_creates("Not shared", false).await;

    let (first, cursor) = drain(crm, None).await;
    assert_eq!(
        ids(&first),
        sorted(vec![shared.clone(), also]),
        "every opportunity with Sync = yes, once, and no other"
    );
    assert!(
        first.iter().all(|o| !o.modified_by_connector),
        "sellers' work"
    );

    let (idle, cursor) = drain(crm, Some(cursor)).await;
    assert!(idle.is_empty(), "nothing new: {idle:?}");

    under
        .seller_edits(&shared, SellerEdit::Description("budget approved".into()))
        .await;
    let (edit, cursor) = drain(crm, Some(cursor)).await;
    assert_eq!(ids(&edit), vec![shared.clone()], "the edit, once");
    assert_eq!(
        edit[0].fields.description.as_deref(),
        Some("budget approved"),
        "read as it stands now"
    );
    let (after, cursor) = drain(crm, Some(cursor)).await;
    assert!(after.is_empty(), "nothing new: {after:?}");

    // Switching Sync on shares an opportunity from then on; edits of unshared ones stay out.
    under
        .seller_edits(&private, SellerEdit::SyncWithPartnerCenter(true))
        .await;
    let other = under.seller_creates("Still private", false).await;
    under
        .seller_edits(&other, SellerEdit::Description("internal".into()))
        .await;
    let (later, _) = drain(crm, Some(cursor)).await;
    assert_eq!(ids(&later), vec![private]);
}

pub async fn the_connectors_own_writes_are_flagged_in_the_feed(under: &impl CrmUnderTest) {
    let crm = under.crm();
    let fields = OpportunityFields {
        sync_with_partner_center: Some(true),
        ..basic(crm, "Connector made").await
    };
    let id = create(crm, &fields).await;
    let (first, cursor) = drain(crm, None).await;
    assert_eq!(ids(&first), vec![id.clone()]);
    assert!(first[0].modified_by_connector);
    assert_eq!(
        first[0],
        read(crm, &id).await,
        "the feed reads an opportunity as get_opportunity does"
    );

    under
        .seller_edits(&id, SellerEdit::Description("the seller's notes".into()))
        .await;
    let (seller, cursor) = drain(crm, Some(cursor)).await;
    assert_eq!(ids(&seller), vec![id.clone()]);
    assert!(!seller[0].modified_by_connector, "the seller's edit");
    assert!(!read(crm, &id).await.modified_by_connector);

    update(
        crm,
        &id,
        &OpportunityFields {
            audit: Some("synced".into()),
            ..Default::default()
        },
    )
    .await;
    let (own, _) = drain(crm, Some(cursor)).await;
    assert_eq!(ids(&own), vec![id.clone()]);
    assert!(own[0].modified_by_connector, "the connector's own write");
    assert!(read(crm, &id).await.modified_by_connector);
}

pub async fn an_unreadable_cursor_starts_the_feed_again(under: &impl CrmUnderTest) {
    let crm = under.crm();
    let a = under.seller_creates("Alpha", true).await;
    let (all, _) = drain(crm, Some("not a cursor".into())).await;
    assert_eq!(ids(&all), vec![a]);
}

/// The fields a write can empty on every CRM, and their values before.
fn filled(fields: OpportunityFields, contact: &str) -> OpportunityFields {
    OpportunityFields {
        contact_id: Some(contact.into()),
        deal_value: Some(42_000.0),
        description: Some("notes".into()),
        microsoft_help: Some("ProofOfConceptOrDemo".into()),
        microsoft_status: Some("Active/Accepted".into()),
        microsoft_crm_id: Some("7-ABCDEF".into()),
        sync_with_partner_center: Some(true),
        audit: Some("created".into()),
        ..fields
    }
}

async fn contact(crm: &dyn Crm, last_name: &str) -> String {
    crm.create_contact(&ContactFields {
        last_name: last_name.into(),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("contact {last_name}: {e}"))
}

pub async fn clearing_fields_empties_them_and_a_required_one_is_refused(under: &impl CrmUnderTest) {
    let crm = under.crm();
    let bowman = contact(crm, "Bowman").await;
    let id = create(crm, &filled(basic(crm, "Emptied").await, &bowman)).await;
    let before = read(crm, &id).await;
    let every = [
        ClearField::DealValue,
        ClearField::Description,
        ClearField::MicrosoftHelp,
        ClearField::Contact,
        ClearField::MicrosoftStatus,
        ClearField::MicrosoftCrmId,
    ];
    update(
        crm,
        &id,
        &OpportunityFields {
            audit: Some("emptied".into()),
            clear: every.to_vec(),
            ..Default::default()
        },
    )
    .await;
    let after = read(crm, &id).await;
    assert_eq!(
        after.fields,
        OpportunityFields {
            deal_value: None,
            description: None,
            microsoft_help: None,
            contact_id: None,
            microsoft_status: None,
            microsoft_crm_id: None,
            audit: Some("emptied".into()),
            ..before.fields.clone()
        },
        "each cleared field is empty, the rest stays"
    );
    assert!(
        crm.get_contact(&bowman).await.is_ok_and(|c| c.is_some()),
        "only the link to the contact goes, not the contact"
    );
    // Clearing what is already empty is harmless (a redelivered command).
    update(
        crm,
        &id,
        &OpportunityFields {
            clear: every.to_vec(),
            ..Default::default()
        },
    )
    .await;

    // A field the CRM requires: the port says so, and a clear of it is refused whole.
    let required: Vec<ClearField> = [ClearField::Currency, ClearField::CloseDate]
        .into_iter()
        .filter(|f| !crm.can_clear(*f))
        .collect();
    assert!(
        !required.is_empty(),
        "each CRM requires a currency or a close date"
    );
    for field in required {
        let kept = read(crm, &id).await;
        let err = crm
            .update_opportunity(
                &id,
                &OpportunityFields {
                    description: Some("not written".into()),
                    clear: vec![field],
                    ..Default::default()
                },
            )
            .await;
        assert!(
            matches!(&err, Err(CrmError::Rejected { field: Some(_), .. })),
            "{field:?} is required: a rejection naming the field, got {err:?}"
        );
        assert_eq!(read(crm, &id).await.fields, kept.fields, "nothing written");
    }
}

pub async fn a_field_both_set_and_cleared_is_set(under: &impl CrmUnderTest) {
    let crm = under.crm();
    let first = contact(crm, "First").await;
    let second = contact(crm, "Second").await;
    let id = create(crm, &filled(basic(crm, "Both").await, &first)).await;
    update(
        crm,
        &id,
        &OpportunityFields {
            description: Some("new notes".into()),
            contact_id: Some(second.clone()),
            clear: vec![
                ClearField::Description,
                ClearField::Contact,
                ClearField::MicrosoftCrmId,
            ],
            ..Default::default()
        },
    )
    .await;
    let got = read(crm, &id).await.fields;
    assert_eq!(got.description.as_deref(), Some("new notes"));
    assert_eq!(got.contact_id, Some(second));
    assert_eq!(
        got.microsoft_crm_id, None,
        "a clear of a field not set still applies"
    );
}

/// The catalog, by solution id, so the CRM's own order does not matter.
async fn catalog(crm: &dyn Crm) -> Vec<CatalogEntry> {
    let mut all = crm
        .catalog()
        .await
        .unwrap_or_else(|e| panic!("the catalog read: {e}"));
    all.sort_by(|a, b| a.solution.solution_id.cmp(&b.solution.solution_id));
    all
}

pub async fn the_solution_catalog_lists_what_was_created_and_updates_in_place(
    under: &impl CrmUnderTest,
) {
    let crm = under.crm();
    assert_eq!(
        crm.catalog().await,
        Ok(vec![]),
        "a new CRM has an empty catalog"
    );

    let migrate = CatalogSolution {
        solution_id: "sol-azure-migrate".into(),
        name: "Contoso Azure Migration Factory".into(),
        description: Some("Cloud and AI Platforms".into()),
    };
    let sentinel = CatalogSolution {
        solution_id: "sol-sentinel".into(),
        name: "Contoso Sentinel Onboarding".into(),
        description: None,
    };
    let mut ids = Vec::new();
    for solution in [&migrate, &sentinel] {
        ids.push(
            crm.create_catalog_solution(solution)
                .await
                .unwrap_or_else(|e| panic!("{} created: {e}", solution.solution_id)),
        );
    }
    assert_ne!(ids[0], ids[1]);
    let entry = |crm_id: &str, solution: &CatalogSolution| CatalogEntry {
        crm_id: crm_id.to_string(),
        solution: solution.clone(),
    };
    assert_eq!(
        catalog(crm).await,
        vec![entry(&ids[0], &migrate), entry(&ids[1], &sentinel)],
        "each row once, as created, with the id its create answered"
    );

    // Every part is written: a new name and id, and a description set or emptied.
    let renamed = CatalogSolution {
        solution_id: "sol-azure-migrate-2".into(),
        name: "Contoso Migration Factory".into(),
        description: None,
    };
    let described = CatalogSolution {
        description: Some("Security".into()),
        ..sentinel.clone()
    };
    for (crm_id, solution) in [(&ids[0], &renamed), (&ids[1], &described)] {
        crm.update_catalog_solution(crm_id, solution)
            .await
            .unwrap_or_else(|e| panic!("{crm_id} updated: {e}"));
    }
    assert_eq!(
        catalog(crm).await,
        vec![entry(&ids[0], &renamed), entry(&ids[1], &described)],
        "updated in place: no row added"
    );

    // An account's id is no catalog row's: the update says so and writes nothing.
    let not_a_row = account(crm, "Not A Solution Ltd").await;
    let err = crm.update_catalog_solution(&not_a_row, &migrate).await;
    assert!(matches!(err, Err(CrmError::NotFound { .. })), "{err:?}");
    assert_eq!(catalog(crm).await.len(), 2, "nothing created by it");
}
