//! `pwdrift plan`.

use crate::cli::{ExitStatus, PlanArgs};

pub fn run(_args: PlanArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("`pwdrift plan` is not built yet")
}
