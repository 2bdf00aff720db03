//! `pwdrift plan`: desired state vs live state, rendered as text, JSON, Markdown or GitHub
//! workflow commands (with `--format github`, errors are `::error` commands too).
//!
//! Exit codes: 0 success (with `--detailed-exitcode`: and nothing to do), 1 error, 2 (only with
//! `--detailed-exitcode`) the plan has changes or blocked users, i.e. live state differs from
//! desired state.

use anyhow::Context;

use crate::cli::{ExitStatus, PlanArgs, PlanFormat};
use crate::commands::session::{self, DiagnosticStyle};
use crate::plan::{DesiredFile, MadeFrom, Plan};
use crate::printer::Printer;

/// `verbose` (`-v`) also lists unchanged users, with the reason each one is unchanged.
pub fn run(args: PlanArgs, verbose: u8, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let style = if args.format == PlanFormat::Github {
        DiagnosticStyle::Github
    } else {
        DiagnosticStyle::Text
    };
    let Some(loaded) = session::load_desired(&args.target.paths, printer, style)? else {
        return Ok(ExitStatus::Failure);
    };
    tracing::debug!("desired state loaded");
    let made_from = made_from(&args.target, &loaded.digests);
    let rt = session::runtime()?;
    let computed = rt.block_on(compute(
        &args.target,
        loaded.state,
        &loaded.sources,
        4,
        printer,
        style,
    ))?;
    let plan = match computed {
        // sealed now (its content hash, streamed: no copy), so `--out` writes it as it is
        Some(mut plan) => {
            plan.made_from = made_from;
            plan.sealed()
        }
        None => return Ok(ExitStatus::Failure),
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

/// What a plan is made from: the desired-state files read (as loaded, with their digests) and
/// the filters, for `apply FILE` to derive the plan again.
pub fn made_from(
    target: &crate::cli::TargetArgs,
    digests: &[(std::path::PathBuf, String)],
) -> MadeFrom {
    MadeFrom {
        files: digests
            .iter()
            .map(|(path, sha256)| DesiredFile {
                path: path.clone(),
                sha256: sha256.clone(),
            })
            .collect(),
        tenants: target.tenants.clone(),
        targets: target.targets.clone(),
        shard: target.shard.map(|s| s.to_string()),
    }
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
    let Some(mut session) =
        session::open_reporting(target, desired, concurrency, printer, sources, style).await?
    else {
        return Ok(None);
    };
    let plan = session.plan(&target.targets, sources, printer, style).await;
    for t in &mut session.tenants {
        super::leak_at_exit(std::mem::take(&mut t.desired.users));
    }
    session.close().await;
    plan
}

/// Writes a file via a temporary sibling (tempfile: a random name, created exclusively, removed
/// on failure), flushed to disk, then renamed over `path`: a reader never sees half a file.
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
