//! One apply per tenant at a time on this machine: an exclusive `flock` on a file named by the
//! tenant id in a machine-wide directory (not the working directory: two checkouts of one
//! repository must see the same lock).
//!
//! The directory is `$PWDRIFT_LOCK_DIR`, else `$XDG_RUNTIME_DIR/pwdrift/locks`, else
//! `/tmp/pwdrift-locks-<uid>`; it is created 0700 and refused when it is a symlink, not a
//! directory, owned by another user (root excepted), or group- or world-writable without the
//! sticky bit (anyone could swap the lock files). Each lock file, `<tenant id>.lock`, is opened
//! `O_NOFOLLOW`, created 0600, and must be a regular file of ours. `apply` takes the lock of
//! every tenant it may write before anything is written (and before the entries an interrupted
//! run left pending are resolved), in the order of the tenant ids, so that two applies of
//! overlapping tenant sets cannot deadlock; the locks are held until the apply ends (closing
//! the files releases them, also when the process dies).
//!
//! The holder writes who it is into the file (pid, host, start time, working directory, and the
//! command line with flag names only: no value, so no secret); a run that cannot take the lock
//! names that holder, and waits for it up to `--lock-timeout` (polling) or fails at once.

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::EngineError;

/// How often a waiting run tries the lock again.
const POLL: Duration = Duration::from_millis(200);
/// Most of a holder's description that is read.
const MAX_HOLDER_BYTES: u64 = 4096;

/// The locks of one apply, released when dropped.
#[derive(Debug)]
pub struct TenantLocks {
    held: Vec<(PathBuf, File)>,
}

impl TenantLocks {
    /// No lock (the embedded sandbox: a tenant private to this process).
    pub fn none() -> Self {
        TenantLocks { held: Vec::new() }
    }

    /// The lock files held, in the order they were taken.
    pub fn paths(&self) -> Vec<&Path> {
        self.held.iter().map(|(p, _)| p.as_path()).collect()
    }
}

impl Drop for TenantLocks {
    fn drop(&mut self) {
        // the holder's description goes before the lock (closing the file releases it)
        for (_, f) in &mut self.held {
            let _ = f.set_len(0);
        }
    }
}

/// Why the locks could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("tenant {tenant} is being applied by another pwdrift run ({holder}); lock file {path}; {advice}", path = .path.display())]
    Held {
        tenant: String,
        holder: String,
        path: PathBuf,
        advice: String,
    },
    #[error("lock directory {path}: {reason}", path = .path.display())]
    Directory { path: PathBuf, reason: String },
    #[error("lock file {path}: {reason}", path = .path.display())]
    File { path: PathBuf, reason: String },
}

impl From<LockError> for EngineError {
    fn from(e: LockError) -> Self {
        EngineError::Refused(e.to_string())
    }
}

/// The machine-wide lock directory (see the module's comment), not yet checked.
pub fn lock_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PWDRIFT_LOCK_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("pwdrift").join("locks");
    }
    std::env::temp_dir().join(format!("pwdrift-locks-{}", uid()))
}

#[cfg(unix)]
fn uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(not(unix))]
fn uid() -> u32 {
    0
}

/// The lock file's name for a tenant: its id in lower case; any other character than
/// `[a-z0-9.-]` (a tenant known by name only) is hex-encoded.
pub fn file_name(tenant_id: &str) -> String {
    let id = tenant_id.to_ascii_lowercase();
    let plain = !id.is_empty()
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if plain {
        format!("{id}.lock")
    } else {
        format!("x-{}.lock", hex::encode(id.as_bytes()))
    }
}

/// Creates (0700) and checks the lock directory.
#[cfg(unix)]
pub fn prepare_dir(dir: &Path) -> Result<(), LockError> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    let bad = |reason: String| LockError::Directory {
        path: dir.to_owned(),
        reason,
    };
    if let Err(e) = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        return Err(bad(format!("cannot create it: {e}")));
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| bad(e.to_string()))?;
    if meta.file_type().is_symlink() {
        return Err(bad("is a symbolic link; name the directory itself".into()));
    }
    if !meta.is_dir() {
        return Err(bad("is not a directory".into()));
    }
    let me = uid();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(bad(format!(
            "is owned by uid {}, not by you (uid {me}) or root: its owner could forge or remove the locks",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(bad(format!(
            "has mode {mode:o}: others can replace its lock files; chmod 700 it (or 1777 for a directory shared by several users)"
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn prepare_dir(dir: &Path) -> Result<(), LockError> {
    std::fs::create_dir_all(dir).map_err(|e| LockError::Directory {
        path: dir.to_owned(),
        reason: format!("cannot create it: {e}"),
    })
}

/// Opens (creating 0600, never through a symlink) one lock file, a regular file of ours.
#[cfg(unix)]
fn open_lock_file(path: &Path) -> Result<File, LockError> {
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    let bad = |reason: String| LockError::File {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => bad("is a symbolic link; refusing to follow it".into()),
            _ => bad(format!("cannot open it: {e}")),
        })?;
    let meta = file.metadata().map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("is not a regular file".into()));
    }
    if meta.uid() != uid() {
        return Err(bad(format!(
            "is owned by uid {}, not by you (uid {})",
            meta.uid(),
            uid()
        )));
    }
    Ok(file)
}

#[cfg(not(unix))]
fn open_lock_file(path: &Path) -> Result<File, LockError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| LockError::File {
            path: path.to_owned(),
            reason: format!("cannot open it: {e}"),
        })
}

/// Tries the exclusive lock without waiting: `Ok(false)` when another holds it.
#[cfg(unix)]
fn try_lock(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(e),
    }
}

