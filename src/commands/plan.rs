//! `pwdrift plan`: desired state vs live state, rendered as text, JSON, Markdown or GitHub
//! workflow commands (with `--format github`, errors are `::error` commands too).
//!
//! Exit codes: 0 success (with `--detailed-exitcode`: and nothing to do), 1 error, 2 (only with
//! `--detailed-exitcode`) the plan has changes or blocked users, i.e. live state differs from
//! desired state.

use anyhow::Context;

use crate::cli::{ExitStatus, PlanArgs, PlanFormat};
use crate::commands::session::{self, DiagnosticStyle};
use crate::engine;
use crate::printer::Printer;

/// `verbose` (`-v`) also lists unchanged users, with the reason each one is unchanged.
pub fn run(args: PlanArgs, verbose: u8, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let style = if args.format == PlanFormat::Github {
        DiagnosticStyle::Github
    } else {
        DiagnosticStyle::Text
    };
    let Some(loaded) = session::load_desired(
        &args.target.paths,
        &args.target.allow_password_dirs,
        printer,
        style,
    )?
    else {
        return Ok(ExitStatus::Failure);
    };
    tracing::debug!("desired state loaded");
    let settings = super::target::target_settings(&args.target, 4);
    let rt = session::runtime()?;
    let shown = session::Shown { printer, style };
    let planned = rt.block_on(engine::plan(&settings, loaded, &shown))?;
    let plan = match planned {
        Ok(plan) => plan,
        Err(rejected) => {
            session::report_rejected(printer, &rejected, style);
            return Ok(ExitStatus::Failure);
        }
    };

    tracing::debug!("plan sealed (content hash computed)");
    let color = printer.color_out();
    // A closed stdout ends the run quietly, but not before the plan asked for is saved. Text and
    // JSON are written as they are rendered (a large plan's text is not held in memory at once).
    // The saved file is written on a thread of its own while stdout is rendered: two full
    // passes over a large plan, side by side.
    let owned = plan;
    let plan = &owned;
    let (printed, saved) = std::thread::scope(|s| {
        let saved = args.out.as_ref().map(|out| {
            s.spawn(move || {
                write_atomically_with(out, |w| crate::render::write_json(plan, w))
                    .with_context(|| format!("cannot write the plan to {}", out.display()))
                    .map(|()| out)
            })
        });
        let printed = match args.format {
            PlanFormat::Text => {
                printer.out_with(|w| crate::render::write_text(plan, color, verbose > 0, w))
            }
            // sealed above, so `write_json` writes it as it is: the bytes of `render::json`
            PlanFormat::Json => printer.out_with(|w| crate::render::write_json(plan, w)),
            PlanFormat::Markdown => printer.out(&crate::render::markdown(plan)),
            PlanFormat::Github => printer.out(&crate::render::github::plan(
                plan,
                &uuid::Uuid::new_v4().simple().to_string(),
            )),
        };
        let saved = saved.map(|h| h.join().expect("the plan writer does not panic"));
        (printed, saved)
    });
    tracing::debug!("plan rendered and saved");
    if let Some(saved) = saved {
        let out = saved?;
        printer.info(&format!(
            "Saved the plan to {}. To apply exactly this plan: pwdrift apply {}",
            out.display(),
            out.display()
        ));
    }
    printed?;

    let s = plan.summary();
    let status = if args.detailed_exitcode && (plan.has_changes() || s.blocked > 0) {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    };
    super::leak_at_exit(owned);
    Ok(status)
}

pub use crate::engine::files::write_atomically_with;
