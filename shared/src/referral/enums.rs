//! Wire enums of the referral resource. Their lifecycle rules live in `state`.

string_enum! {
    /// Where a referral is in its lifecycle; see `check_transition` for the moves allowed.
    pub enum Status {
        /// The service's unset default; not a state anyone moves a referral to.
        None => "None",
        New => "New",
        Active => "Active",
        /// Terminal: Partner Center refuses every change after this.
        Closed => "Closed",
    }
}

string_enum! {
    /// Refines [`Status`]; each status admits only some substatuses.
    pub enum Substatus {
        None => "None",
        Pending => "Pending",
        Received => "Received",
        Accepted => "Accepted",
        Won => "Won",
        Lost => "Lost",
        Declined => "Declined",
        /// Set by the service when nobody answers within 14 days.
        Expired => "Expired",
        /// Offered by the Partner Center UI (duplicates, tests, sync problems) but not
        /// documented for the API, hence gated by `TransitionRules`.
        Error => "Error",
    }
}

string_enum! {
    /// Who can see the referral: only its owner, or every party of the engagement.
    pub enum ReferralType {
        Independent => "Independent",
        Shared => "Shared",
    }
}

string_enum! {
    /// How the referral was qualified; with `type` and the inviter it tells leads
    /// from co-sell opportunities.
    pub enum Qualification {
        None => "None",
        /// Created by the customer, e.g. from the marketplace.
        Direct => "Direct",
        MarketingQualified => "MarketingQualified",
        SalesQualified => "SalesQualified",
    }
}

string_enum! {
    /// Whether we received the referral or created it ourselves.
    pub enum Direction {
        Incoming => "Incoming",
        Outgoing => "Outgoing",
    }
}

string_enum! {
    /// The kind of help a partner asks Microsoft for; the six non-`Unknown` values
    /// are the UI's "help needed from Microsoft" options.
    pub enum AssistanceRequestCode {
        /// No help requested (private or partner-led deals).
        Unknown => "Unknown",
        GeneralOrOther => "GeneralOrOther",
        CustomerTechnicalArchitecture => "CustomerTechnicalArchitecture",
        ProofOfConceptOrDemo => "ProofOfConceptOrDemo",
        QuotesOrLicensing => "QuotesOrLicensing",
        PostSalesCustomerSuccess => "PostSalesCustomerSuccess",
        WorkloadSpecificValueProposition => "WorkloadSpecificValueProposition",
    }
}

impl AssistanceRequestCode {
    /// Asking for help is what makes a partner-created deal a co-sell deal. A value we
    /// do not know is still a request: Microsoft only adds kinds of help, never a
    /// second way of saying "none".
    pub fn asks_for_help(&self) -> bool {
        !matches!(self, AssistanceRequestCode::Unknown)
    }
}

