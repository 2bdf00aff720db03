//! Files the engine writes (a saved plan, an apply report, imported desired state): through a
//! temporary sibling and a rename, so that a reader never sees half a file.

use std::path::Path;

/// Writes a file via a temporary sibling (tempfile: a random name, created exclusively, removed
/// on failure), flushed to disk, then renamed over `path`: a reader never sees half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, |w| {
        use std::io::Write;
        w.write_all(bytes)
    })
}

/// [`write_atomically`] with the content streamed by `write` (through a buffer).
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".pwdrift-tmp-")
        .tempfile_in(dir)?;
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, tmp.as_file());
        write(&mut w)?;
        use std::io::Write;
        w.flush()?;
    }
    tmp.as_file().sync_all()?;
    // on any error above, dropping `tmp` removes the temporary file
    tmp.persist(path).map(|_| ()).map_err(|e| e.error)
}
