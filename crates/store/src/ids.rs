//! Ids of stored things as their own types, so that a tenant id cannot be passed where a
//! credential id is meant (both are strings in the database and on the wire).
//!
//! Each id reads as `&str` where a string is wanted (`Deref`), is stored as TEXT (sqlx
//! `transparent`) and serialises as a JSON string. Ids are made by [`crate::new_id`] with a
//! prefix (`tn_`, `cr_`); an id read from a request path is taken as given, and the store
//! answers `NotFound` when nothing has it.

use std::{borrow::Borrow, fmt, ops::Deref};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type, serde::Serialize,
            serde::Deserialize,
        )]
        #[sqlx(transparent)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_string())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, o: &str) -> bool {
                self.0 == o
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, o: &&str) -> bool {
                self.0 == *o
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
    };
}

id_type!(
    /// A tenant's id (`tn_…`); projects (child tenants) have one too.
    TenantId
);

id_type!(
    /// A stored credential's id (`cr_…`); not its TURN username.
    CredentialId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_as_strings_and_serialise_as_strings() {
        let t = TenantId::from("tn_1");
        assert_eq!(&*t, "tn_1");
        assert_eq!(t, "tn_1");
        assert_eq!(t.to_string(), "tn_1");
        assert_eq!(format!("{t:?}"), "\"tn_1\"");
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"tn_1\"");
        let c: CredentialId = serde_json::from_str("\"cr_2\"").unwrap();
        assert_eq!(c.as_str(), "cr_2");
    }
}
