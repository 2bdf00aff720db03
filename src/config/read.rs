//! Reading a file the user named, safely: only a regular file is read (a FIFO would block the
//! program forever, a device such as `/dev/zero` would never end), and never more than a cap.
//!
//! The file is opened with `O_NONBLOCK` (so that opening a FIFO without a writer returns at
//! once instead of waiting), then checked with `fstat` on the open descriptor (no race between
//! the check and the read), then read through `take(cap + 1)`, so that a file that grows while
//! it is read is still refused. Used for desired state, saved plans, `password: {file: ...}`
//! and sandbox seeds.

use std::io::Read;
use std::path::Path;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file ({kind}); refusing to read it")]
    NotRegular { kind: &'static str },
    #[error("file too large: {size} bytes, at most {max} bytes are read")]
    TooLarge { size: u64, max: u64 },
}

/// What kind of file `meta` describes, for messages.
fn kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

/// Opens `path` (following symlinks) without blocking and checks that it is a regular file of
/// at most `max` bytes.
pub fn open_regular(path: &Path, max: u64) -> Result<(std::fs::File, u64), ReadError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let f = opts.open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular { kind: kind(&meta) });
    }
    if meta.len() > max {
        return Err(ReadError::TooLarge {
            size: meta.len(),
            max,
        });
    }
    Ok((f, meta.len()))
}

/// Reads a regular file of at most `max` bytes (see the module documentation).
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let (f, size) = open_regular(path, max)?;
    let mut bytes = Vec::with_capacity(size as usize);
    f.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
            max,
        });
    }
    Ok(bytes)
}

/// [`read_regular`] as UTF-8 text.
pub fn read_regular_text(path: &Path, max: u64) -> Result<String, ReadError> {
    let bytes = read_regular(path, max)?;
    String::from_utf8(bytes).map_err(|_| {
        ReadError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is not valid UTF-8",
        ))
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn fifo_and_devices_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let started = Instant::now();
        let err = read_regular(&fifo, 100).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            err.to_string(),
            "not a regular file (a FIFO); refusing to read it"
        );
        let err = read_regular(Path::new("/dev/zero"), 100).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
        let err = read_regular(dir.path(), 100).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
    }

    #[test]
    fn size_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "12345").unwrap();
        assert_eq!(read_regular(&f, 5).unwrap(), b"12345");
        let err = read_regular(&f, 4).unwrap_err();
        assert!(
            matches!(err, ReadError::TooLarge { size: 5, max: 4 }),
            "{err:?}"
        );
    }
}
