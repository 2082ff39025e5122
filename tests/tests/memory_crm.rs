//! The in-memory CRM keeps the CRM contract, as both CRM adapters do.

use async_trait::async_trait;
use cosell_e2e::crm_contract::{CrmUnderTest, SellerEdit};
use cosell_shared::crm::{Crm, CrmKind, OpportunityFields, OpportunityState};
use cosell_shared::testing::MemoryCrm;

struct Memory(MemoryCrm);

#[async_trait]
impl CrmUnderTest for Memory {
    fn crm(&self) -> &dyn Crm {
        &self.0
    }

    async fn seller_creates(&self, name: &str, sync: bool) -> String {
        self.0.seller_creates(OpportunityFields {
            name: Some(name.into()),
            close_date: chrono::NaiveDate::from_ymd_opt(2030, 6, 30),
            state: Some(OpportunityState::Active),
            sync_with_partner_center: Some(sync),
            ..Default::default()
        })
    }

    async fn seller_edits(&self, id: &str, edit: SellerEdit) {
        let found = self.0.seller_edits(id, |f| match edit {
            SellerEdit::Description(d) => f.description = Some(d),
            SellerEdit::SyncWithPartnerCenter(s) => f.sync_with_partner_center = Some(s),
        });
        assert!(found, "opportunity {id} to edit");
    }

    async fn seller_deletes(&self, id: &str) {
        self.0.seller_deletes(id);
    }
}

mod dynamics {
    cosell_e2e::crm_contract_tests!(async {
        super::Memory(super::MemoryCrm::new(super::CrmKind::Dynamics))
    });
}

mod salesforce {
    cosell_e2e::crm_contract_tests!(async {
        super::Memory(super::MemoryCrm::new(super::CrmKind::Salesforce))
    });
}
