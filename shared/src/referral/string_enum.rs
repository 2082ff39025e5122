//! The one macro behind every wire enum of the referral model.
//!
//! Partner Center adds enum values without notice (the FY26 taxonomy change is one
//! example), and a PUT replaces the whole referral. An enum that failed on an
//! unknown value would either make the referral unreadable or, if it fell back
//! to a default, silently rewrite the value on the next write. So every enum
//! keeps what it does not know in `Other(String)` and writes it back verbatim.

/// Declares a string enum whose unknown values survive a round trip.
///
/// Each listed variant maps to its exact wire spelling. Reading is ASCII
/// case-insensitive because Microsoft's own examples mix casings; writing always
/// uses the listed spelling so our output matches what the service sends.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident => $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$variant_meta])* $variant, )+
            /// A value this connector does not know; kept verbatim so that writing
            /// the referral back does not change it.
            Other(String),
        }

        impl $name {
            /// Every value this connector knows, in the order Microsoft documents them.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),+];

            /// The spelling sent to and received from Partner Center.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $wire, )+
                    $name::Other(value) => value,
                }
            }

            fn known(value: &str) -> Option<Self> {
                Self::KNOWN
                    .iter()
                    .find(|known| known.as_str().eq_ignore_ascii_case(value))
                    .cloned()
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = ::std::convert::Infallible;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Ok(Self::from(value))
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self::known(value).unwrap_or_else(|| $name::Other(value.to_owned()))
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self::known(&value).unwrap_or($name::Other(value))
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                <String as ::serde::Deserialize>::deserialize(deserializer).map(Self::from)
            }
        }
    };
}