#[cfg(not(unix))]
fn try_lock(_file: &File) -> std::io::Result<bool> {
    Ok(true)
}

/// Who this run is, as written into the lock files it holds.
pub fn describe_self(started: chrono::DateTime<chrono::Utc>) -> String {
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|_| "?".into());
    format!(
        "pid {}\nhost {}\nstarted {}\ncwd {cwd}\ncommand {}\n",
        std::process::id(),
        hostname(),
        started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        command_line(std::env::args())
    )
}

/// The command line with flag names only: every value (a flag's or a positional argument's) is
/// left out, so no secret given on it is written anywhere.
pub fn command_line(args: impl IntoIterator<Item = String>) -> String {
    let mut out = Vec::new();
    for (i, a) in args.into_iter().enumerate() {
        if i == 0 {
            let name = Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(name);
        } else if a.starts_with('-') {
            out.push(a.split('=').next().unwrap_or_default().to_owned());
        } else if i == 1 {
            // the subcommand
            out.push(a);
        }
    }
    out.join(" ")
}

#[cfg(unix)]
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "?".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(not(unix))]
fn hostname() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_else(|_| "?".into())
}

/// What a holder that has taken the lock (or the lease) but not yet written who it is shows as.
pub(super) const HOLDER_UNKNOWN: &str = "holder unknown: it has not written who it is yet";

/// A holder's description (the lines it wrote: pid, host, start, cwd, command) as one line,
/// through the one display escaping; [`HOLDER_UNKNOWN`] when it wrote nothing. The lease
/// ([`super::lease`]) shows its blob's holder metadata the same way.
pub(super) fn holder_line(text: &str) -> String {
    let line: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| crate::escape::value(l).into_owned())
        .collect();
    if line.is_empty() {
        HOLDER_UNKNOWN.into()
    } else {
        line.join(", ")
    }
}

/// The holder's description in the lock file, as one line ([`holder_line`]).
fn read_holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = std::io::Read::take(&*file, MAX_HOLDER_BYTES).read_to_string(&mut text);
    holder_line(&text)
}

/// Why a held lock (or lease) is not waited for any longer: with no `--lock-timeout`, how to
/// wait; else that it was waited for. `what`: "lock" or "lease".
pub(super) fn held_advice(timeout: Duration, what: &str) -> String {
    if timeout.is_zero() {
        "nothing was written; wait for it to end, or pass --lock-timeout (e.g. 10m) to wait".into()
    } else {
        format!(
            "it still held the {what} after --lock-timeout {}; nothing was written",
            shown(timeout)
        )
    }
}

