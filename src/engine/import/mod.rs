//! Import: reads a live tenant (or the embedded sandbox) and produces desired state that the
//! next `plan` finds already met, so that a team can start from the tenant it has. What a file
//! says is [`render()`]'s; this module selects and reads the users, lays them out in files and
//! writes them.
//!
//! Files: `DIR/<tenant>.yaml`, or with `--split-by-group` `DIR/<tenant>/<group>.yaml` per
//! `--group` plus `DIR/<tenant>/ungrouped.yaml`; each user appears once per tenant (declaring a
//! user twice would be a resolution error). Users are sorted by UPN and nothing varies from run
//! to run (no timestamp), so re-importing an unchanged tenant rewrites identical files. Existing
//! files are refused (before anything is written) unless `--force`; each file is written through
//! a temporary sibling and a rename.

pub mod render;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::config::ids;
use crate::config::{GroupRef, TenantRef, UserRef};
use crate::graph::auth::Credential;
use crate::graph::client::{
    is_advanced_query_refusal, needs_advanced_query, GraphClient, GraphError, UserKey,
};
use crate::graph::model::{ForceFlags, GraphUser, IMPORT_USER_SELECT};

use super::error::Context;
use super::settings::ImportSettings;
use super::{EngineError, Observer};
use render::{render, schema_ref, Part};

/// The file of `--split-by-group` for the users no named group holds.
const UNGROUPED: &str = "ungrouped";

/// One user as imported: only what the file shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedUser {
    pub id: String,
    pub user_principal_name: String,
    pub display_name: Option<String>,
    pub flags: ForceFlags,
    /// `lastPasswordChangeDateTime`, when Graph has one.
    pub last_password_change: Option<chrono::DateTime<chrono::Utc>>,
}

impl ImportedUser {
    fn from_graph(u: &GraphUser) -> Self {
        ImportedUser {
            id: u.id.clone(),
            user_principal_name: u.user_principal_name.clone().unwrap_or_default(),
            display_name: u.display_name.clone(),
            flags: ForceFlags::from_profile(u.password_profile.as_ref()),
            last_password_change: u.last_password_change_date_time,
        }
    }

    /// The sort key: UPN (case-insensitively), then object id.
    fn sort_key(&self) -> (String, String) {
        (self.user_principal_name.to_lowercase(), self.id.clone())
    }
}

/// What to read from one tenant.
#[derive(Clone, Debug, Default)]
struct Selection {
    groups: Vec<GroupRef>,
    filter: Option<String>,
    /// (line number, reference) from `--users-from`
    users: Vec<(usize, UserRef)>,
    users_file: Option<PathBuf>,
}

impl Selection {
    fn everyone(&self) -> bool {
        self.groups.is_empty() && self.filter.is_none() && self.users_file.is_none()
    }
}

/// A named group's user members, as read.
struct ReadGroup {
    display_name: String,
    members: Vec<ImportedUser>,
}

/// One tenant, as read.
struct ReadTenant {
    groups: Vec<ReadGroup>,
    /// users selected by `--filter`, `--users-from` or (no selection) all users
    others: Vec<ImportedUser>,
}

/// A file to write.
#[derive(Debug)]
pub struct OutFile {
    pub path: PathBuf,
    pub text: String,
    /// how many users it declares
    pub users: usize,
    /// how many of them it lists without a directive (nothing pending to record): `validate`
    /// warns about each ("declares no directive"), which the import's output explains
    pub bare: usize,
}

/// The largest `--users-from` file read (a million UPNs of about 60 bytes).
const MAX_USERS_FILE_BYTES: u64 = 64 << 20;

/// A line of `--users-from` that names no user.
#[derive(Debug, thiserror::Error)]
#[error("{line}: {reason}")]
pub struct UsersFileError {
    /// 1-based
    pub line: usize,
    pub reason: ids::IdError,
}

/// Parses `--users-from`: one UPN, object id or SID per line; blank lines and `#` comments
/// (whole-line or trailing) are skipped. The error names the 1-based line.
pub fn parse_users_file(text: &str) -> Result<Vec<(usize, UserRef)>, UsersFileError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let r = ids::parse_user_ref(content).map_err(|reason| UsersFileError {
            line: i + 1,
            reason,
        })?;
        out.push((i + 1, r));
    }
    Ok(out)
}

