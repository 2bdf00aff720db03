//! `pwdrift sandbox`.

use crate::cli::{ExitStatus, SandboxArgs};

pub fn run(_args: SandboxArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("`pwdrift sandbox` is not built yet")
}
