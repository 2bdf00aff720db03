//! `pwdrift import`: reads a live tenant and writes desired state that the next `plan` finds
//! already met, so that a team can start from the tenant it has.
//!
//! What is written, per user: the `user` (UPN, or the object id when the UPN is not one
//! desired state accepts), its display name as a comment, and, where Graph reports a forced
//! change pending, `requirePasswordChange: { since: ... }` (with `withMfa: true` when the MFA flag
//! is set). Never a literal `true`: a literal flag is re-applied after the user complies, so the
//! user would be forced again on every run, the one thing pwdrift promises not to do. `since` is
//! one second after the user's `lastPasswordChangeDateTime` (1970-01-01T00:00:01Z when Graph has
//! none): the pending change is open, so the plan finds it met by the flag already set (diff rules
//! 6 and 7), and once the user changes the password the requirement is met for good (rule 4). It
//! is derived from live state, so re-importing an unchanged tenant gives identical bytes. A flag
//! that is false or `null` is left out: an omitted flag is unmanaged. Never a password or a
//! `resetPassword`: those are decisions, not state.
//!
//! Files: `DIR/<tenant>.yaml`, or with `--split-by-group` `DIR/<tenant>/<group>.yaml` per
//! `--group` plus `DIR/<tenant>/ungrouped.yaml`; each user appears once per tenant (declaring a
//! user twice would be a resolution error). Users are sorted by UPN and nothing varies from run
//! to run (no timestamp), so re-importing an unchanged tenant rewrites identical files. Existing
//! files are refused (before anything is written) unless `--force`; each file is written through
//! a temporary sibling and a rename.

use std::collections::{BTreeMap, HashSet};

use chrono::SubsecRound;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::cli::{ExitStatus, ImportArgs};
use crate::config::ids;
use crate::config::{GroupRef, TenantRef, UserRef};
use crate::graph::auth::Credential;
use crate::graph::client::{GraphClient, GraphError, UserKey};
use crate::graph::model::{ForceFlags, GraphUser, IMPORT_USER_SELECT};
use crate::printer::Printer;

use super::session;

/// The schema every written file points its `yaml-language-server` modeline at.
const SCHEMA_FILE: &str = "pwdrift-config.schema.json";

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
struct OutFile {
    path: PathBuf,
    text: String,
    users: usize,
}

