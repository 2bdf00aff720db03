//! The helpdesk's view of a secrets file (`pwdrift secrets`): per user, the last password pwdrift
//! set and what became of it, folded from the journal ([`Journal`]) and its recorded passwords
//! ([`stored_passwords`]). Pure: the caller reads the file and the age identities.
//!
//! The journal's outcomes are mapped onto three a helpdesk acts on ([`Standing`]): `applied`
//! (the user has this password), `unknown` (no outcome recorded, or `unknown`: resolve it with
//! `pwdrift secrets --resolve`, which reads the user back) and `failed` (`not_applied`; or
//! `password_unknown`, a reset that took effect with a password nobody knows: reset again). The
//! journal's own word stays in [`Row::journal_outcome`]. `superseded` entries are replaced by a
//! later one of the same user and never shown.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::journal::{Entry, Journal, ReadPasswordsError, StoredPassword};
use super::record::{Method, Outcome};

/// What a helpdesk can tell the user about the last password pwdrift set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// the user has this password
    Applied,
    /// nobody knows yet whether the write landed: `pwdrift secrets --resolve`
    Unknown,
    /// the write did not land, or it landed with a password nobody knows
    Failed,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Applied => "applied",
            Standing::Unknown => "unknown",
            Standing::Failed => "failed",
        }
    }
}

/// The password of a row, as far as it can be shown.
#[derive(Clone, Debug)]
pub enum Password {
    /// recorded, and readable (plain, or decrypted with the identity given)
    Shown(SecretString),
    /// recorded, encrypted to age recipients, and no identity was given
    Encrypted,
    /// not recorded: the operator's own (an `env` or `file` source), or a system-generated
    /// password lost with its answer
    NotRecorded,
}

/// One user's last password write.
#[derive(Clone, Debug)]
pub struct Row {
    pub tenant: String,
    pub user_id: String,
    pub user_principal_name: String,
    /// when the write's intent was recorded (before the request was sent)
    pub set_at: DateTime<Utc>,
    pub method: Method,
    pub seq: u64,
    pub standing: Standing,
    /// the journal's outcome: `applied`, `not_applied`, `unknown`, `password_unknown`, or
    /// `pending` (none recorded)
    pub journal_outcome: &'static str,
    pub password: Password,
    /// the outcome's detail (never a secret), or what to do
    pub detail: Option<String>,
}

/// Which rows to show.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// only these users (UPN, case-insensitive); empty: everyone
    pub users: Vec<String>,
    /// only users whose last password was set at or after this time
    pub since: Option<DateTime<Utc>>,
}

impl Filter {
    fn keeps(&self, e: &Entry) -> bool {
        (self.users.is_empty()
            || self
                .users
                .iter()
                .any(|u| u.eq_ignore_ascii_case(&e.user_principal_name)))
            && self.since.is_none_or(|s| e.at >= s)
    }
}

fn journal_outcome(o: Option<Outcome>) -> &'static str {
    match o {
        None => "pending",
        Some(Outcome::Applied) => "applied",
        Some(Outcome::NotApplied) => "not_applied",
        Some(Outcome::Unknown) => "unknown",
        Some(Outcome::Superseded) => "superseded",
        Some(Outcome::PasswordUnknown) => "password_unknown",
    }
}

fn standing(o: Option<Outcome>) -> Standing {
    match o {
        Some(Outcome::Applied) => Standing::Applied,
        None | Some(Outcome::Unknown) | Some(Outcome::Superseded) => Standing::Unknown,
        Some(Outcome::NotApplied) | Some(Outcome::PasswordUnknown) => Standing::Failed,
    }
}