/// [`read_holder`], waiting up to a second for a holder that has taken the lock but not yet
/// written who it is (the file is truncated and written right after the lock is taken): the
/// message then names it rather than "holder unknown".
async fn holder_of(file: &mut File) -> String {
    const UNKNOWN_FOR_AT_MOST: Duration = Duration::from_secs(1);
    let until = tokio::time::Instant::now() + UNKNOWN_FOR_AT_MOST;
    loop {
        let holder = read_holder(file);
        if holder != HOLDER_UNKNOWN || tokio::time::Instant::now() >= until {
            return holder;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// "10 s", "2 min" (the lease's messages say it the same way).
pub(super) fn shown(d: Duration) -> String {
    if d.subsec_millis() != 0 {
        return format!("{} ms", d.as_millis());
    }
    match d.as_secs() {
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Takes the lock of every tenant in `tenant_ids` (sorted and deduplicated first) in the
/// machine-wide directory ([`lock_dir`]), waiting for each up to `timeout` in all (zero: not at
/// all), and writes `me` into each. `waiting` is told once per tenant whose lock it waits for.
pub async fn acquire(
    tenant_ids: &[String],
    timeout: Duration,
    me: &str,
    waiting: &(dyn Fn(&str) + Sync),
) -> Result<TenantLocks, LockError> {
    acquire_in(&lock_dir(), tenant_ids, timeout, me, waiting).await
}

/// [`acquire`] in the directory `dir`.
pub async fn acquire_in(
    dir: &Path,
    tenant_ids: &[String],
    timeout: Duration,
    me: &str,
    waiting: &(dyn Fn(&str) + Sync),
) -> Result<TenantLocks, LockError> {
    prepare_dir(dir)?;
    let mut ids: Vec<String> = tenant_ids.iter().map(|t| t.to_ascii_lowercase()).collect();
    ids.sort();
    ids.dedup();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut locks = TenantLocks::none();
    for id in ids {
        let path = dir.join(file_name(&id));
        let mut file = open_lock_file(&path)?;
        let mut announced = false;
        loop {
            let got = try_lock(&file).map_err(|e| LockError::File {
                path: path.clone(),
                reason: format!("cannot lock it: {e}"),
            })?;
            if got {
                break;
            }
            let holder = holder_of(&mut file).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(LockError::Held {
                    tenant: id,
                    holder,
                    path,
                    advice: held_advice(timeout, "lock"),
                });
            }
            if !announced {
                waiting(&format!(
                    "tenant {id} is being applied by another pwdrift run ({holder}); waiting up to {} for it (--lock-timeout)",
                    shown(timeout)
                ));
                announced = true;
            }
            tokio::time::sleep(POLL.min(deadline - tokio::time::Instant::now())).await;
        }
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(me.as_bytes()))
            .and_then(|()| file.flush());
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), "cannot write who holds the lock: {e}");
        }
        locks.held.push((path, file));
    }
    Ok(locks)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn lock_file_names_are_the_tenant_id_or_hex() {
        assert_eq!(
            file_name("7B3E1A52-9C4D-4F1E-A2B8-3D5C6E7F8A90"),
            "7b3e1a52-9c4d-4f1e-a2b8-3d5c6e7f8a90.lock"
        );
        assert_eq!(
            file_name("contoso.onmicrosoft.com"),
            "contoso.onmicrosoft.com.lock"
        );
        assert_eq!(file_name("../x"), "x-2e2e2f78.lock");
        assert_eq!(file_name(""), "x-.lock");
    }

    #[test]
    fn the_command_line_keeps_flag_names_only() {
        let args = [
            "/usr/bin/pwdrift",
            "apply",
            "desired/",
            "--secrets-out",
            "s.jsonl",
            "--graph-url=https://u:secret@h/",
            "--auto-approve",
        ]
        .map(String::from);
        assert_eq!(
            command_line(args),
            "pwdrift apply --secrets-out --graph-url --auto-approve"
        );
    }

    #[test]
    fn an_unsafe_directory_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let locks = dir.path().join("locks");
        prepare_dir(&locks).unwrap();
        let mode = std::fs::metadata(&locks).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&locks, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = prepare_dir(&locks).unwrap_err().to_string();
        assert!(e.contains("has mode 777"), "{e}");
        std::fs::set_permissions(&locks, std::fs::Permissions::from_mode(0o1777)).unwrap();
        prepare_dir(&locks).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&locks, &link).unwrap();
        let e = prepare_dir(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        // a lock file swapped for a symlink is not followed
        std::fs::set_permissions(&locks, std::fs::Permissions::from_mode(0o700)).unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        let lf = locks.join("t.lock");
        std::os::unix::fs::symlink(&target, &lf).unwrap();
        let e = open_lock_file(&lf).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
    }

    #[tokio::test]
    async fn a_held_lock_names_its_holder_and_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let acquire = |ids: &[String], t: Duration, me: &'static str| {
            let (dir, ids) = (dir.path().to_owned(), ids.to_vec());
            async move { acquire_in(&dir, &ids, t, me, &|_| {}).await }
        };
        let ids = vec!["B".to_owned(), "a".to_owned()];
        let first = acquire(&ids, Duration::ZERO, "pid 1\nhost h\n")
            .await
            .unwrap();
        assert_eq!(
            first.paths(),
            [dir.path().join("a.lock"), dir.path().join("b.lock")]
        );
        let e = acquire(&["b".to_owned()], Duration::ZERO, "pid 2\n")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tenant b is being applied by another pwdrift run (pid 1, host h)"),
            "{e}"
        );
        assert!(e.contains("--lock-timeout"), "{e}");
        let t0 = std::time::Instant::now();
        let e = acquire(&["a".to_owned()], Duration::from_millis(500), "pid 2\n")
            .await
            .unwrap_err()
            .to_string();
        assert!(t0.elapsed() >= Duration::from_millis(500), "it waited");
        assert!(e.contains("after --lock-timeout 500 ms"), "{e}");
        let waiter = tokio::spawn(acquire(
            &["a".to_owned()],
            Duration::from_secs(10),
            "pid 3\n",
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(first);
        let second = waiter.await.unwrap().unwrap();
        let text = std::fs::read_to_string(dir.path().join("a.lock")).unwrap();
        assert_eq!(text, "pid 3\n");
        drop(second);
    }
}
