//! [`UserKey`]: how a user is looked up (object id, `userPrincipalName` or
//! `onPremisesSecurityIdentifier`), and how a key is named in messages. Shared by the endpoint
//! catalogue (`api`) and the pure parsers (`parse`), below both.

use std::fmt;

/// How a user is looked up.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UserKey {
    /// object id
    Id(String),
    /// userPrincipalName
    Upn(String),
    /// onPremisesSecurityIdentifier
    Sid(String),
}

impl fmt::Display for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserKey::Id(s) => write!(f, "user id {s}"),
            UserKey::Upn(s) => write!(f, "user {s}"),
            UserKey::Sid(s) => write!(f, "user with onPremisesSecurityIdentifier {s}"),
        }
    }
}
