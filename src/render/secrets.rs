//! `pwdrift secrets`: the helpdesk's view of a secrets file ([`crate::secrets::Row`]) as a table
//! for a terminal, CSV for a mail merge, or JSON. The passwords are shown here because the user
//! asked for them by name (this command is the documented exception to "no secret in output");
//! nothing here logs.
//!
//! - **table**: every value through the one display escaping ([`crate::escape::value`]): a UPN
//!   holding control characters does not reach the terminal raw. Users whose outcome is unknown
//!   are listed after the table with how to resolve them.
//! - **csv** (RFC 4180: comma-separated, CRLF line ends, a header row; a field holding a comma or
//!   a quote is quoted, its quotes doubled): the guard against formula injection (OWASP's "CSV
//!   Injection"): a field that starts with `=`, `+`, `-`, `@`, a tab or CR gets a leading `'`, so
//!   that a spreadsheet shows it as text instead of running it; then the display escaping, so
//!   that a CSV printed to a terminal cannot drive it either (no field holds a raw control
//!   character or line break). That `'` is not part of the value (a generated password may start
//!   with `-`, `+`, `=` or `@`): JSON gives exact values.
//! - **json**: exact values (serde_json), `format_version` first.

use std::fmt::Write as _;

use secrecy::ExposeSecret;
use serde::Serialize;

use crate::secrets::{Method, Password, Row, Standing};

/// The version of the JSON document of `pwdrift secrets --format json`.
pub const SECRETS_FORMAT_VERSION: &str = "1";

/// What the table and CSV show for a password that is encrypted and no identity was given.
pub const ENCRYPTED: &str = "(encrypted: pass --identity)";
/// What they show for a password the file does not hold.
pub const NOT_RECORDED: &str = "(not recorded)";

fn method(m: Method) -> &'static str {
    match m {
        Method::Patch => "patch",
        Method::ResetPasswordApi => "reset_password_api",
    }
}

fn password_text(p: &Password) -> &str {
    match p {
        Password::Shown(s) => s.expose_secret(),
        Password::Encrypted => ENCRYPTED,
        Password::NotRecorded => NOT_RECORDED,
    }
}

fn set_at(r: &Row) -> String {
    r.set_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The table: one line per user, columns aligned; then the users whose outcome is unknown, with
/// the command that resolves them (`resolve_hint`, e.g. `pwdrift secrets --resolve --secrets
/// FILE`).
pub fn table(rows: &[Row], resolve_hint: &str) -> String {
    if rows.is_empty() {
        return "No password writes recorded (for this selection).\n".to_owned();
    }
    let header = ["USER", "PASSWORD", "OUTCOME", "TENANT", "SET AT", "DETAIL"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                crate::escape::value(&r.user_principal_name).into_owned(),
                crate::escape::value(password_text(&r.password)).into_owned(),
                r.standing.as_str().to_owned(),
                crate::escape::value(&r.tenant).into_owned(),
                set_at(r),
                r.detail
                    .as_deref()
                    .map(|d| crate::escape::value_capped(d, 200))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for c in &cells {
        for (w, v) in widths.iter_mut().zip(c) {
            *w = (*w).max(v.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |values: [&str; 6]| {
        let mut l = String::new();
        for (i, (v, w)) in values.iter().zip(widths).enumerate() {
            if i + 1 == values.len() {
                l.push_str(v);
            } else {
                let _ = write!(l, "{v:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header);
    for c in &cells {
        line(c.each_ref().map(String::as_str));
    }
    let unknown: Vec<&Row> = rows
        .iter()
        .filter(|r| r.standing == Standing::Unknown)
        .collect();
    if !unknown.is_empty() {
        let names: Vec<String> = unknown
            .iter()
            .map(|r| crate::escape::value(&r.user_principal_name).into_owned())
            .collect();
        let _ = write!(
            out,
            "\nOutcome unknown ({}): {}.\nResolve: {resolve_hint} (reads these users back from \
             Graph and records what it finds).\n",
            unknown.len(),
            names.join(", ")
        );
    }
    out
}

/// One CSV field: the formula guard, then the display escaping (a control character as
/// `\u{1b}`, so that a CSV printed to a terminal cannot drive it), then quoted when it must be.
pub fn csv_field(value: &str) -> String {
    let guarded = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    let guarded = crate::escape::value(&guarded).into_owned();
    if guarded.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// The CSV columns, in order.
pub const CSV_HEADER: [&str; 10] = [
    "userPrincipalName",
    "password",
    "outcome",
    "tenant",
    "setAt",
    "userId",
    "method",
    "journalOutcome",
    "seq",
    "detail",
];

/// The CSV document: a header row, then one row per user.
pub fn csv(rows: &[Row]) -> String {
    let mut out = CSV_HEADER.join(",");
    out.push_str("\r\n");
    for r in rows {
        let seq = r.seq.to_string();
        let fields = [
            r.user_principal_name.as_str(),
            password_text(&r.password),
            r.standing.as_str(),
            r.tenant.as_str(),
            &set_at(r),
            r.user_id.as_str(),
            method(r.method),
            r.journal_outcome,
            &seq,
            r.detail.as_deref().unwrap_or(""),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonRow<'a> {
    user_principal_name: &'a str,
    /// null when not shown (see `password_state`)
    password: Option<&'a str>,
    /// `shown`, `encrypted` (no identity given) or `not_recorded`
    password_state: &'static str,
    outcome: &'static str,
    tenant: &'a str,
    set_at: String,
    user_id: &'a str,
    method: &'static str,
    journal_outcome: &'static str,
    seq: u64,
    detail: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonDoc<'a> {
    format_version: &'static str,
    users: Vec<JsonRow<'a>>,
}

/// The JSON document: `{"format_version": "1", "users": [...]}`, exact values.
pub fn json(rows: &[Row]) -> String {
    let users = rows
        .iter()
        .map(|r| JsonRow {
            user_principal_name: &r.user_principal_name,
            password: match &r.password {
                Password::Shown(p) => Some(p.expose_secret()),
                _ => None,
            },
            password_state: match r.password {
                Password::Shown(_) => "shown",
                Password::Encrypted => "encrypted",
                Password::NotRecorded => "not_recorded",
            },
            outcome: r.standing.as_str(),
            tenant: &r.tenant,
            set_at: set_at(r),
            user_id: &r.user_id,
            method: method(r.method),
            journal_outcome: r.journal_outcome,
            seq: r.seq,
            detail: r.detail.as_deref(),
        })
        .collect();
    let doc = JsonDoc {
        format_version: SECRETS_FORMAT_VERSION,
        users,
    };
    serde_json::to_string_pretty(&doc).expect("the secrets view serialises") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_guarded() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("line\nbreak"), "line\\nbreak");
        assert_eq!(csv_field("esc\u{1b}[2J"), "esc\\u{1b}[2J");
        for f in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(
                csv_field(f).trim_start_matches('"').starts_with('\''),
                "{f}"
            );
        }
        assert_eq!(
            csv_field("=HYPERLINK(\"x\",\"y\")"),
            "\"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\""
        );
        assert_eq!(csv_field("\r=x"), "'\\r=x");
        assert_eq!(csv_field("\tx"), "'\\tx");
    }
}
