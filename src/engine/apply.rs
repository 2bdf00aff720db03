//! Apply a plan: resume what an interrupted run left pending in the secrets file, check the
//! safety rails and resolve every password source before anything is written, run the writes of
//! every tenant side by side (each paced by its own client; results in plan order), and build
//! the report, also when the run is stopped before its end.
//!
//! Cancellation is the caller's: it sets the [`Cancel`] (no new write starts) and, when the
//! writes in flight are given up, resolves the `stop` future; the [`apply::Ledger`] then says
//! what was done, what was in flight (`unknown`) and what was not started.

use std::future::Future;

use crate::apply::{self, ApplyError, ApplyReport, Cancel, UserResult};
use crate::config::read::read_regular_text;
use crate::plan::Plan;
use crate::secrets::{OpenMode, SecretsFile};

use super::error::Context;
use super::session::Session;
use super::settings::ApplySettings;
use super::{EngineError, Observer};

/// The largest recipients file read (a recipient is 62 characters).
const MAX_RECIPIENTS_FILE_BYTES: u64 = 1 << 20;

/// The age recipients of `--secrets-recipient`: each value a recipient, or a file of them (a
/// regular file, read through the one reader of user-named files).
pub fn recipients(values: &[String]) -> Result<Vec<age::x25519::Recipient>, EngineError> {
    let mut out = Vec::new();
    for v in values {
        if v.trim_start().starts_with("age1") {
            out.push(
                crate::secrets::parse_recipient(v)
                    .map_err(|e| EngineError::Refused(e.to_string()))?,
            );
            continue;
        }
        let text = read_regular_text(std::path::Path::new(v), MAX_RECIPIENTS_FILE_BYTES)
            .context_with(|| {
                format!(
                    "--secrets-recipient {}: not age1... and not a readable file",
                    crate::escape::value(v)
                )
            })?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            out.push(
                crate::secrets::parse_recipient(line)
                    .map_err(|e| EngineError::refused(format!("{v}:{}: {e}", i + 1)))?,
            );
        }
    }
    Ok(out)
}

/// With `--secrets-append`: opens the file and resolves what an interrupted run left pending,
/// before anything is planned; what is resolved is told to `observer`.
pub async fn resume(
    settings: &ApplySettings,
    session: &Session,
    observer: &dyn Observer,
) -> Result<Option<SecretsFile>, EngineError> {
    let (Some(path), true) = (&settings.secrets_out, settings.secrets_append) else {
        return Ok(None);
    };
    let (mut file, journal) = SecretsFile::open(
        path,
        OpenMode::Append,
        recipients(&settings.secrets_recipients)?,
    )
    .map_err(ApplyError::from)?;
    let pending: Vec<_> = journal.pending().cloned().collect();
    if !pending.is_empty() {
        observer.info(&format!(
            "{}: {} entr{} left pending by an earlier run; resolving before planning:",
            path.display(),
            pending.len(),
            if pending.len() == 1 { "y" } else { "ies" }
        ));
        let lookup = |t: &str| session.tenant(t).map(|ts| &ts.clients);
        for line in apply::resolve_pending(lookup, &mut file, &pending).await? {
            observer.info(&format!("  {line}"));
        }
    }
    Ok(Some(file))
}

/// A plan cleared to be written: the rails passed, every password resolved, the secrets file
/// open when one is needed.
pub struct Cleared {
    passwords: apply::ResolvedPasswords,
    secrets: Option<SecretsFile>,
}

/// Checks the safety rails and resolves every password source of every tenant, before anything
/// is written; opens a new secrets file (`--secrets-out`) unless one is open already, and
/// refuses generated passwords without one.
pub fn clear(
    settings: &ApplySettings,
    plan: &Plan,
    secrets: Option<SecretsFile>,
) -> Result<Cleared, EngineError> {
    settings.rails.check(plan)?;
    let passwords = apply::ResolvedPasswords::resolve(plan)?;
    let generated = passwords.generated_count();
    let secrets = match secrets {
        Some(s) => Some(s),
        None => match &settings.secrets_out {
            // a new file: O_CREAT|O_EXCL|O_NOFOLLOW, 0600 (an existing one needs --secrets-append)
            Some(p) => Some(
                SecretsFile::open(
                    p,
                    OpenMode::CreateNew,
                    recipients(&settings.secrets_recipients)?,
                )
                .map_err(ApplyError::from)?
                .0,
            ),
            None if generated > 0 => {
                return Err(ApplyError::SecretsOutRequired { count: generated }.into())
            }
            None => None,
        },
    };
    Ok(Cleared { passwords, secrets })
}