pub fn run(args: ImportArgs, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let mut tenants = Vec::new();
    for t in &args.tenants {
        let tenant = ids::parse_tenant(t).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
        if tenants.contains(&tenant) {
            bail!("--tenant {t} is given twice");
        }
        tenants.push(tenant);
    }
    let mut selection = Selection {
        filter: args.filter.clone(),
        ..Selection::default()
    };
    for g in &args.groups {
        selection
            .groups
            .push(ids::parse_group_ref(g).map_err(|e| anyhow::anyhow!("--group {g}: {e}"))?);
    }
    if let Some(file) = &args.users_from {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("--users-from: cannot read {}", file.display()))?;
        selection.users = parse_users_file(&text)
            .map_err(|e| anyhow::anyhow!("--users-from {}:{e}", file.display()))?;
        selection.users_file = Some(file.clone());
    }

    let rt = session::runtime()?;
    let read = rt.block_on(read_all(&args, &tenants, &selection, printer))?;

    let mut files = Vec::new();
    for (tenant, data) in tenants.iter().zip(read) {
        files.extend(tenant_files(
            &args.out,
            tenant,
            data,
            args.split_by_group,
            printer,
        )?);
    }
    if files.is_empty() {
        printer.error("error: no user matched the selection; nothing was written");
        return Ok(ExitStatus::Failure);
    }

    let existing: Vec<String> = files
        .iter()
        .filter(|f| f.path.symlink_metadata().is_ok())
        .map(|f| f.path.display().to_string())
        .collect();
    if !existing.is_empty() && !args.force {
        bail!(
            "refusing to overwrite {} (pass --force to replace); nothing was written",
            existing.join(", ")
        );
    }
    for f in &files {
        if let Some(dir) = f.path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        super::plan::write_atomically(&f.path, f.text.as_bytes())
            .with_context(|| format!("cannot write {}", f.path.display()))?;
        printer.info(&format!(
            "Wrote {} ({} user{})",
            f.path.display(),
            f.users,
            if f.users == 1 { "" } else { "s" }
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

/// Parses `--users-from`: one UPN, object id or SID per line; blank lines and `#` comments
/// (whole-line or trailing) are skipped. The error names the 1-based line.
fn parse_users_file(text: &str) -> Result<Vec<(usize, UserRef)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let r = ids::parse_user_ref(content).map_err(|e| format!("{}: {e}", i + 1))?;
        out.push((i + 1, r));
    }
    Ok(out)
}

/// Connects (or starts the embedded sandbox) and reads every tenant.
async fn read_all(
    args: &ImportArgs,
    tenants: &[TenantRef],
    selection: &Selection,
    printer: &Printer,
) -> anyhow::Result<Vec<ReadTenant>> {
    let mut out = Vec::new();
    if let Some(seed) = &args.sandbox {
        let running = session::start_embedded_sandbox(seed).await?;
        let result = read_sandbox(&running, tenants, selection, printer).await;
        session::stop_embedded_sandbox(running).await;
        return result;
    }
    for t in tenants {
        let options = super::target::connection_options(
            args.connection.cloud,
            args.connection.graph_url.as_deref(),
            args.connection.authority_host.as_deref(),
            args.connection.insecure_skip_tls_verify,
        )?;
        let client = GraphClient::new(options, Credential::from_env(Some(t.as_str()))?)?;
        out.push(read_tenant(&client, t, selection, printer).await?);
    }
    Ok(out)
}

#[cfg(feature = "sandbox")]
async fn read_sandbox(
    running: &session::EmbeddedSandbox,
    tenants: &[TenantRef],
    selection: &Selection,
    printer: &Printer,
) -> anyhow::Result<Vec<ReadTenant>> {
    let mut out = Vec::new();
    for t in tenants {
        let options = session::embedded_sandbox_options(running)?;
        let client = session::embedded_sandbox_app(running, options, t.as_str())?;
        out.push(read_tenant(&client, t, selection, printer).await?);
    }
    Ok(out)
}

#[cfg(not(feature = "sandbox"))]
async fn read_sandbox(
    running: &session::EmbeddedSandbox,
    _tenants: &[TenantRef],
    _selection: &Selection,
    _printer: &Printer,
) -> anyhow::Result<Vec<ReadTenant>> {
    match *running {}
}

/// Reads the selected users of one tenant.
async fn read_tenant(
    client: &GraphClient,
    tenant: &TenantRef,
    selection: &Selection,
    printer: &Printer,
) -> anyhow::Result<ReadTenant> {
    let t = tenant.as_str();
    let mut others = Vec::new();
    if selection.everyone() {
        others.extend(
            client
                .list_users_selecting(t, None, IMPORT_USER_SELECT)
                .await?,
        );
    }
    if let Some(f) = &selection.filter {
        others.extend(
            client
                .list_users_selecting(t, Some(f), IMPORT_USER_SELECT)
                .await
                .with_context(|| format!("--filter {f}"))?,
        );
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
                Err(e) => return Err(e).with_context(|| format!("{file}:{line}: user {r}")),
            }
        }
        if !missing.is_empty() {
            bail!("--users-from:\n  {}", missing.join("\n  "));
        }
    }
    let mut groups = Vec::new();
    for g in &selection.groups {
        let (id, display_name) = match g {
            GroupRef::ObjectId(id) => {
                let group = client.get_group(t, id).await.map_err(|e| match e {
                    GraphError::NotFound { .. } => {
                        anyhow::anyhow!("--group {id}: no group with this object id in tenant {t}")
                    }
                    e => anyhow::Error::from(e),
                })?;
                (id.clone(), group.display_name.unwrap_or_else(|| id.clone()))
            }
            GroupRef::DisplayName(name) => {
                let found = client.find_groups_by_name(t, name).await?;
                match found.as_slice() {
                    [one] => (one.id.clone(), name.clone()),
                    [] => bail!("--group {name}: no group has this display name in tenant {t}"),
                    many => bail!(
                        "--group {name}: {} groups have this display name in tenant {t}; name one by object id: {}",
                        many.len(),
                        many.iter().map(|g| g.id.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                }
            }
        };
        let members = client
            .group_user_members_selecting(t, &id, IMPORT_USER_SELECT)
            .await
            .with_context(|| format!("--group {g}: cannot read its members"))?;
        groups.push(ReadGroup {
            display_name,
            members: members.iter().map(ImportedUser::from_graph).collect(),
        });
    }
    let users = others.len() + groups.iter().map(|g| g.members.len()).sum::<usize>();
    printer.info(&format!("Read {users} user record(s) from tenant {t}"));
    Ok(ReadTenant {
        groups,
        others: others.iter().map(ImportedUser::from_graph).collect(),
    })
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
    printer: &Printer,
) -> anyhow::Result<Vec<OutFile>> {
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
                printer.info(&format!(
                    "note: group {} adds no user (none, or all in an earlier group); no file for it",
                    g.display_name
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
            });
        }
    } else {
        let mut all: Vec<ImportedUser> = data.groups.into_iter().flat_map(|g| g.members).collect();
        all.extend(data.others);
        let users = take(all);
        if users.is_empty() {
            printer.info(&format!("note: no user of tenant {t} was selected"));
        } else {
            let path = out.join(format!("{}.yaml", file_stem(t)));
            let text = render(tenant, &users, None, &schema_ref(&path));
            files.push(OutFile {
                path,
                text,
                users: users.len(),
            });
        }
    }
    Ok(files)
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