/// Per user (tenant and object id), the last entry of `journal` that no later one superseded,
/// in journal order, kept by `filter`; its password from `stored`, decrypted with `identities`
/// (none given: an encrypted password is [`Password::Encrypted`]). An identity that opens none
/// of a shown password is an error (naming no password).
pub fn rows(
    journal: &Journal,
    stored: &BTreeMap<u64, StoredPassword>,
    identities: &[age::x25519::Identity],
    filter: &Filter,
) -> Result<Vec<Row>, ReadPasswordsError> {
    let mut last: HashMap<(String, String), &Entry> = HashMap::new();
    for e in journal.entries() {
        if e.outcome == Some(Outcome::Superseded) {
            continue;
        }
        last.insert((e.tenant.to_lowercase(), e.user_id.clone()), e);
    }
    let mut chosen: Vec<&Entry> = last.into_values().filter(|e| filter.keeps(e)).collect();
    chosen.sort_by_key(|e| e.seq);
    chosen
        .into_iter()
        .map(|e| {
            let password = match stored.get(&e.seq) {
                None => Password::NotRecorded,
                Some(p) => match p.open(identities)? {
                    Some(p) => Password::Shown(p),
                    None => Password::Encrypted,
                },
            };
            let standing = standing(e.outcome);
            let detail = match (e.outcome, &e.detail) {
                (Some(Outcome::PasswordUnknown), d) => Some(format!(
                    "{}the reset took effect but its password was not recorded: reset the user \
                     again",
                    d.as_deref().map(|d| format!("{d}; ")).unwrap_or_default()
                )),
                (_, Some(d)) => Some(d.clone()),
                (None, None) => {
                    Some("no outcome recorded (the run was interrupted): --resolve".into())
                }
                (Some(Outcome::Unknown), None) => Some("outcome unknown: --resolve".into()),
                _ => None,
            };
            Ok(Row {
                tenant: e.tenant.clone(),
                user_id: e.user_id.clone(),
                user_principal_name: e.user_principal_name.clone(),
                set_at: e.at,
                method: e.method,
                seq: e.seq,
                standing,
                journal_outcome: journal_outcome(e.outcome),
                password,
                detail,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn line(v: serde_json::Value) -> String {
        format!("{v}\n")
    }

    fn intent(seq: u64, at: &str, upn: &str, password: Option<serde_json::Value>) -> String {
        let mut v = serde_json::json!({"event": "intent", "seq": seq, "at": at, "tenant": "contoso.com",
            "userId": format!("id-{upn}"), "userPrincipalName": upn, "method": "patch"});
        if let Some(p) = password {
            v["password"] = p;
        }
        line(v)
    }

    fn outcome(seq: u64, o: &str) -> String {
        line(
            serde_json::json!({"event": "outcome", "seq": seq, "at": "2026-01-02T00:00:00Z", "outcome": o}),
        )
    }

    fn view(text: &str, ids: &[age::x25519::Identity], filter: &Filter) -> Vec<Row> {
        let j = Journal::parse(std::path::Path::new("s"), text).unwrap();
        rows(&j, &super::super::stored_passwords(text), ids, filter).unwrap()
    }

    #[test]
    fn the_last_password_of_each_user_with_its_standing() {
        let text = [
            intent(1, "2026-01-01T00:00:00Z", "a@x", Some("First-1!a".into())),
            outcome(1, "applied"),
            intent(2, "2026-01-01T00:00:01Z", "b@x", Some("Bee-2!bbb".into())),
            outcome(2, "not_applied"),
            intent(3, "2026-01-01T00:00:02Z", "a@x", Some("Second-2!a".into())),
            outcome(3, "applied"),
            intent(4, "2026-01-01T00:00:03Z", "c@x", None),
            intent(5, "2026-01-01T00:00:04Z", "d@x", None),
            outcome(5, "password_unknown"),
            intent(6, "2026-01-01T00:00:05Z", "e@x", Some("Eee-5!eee".into())),
            outcome(6, "unknown"),
            intent(7, "2026-01-01T00:00:06Z", "f@x", Some("Old-6!fff".into())),
            outcome(7, "superseded"),
        ]
        .concat();
        let rows = view(&text, &[], &Filter::default());
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.user_principal_name.as_str(),
                    r.standing,
                    r.journal_outcome,
                    match &r.password {
                        Password::Shown(p) => p.expose_secret().to_owned(),
                        Password::Encrypted => "(enc)".into(),
                        Password::NotRecorded => "-".into(),
                    },
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("b@x", Standing::Failed, "not_applied", "Bee-2!bbb".into()),
                ("a@x", Standing::Applied, "applied", "Second-2!a".into()),
                ("c@x", Standing::Unknown, "pending", "-".into()),
                ("d@x", Standing::Failed, "password_unknown", "-".into()),
                ("e@x", Standing::Unknown, "unknown", "Eee-5!eee".into()),
            ]
        );
        assert!(rows[3]
            .detail
            .as_deref()
            .unwrap()
            .contains("reset the user again"));
        assert!(rows[2].detail.as_deref().unwrap().contains("--resolve"));
    }

    #[test]
    fn filters_by_user_and_time_of_the_last_write() {
        let text = [
            intent(1, "2026-01-01T00:00:00Z", "a@x", Some("First-1!a".into())),
            intent(2, "2026-03-01T00:00:00Z", "B@x", Some("Bee-2!bbb".into())),
        ]
        .concat();
        let only_b = Filter {
            users: vec!["b@X".into()],
            since: None,
        };
        assert_eq!(view(&text, &[], &only_b).len(), 1);
        let since = Filter {
            users: vec![],
            since: Some("2026-02-01T00:00:00Z".parse().unwrap()),
        };
        let r = view(&text, &[], &since);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].user_principal_name, "B@x");
    }

    #[test]
    fn encrypted_passwords_need_the_identity_and_a_wrong_one_is_an_error() {
        let id = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let armored = crate::secrets::encrypt_armored(&[id.to_public()], b"Sealed-1!aa").unwrap();
        let text = intent(
            1,
            "2026-01-01T00:00:00Z",
            "a@x",
            Some(serde_json::json!({ "age": armored })),
        );
        let r = view(&text, &[], &Filter::default());
        assert!(matches!(r[0].password, Password::Encrypted));
        let r = view(&text, &[other.clone(), id], &Filter::default());
        match &r[0].password {
            Password::Shown(p) => assert_eq!(p.expose_secret(), "Sealed-1!aa"),
            p => panic!("{p:?}"),
        }
        let j = Journal::parse(std::path::Path::new("s"), &text).unwrap();
        let err = rows(
            &j,
            &super::super::stored_passwords(&text),
            &[other],
            &Filter::default(),
        )
        .unwrap_err();
        assert!(!err.to_string().contains("Sealed"), "{err}");
    }
}
