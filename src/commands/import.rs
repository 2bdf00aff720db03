//! `pwdrift import`: reads a live tenant and writes desired state that the next `plan` finds
//! already met, so that a team can start from the tenant it has. The reading, the layout of the
//! files and what they say are the engine's ([`crate::engine::import`]); this adapter turns the
//! flags into settings, runs it, and says what was written.

use crate::cli::{ExitStatus, ImportArgs};
use crate::printer::Printer;

use super::session::{self, DiagnosticStyle, Shown};

pub fn run(args: ImportArgs, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let settings = super::target::import_settings(&args);
    let shown = Shown {
        printer,
        style: DiagnosticStyle::Text,
    };
    let rt = session::runtime()?;
    let files = rt.block_on(crate::engine::import::import(&settings, &shown))?;
    if files.is_empty() {
        printer.error("error: no user matched the selection; nothing was written");
        return Ok(ExitStatus::Failure);
    }
    crate::engine::import::write_files(&files, settings.force, |f| {
        printer.info(&format!(
            "Wrote {} ({} user{})",
            f.path.display(),
            f.users,
            if f.users == 1 { "" } else { "s" }
        ))
    })?;
    let bare: usize = files.iter().map(|f| f.bare).sum();
    if bare > 0 {
        let users: usize = files.iter().map(|f| f.users).sum();
        printer.info(&format!(
            "note: {bare} of {users} users are listed without a directive (no forced change \
             pending, nothing decided for them): `pwdrift validate` warns that nothing is checked \
             for each (warnings only, it still exits 0) until you add directives to the users you \
             want to manage"
        ));
    }
    let sandbox = args
        .sandbox
        .as_ref()
        .map(|s| format!("--sandbox {} ", s.display()))
        .unwrap_or_default();
    printer.info(&format!(
        "Next: pwdrift validate {d} && pwdrift plan {sandbox}{d} --detailed-exitcode (no changes expected)",
        d = args.out.display()
    ));
    Ok(ExitStatus::Success)
}