string_enum! {
    /// What a referral's `target` entry points at.
    pub enum TargetType {
        None => "None",
        /// A location of a partner's business profile; `id: "msft"` invites Microsoft.
        BusinessProfileLocation => "BusinessProfileLocation",
        SolutionProfile => "SolutionProfile",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use serde::de::DeserializeOwned;
    use serde_json::json;
    use std::fmt::Debug;
    use std::str::FromStr;

    /// Every known value survives `as_str` → `FromStr` and serde in both directions,
    /// and the spellings are unique (a typo copied twice would shadow a variant).
    fn assert_known_values_round_trip<T>(known: &[T], expected: &[&str])
    where
        T: Serialize + DeserializeOwned + FromStr + PartialEq + Debug + std::fmt::Display,
        <T as FromStr>::Err: Debug,
    {
        let spellings: Vec<String> = known.iter().map(ToString::to_string).collect();
        assert_eq!(spellings, expected);
        for value in known {
            let text = value.to_string();
            assert_eq!(&T::from_str(&text).expect("infallible"), value);
            assert_eq!(serde_json::to_value(value).expect("serialise"), json!(text));
            let back: T = serde_json::from_value(json!(text)).expect("deserialise");
            assert_eq!(&back, value);
        }
    }

    #[test]
    fn every_enum_knows_exactly_the_documented_values() {
        assert_known_values_round_trip(Status::KNOWN, &["None", "New", "Active", "Closed"]);
        assert_known_values_round_trip(
            Substatus::KNOWN,
            &[
                "None", "Pending", "Received", "Accepted", "Won", "Lost", "Declined", "Expired",
                "Error",
            ],
        );
        assert_known_values_round_trip(ReferralType::KNOWN, &["Independent", "Shared"]);
        assert_known_values_round_trip(
            Qualification::KNOWN,
            &["None", "Direct", "MarketingQualified", "SalesQualified"],
        );
        assert_known_values_round_trip(Direction::KNOWN, &["Incoming", "Outgoing"]);
        assert_known_values_round_trip(
            AssistanceRequestCode::KNOWN,
            &[
                "Unknown",
                "GeneralOrOther",
                "CustomerTechnicalArchitecture",
                "ProofOfConceptOrDemo",
                "QuotesOrLicensing",
                "PostSalesCustomerSuccess",
                "WorkloadSpecificValueProposition",
            ],
        );
        assert_known_values_round_trip(
            TargetType::KNOWN,
            &["None", "BusinessProfileLocation", "SolutionProfile"],
        );
    }

    #[test]
    fn unknown_values_are_kept_verbatim() {
        let status: Status = serde_json::from_value(json!("Archived")).expect("deserialise");
        assert_eq!(status, Status::Other("Archived".into()));
        assert_eq!(status.as_str(), "Archived");
        assert_eq!(
            serde_json::to_value(&status).expect("serialise"),
            json!("Archived")
        );

        // Odd casing and whitespace of an unknown value are not normalised.
        let code: AssistanceRequestCode =
            serde_json::from_value(json!(" dealAcceleration")).expect("deserialise");
        assert_eq!(
            code,
            AssistanceRequestCode::Other(" dealAcceleration".into())
        );
        assert_eq!(code.to_string(), " dealAcceleration");

        let empty = Qualification::from("");
        assert_eq!(empty, Qualification::Other(String::new()));
        assert_eq!(serde_json::to_string(&empty).expect("serialise"), r#""""#);
    }

    #[test]
    fn known_values_read_in_any_case_and_write_canonically() {
        for spelling in ["new", "NEW", "nEw", "New"] {
            let status: Status = serde_json::from_value(json!(spelling)).expect("deserialise");
            assert_eq!(status, Status::New, "{spelling}");
            assert_eq!(
                serde_json::to_value(&status).expect("serialise"),
                json!("New")
            );
        }
        assert_eq!(
            "salesqualified".parse::<Qualification>(),
            Ok(Qualification::SalesQualified)
        );
        assert_eq!(
            TargetType::from(String::from("BUSINESSPROFILELOCATION")),
            TargetType::BusinessProfileLocation
        );
        // Near misses are not known values.
        assert_eq!(Substatus::from("Won "), Substatus::Other("Won ".into()));
    }

    #[test]
    fn non_string_values_are_rejected() {
        let error = serde_json::from_value::<Status>(json!(1)).expect_err("a number is no status");
        assert!(error.to_string().contains("expected a string"), "{error}");
        assert!(serde_json::from_value::<Direction>(json!(null)).is_err());
    }

    #[test]
    fn display_honours_width_like_a_str() {
        assert_eq!(format!("[{:>8}]", Status::Active), "[  Active]");
    }

    #[test]
    fn only_unknown_means_no_help_requested() {
        assert!(!AssistanceRequestCode::Unknown.asks_for_help());
        for code in &AssistanceRequestCode::KNOWN[1..] {
            assert!(code.asks_for_help(), "{code}");
        }
        assert!(AssistanceRequestCode::Other("DealAcceleration".into()).asks_for_help());
        // "unknown" in another case is still the known no-help value.
        assert!(!AssistanceRequestCode::from("UNKNOWN").asks_for_help());
    }
}
