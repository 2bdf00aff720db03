//! What `pwdrift import` writes for one file of desired state: the users' current password
//! state, which the next `plan` finds already met. Pure; the order of the users is kept.
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

use std::path::Path;

use chrono::SubsecRound;

use crate::config::ids;
use crate::config::{TenantRef, UserRef};

use super::ImportedUser;

/// The schema every written file points its `yaml-language-server` modeline at.
const SCHEMA_FILE: &str = "pwdrift-config.schema.json";

/// The modeline's target for a file written at `path`: the relative path to the first
/// `schemas/pwdrift-config.schema.json` found in the file's directory or above it (a checkout of
/// this repository), else the schema's file name beside the file (`pwdrift schema config`
/// writes it; the header says so).
pub(crate) fn schema_ref(path: &Path) -> String {
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
        "# Imported by `pwdrift import` from tenant {}",
        crate::escape::Shown(&tenant.to_string())
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
        if has_directive(u) {
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

/// Whether `u` is written with a directive (`requirePasswordChange`, for a forced change
/// pending); the others are listed bare, which `validate` warns about ("declares no
/// directive"): the import says so rather than write a directive nobody decided on.
pub(crate) fn has_directive(u: &ImportedUser) -> bool {
    u.flags.force_change_password_next_sign_in
        || u.flags.force_change_password_next_sign_in_with_mfa
}

/// A string as a YAML scalar: plain when it is safely so, else double-quoted, with every
/// character [`crate::escape::must_escape`] names written as a YAML escape (`\u001b`, `\u2028`,
/// `\u202e`): the file holds no raw control, bidirectional or separator character, and it loads
/// back to the exact value.
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
            c if crate::escape::must_escape(c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text safe in a one-line YAML comment: line breaks and tabs become spaces, every other
/// character [`crate::escape::must_escape`] names is shown escaped (`\u{1b}`), never raw.
fn comment_text(s: &str) -> String {
    let spaced: String = s
        .chars()
        .map(|c| {
            if matches!(c, '\n' | '\r' | '\t') {
                ' '
            } else {
                c
            }
        })
        .collect();
    crate::escape::value(spaced.trim()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::model::ForceFlags;

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

    /// Names from Graph that would forge lines or drive a terminal.
    const HOSTILE: [&str; 8] = [
        "\u{1b}[2J\u{1b}]8;;http://x\u{7}click\u{1b}]8;;\u{7}",
        "csi\u{9b}31m",
        "abc\u{202e}fdp.exe",
        "line\u{2028}sep\u{2029}para",
        "x\n::add-mask::x",
        "::set-output name=a::b",
        "100%0A | `tick` <script>",
        "tab\tcr\r\u{7f}\u{61c}\u{200e}\u{2066}\u{feff}",
    ];

    /// A double-quoted scalar holds no raw control, bidirectional or separator character and
    /// loads back (through yaml-rust2, the reader of desired state) to the exact value.
    #[test]
    fn hostile_scalars_are_escaped_and_load_back_exactly() {
        for name in HOSTILE {
            let scalar = yaml_scalar(name);
            assert!(
                !scalar.chars().any(crate::escape::must_escape),
                "{scalar:?}"
            );
            let docs = yaml_rust2::YamlLoader::load_from_str(&format!("k: {scalar}\n")).unwrap();
            assert_eq!(docs[0]["k"].as_str(), Some(name), "{scalar}");
        }
    }

    /// Hostile display names and UPNs reach the file only escaped, in comments that stay on
    /// their line, and the file is valid desired state.
    #[test]
    fn hostile_names_never_reach_the_file_raw() {
        let tenant = TenantRef::Domain("contoso.onmicrosoft.com".into());
        let users: Vec<ImportedUser> = HOSTILE
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let mut u = user(&format!("{h}{i}@contoso.com"), Some(h), i % 2 == 0, false);
                u.id = format!("0b8f6b1c-3f41-4b8e-9a55-{i:012}");
                u
            })
            .collect();
        let text = render(&tenant, &users, Some(Part::Group(HOSTILE[4])), SCHEMA_FILE);
        for line in text.lines() {
            assert!(!line.chars().any(crate::escape::must_escape), "{line:?}");
            assert!(
                line.is_empty()
                    || line.starts_with('#')
                    || line.starts_with("  ")
                    || ["version:", "tenant:", "users:"]
                        .iter()
                        .any(|k| line.starts_with(k)),
                "a value started a line: {line:?}"
            );
        }
        assert!(
            text.contains("# \\u{1b}[2J\\u{1b}]8;;http://x\\u{7}click"),
            "{text}"
        );
        assert!(
            text.contains("# abc\\u{202e}fdp.exe <abc\\u{202e}fdp.exe2@contoso.com>"),
            "{text}"
        );
        assert!(
            text.contains("group x ::add-mask::x, nested groups"),
            "{text}"
        );
        let loaded = crate::config::load_str(Path::new("imported.yaml"), &text)
            .unwrap_or_else(|e| panic!("{:?}\n{text}", e.diagnostics));
        assert_eq!(loaded.state.tenants[0].users.len(), HOSTILE.len());
    }

    #[test]
    fn scalars() {
        assert_eq!(yaml_scalar("alice@contoso.com"), "alice@contoso.com");
        assert_eq!(yaml_scalar("a#b: c"), "\"a#b: c\"");
        assert_eq!(yaml_scalar("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
    }
}