/// Reads what `settings` selects from every tenant it names and lays it out in files (nothing
/// is written yet; see [`write_files`]). No file: no user matched. Notes go to `observer`.
pub async fn import(
    settings: &ImportSettings,
    observer: &dyn Observer,
) -> Result<Vec<OutFile>, EngineError> {
    let mut tenants = Vec::new();
    for t in &settings.tenants {
        let tenant =
            ids::parse_tenant(t).map_err(|e| EngineError::refused(format!("--tenant: {e}")))?;
        if tenants.contains(&tenant) {
            return Err(EngineError::refused(format!(
                "--tenant {} is given twice",
                crate::escape::value(t)
            )));
        }
        tenants.push(tenant);
    }
    let mut selection = Selection {
        filter: settings.filter.clone(),
        ..Selection::default()
    };
    for g in &settings.groups {
        selection.groups.push(ids::parse_group_ref(g).map_err(|e| {
            EngineError::refused(format!("--group {}: {e}", crate::escape::value(g)))
        })?);
    }
    if let Some(file) = &settings.users_from {
        let text = crate::config::read::read_regular_text(file, MAX_USERS_FILE_BYTES)
            .context_with(|| format!("--users-from: cannot read {}", file.display()))?;
        selection.users = parse_users_file(&text)
            .map_err(|e| EngineError::refused(format!("--users-from {}:{e}", file.display())))?;
        selection.users_file = Some(file.clone());
    }

    let read = read_all(settings, &tenants, &selection, observer).await?;
    let mut files = Vec::new();
    for (tenant, data) in tenants.iter().zip(read) {
        files.extend(tenant_files(
            &settings.out,
            tenant,
            data,
            settings.split_by_group,
            observer,
        ));
    }
    Ok(files)
}

/// Writes `files`, each through a temporary sibling and a rename, its directory created;
/// `written` is told of each. Existing files are refused before anything is written, unless
/// `force`.
pub fn write_files(
    files: &[OutFile],
    force: bool,
    written: impl Fn(&OutFile),
) -> Result<(), EngineError> {
    let existing: Vec<String> = files
        .iter()
        .filter(|f| f.path.symlink_metadata().is_ok())
        .map(|f| f.path.display().to_string())
        .collect();
    if !existing.is_empty() && !force {
        return Err(EngineError::refused(format!(
            "refusing to overwrite {} (pass --force to replace); nothing was written",
            existing.join(", ")
        )));
    }
    for f in files {
        if let Some(dir) = f.path.parent() {
            std::fs::create_dir_all(dir)
                .context_with(|| format!("cannot create {}", dir.display()))?;
        }
        super::files::write_atomically(&f.path, f.text.as_bytes())
            .context_with(|| format!("cannot write {}", f.path.display()))?;
        written(f);
    }
    Ok(())
}

/// Connects (or starts the embedded sandbox) and reads every tenant.
async fn read_all(
    settings: &ImportSettings,
    tenants: &[TenantRef],
    selection: &Selection,
    observer: &dyn Observer,
) -> Result<Vec<ReadTenant>, EngineError> {
    let mut out = Vec::new();
    if let Some(seed) = &settings.sandbox {
        let running = super::sandbox::start_embedded_sandbox(seed).await?;
        let result = read_sandbox(&running, settings, tenants, selection, observer).await;
        super::sandbox::stop_embedded_sandbox(running).await;
        return result;
    }
    for t in tenants {
        let options = settings.connect.client_options()?;
        let client = GraphClient::new(options, Credential::from_env(Some(t.as_str()))?)?;
        out.push(read_tenant(&client, t, selection, observer).await?);
    }
    Ok(out)
}

#[cfg(feature = "sandbox")]
async fn read_sandbox(
    running: &super::sandbox::EmbeddedSandbox,
    settings: &ImportSettings,
    tenants: &[TenantRef],
    selection: &Selection,
    observer: &dyn Observer,
) -> Result<Vec<ReadTenant>, EngineError> {
    let mut out = Vec::new();
    for t in tenants {
        let options =
            super::sandbox::embedded_sandbox_options(running, settings.connect.notices.clone())?;
        let client = super::sandbox::embedded_sandbox_app(running, options, t.as_str())?;
        out.push(read_tenant(&client, t, selection, observer).await?);
    }
    Ok(out)
}

#[cfg(not(feature = "sandbox"))]
async fn read_sandbox(
    running: &super::sandbox::EmbeddedSandbox,
    _settings: &ImportSettings,
    _tenants: &[TenantRef],
    _selection: &Selection,
    _observer: &dyn Observer,
) -> Result<Vec<ReadTenant>, EngineError> {
    match *running {}
}

