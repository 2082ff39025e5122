//! Account matching, one rule for every CRM: the referral's customer is an existing account
//! with the same name and postal code, ignoring case and spaces; without a postal code on either
//! side the name alone decides. The CRM is asked for candidates by postal code first, then by
//! name, each in every spacing worth asking for, and the connector picks the match itself.

use crate::domain::records::{Account, AccountFields, CrmId};

/// What the CRM is asked for accounts by. Both CRMs compare text without regard to case but
/// not to spaces, so each key is asked for in its [`AccountKey::spellings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountKey {
    /// The billing or primary postal code.
    PostalCode(String),
    /// The account name.
    Name(String),
}

impl AccountKey {
    /// The value as the referral has it.
    pub fn value(&self) -> &str {
        match self {
            AccountKey::PostalCode(v) | AccountKey::Name(v) => v,
        }
    }

    /// The spellings of the key worth asking the CRM for: as given, trimmed, with runs of
    /// spaces collapsed, and without spaces (sellers type `1011 AB` and `1011AB` alike). Empty
    /// when the key is blank: nothing to ask for.
    pub fn spellings(&self) -> Vec<String> {
        let value = self.value();
        let trimmed = value.trim();
        let collapsed = trimmed.split_whitespace().collect::<Vec<_>>().join(" ");
        let squashed: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
        let mut out: Vec<String> = Vec::new();
        for v in [value.to_string(), trimmed.to_string(), collapsed, squashed] {
            if !v.trim().is_empty() && !out.contains(&v) {
                out.push(v);
            }
        }
        out
    }
}

/// The look-ups that find the account `wanted` names, in order. By postal code first (few
/// accounts share one); then by name, which finds an account whose postal code was typed with a
/// space the referral does not have (`EC1A 1BB` for `EC1A1BB`), a spelling no look-up by
/// postal code can guess.
pub fn lookups(wanted: &AccountFields) -> Vec<AccountKey> {
    let mut out = Vec::new();
    if let Some(postal_code) = wanted
        .postal_code
        .as_deref()
        .filter(|p| !p.trim().is_empty())
    {
        out.push(AccountKey::PostalCode(postal_code.to_string()));
    }
    if !wanted.name.trim().is_empty() {
        out.push(AccountKey::Name(wanted.name.clone()));
    }
    out
}

fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether `candidate` is the account `wanted` names: same name and postal code, ignoring case
/// and spaces. Without a postal code on either side, the name alone decides.
pub fn same_account(candidate: &AccountFields, wanted: &AccountFields) -> bool {
    let postal = |a: &AccountFields| a.postal_code.clone().filter(|p| !p.trim().is_empty());
    squash(&candidate.name) == squash(&wanted.name)
        && match (postal(candidate), postal(wanted)) {
            (Some(a), Some(b)) => squash(&a) == squash(&b),
            (None, None) => true,
            _ => false,
        }
}

/// The id of the first of `candidates` that is the account `wanted` names.
pub fn pick(candidates: Vec<Account>, wanted: &AccountFields) -> Option<CrmId> {
    candidates
        .into_iter()
        .find(|a| same_account(&a.fields, wanted))
        .map(|a| a.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str, postal: Option<&str>) -> AccountFields {
        AccountFields {
            name: name.into(),
            postal_code: postal.map(str::to_string),
            ..AccountFields::default()
        }
    }

    #[test]
    fn keys_are_asked_for_in_every_spacing() {
        assert_eq!(
            AccountKey::PostalCode(" SW1A  1AA".into()).spellings(),
            vec![" SW1A  1AA", "SW1A  1AA", "SW1A 1AA", "SW1A1AA"]
        );
        assert_eq!(
            AccountKey::PostalCode("98052".into()).spellings(),
            vec!["98052"]
        );
        assert_eq!(
            AccountKey::Name(" 1011 AB ".into()).spellings(),
            vec![" 1011 AB ", "1011 AB", "1011AB"]
        );
        assert!(AccountKey::Name("  ".into()).spellings().is_empty());
    }

    #[test]
    fn postal_code_first_then_name_and_nothing_for_blanks() {
        assert_eq!(
            lookups(&account("Fabrikam", Some("98004"))),
            vec![
                AccountKey::PostalCode("98004".into()),
                AccountKey::Name("Fabrikam".into())
            ]
        );
        assert_eq!(
            lookups(&account("Fabrikam", Some("  "))),
            vec![AccountKey::Name("Fabrikam".into())]
        );
        assert!(lookups(&account(" ", None)).is_empty());
    }

    #[test]
    fn the_same_account_ignores_case_and_spaces_only() {
        let wanted = account("Fabrikam", Some("98004"));
        assert!(same_account(&account("fabrikam", Some("98 004")), &wanted));
        assert!(same_account(&account(" FABRIKAM ", Some("98004")), &wanted));
        assert!(!same_account(
            &account("Fabrikam Ltd", Some("98004")),
            &wanted
        ));
        assert!(!same_account(&account("Fabrikam", Some("98005")), &wanted));
        assert!(!same_account(&account("Fabrikam", None), &wanted));
        assert!(same_account(
            &account("Fabrikam", Some(" ")),
            &account("Fabrikam", None)
        ));
    }

    #[test]
    fn pick_takes_the_first_match() {
        let wanted = account("Fabrikam", Some("98004"));
        let candidate = |id: &str, fields| Account {
            id: id.into(),
            fields,
        };
        let candidates = vec![
            candidate("a", account("Fabrikam", Some("98005"))),
            candidate("b", account("FABRIKAM", Some("98 004"))),
            candidate("c", account("Fabrikam", Some("98004"))),
        ];
        assert_eq!(pick(candidates, &wanted).as_deref(), Some("b"));
    }
}
