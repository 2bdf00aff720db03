//! Reading a secrets file back: [`Journal`] folds the records by sequence number into one
//! [`Entry`] per password write (an entry without an outcome, or with `unknown`, is pending and
//! resolved by the next run), and [`read_passwords`] opens the recorded passwords.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::record::{Method, Outcome, Record, Stored};
use super::SecretsError;

/// One password write, folded from its records.
#[derive(Clone)]
pub struct Entry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub tenant: String,
    pub user_id: String,
    pub user_principal_name: String,
    pub method: Method,
    /// A password is recorded (by pwdrift before sending, or from Microsoft's 202 body).
    pub has_password: bool,
    /// The resetPassword operation's URL, when one was returned.
    pub operation: Option<String>,
    /// `None` when no outcome was recorded (the run was interrupted).
    pub outcome: Option<Outcome>,
    /// The last outcome's `detail` (never a secret) and when it was recorded.
    pub detail: Option<String>,
    pub outcome_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("seq", &self.seq)
            .field("tenant", &self.tenant)
            .field("user", &self.user_principal_name)
            .field("method", &self.method)
            .field("operation", &self.operation.is_some())
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl Entry {
    /// Nothing says what became of this write: the next run must find out before it plans
    /// another reset for the user.
    pub fn is_pending(&self) -> bool {
        matches!(self.outcome, None | Some(Outcome::Unknown))
    }
}

/// The entries of a secrets file, in sequence order.
#[derive(Debug, Default)]
pub struct Journal {
    entries: BTreeMap<u64, Entry>,
}

impl Journal {
    /// Parses a journal. A torn last line (no newline: a crash while appending) is ignored; any
    /// other unreadable line is an error naming it.
    pub fn parse(path: &Path, text: &str) -> Result<Journal, SecretsError> {
        let mut journal = Journal::default();
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        for (i, line) in complete.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let record: Record = serde_json::from_str(line).map_err(|e| SecretsError::Corrupt {
                path: path.to_owned(),
                line: i + 1,
                // serde's message names the field and position, never the value
                reason: format!("not a pwdrift secrets record ({})", e.classify_msg()),
            })?;
            journal.apply(record);
        }
        Ok(journal)
    }

    fn apply(&mut self, record: Record) {
        match record {
            Record::Intent {
                seq,
                at,
                tenant,
                user_id,
                user_principal_name,
                method,
                password,
            } => {
                self.entries.insert(
                    seq,
                    Entry {
                        seq,
                        at,
                        tenant,
                        user_id,
                        user_principal_name,
                        method,
                        has_password: password.is_some(),
                        operation: None,
                        outcome: None,
                        detail: None,
                        outcome_at: None,
                    },
                );
            }
            Record::Generated { seq, .. } => {
                if let Some(e) = self.entries.get_mut(&seq) {
                    e.has_password = true;
                }
            }
            Record::Operation { seq, location, .. } => {
                if let Some(e) = self.entries.get_mut(&seq) {
                    e.operation = Some(location);
                }
            }
            Record::Outcome {
                seq,
                at,
                outcome,
                detail,
            } => {
                if let Some(e) = self.entries.get_mut(&seq) {
                    e.outcome = Some(outcome);
                    e.detail = detail;
                    e.outcome_at = Some(at);
                }
            }
        }
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Entries whose outcome is not known.
    pub fn pending(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values().filter(|e| e.is_pending())
    }

    pub(super) fn next_seq(&self) -> u64 {
        self.entries.keys().next_back().map_or(1, |s| s + 1)
    }
}

trait ErrorClass {
    fn classify_msg(&self) -> &'static str;
}

impl ErrorClass for serde_json::Error {
    fn classify_msg(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Data => "unexpected fields or types",
            serde_json::error::Category::Eof => "truncated JSON",
        }
    }
}

