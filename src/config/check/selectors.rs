//! One entry of `selectors` (exactly one of `all`, `filter`, `riskyUsers`, and a group's
//! directives) and one entry of `exclude` (exactly one of `user`, `group`).

use super::super::diag::Diagnostic;
use super::super::format;
use super::super::ids;
use super::super::model::{ExcludeEntry, Excluded, RiskLevel, Selection, SelectorEntry};
use super::super::yaml::{Entry, Pos};
use super::Checker;

impl Checker<'_> {
    pub(super) fn selector_entry(&mut self, entries: &[Entry], pos: Pos) -> Option<SelectorEntry> {
        let known = self.known_entries(entries, &format::SELECTOR, false);
        let chosen: Vec<&Entry> = known
            .iter()
            .copied()
            .filter(|e| format::SELECTOR.one_of.contains(&e.key.as_str()))
            .collect();
        let select = match chosen.as_slice() {
            [] => {
                self.push(
                    Diagnostic::error(
                        "a selector entry needs exactly one of `all`, `filter`, `riskyUsers`",
                    )
                    .with_label(self.at(pos), "selects no one")
                    .with_help(
                        "write e.g. `all: true`, `filter: \"startsWith(userPrincipalName,'svc-')\"` \
                         or `riskyUsers: { riskLevel: high }`",
                    ),
                );
                None
            }
            [one] => self.selection(one),
            many => {
                let mut d = Diagnostic::error(
                    "a selector entry names exactly one of `all`, `filter`, `riskyUsers`",
                )
                .with_help("write one selector entry per rule");
                for e in many {
                    d = d.with_label(self.at(e.key_pos), "selector");
                }
                self.push(d);
                None
            }
        };
        let directives = self.directives(&known, true, None);
        let (select, origin) = select?;
        let directives = directives?;
        if directives.is_empty() && entries.len() == 1 {
            self.push(
                Diagnostic::warning(
                    "selector declares no directive; nothing will be checked for the users it selects",
                )
                .with_label(origin.clone(), "no directive"),
            );
        }
        Some(SelectorEntry {
            select,
            directives,
            origin,
        })
    }

    /// The value of `all`, `filter` or `riskyUsers`, and where it is.
    fn selection(&mut self, e: &Entry) -> Option<(Selection, super::super::model::Origin)> {
        let at = self.at(e.value.pos());
        match e.key.as_str() {
            "all" => match self.bool(&e.value)? {
                true => Some((Selection::All, at)),
                false => {
                    self.push(
                        Diagnostic::error("`all: false` selects no one")
                            .with_label(at, "only `true` is allowed")
                            .with_help("write `all: true`, or remove the selector entry"),
                    );
                    None
                }
            },
            "filter" => {
                let f = self.string(&e.value, "an OData $filter on users", false)?;
                if f.trim().is_empty() {
                    self.push(
                        Diagnostic::error("empty filter")
                            .with_label(at, "empty")
                            .with_help(
                                "write an OData $filter on users, e.g. `accountEnabled eq true`",
                            ),
                    );
                    return None;
                }
                Some((Selection::Filter(f.to_owned()), at))
            }
            "riskyUsers" => {
                let m = self.mapping(&e.value, "a mapping with `riskLevel`")?;
                let known = self.known_entries(m, &format::RISKY, false);
                let Some(level) = known.iter().find(|k| k.key == "riskLevel") else {
                    self.missing(e.value.pos(), "riskLevel", &format::RISKY, m);
                    return None;
                };
                let s = self.string(&level.value, "high, medium or low", false)?;
                let level_at = self.at(level.value.pos());
                let level = match s {
                    "high" => RiskLevel::High,
                    "medium" => RiskLevel::Medium,
                    "low" => RiskLevel::Low,
                    other => {
                        let d = Diagnostic::error(format!(
                            "unknown risk level `{}`",
                            crate::escape::Shown(other)
                        ))
                        .with_label(level_at, "risk level")
                        .with_help("write `high`, `medium` or `low`");
                        self.push(d);
                        return None;
                    }
                };
                Some((Selection::RiskyUsers(level), at))
            }
            _ => None,
        }
    }

    pub(super) fn exclude_entry(&mut self, entries: &[Entry], pos: Pos) -> Option<ExcludeEntry> {
        let known = self.known_entries(entries, &format::EXCLUDE, false);
        let e = match known.as_slice() {
            [one] => *one,
            [] => {
                if entries.is_empty() || known.len() == entries.len() {
                    self.push(
                        Diagnostic::error("an exclude entry needs `user` or `group`")
                            .with_label(self.at(pos), "excludes no one")
                            .with_help(
                                "write `- user: breakglass@contoso.com` or `- group: Break Glass`",
                            ),
                    );
                }
                return None;
            }
            many => {
                let mut d =
                    Diagnostic::error("an exclude entry names exactly one of `user`, `group`")
                        .with_help("write one exclude entry per user or group");
                for e in many {
                    d = d.with_label(self.at(e.key_pos), "excluded");
                }
                self.push(d);
                return None;
            }
        };
        let origin = self.at(e.value.pos());
        let who = match e.key.as_str() {
            "user" => {
                let s = self.string(&e.value, "a user principal name, object id or SID", false)?;
                match ids::parse_user_ref(s) {
                    Ok(u) => Excluded::User(u),
                    Err(err) => {
                        let d =
                            Diagnostic::error(err.to_string()).with_label(origin, "malformed user");
                        self.push(d);
                        return None;
                    }
                }
            }
            _ => {
                let s = self.string(&e.value, "a group display name or object id", false)?;
                match ids::parse_group_ref(s) {
                    Ok(g) => Excluded::Group(g),
                    Err(err) => {
                        let d = Diagnostic::error(err.to_string())
                            .with_label(origin, "malformed group");
                        self.push(d);
                        return None;
                    }
                }
            }
        };
        Some(ExcludeEntry { who, origin })
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::model::{Excluded, RiskLevel, Selection};
    use super::super::testing::*;

    #[test]
    fn selectors_and_exclusions_map_into_the_model() {
        let (doc, diags) = check(&format!(
            "{HEAD}selectors:\n  - all: true\n    forceChangePasswordNextSignIn: false\n  - filter: \"department eq 'Sales'\"\n    requirePasswordChange: {{ since: 2026-11-20T00:00:00Z }}\n  - riskyUsers: {{ riskLevel: high }}\n    resetPassword: {{ notBefore: 2026-11-20T00:00:00Z, password: {{ systemGenerated: true }} }}\nexclude:\n  - user: breakglass@contoso.com\n  - group: Break Glass\n"
        ));
        assert!(diags.is_empty(), "{diags:?}");
        let doc = doc.unwrap();
        assert!(doc.users.is_empty() && doc.groups.is_empty());
        let kinds: Vec<&Selection> = doc.selectors.iter().map(|s| &s.select).collect();
        assert_eq!(
            kinds,
            [
                &Selection::All,
                &Selection::Filter("department eq 'Sales'".into()),
                &Selection::RiskyUsers(RiskLevel::High)
            ]
        );
        assert_eq!(doc.selectors[0].origin.line, 4);
        assert_eq!(doc.selectors[0].origin.column, 10);
        assert!(matches!(doc.exclude[0].who, Excluded::User(_)));
        assert!(matches!(doc.exclude[1].who, Excluded::Group(_)));
        assert_eq!(doc.exclude[1].origin.line, 12);
    }

    #[test]
    fn a_selector_names_exactly_one_rule_and_a_valid_one() {
        let errs = errors(&format!(
            "{HEAD}selectors:\n  - forceChangePasswordNextSignIn: false\n  - all: true\n    filter: x eq 1\n  - all: false\n  - filter: ''\n  - riskyUsers: {{ riskLevel: critical }}\n  - riskyUsers: {{}}\n  - filter: x eq 1\n    resetPassword: {{ notBefore: 2026-11-20T00:00:00Z, password: {{ env: PW }} }}\n"
        ));
        assert_eq!(errs.len(), 7, "{errs:?}");
        assert!(errs[0].contains("needs exactly one of"));
        assert!(errs[1].contains("names exactly one of"));
        assert!(errs[2].contains("`all: false` selects no one"));
        assert!(errs[3].contains("empty filter"));
        assert!(errs[4].contains("unknown risk level `critical`"));
        assert!(errs[5].contains("missing required key `riskLevel`"));
        assert!(errs[6].contains("env"), "{}", errs[6]);
    }

    #[test]
    fn an_exclusion_names_exactly_one_user_or_group() {
        let errs = errors(&format!(
            "{HEAD}selectors: [{{ all: true, allowPrivileged: false, forceChangePasswordNextSignIn: false }}]\nexclude:\n  - {{}}\n  - {{ user: a@contoso.com, group: G }}\n  - user: nobody\n  - usr: a@contoso.com\n"
        ));
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs[0].contains("needs `user` or `group`"));
        assert!(errs[1].contains("exactly one of `user`, `group`"));
        assert!(errs[2].contains("not a user principal name"), "{}", errs[2]);
        assert!(errs[3].contains("unknown key `usr`"));
    }

    #[test]
    fn only_selectors_and_exclusions_is_a_file() {
        let (doc, diags) = check(&format!(
            "{HEAD}selectors:\n  - all: true\n    forceChangePasswordNextSignIn: false\nexclude:\n  - user: breakglass@contoso.com\n"
        ));
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(doc.unwrap().selectors.len(), 1);
        let errs = errors(&format!("{HEAD}exclude:\n  - user: a@contoso.com\n"));
        assert!(errs[0].starts_with("nothing is declared"), "{errs:?}");
    }
}
