//! `pwdrift show PLANFILE`: a saved plan read back for review, offline. It passes the same
//! integrity check `apply PLANFILE` makes before it uses a plan ([`super::recheck::parse_saved`]:
//! the format version, the shape, the content hash, the values), so a tampered or stale-format
//! file is refused in the same words and with the same exit code; it needs no credentials and
//! opens no connection. What is rendered is the document as saved: the renderers are those of
//! `plan`, so `show --format X` prints what `plan --out FILE --format X` printed (the GitHub
//! format's `stop-commands` token excepted: it is chosen anew for every output, so that no value
//! in the plan can predict it).

use std::path::Path;

use crate::plan::Plan;

use super::error::Context;
use super::EngineError;

/// Reads and checks the saved plan at `path` (a regular file, at most 256 MiB, read through the
/// one reader of user-named files).
pub fn load_saved(path: &Path) -> Result<Plan, EngineError> {
    let text = crate::config::read::read_regular_text(path, super::recheck::MAX_PLAN_BYTES)
        .context_with(|| format!("cannot read {}", path.display()))?;
    super::recheck::parse_saved(path, &text)
}
