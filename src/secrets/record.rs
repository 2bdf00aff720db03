//! The records of the secrets file, one JSON line each (`intent`, `generated`, `operation`,
//! `outcome`; see the format in the module documentation of [`crate::secrets`]), and the types
//! they carry: how a password was set ([`Method`]), what became of it ([`Outcome`]), a password
//! as stored (plain or an armored age message).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How a password was (to be) set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// `PATCH /users/{id}` with `passwordProfile.password`
    Patch,
    /// `POST .../resetPassword` (with `newPassword`, or system-generated)
    ResetPasswordApi,
}

/// What became of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The user has this password (acknowledged, or seen on read-back).
    Applied,
    /// The write did not happen (refused, or read-back shows no change).
    NotApplied,
    /// Could not be told: resolved by the next run against this file.
    Unknown,
    /// A later entry for the same user replaced this one (a system-generated password whose
    /// 202 was lost, so a new reset was sent and its password recorded).
    Superseded,
    /// The reset took effect, but its success answer carried no password where one was
    /// expected (a system-generated password: a 202 with an empty body, without `newPassword`,
    /// or not JSON): the user has a password nobody knows. Settled (not pending): only a new
    /// reset gives the user a known password. Journals written before this outcome existed read
    /// as before.
    PasswordUnknown,
}

/// A password as stored: plain, or an armored age message.
#[derive(Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum Stored {
    Plain(String),
    Age { age: String },
}

/// One line of the secrets file.
#[derive(Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(super) enum Record {
    Intent {
        seq: u64,
        at: DateTime<Utc>,
        tenant: String,
        #[serde(rename = "userId")]
        user_id: String,
        #[serde(rename = "userPrincipalName")]
        user_principal_name: String,
        method: Method,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<Stored>,
    },
    Generated {
        seq: u64,
        at: DateTime<Utc>,
        password: Stored,
    },
    Operation {
        seq: u64,
        at: DateTime<Utc>,
        location: String,
    },
    Outcome {
        seq: u64,
        at: DateTime<Utc>,
        outcome: Outcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
}