/// The outcome of the writes.
pub struct Applied {
    pub report: ApplyReport,
    /// the secrets file, back from the writes (for the summary: how many passwords it recorded)
    pub secrets: Option<SecretsFile>,
    /// `stop` resolved before the writes ended: those in flight were given up (their entries
    /// stay pending in the secrets file); the caller should exit without waiting for them
    pub stopped: bool,
}

/// Runs the writes of every tenant of `plan` (then verification), `progress` told of each user
/// as it settles. Once `cancel` is set no write starts; if `stop` resolves (with the reason to
/// report) before the writes end, they are given up and the report says where each user stood.
/// The report is also written to `--report`.
pub async fn run(
    settings: &ApplySettings,
    plan: &Plan,
    session: &Session,
    cleared: Cleared,
    progress: &(dyn Fn(&str) + Sync),
    cancel: &Cancel,
    stop: impl Future<Output = String>,
) -> Result<Applied, EngineError> {
    let started_at = chrono::Utc::now();
    let ledger = apply::Ledger::default();
    let secrets = apply::SharedSecrets::new(cleared.secrets);
    let mut stopped = false;
    let users: Vec<UserResult> = {
        let shared = apply::Shared {
            passwords: &cleared.passwords,
            secrets: &secrets,
            cancel,
            ledger: &ledger,
            progress,
            resets_at_once: settings.target.concurrency.max(1) * apply::RESETS_PER_REQUEST_SLOT,
        };
        let shared = &shared;
        // tenants at once (each paced by its own client's quotas), results in plan order
        let tenants: Vec<_> = plan
            .tenants
            .iter()
            .map(|t| async move {
                let ts = session.tenant(&t.tenant).ok_or_else(|| {
                    EngineError::refused(format!("no connection for tenant {}", t.tenant))
                })?;
                Ok::<_, EngineError>(apply::apply_tenant(&ts.clients, t, shared).await?)
            })
            .collect();
        let work = super::all_tenants(tenants);
        tokio::pin!(work);
        tokio::pin!(stop);
        tokio::select! {
            users = &mut work => users?.into_iter().flatten().collect(),
            why = &mut stop => {
                stopped = true;
                ledger.snapshot(plan, &why)
            }
        }
    };
    // no write is running any more (the ones still in flight when the run was stopped were
    // dropped above): the file is this task's again
    let secrets = secrets
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);

    // a detail may quote a peer (an error text): masked once more, for the report and the summary
    let mut users = users;
    for u in &mut users {
        if let Some(d) = &mut u.detail {
            *d = crate::graph::redact::redacted(d);
        }
    }
    let report = ApplyReport {
        format_version: apply::REPORT_FORMAT_VERSION.to_owned(),
        started_at,
        finished_at: chrono::Utc::now(),
        users,
    };
    if let Some(path) = &settings.report {
        let json = serde_json::to_string_pretty(&report)? + "\n";
        super::files::write_atomically(path, json.as_bytes())
            .context_with(|| format!("cannot write the report to {}", path.display()))?;
    }
    Ok(Applied {
        report,
        secrets,
        stopped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recipients file is read as any user-named file: a device (which `read_to_string` would
    /// read forever) is refused, a file of recipients with comments is read.
    #[cfg(unix)]
    #[test]
    fn recipients_files_are_regular_files() {
        let err = recipients(&["/dev/zero".to_owned()]).unwrap_err();
        let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(chain.contains("not a regular file"), "{chain}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("recipients.txt");
        let identity = age::x25519::Identity::generate();
        std::fs::write(&file, format!("# ops\n\n{}\n", identity.to_public())).unwrap();
        let read = recipients(&[file.to_str().unwrap().to_owned()]).unwrap();
        assert_eq!(read.len(), 1);
    }
}
