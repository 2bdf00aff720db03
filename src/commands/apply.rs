//! `pwdrift apply`.

use crate::cli::{ApplyArgs, ExitStatus};

pub fn run(_args: ApplyArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("`pwdrift apply` is not built yet")
}