/// The modeline's target for a file written at `path`: the relative path to the first
/// `schemas/pwdrift-config.schema.json` found in the file's directory or above it (a checkout of
/// this repository), else the schema's file name beside the file (`pwdrift schema config`
/// writes it; the header says so).
fn schema_ref(path: &Path) -> String {
    let dir = path.parent().unwrap_or(Path::new("."));
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    for (up, ancestor) in abs.ancestors().enumerate() {
        if ancestor.join("schemas").join(SCHEMA_FILE).is_file() {
            return format!("{}schemas/{SCHEMA_FILE}", "../".repeat(up));
        }
    }
    SCHEMA_FILE.to_owned()
}

/// Which part of a tenant a `--split-by-group` file holds.
#[derive(Clone, Copy, Debug)]
pub enum Part<'a> {
    /// the members of this group (display name)
    Group(&'a str),
    /// the users selected otherwise
    Ungrouped,
}

/// Renders one desired-state file. Pure; the order of `users` is kept.
pub fn render(
    tenant: &TenantRef,
    users: &[ImportedUser],
    group: Option<Part<'_>>,
    schema: &str,
) -> String {
    let mut s = format!("# yaml-language-server: $schema={schema}\n#\n");
    s.push_str(&format!(
        "# Imported by `pwdrift import` from tenant {tenant}"
    ));
    let count = format!(
        "{} user{}",
        users.len(),
        if users.len() == 1 { "" } else { "s" }
    );
    s.push_str(&match group {
        Some(Part::Group(g)) => format!(
            "\n# (the user members of group {}, nested groups included): {count}.\n",
            comment_text(g)
        ),
        Some(Part::Ungrouped) => {
            format!("\n# (the users selected that no imported group holds): {count}.\n")
        }
        None => format!(": {count}.\n"),
    });
    s.push_str(
        "# A user with a forced password change pending carries `requirePasswordChange`, met once the\n\
         # user changes the password (never forced again); nothing else is checked, so `pwdrift plan`\n\
         # finds this file already met. Add directives to manage the users listed bare.\n",
    );
    if schema == SCHEMA_FILE {
        s.push_str(&format!(
            "# For editor completion: pwdrift schema config > {SCHEMA_FILE} (beside this file)\n"
        ));
    }
    s.push_str(&format!(
        "\nversion: 1\ntenant: {}\n\nusers:\n",
        yaml_scalar(tenant.as_str())
    ));
    for u in users {
        let upn_ok = matches!(
            ids::parse_user_ref(&u.user_principal_name),
            Ok(UserRef::Upn(_))
        );
        let (name, comment) = if upn_ok {
            (u.user_principal_name.clone(), u.display_name.clone())
        } else {
            // a UPN desired state does not accept (or none): by object id, the UPN in the comment
            let label = match &u.display_name {
                Some(d) => format!("{d} <{}>", u.user_principal_name),
                None => u.user_principal_name.clone(),
            };
            (u.id.clone(), Some(label))
        };
        s.push_str(&format!("  - user: {}", yaml_scalar(&name)));
        if let Some(c) = comment
            .as_deref()
            .map(comment_text)
            .filter(|c| !c.is_empty())
        {
            s.push_str(&format!("  # {c}"));
        }
        s.push('\n');
        let f = u.flags;
        if f.force_change_password_next_sign_in || f.force_change_password_next_sign_in_with_mfa {
            let since = u
                .last_password_change
                .map_or(chrono::DateTime::UNIX_EPOCH, |l| l.trunc_subsecs(0))
                + chrono::Duration::seconds(1);
            s.push_str(&format!(
                "    requirePasswordChange: {{ since: {}{} }}\n",
                since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                if f.force_change_password_next_sign_in_with_mfa {
                    ", withMfa: true"
                } else {
                    ""
                }
            ));
        }
    }
    s
}

