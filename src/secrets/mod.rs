//! The secrets file (`--secrets-out`): a write-ahead journal of every password pwdrift sets.
//!
//! # Why a journal
//!
//! A password that pwdrift generates exists nowhere else. If it were written down only after
//! Graph acknowledged it, a lost response (a 504 after the write landed, a dropped connection, a
//! crash, SIGKILL) would leave a user with a password nobody knows. So the order is:
//!
//! 1. [`SecretsFile::intent`]: the password is appended and the file is `fsync`ed, *before* the
//!    request that sets it is sent;
//! 2. the request is sent (a retry sends the same password, never a new one);
//! 3. [`SecretsFile::outcome`]: `applied`, `not_applied` or `unknown` is appended.
//!
//! A password that Microsoft generates (`resetPassword` without `newPassword`) exists only in the
//! 202 body: [`SecretsFile::generated`] records it the moment the body is read, before the
//! `Location` is handled or polled. [`SecretsFile::operation`] records the operation URL, so an
//! interrupted run's operation can be polled by the next one.
//!
//! Reading the file back ([`Journal`]) folds the records by sequence number: an entry with no
//! outcome, or with `unknown`, is *pending*, and the next run against the same file resolves it
//! (poll the operation, or read the user back) before it plans another reset for that user.
//!
//! # Format
//!
//! JSON lines, one record each, appended in order: `{"event": "intent" | "generated" |
//! "operation" | "outcome", "seq": N, "at": RFC 3339, ...}`. An intent carries `tenant`, `userId`,
//! `userPrincipalName`, `method` and, for a password pwdrift chose, `password`. A password is a
//! string, or, when the file is encrypted to age recipients (`--secrets-recipient`),
//! `{"age": "-----BEGIN AGE ENCRYPTED FILE-----..."}`: an armored age message that the standard
//! `age -d` reads and only the holder of the identity can open. Everything else stays readable by
//! pwdrift without the key, so an encrypted file can still be resumed. A torn last line (a crash
//! while appending) is ignored on reading, and cut off when the file is continued.
//!
//! # Who can read it
//!
//! A new file is created with `O_CREAT | O_EXCL | O_NOFOLLOW` and mode 0600: an existing file,
//! or a symlink planted in its place, is refused, so nobody else can have pre-created it.
//! Continuing an existing file (to resume an interrupted run) must be asked for
//! ([`OpenMode::Append`]); it is opened with `O_NOFOLLOW` and checked *after* opening, on the
//! open descriptor (`fstat`): a regular file, owned by the caller, mode 0600 or stricter, one
//! link. The file is locked (`flock`) for the run, so two applies cannot interleave in one file.
//!
//! # Layout
//!
//! `record` (the JSON-lines records and their types), `encrypt` (age recipients and armored
//! encryption of a password), `fs` (creating and opening the file safely: `O_EXCL`,
//! `O_NOFOLLOW`, the checks on the open descriptor, the lock), `file` ([`SecretsFile`], the
//! writer), `journal` ([`Journal`], reading a file back to resume, and [`read_passwords`]),
//! `view` (the helpdesk's view of `pwdrift secrets`: per user the last password and its
//! outcome, [`rows`]).

use std::path::PathBuf;

mod encrypt;
mod file;
mod fs;
mod journal;
mod record;
mod view;

pub use encrypt::{encrypt_armored, parse_recipient, EncryptError, RecipientError};
pub use file::SecretsFile;
pub use journal::{
    read_passwords, stored_passwords, Entry, Journal, ReadPasswordsError, StoredPassword,
};
pub use record::{Method, Outcome};
pub use view::{rows, Filter, Password, Row, Standing};

/// The largest secrets file read back (a journal of about a million entries).
pub const MAX_JOURNAL_BYTES: u64 = 256 * 1024 * 1024;

/// How to open the secrets file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create a new file; an existing path (file, symlink, anything) is refused.
    CreateNew,
    /// Continue an existing file (creating it if absent), after checking who owns it.
    Append,
}

/// Why the secrets file cannot be used. Never carries a password.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{path}: already exists; pass --secrets-append to continue it (and resume what an interrupted run left pending), or choose a new file")]
    Exists { path: PathBuf },
    #[error("{path}: {reason}")]
    Unsafe { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {reason}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: cannot encrypt to the age recipients: {reason}")]
    Encrypt { path: PathBuf, reason: String },
}
