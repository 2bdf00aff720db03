//! `pwdrift secrets`: reading a secrets file for the helpdesk ([`view`]), and resolving the
//! entries whose outcome is unknown ([`resolve`]).
//!
//! Reading opens nothing for writing: the file is read through the one reader of user-named
//! files (a regular file, at most [`crate::secrets::MAX_JOURNAL_BYTES`]); a torn last line (an
//! apply appending right now, or a crash) is ignored as the journal's reader ignores it. The age
//! identities of `--identity` are files in age's format (`AGE-SECRET-KEY-1...` lines, `#`
//! comments), read the same way.
//!
//! Resolving appends to the journal, so it opens the file as `apply --secrets-append` does
//! (checked on the open descriptor, `flock`ed: not while an apply writes it), signs in to each
//! tenant the pending entries name (the tenant check included) and decides each entry with the
//! code the apply's resume uses ([`crate::apply::resolve_pending`]: the resetPassword operation
//! polled, or the user read back, `lastPasswordChangeDateTime` against the intent's time); each
//! outcome is appended as a new record, nothing is rewritten.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};

use crate::config::{self, DesiredState, TenantDesired};
use crate::secrets::{self, Filter, Journal, OpenMode, Row, SecretsFile};

use super::error::Context;
use super::session::Session;
use super::settings::TargetSettings;
use super::{EngineError, Observer};

/// The largest `--identity` file read.
const MAX_IDENTITY_FILE_BYTES: u64 = 1 << 20;

/// What `pwdrift secrets` reads.
#[derive(Clone, Debug)]
pub struct SecretsViewSettings {
    /// `--secrets FILE`
    pub path: PathBuf,
    /// `--identity FILE` (repeatable)
    pub identities: Vec<PathBuf>,
    pub filter: Filter,
}

/// `--since`: a date (`2026-01-31`, midnight UTC) or an RFC 3339 time.
pub fn parse_since(s: &str) -> Result<DateTime<Utc>, EngineError> {
    let t = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(EngineError::refused(format!(
        "--since {}: not a date (2026-01-31) or an RFC 3339 time (2026-01-31T08:00:00Z)",
        crate::escape::value(s)
    )))
}

/// Reads the age identities of `--identity` files.
pub fn identities(paths: &[PathBuf]) -> Result<Vec<age::x25519::Identity>, EngineError> {
    let mut out = Vec::new();
    for p in paths {
        let text = config::read::read_regular_text(p, MAX_IDENTITY_FILE_BYTES)
            .context_with(|| format!("--identity {}: cannot read it", p.display()))?;
        let before = out.len();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // age's own message names no key material
            let id = line.parse::<age::x25519::Identity>().map_err(|_| {
                EngineError::refused(format!(
                    "--identity {}:{}: not an age identity (AGE-SECRET-KEY-1...)",
                    p.display(),
                    i + 1
                ))
            })?;
            out.push(id);
        }
        if out.len() == before {
            return Err(EngineError::refused(format!(
                "--identity {}: holds no age identity (AGE-SECRET-KEY-1...)",
                p.display()
            )));
        }
    }
    Ok(out)
}

/// Reads a secrets file without opening it for writing.
fn read_journal(path: &Path) -> Result<(Journal, String), EngineError> {
    let text = config::read::read_regular_text(path, secrets::MAX_JOURNAL_BYTES)
        .context_with(|| format!("--secrets {}: cannot read it", path.display()))?;
    let journal = Journal::parse(path, &text)?;
    Ok((journal, text))
}

/// Per user, the last password pwdrift set and its outcome (see [`crate::secrets::rows`]).
pub fn view(settings: &SecretsViewSettings) -> Result<Vec<Row>, EngineError> {
    let ids = identities(&settings.identities)?;
    let (journal, text) = read_journal(&settings.path)?;
    let stored = secrets::stored_passwords(&text);
    secrets::rows(&journal, &stored, &ids, &settings.filter).map_err(|e| {
        EngineError::refused(format!(
            "--identity: cannot decrypt the passwords of {} ({e}): is it the identity of the \
             recipient the file was encrypted to (apply --secrets-recipient)?",
            settings.path.display()
        ))
    })
}

/// Resolves every entry of the secrets file at `path` whose outcome is unknown (kept by
/// `filter`): signs in to the tenants they name, finds out what became of each, and appends the
/// outcome. Returns one line per entry (for the operator). `target`: how to connect (its paths,
/// `--tenant` and `--target` are not used); `verify_timeout`: how long a user is re-read before
/// its password is concluded unchanged.
pub async fn resolve(
    path: &Path,
    filter: &Filter,
    target: &TargetSettings,
    verify_timeout: std::time::Duration,
    observer: &dyn Observer,
) -> Result<Vec<String>, EngineError> {
    let (mut file, journal) = SecretsFile::open(path, OpenMode::Append, Vec::new())?;
    let pending: Vec<secrets::Entry> = journal
        .pending()
        .filter(|e| {
            (filter.users.is_empty()
                || filter
                    .users
                    .iter()
                    .any(|u| u.eq_ignore_ascii_case(&e.user_principal_name)))
                && filter.since.is_none_or(|s| e.at >= s)
        })
        .cloned()
        .collect();
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    // one (empty) desired state per tenant the entries name: the session signs in to each and
    // checks it is the tenant that name names
    let mut tenants: Vec<TenantDesired> = Vec::new();
    for e in &pending {
        let tenant = config::ids::parse_tenant(&e.tenant).map_err(|err| {
            EngineError::refused(format!(
                "{}: entry {} names tenant {}: {err}",
                path.display(),
                e.seq,
                crate::escape::value(&e.tenant)
            ))
        })?;
        if !tenants.iter().any(|t| t.tenant == tenant) {
            tenants.push(TenantDesired {
                tenant,
                users: Vec::new(),
                groups: Vec::new(),
                selectors: Vec::new(),
                exclude: Vec::new(),
                files: Vec::new(),
            });
        }
    }
    observer.info(&format!(
        "{}: {} entr{} with an unknown outcome; reading the user{} back:",
        path.display(),
        pending.len(),
        if pending.len() == 1 { "y" } else { "ies" },
        if pending.len() == 1 { "" } else { "s" },
    ));
    let desired = DesiredState {
        tenants,
        files: Vec::new(),
    };
    let mut session = Session::open(target, desired, observer).await?;
    for t in &mut session.tenants {
        t.clients.verify_timeout = verify_timeout;
    }
    let lookup = |t: &str| session.tenant(t).map(|ts| &ts.clients);
    let lines = crate::apply::resolve_pending(lookup, &mut file, &pending).await;
    session.close().await;
    Ok(lines?)
}
