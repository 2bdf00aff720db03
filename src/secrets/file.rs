//! [`SecretsFile`]: the secrets file open for a run, the write-ahead journal's writer. Each
//! record is appended whole and `fsync`ed before the call returns (an intent before its request
//! is sent); a partly written record is cut off.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};

use super::encrypt::encrypt_armored;
use super::fs::{check_opened, create_new, lock, open_existing, refine, sync_parent};
use super::journal::Journal;
use super::record::{Method, Outcome, Record, Stored};
use super::{OpenMode, SecretsError, MAX_JOURNAL_BYTES};

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
            .map_err(|e| SecretsError::Encrypt {
                path: self.path.clone(),
                reason: e.to_string(),
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::secrets::read_passwords;
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
        let recipient = crate::secrets::parse_recipient(&id.to_public().to_string()).unwrap();
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
}
