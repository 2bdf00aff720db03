//! `pwdrift plan`: desired state vs live state, rendered as text, JSON, Markdown or GitHub
//! workflow commands (with `--format github`, errors are `::error` commands too).
//!
//! Exit codes: 0 success (with `--detailed-exitcode`: and nothing to do), 1 error, 2 (only with
//! `--detailed-exitcode`) the plan has changes or blocked users, i.e. live state differs from
//! desired state.

use anyhow::Context;

use crate::cli::{ExitStatus, PlanArgs, PlanFormat};
use crate::commands::session::{self, DiagnosticStyle, Session};
use crate::plan::Plan;
use crate::printer::Printer;

/// `verbose` (`-v`) also lists unchanged users, with the reason each one is unchanged.
pub fn run(args: PlanArgs, verbose: u8, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let style = if args.format == PlanFormat::Github {
        DiagnosticStyle::Github
    } else {
        DiagnosticStyle::Text
    };
    let Some((desired, sources)) = session::load_desired(&args.target.paths, printer, style)?
    else {
        return Ok(ExitStatus::Failure);
    };
    let rt = session::runtime()?;
    let plan = match rt.block_on(compute(&args.target, desired, &sources, 4, printer, style))? {
        Some(plan) => plan,
        None => return Ok(ExitStatus::Failure),
    };

    let color = printer.color_out();
    let rendered = match args.format {
        PlanFormat::Text if verbose > 0 => crate::render::text_verbose(&plan, color),
        PlanFormat::Text => crate::render::text(&plan, color),
        PlanFormat::Json => crate::render::json(&plan),
        PlanFormat::Markdown => crate::render::markdown(&plan),
        PlanFormat::Github => {
            crate::render::github::plan(&plan, &uuid::Uuid::new_v4().simple().to_string())
        }
    };
    // A closed stdout ends the run quietly, but not before the plan asked for is saved.
    let printed = printer.out(&rendered);

    if let Some(out) = &args.out {
        write_atomically_with(out, |w| crate::render::write_json(&plan, w))
            .with_context(|| format!("cannot write the plan to {}", out.display()))?;
        printer.info(&format!(
            "Saved the plan to {}. To apply exactly this plan: pwdrift apply {}",
            out.display(),
            out.display()
        ));
    }
    printed?;

    let s = plan.summary();
    Ok(
        if args.detailed_exitcode && (plan.has_changes() || s.blocked > 0) {
            ExitStatus::Changes
        } else {
            ExitStatus::Success
        },
    )
}

/// Connects, reads live state and diffs. `Ok(None)`: a problem already reported to the user.
async fn compute(
    target: &crate::cli::TargetArgs,
    desired: crate::config::DesiredState,
    sources: &crate::config::SourceMap,
    concurrency: usize,
    printer: &Printer,
    style: DiagnosticStyle,
) -> anyhow::Result<Option<Plan>> {
    let session = Session::open(target, desired, concurrency, printer).await?;
    let plan = session.plan(&target.targets, sources, printer, style).await;
    session.close().await;
    plan
}

/// Writes a file via a temporary sibling and a rename, so a reader never sees half a plan.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, |w| {
        use std::io::Write;
        w.write_all(bytes)
    })
}

/// [`write_atomically`] with the content streamed by `write` (through a buffer).
pub fn write_atomically_with(
    path: &std::path::Path,
    write: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let tmp = tempfile_in(dir)?;
    let result = (|| {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, &tmp.1);
        write(&mut w)?;
        use std::io::Write;
        w.flush()?;
        drop(w);
        tmp.1.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp.0);
        return Err(e);
    }
    std::fs::rename(&tmp.0, path)
}

fn tempfile_in(dir: &std::path::Path) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    for i in 0..100u32 {
        let p = dir.join(format!(".pwdrift-tmp-{}-{i}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
        {
            Ok(f) => return Ok((p, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("cannot create a temporary file"))
}
