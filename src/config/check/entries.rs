//! One entry of `users` or `groups`: who it names, and its directives.

use super::super::diag::Diagnostic;
use super::super::format;
use super::super::ids;
use super::super::model::{GroupEntry, UserEntry};
use super::super::yaml::{Entry, Pos};
use super::Checker;

impl Checker<'_> {
    pub(super) fn user_entry(&mut self, entries: &[Entry], pos: Pos) -> Option<UserEntry> {
        let known = self.known_entries(entries, &format::USER, false);
        let user = match known.iter().find(|e| e.key == "user") {
            None => {
                self.missing(pos, "user", &format::USER, entries);
                None
            }
            Some(e) => self
                .string(&e.value, "a user principal name, object id or SID", false)
                .and_then(|s| match ids::parse_user_ref(s) {
                    Ok(u) => Some((u, self.at(e.value.pos()))),
                    Err(err) => {
                        let msg = err.to_string();
                        let label = if msg.contains("GUID") {
                            "malformed object id"
                        } else if msg.contains("SID") && s.to_ascii_uppercase().starts_with("S-") {
                            "malformed SID"
                        } else {
                            "malformed user principal name"
                        };
                        let d = Diagnostic::error(msg).with_label(self.at(e.value.pos()), label);
                        self.push(d);
                        None
                    }
                }),
        };
        let directives = self.directives(&known, false, user.as_ref().map(|u| &u.0));
        let (user, origin) = user?;
        let directives = directives?;
        // Only when nothing else is written: an entry whose other keys were refused has been
        // reported already.
        if directives.is_empty() && entries.len() == 1 {
            self.push(
                Diagnostic::warning(format!("user `{user}` declares no directive; nothing will be checked for it"))
                    .with_label(origin.clone(), "no directive")
                    .with_help("add e.g. `forceChangePasswordNextSignIn: false`, `requirePasswordChange` or `resetPassword`"),
            );
        }
        Some(UserEntry {
            user,
            directives,
            origin,
        })
    }

    pub(super) fn group_entry(&mut self, entries: &[Entry], pos: Pos) -> Option<GroupEntry> {
        let known = self.known_entries(entries, &format::GROUP, false);
        let group = match known.iter().find(|e| e.key == "group") {
            None => {
                self.missing(pos, "group", &format::GROUP, entries);
                None
            }
            Some(e) => self
                .string(&e.value, "a group display name or object id", false)
                .and_then(|s| match ids::parse_group_ref(s) {
                    Ok(g) => Some((g, self.at(e.value.pos()))),
                    Err(err) => {
                        let d = Diagnostic::error(err.to_string())
                            .with_label(self.at(e.value.pos()), "malformed group");
                        self.push(d);
                        None
                    }
                }),
        };
        let directives = self.directives(&known, true, None);
        let (group, origin) = group?;
        let directives = directives?;
        // Only when nothing else is written: an entry whose other keys were refused has been
        // reported already.
        if directives.is_empty() && entries.len() == 1 {
            self.push(
                Diagnostic::warning(format!("group `{group}` declares no directive; nothing will be checked for its members"))
                    .with_label(origin.clone(), "no directive"),
            );
        }
        Some(GroupEntry {
            group,
            directives,
            origin,
        })
    }
}
