//! `pwdrift show PLANFILE`: a saved plan rendered as `plan` rendered it (text, JSON, Markdown,
//! GitHub workflow commands), after the integrity check `apply` makes
//! ([`crate::engine::show::load_saved`]). Offline. A tampered or stale-format file is refused as
//! `apply` refuses it (exit 1). `-v` lists the unchanged users, as for `plan`; colour follows
//! the printer's rule for stdout, as for `plan`.

use crate::cli::{ExitStatus, PlanFormat, ShowArgs};
use crate::engine;
use crate::printer::Printer;

pub fn run(args: ShowArgs, verbose: u8, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let plan = engine::show::load_saved(&args.plan)?;
    let color = printer.color_out();
    match args.format {
        PlanFormat::Text => {
            printer.out_with(|w| crate::render::write_text(&plan, color, verbose > 0, w))?
        }
        PlanFormat::Json => printer.out_with(|w| crate::render::write_json(&plan, w))?,
        PlanFormat::Markdown => printer.out(&crate::render::markdown(&plan))?,
        // a fresh stop-commands token, as `plan` chooses one (see `render::github`)
        PlanFormat::Github => printer.out(&crate::render::github::plan(
            &plan,
            &uuid::Uuid::new_v4().simple().to_string(),
        ))?,
    }
    super::leak_at_exit(plan);
    Ok(ExitStatus::Success)
}