/// Why the recorded passwords cannot be read. Never carries a password.
#[derive(Debug, thiserror::Error)]
pub enum ReadPasswordsError {
    #[error("the password is encrypted: an identity is needed")]
    NoIdentity,
    #[error("{0}")]
    Decrypt(#[from] age::DecryptError),
    #[error("{0}")]
    NotUtf8(#[from] std::string::FromUtf8Error),
}

/// Reads every recorded password of a journal, decrypting with `identity` when they are
/// encrypted: `(seq, user principal name, password)`, in order. For tests and for the helpdesk
/// tooling; pwdrift itself never needs to read a password back.
pub fn read_passwords(
    text: &str,
    identity: Option<&age::x25519::Identity>,
) -> Result<Vec<(u64, String, SecretString)>, ReadPasswordsError> {
    let mut users: BTreeMap<u64, String> = BTreeMap::new();
    let mut out = Vec::new();
    let open = |stored: Stored| -> Result<SecretString, ReadPasswordsError> {
        match stored {
            Stored::Plain(p) => Ok(SecretString::from(p)),
            Stored::Age { age } => {
                let id = identity.ok_or(ReadPasswordsError::NoIdentity)?;
                let plain = age::decrypt(id, age.as_bytes())?;
                Ok(String::from_utf8(plain).map(SecretString::from)?)
            }
        }
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(record) = serde_json::from_str::<Record>(line) else {
            continue;
        };
        match record {
            Record::Intent {
                seq,
                user_principal_name,
                password,
                ..
            } => {
                if let Some(p) = password {
                    out.push((seq, user_principal_name.clone(), open(p)?));
                }
                users.insert(seq, user_principal_name);
            }
            Record::Generated { seq, password, .. } => {
                let upn = users.get(&seq).cloned().unwrap_or_default();
                out.push((seq, upn, open(password)?));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A recorded password as the file holds it: plain, or sealed to age recipients. Opened only
/// when asked for by name (`pwdrift secrets`); `Debug` never shows it.
#[derive(Clone)]
pub enum StoredPassword {
    Plain(SecretString),
    /// an armored age message
    Encrypted(String),
}

impl std::fmt::Debug for StoredPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoredPassword::Plain(_) => "Plain(..)",
            StoredPassword::Encrypted(_) => "Encrypted(..)",
        })
    }
}

impl StoredPassword {
    /// The password, decrypted with the first of `identities` that opens it. `Ok(None)`: it is
    /// encrypted and no identity was given; an identity that opens none of it is an error.
    pub fn open(
        &self,
        identities: &[age::x25519::Identity],
    ) -> Result<Option<SecretString>, ReadPasswordsError> {
        match self {
            StoredPassword::Plain(p) => Ok(Some(p.clone())),
            StoredPassword::Encrypted(_) if identities.is_empty() => Ok(None),
            StoredPassword::Encrypted(armored) => {
                let mut last = None;
                for id in identities {
                    match age::decrypt(id, armored.as_bytes()) {
                        Ok(plain) => {
                            return Ok(Some(String::from_utf8(plain).map(SecretString::from)?))
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(ReadPasswordsError::Decrypt(
                    last.unwrap_or(age::DecryptError::NoMatchingKeys),
                ))
            }
        }
    }
}

/// The recorded password of every entry of a journal that has one, by sequence number (a
/// `generated` record's for a system-generated password, else the intent's). Lines that are not
/// records were already refused by [`Journal::parse`]; here they are skipped.
pub fn stored_passwords(text: &str) -> BTreeMap<u64, StoredPassword> {
    let mut out = BTreeMap::new();
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    for line in complete.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(record) = serde_json::from_str::<Record>(line) else {
            continue;
        };
        let (seq, stored) = match record {
            Record::Intent {
                seq,
                password: Some(p),
                ..
            } => (seq, p),
            Record::Generated { seq, password, .. } => (seq, password),
            _ => continue,
        };
        out.insert(
            seq,
            match stored {
                Stored::Plain(p) => StoredPassword::Plain(SecretString::from(p)),
                Stored::Age { age } => StoredPassword::Encrypted(age),
            },
        );
    }
    out
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_line_is_named_without_its_content() {
        let path = Path::new("s.jsonl");
        let err =
            Journal::parse(path, "{\"event\":\"nope\",\"password\":\"Leak-1!aa\"}\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 1"), "{msg}");
        assert!(!msg.contains("Leak-1!aa"), "{msg}");
    }
}
