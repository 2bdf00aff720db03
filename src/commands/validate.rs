//! `pwdrift validate`.

use crate::cli::{ExitStatus, ValidateArgs};

pub fn run(_args: ValidateArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("`pwdrift validate` is not built yet")
}