/// A string as a YAML scalar: plain when it is safely so, else double-quoted.
fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | '-' | '+'));
    if plain {
        return s.to_owned();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text safe in a one-line YAML comment: control characters (newlines) become spaces.
fn comment_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(upn: &str, name: Option<&str>, f: bool, m: bool) -> ImportedUser {
        ImportedUser {
            id: format!("0b8f6b1c-3f41-4b8e-9a55-{:012}", upn.len()),
            user_principal_name: upn.into(),
            display_name: name.map(str::to_owned),
            flags: ForceFlags {
                force_change_password_next_sign_in: f,
                force_change_password_next_sign_in_with_mfa: m,
            },
            last_password_change: None,
        }
    }

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
        let err = parse_users_file("alice@contoso.com\nnot a user\n").unwrap_err();
        assert!(err.starts_with("2: "), "{err}");
    }

    #[test]
    fn render_writes_only_set_flags_and_quotes_what_needs_it() {
        let tenant = TenantRef::Domain("contoso.onmicrosoft.com".into());
        let users = [
            user("alice@contoso.com", Some("Alice\nAdams"), false, false),
            user("bob@contoso.com", None, true, false),
            user("ext_user#EXT#@contoso.com", Some("Guest"), false, true),
        ];
        let text = render(&tenant, &users, None, SCHEMA_FILE);
        assert!(text.starts_with("# yaml-language-server: $schema=pwdrift-config.schema.json\n"));
        assert!(text.contains("\nversion: 1\ntenant: contoso.onmicrosoft.com\n"));
        assert!(text.contains("  - user: alice@contoso.com  # Alice Adams\n  - user: bob"));
        // a pending forced change becomes a one-shot requirement, never a literal `true`
        assert!(text.contains(
            "  - user: bob@contoso.com\n    requirePasswordChange: { since: 1970-01-01T00:00:01Z }\n"
        ));
        assert!(!text.contains(": true\n    "), "{text}");
        assert!(!text.contains(": false"));
        assert!(!text.to_lowercase().contains("password:"));
        // the guest's UPN: either accepted as is, or replaced by its object id with the UPN shown
        let guest_upn_ok = matches!(
            ids::parse_user_ref("ext_user#EXT#@contoso.com"),
            Ok(UserRef::Upn(_))
        );
        if !guest_upn_ok {
            assert!(
                text.contains("# Guest <ext_user#EXT#@contoso.com>"),
                "{text}"
            );
        }
        assert!(text.ends_with(
            "    requirePasswordChange: { since: 1970-01-01T00:00:01Z, withMfa: true }\n"
        ));
        // `since` is one second after the last change, so the requirement is open (met by the
        // flag already set) until the user changes the password
        let mut carol = user("carol@contoso.com", None, true, false);
        carol.last_password_change = Some("2026-03-04T05:06:07.890Z".parse().unwrap());
        let text = render(&tenant, &[carol], None, SCHEMA_FILE);
        assert!(
            text.contains("requirePasswordChange: { since: 2026-03-04T05:06:08Z }"),
            "{text}"
        );
    }

    #[test]
    fn scalars_and_file_stems() {
        assert_eq!(yaml_scalar("alice@contoso.com"), "alice@contoso.com");
        assert_eq!(yaml_scalar("a#b: c"), "\"a#b: c\"");
        assert_eq!(yaml_scalar("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
        assert_eq!(file_stem("Finance Contractors"), "Finance-Contractors");
        assert_eq!(file_stem("../x/y"), "-x-y");
        assert_eq!(file_stem(".."), "group");
    }
}