/// Reads the selected users of one tenant.
async fn read_tenant(
    client: &GraphClient,
    tenant: &TenantRef,
    selection: &Selection,
    observer: &dyn Observer,
) -> Result<ReadTenant, EngineError> {
    let t = tenant.as_str();
    // the tenant the credentials talk to is the one asked for, before any user is read
    super::tenant_check::verify(t, client, super::tenant_check::Role::App, None).await?;
    let mut others = Vec::new();
    if selection.everyone() {
        others.extend(
            client
                .list_users_selecting(t, None, IMPORT_USER_SELECT)
                .await?,
        );
    }
    if let Some(f) = &selection.filter {
        let advanced = needs_advanced_query(f);
        let selected = match client
            .list_users_selecting(t, Some(f), IMPORT_USER_SELECT)
            .await
        {
            Err(e) if advanced && is_advanced_query_refusal(&e) => {
                return Err(EngineError::refused(format!(
                    "--filter {}: this filter needs advanced queries (ConsistencyLevel: eventual), which Azure AD B2C tenants do not support; tenant {} refused it ({})",
                    crate::escape::value(f),
                    crate::escape::Shown(t),
                    crate::escape::Shown(&e.to_string())
                )))
            }
            r => r.context_with(|| format!("--filter {}", crate::escape::value(f)))?,
        };
        // an advanced query only selects: the state comes from ordinary reads
        others.extend(if advanced {
            fresh(client, t, &selected).await?
        } else {
            selected
        });
    }
    if !selection.users.is_empty() {
        let keys: Vec<UserKey> = selection.users.iter().map(|(_, r)| key_of(r)).collect();
        let found = client
            .get_users_by_batch_selecting(t, &keys, IMPORT_USER_SELECT)
            .await?;
        let file = selection
            .users_file
            .as_deref()
            .unwrap_or(Path::new("-"))
            .display();
        let mut missing = Vec::new();
        for ((line, r), (_, result)) in selection.users.iter().zip(found) {
            match result {
                Ok(u) => others.push(u),
                Err(GraphError::NotFound { .. }) => {
                    missing.push(format!("{file}:{line}: no user {r} in tenant {t}"))
                }
                Err(e) => return Err(e).context_with(|| format!("{file}:{line}: user {r}")),
            }
        }
        if !missing.is_empty() {
            return Err(EngineError::refused(format!(
                "--users-from:\n  {}",
                missing.join("\n  ")
            )));
        }
    }
    let mut groups = Vec::new();
    for g in &selection.groups {
        let (id, display_name) = match g {
            GroupRef::ObjectId(id) => {
                let group = client.get_group(t, id).await.map_err(|e| match e {
                    GraphError::NotFound { .. } => EngineError::refused(format!(
                        "--group {id}: no group with this object id in tenant {t}"
                    )),
                    e => e.into(),
                })?;
                (id.clone(), group.display_name.unwrap_or_else(|| id.clone()))
            }
            GroupRef::DisplayName(name) => {
                let found = client.find_groups_by_name(t, name).await?;
                match found.as_slice() {
                    [one] => (one.id.clone(), name.clone()),
                    [] => {
                        return Err(EngineError::refused(format!(
                            "--group {}: no group has this display name in tenant {t}",
                            crate::escape::value(name)
                        )))
                    }
                    many => {
                        return Err(EngineError::refused(format!(
                        "--group {}: {} groups have this display name in tenant {t}; name one by object id: {}",
                        crate::escape::value(name),
                        many.len(),
                        many.iter().map(|g| g.id.as_str()).collect::<Vec<_>>().join(", ")
                    )))
                    }
                }
            }
        };
        let members = client
            .group_user_members_selecting(t, &id, IMPORT_USER_SELECT)
            .await
            .context_with(|| {
                format!(
                    "--group {}: cannot read its members",
                    crate::escape::value(&g.to_string())
                )
            })?;
        // read through an advanced query (the type cast): it only selects
        let members = fresh(client, t, &members).await?;
        groups.push(ReadGroup {
            display_name,
            members: members.iter().map(ImportedUser::from_graph).collect(),
        });
    }
    let users = others.len() + groups.iter().map(|g| g.members.len()).sum::<usize>();
    observer.info(&format!("Read {users} user record(s) from tenant {t}"));
    Ok(ReadTenant {
        groups,
        others: others.iter().map(ImportedUser::from_graph).collect(),
    })
}

/// `selected` as ordinary reads return them (`/users/{id}` in `$batch`, no `ConsistencyLevel:
/// eventual`): advanced queries are served from an index that can lag writes ("Advanced query
/// capabilities on Microsoft Entra ID objects"), and an imported flag or timestamp decides the
/// next plan's writes.
async fn fresh(
    client: &GraphClient,
    t: &str,
    selected: &[GraphUser],
) -> Result<Vec<GraphUser>, EngineError> {
    let ids: Vec<String> = selected.iter().map(|u| u.id.clone()).collect();
    Ok(client.reread_users(t, &ids, IMPORT_USER_SELECT).await?)
}

