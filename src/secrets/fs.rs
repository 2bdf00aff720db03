//! Creating and opening the secrets file safely: a new file `O_CREAT | O_EXCL | O_NOFOLLOW`
//! mode 0600 (its directory entry synced), an existing one `O_NOFOLLOW` and checked on the open
//! descriptor (`fstat`: a regular file, owned by the caller, mode 0600 or stricter, one link),
//! then locked (`flock`) for the run.

use std::fs::File;
use std::path::Path;

use super::SecretsError;

#[cfg(unix)]
pub(super) fn create_new(path: &Path) -> std::io::Result<File> {
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
pub(super) fn create_new(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
pub(super) fn open_existing(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
pub(super) fn open_existing(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .open(path)
}

/// Makes a new file's directory entry durable (so that a crash right after creation cannot lose
/// the file with the records fsync'd into it). Best effort: some filesystems refuse it.
pub(super) fn sync_parent(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
}

/// `ELOOP` from `O_NOFOLLOW` means the path is a symlink: say so.
pub(super) fn refine(path: &Path, e: std::io::Error) -> SecretsError {
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
pub(super) fn check_opened(path: &Path, file: &File) -> Result<(), SecretsError> {
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
pub(super) fn check_opened(_path: &Path, _file: &File) -> Result<(), SecretsError> {
    Ok(())
}

/// An exclusive advisory lock for the run: two applies never interleave in one journal.
#[cfg(unix)]
pub(super) fn lock(path: &Path, file: &File) -> Result<(), SecretsError> {
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
pub(super) fn lock(_path: &Path, _file: &File) -> Result<(), SecretsError> {
    Ok(())
}
