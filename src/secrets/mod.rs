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

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

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
}

/// A password as stored: plain, or an armored age message.
#[derive(Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum Stored {
    Plain(String),
    Age { age: String },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Record {
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
            Record::Outcome { seq, outcome, .. } => {
                if let Some(e) = self.entries.get_mut(&seq) {
                    e.outcome = Some(outcome);
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

    fn next_seq(&self) -> u64 {
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

/// The open secrets file, locked for this run.
pub struct SecretsFile {
    path: PathBuf,
    file: File,
    recipients: Vec<age::x25519::Recipient>,
    next_seq: u64,
    /// Passwords recorded by this run (intents with a password, and generated ones).
    recorded: usize,
}

impl std::fmt::Debug for SecretsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsFile")
            .field("path", &self.path)
            .field("encrypted", &!self.recipients.is_empty())
            .finish_non_exhaustive()
    }
}

impl SecretsFile {
    /// Opens the secrets file as `mode` says (see the module documentation for the checks) and
    /// returns it with the journal it already holds (empty for a new file). Passwords are
    /// encrypted to `recipients` when there are any.
    pub fn open(
        path: &Path,
        mode: OpenMode,
        recipients: Vec<age::x25519::Recipient>,
    ) -> Result<(SecretsFile, Journal), SecretsError> {
        let io = |source| SecretsError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = match mode {
            OpenMode::CreateNew => {
                create_new(path)
                    .inspect(|_| sync_parent(path))
                    .map_err(|e| {
                        if e.kind() == std::io::ErrorKind::AlreadyExists {
                            SecretsError::Exists {
                                path: path.to_owned(),
                            }
                        } else {
                            io(e)
                        }
                    })?
            }
            OpenMode::Append => match create_new(path).inspect(|_| sync_parent(path)) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    open_existing(path).map_err(|e| refine(path, e))?
                }
                Err(e) => return Err(io(e)),
            },
        };
        check_opened(path, &file)?;
        lock(path, &file)?;
        let mut text = String::new();
        (&mut file)
            .take(MAX_JOURNAL_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
        if text.len() as u64 > MAX_JOURNAL_BYTES {
            return Err(SecretsError::Unsafe {
                path: path.to_owned(),
                reason: format!(
                    "larger than {} MiB; start a new file",
                    MAX_JOURNAL_BYTES >> 20
                ),
            });
        }
        if !text.is_empty() && !text.ends_with('\n') {
            // A torn last record (a crash while appending): cut it off, so that the next record
            // starts on its own line and the file stays a valid journal.
            let complete = text.rfind('\n').map_or(0, |i| i + 1);
            file.set_len(complete as u64).map_err(io)?;
            text.truncate(complete);
        }
        let journal = Journal::parse(path, &text)?;
        let next_seq = journal.next_seq();
        Ok((
            SecretsFile {
                path: path.to_owned(),
                file,
                recipients,
                next_seq,
                recorded: 0,
            },
            journal,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many passwords this run recorded (so far).
    pub fn recorded(&self) -> usize {
        self.recorded
    }

    /// Whether passwords are encrypted to age recipients.
    pub fn encrypted(&self) -> bool {
        !self.recipients.is_empty()
    }

    /// Records, durably, that a password is about to be set; returns the entry's sequence
    /// number. Call it before sending the request. `password` is `None` when Microsoft will
    /// generate it (then [`SecretsFile::generated`] follows) or when the password came from the
    /// operator (an environment variable or a file) and need not be kept.
    pub fn intent(
        &mut self,
        tenant: &str,
        user_id: &str,
        user_principal_name: &str,
        method: Method,
        password: Option<&SecretString>,
    ) -> Result<u64, SecretsError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let password = password.map(|p| self.store(p)).transpose()?;
        let counts = usize::from(password.is_some());
        self.append(&Record::Intent {
            seq,
            at: Utc::now(),
            tenant: tenant.to_owned(),
            user_id: user_id.to_owned(),
            user_principal_name: user_principal_name.to_owned(),
            method,
            password,
        })?;
        self.recorded += counts;
        Ok(seq)
    }

    /// Records, durably, a password Microsoft generated (from the resetPassword 202 body).
    pub fn generated(&mut self, seq: u64, password: &SecretString) -> Result<(), SecretsError> {
        let password = self.store(password)?;
        self.append(&Record::Generated {
            seq,
            at: Utc::now(),
            password,
        })?;
        self.recorded += 1;
        Ok(())
    }

    /// Records the resetPassword operation's URL, so another run can poll it.
    pub fn operation(&mut self, seq: u64, location: &str) -> Result<(), SecretsError> {
        self.append(&Record::Operation {
            seq,
            at: Utc::now(),
            location: location.to_owned(),
        })
    }

    /// Records what became of the write `seq`. `detail` must not hold a secret.
    pub fn outcome(
        &mut self,
        seq: u64,
        outcome: Outcome,
        detail: Option<&str>,
    ) -> Result<(), SecretsError> {
        self.append(&Record::Outcome {
            seq,
            at: Utc::now(),
            outcome,
            detail: detail.map(str::to_owned),
        })
    }

    fn store(&self, password: &SecretString) -> Result<Stored, SecretsError> {
        if self.recipients.is_empty() {
            return Ok(Stored::Plain(password.expose_secret().to_owned()));
        }
        encrypt_armored(&self.recipients, password.expose_secret().as_bytes())
            .map(|age| Stored::Age { age })
            .map_err(|reason| SecretsError::Encrypt {
                path: self.path.clone(),
                reason,
            })
    }

    /// One line, written whole and flushed to the disk before returning.
    fn append(&mut self, record: &Record) -> Result<(), SecretsError> {
        let mut line = serde_json::to_vec(record).expect("records serialise");
        line.push(b'\n');
        let before = self.file.metadata().map(|m| m.len());
        self.file
            .write_all(&line)
            .and_then(|_| self.file.sync_data())
            .inspect_err(|_| {
                // A partly written record would glue the next one onto it, and a corrupt line
                // in the middle makes the file unreadable for resuming: cut it off.
                if let Ok(len) = before {
                    let _ = self.file.set_len(len);
                }
            })
            .map_err(|source| SecretsError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

/// Encrypts `plaintext` to every recipient as one armored age message.
pub fn encrypt_armored(
    recipients: &[age::x25519::Recipient],
    plaintext: &[u8],
) -> Result<String, String> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| e.to_string())?;
    let mut writer = encryptor.wrap_output(armor).map_err(|e| e.to_string())?;
    writer.write_all(plaintext).map_err(|e| e.to_string())?;
    writer
        .finish()
        .and_then(|armor| armor.finish())
        .map_err(|e| e.to_string())?;
    String::from_utf8(out).map_err(|e| e.to_string())
}

/// Parses an age recipient (`age1...`), as `--secrets-recipient` takes it.
pub fn parse_recipient(s: &str) -> Result<age::x25519::Recipient, String> {
    s.trim()
        .parse::<age::x25519::Recipient>()
        .map_err(|e| format!("not an age X25519 recipient (age1...): {e}"))
}

#[cfg(unix)]
fn create_new(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true) // O_CREAT | O_EXCL: never an existing file or a symlink's target
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(not(unix))]
fn create_new(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn open_existing(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_existing(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .open(path)
}

/// Makes a new file's directory entry durable (so that a crash right after creation cannot lose
/// the file with the records fsync'd into it). Best effort: some filesystems refuse it.
fn sync_parent(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
}

/// `ELOOP` from `O_NOFOLLOW` means the path is a symlink: say so.
fn refine(path: &Path, e: std::io::Error) -> SecretsError {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ELOOP) {
        return SecretsError::Unsafe {
            path: path.to_owned(),
            reason: "is a symbolic link; refusing to follow it".into(),
        };
    }
    SecretsError::Io {
        path: path.to_owned(),
        source: e,
    }
}

/// Checks the open descriptor (not the path, which could have been swapped since).
#[cfg(unix)]
fn check_opened(path: &Path, file: &File) -> Result<(), SecretsError> {
    use std::os::unix::fs::MetadataExt;
    let unsafe_ = |reason: String| SecretsError::Unsafe {
        path: path.to_owned(),
        reason,
    };
    let meta = file.metadata().map_err(|source| SecretsError::Io {
        path: path.to_owned(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(unsafe_("is not a regular file".into()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(unsafe_(format!(
            "is owned by uid {}, not by you (uid {me}); refusing to write passwords into it",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(unsafe_(format!(
            "has mode {mode:o}: others could read it; chmod 600 it or choose a new file"
        )));
    }
    if meta.nlink() != 1 {
        return Err(unsafe_(format!(
            "has {} hard links: another name could expose it; choose a new file",
            meta.nlink()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_opened(_path: &Path, _file: &File) -> Result<(), SecretsError> {
    Ok(())
}

/// An exclusive advisory lock for the run: two applies never interleave in one journal.
#[cfg(unix)]
fn lock(path: &Path, file: &File) -> Result<(), SecretsError> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(SecretsError::Unsafe {
            path: path.to_owned(),
            reason: "is in use by another pwdrift run (locked)".into(),
        })
    }
}

#[cfg(not(unix))]
fn lock(_path: &Path, _file: &File) -> Result<(), SecretsError> {
    Ok(())
}

/// Reads every recorded password of a journal, decrypting with `identity` when they are
/// encrypted: `(seq, user principal name, password)`, in order. For tests and for the helpdesk
/// tooling; pwdrift itself never needs to read a password back.
pub fn read_passwords(
    text: &str,
    identity: Option<&age::x25519::Identity>,
) -> Result<Vec<(u64, String, SecretString)>, String> {
    let mut users: BTreeMap<u64, String> = BTreeMap::new();
    let mut out = Vec::new();
    let open = |stored: Stored| -> Result<SecretString, String> {
        match stored {
            Stored::Plain(p) => Ok(SecretString::from(p)),
            Stored::Age { age } => {
                let id = identity.ok_or("the password is encrypted: an identity is needed")?;
                let plain = age::decrypt(id, age.as_bytes()).map_err(|e| e.to_string())?;
                String::from_utf8(plain)
                    .map(SecretString::from)
                    .map_err(|e| e.to_string())
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn pw(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn a_new_file_is_0600_and_holds_intents_and_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.jsonl");
        let (mut f, journal) = SecretsFile::open(&path, OpenMode::CreateNew, vec![]).unwrap();
        assert_eq!(journal.entries().count(), 0);
        let seq = f
            .intent("t", "id-1", "a@x", Method::Patch, Some(&pw("Aa1!aaaa")))
            .unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // written before the outcome: an interrupted run leaves it pending
        let journal = Journal::parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
        let pending: Vec<_> = journal.pending().collect();
        assert_eq!(pending.len(), 1);
        assert!(pending[0].has_password);
        f.outcome(seq, Outcome::Applied, None).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let journal = Journal::parse(&path, &text).unwrap();
        assert_eq!(journal.pending().count(), 0);
        let pws = read_passwords(&text, None).unwrap();
        assert_eq!(pws.len(), 1);
        assert_eq!(pws[0].2.expose_secret(), "Aa1!aaaa");
    }

    #[test]
    fn an_existing_file_or_symlink_is_refused_without_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.jsonl");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = SecretsFile::open(&path, OpenMode::CreateNew, vec![]).unwrap_err();
        assert!(matches!(err, SecretsError::Exists { .. }), "{err}");

        let target = dir.path().join("elsewhere");
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = SecretsFile::open(&link, OpenMode::CreateNew, vec![]).unwrap_err();
        assert!(matches!(err, SecretsError::Exists { .. }), "{err}");
        assert!(!target.exists(), "the symlink's target was not created");
        let err = SecretsFile::open(&link, OpenMode::Append, vec![]).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(!target.exists());
    }

    #[test]
    fn append_checks_the_open_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.jsonl");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SecretsFile::open(&path, OpenMode::Append, vec![]).unwrap_err();
        assert!(err.to_string().contains("mode 644"), "{err}");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let twin = dir.path().join("twin");
        std::fs::hard_link(&path, &twin).unwrap();
        let err = SecretsFile::open(&path, OpenMode::Append, vec![]).unwrap_err();
        assert!(err.to_string().contains("hard links"), "{err}");
        std::fs::remove_file(&twin).unwrap();

        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = SecretsFile::open(&fifo, OpenMode::Append, vec![]).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");

        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            // another user's file (as root, chown it to nobody)
            let theirs = dir.path().join("theirs.jsonl");
            std::fs::write(&theirs, "").unwrap();
            std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            let err = SecretsFile::open(&theirs, OpenMode::Append, vec![]).unwrap_err();
            assert!(err.to_string().contains("owned by uid 65534"), "{err}");
        }

        let (_f, _) = SecretsFile::open(&path, OpenMode::Append, vec![]).unwrap();
        let err = SecretsFile::open(&path, OpenMode::Append, vec![]).unwrap_err();
        assert!(err.to_string().contains("locked"), "{err}");
    }

    #[test]
    fn append_resumes_sequence_and_pending_entries_and_survives_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.jsonl");
        {
            let (mut f, _) = SecretsFile::open(&path, OpenMode::CreateNew, vec![]).unwrap();
            let a = f
                .intent("t", "1", "a@x", Method::Patch, Some(&pw("Aa1!aaaa")))
                .unwrap();
            f.outcome(a, Outcome::Applied, None).unwrap();
            let b = f
                .intent("t", "2", "b@x", Method::ResetPasswordApi, None)
                .unwrap();
            f.generated(b, &pw("Cuyo5459")).unwrap();
            f.operation(b, "https://graph/op?aadgdc=1").unwrap();
        }
        // a crash in the middle of the next append
        let mut raw = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        raw.write_all(b"{\"event\":\"outcome\",\"seq\":2,\"at\":\"20")
            .unwrap();
        drop(raw);

        let (mut f, journal) = SecretsFile::open(&path, OpenMode::Append, vec![]).unwrap();
        let pending: Vec<_> = journal.pending().collect();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].user_principal_name, "b@x");
        assert_eq!(
            pending[0].operation.as_deref(),
            Some("https://graph/op?aadgdc=1")
        );
        assert!(pending[0].has_password);
        let c = f.intent("t", "3", "c@x", Method::Patch, None).unwrap();
        assert_eq!(c, 3, "sequence numbers continue");
        f.outcome(2, Outcome::Applied, Some("operation succeeded"))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let journal = Journal::parse(&path, &text).unwrap();
        assert_eq!(
            journal.pending().map(|e| e.seq).collect::<Vec<_>>(),
            vec![3]
        );
        let pws = read_passwords(&text, None).unwrap();
        let names: Vec<_> = pws.iter().map(|(_, u, _)| u.as_str()).collect();
        assert_eq!(names, ["a@x", "b@x"]);
    }

    #[test]
    fn encrypted_passwords_open_only_with_the_identity_and_metadata_stays_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.jsonl");
        let id = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let recipient = parse_recipient(&id.to_public().to_string()).unwrap();
        let (mut f, _) = SecretsFile::open(&path, OpenMode::CreateNew, vec![recipient]).unwrap();
        f.intent(
            "t",
            "1",
            "a@x",
            Method::Patch,
            Some(&pw("Secret-Canary-1!")),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("Secret-Canary-1!"));
        assert!(text.contains("BEGIN AGE ENCRYPTED FILE"));
        assert!(text.contains("a@x"), "metadata readable without the key");
        assert_eq!(Journal::parse(&path, &text).unwrap().pending().count(), 1);
        let pws = read_passwords(&text, Some(&id)).unwrap();
        assert_eq!(pws[0].2.expose_secret(), "Secret-Canary-1!");
        assert!(read_passwords(&text, Some(&other)).is_err());
        assert!(read_passwords(&text, None).is_err());
    }

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