fn key_of(r: &UserRef) -> UserKey {
    match r {
        UserRef::Upn(s) => UserKey::Upn(s.clone()),
        UserRef::ObjectId(s) => UserKey::Id(s.clone()),
        UserRef::Sid(s) => UserKey::Sid(s.clone()),
    }
}

/// The files of one tenant. Each user once: in the first named group that holds it, else in the
/// rest. An empty file is not written (desired state must declare something).
fn tenant_files(
    out: &Path,
    tenant: &TenantRef,
    data: ReadTenant,
    split: bool,
    observer: &dyn Observer,
) -> Vec<OutFile> {
    let t = tenant.as_str();
    let mut seen = HashSet::new();
    let mut take = |users: Vec<ImportedUser>| -> Vec<ImportedUser> {
        let mut kept: Vec<ImportedUser> = users
            .into_iter()
            .filter(|u| seen.insert(u.id.clone()))
            .collect();
        kept.sort_by_key(ImportedUser::sort_key);
        kept
    };
    let mut files = Vec::new();
    if split {
        let dir = out.join(file_stem(t));
        let mut used: BTreeMap<String, usize> = BTreeMap::new();
        used.insert(UNGROUPED.to_owned(), 1);
        for g in data.groups {
            let users = take(g.members);
            let mut stem = file_stem(&g.display_name);
            let n = used.entry(stem.clone()).or_insert(0);
            *n += 1;
            if *n > 1 {
                stem = format!("{stem}-{n}");
            }
            if users.is_empty() {
                observer.info(&format!(
                    "note: group {} adds no user (none, or all in an earlier group); no file for it",
                    crate::escape::Shown(&g.display_name)
                ));
                continue;
            }
            let path = dir.join(format!("{stem}.yaml"));
            let text = render(
                tenant,
                &users,
                Some(Part::Group(&g.display_name)),
                &schema_ref(&path),
            );
            files.push(OutFile {
                path,
                text,
                users: users.len(),
                bare: bare_count(&users),
            });
        }
        let rest = take(data.others);
        if !rest.is_empty() {
            let path = dir.join(format!("{UNGROUPED}.yaml"));
            let text = render(tenant, &rest, Some(Part::Ungrouped), &schema_ref(&path));
            files.push(OutFile {
                path,
                text,
                users: rest.len(),
                bare: bare_count(&rest),
            });
        }
    } else {
        let mut all: Vec<ImportedUser> = data.groups.into_iter().flat_map(|g| g.members).collect();
        all.extend(data.others);
        let users = take(all);
        if users.is_empty() {
            observer.info(&format!("note: no user of tenant {t} was selected"));
        } else {
            let path = out.join(format!("{}.yaml", file_stem(t)));
            let text = render(tenant, &users, None, &schema_ref(&path));
            files.push(OutFile {
                path,
                text,
                users: users.len(),
                bare: bare_count(&users),
            });
        }
    }
    files
}

/// How many of `users` are written without a directive (see [`render::has_directive`]).
fn bare_count(users: &[ImportedUser]) -> usize {
    users.iter().filter(|u| !render::has_directive(u)).count()
}

/// A file name from a tenant or group name: letters, digits, `.`, `_` and `-` kept, anything
/// else (spaces, `/`, ...) becomes `-`; never empty, never hidden.
fn file_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_start_matches('.').to_owned();
    if s.is_empty() {
        "group".to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_skips_comments_and_names_the_bad_line() {
        let ok = parse_users_file(
            "# who\nalice@contoso.com\n\n  6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0  # Dave\nS-1-5-21-1-2-3-1104\n",
        )
        .unwrap();
        assert_eq!(ok.len(), 3);
        assert_eq!(ok[0], (2, UserRef::Upn("alice@contoso.com".into())));
        assert!(matches!(ok[1], (4, UserRef::ObjectId(_))));
        assert!(matches!(ok[2], (5, UserRef::Sid(_))));
        let err = parse_users_file("alice@contoso.com\nnot a user\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("2: "), "{err}");
    }

    #[test]
    fn file_stems() {
        assert_eq!(file_stem("Finance Contractors"), "Finance-Contractors");
        assert_eq!(file_stem("../x/y"), "-x-y");
        assert_eq!(file_stem(".."), "group");
    }
}
