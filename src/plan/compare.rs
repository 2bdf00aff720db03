//! How a saved plan differs from the plan derived again at apply time. `pwdrift apply FILE`
//! trusts the reviewed desired state, not the document: it plans again from the files and filters
//! the document records, against live state, and applies only if [`compare`] finds no
//! [`Mismatch`].

use crate::config::PasswordSource;
use crate::graph::model::ForceFlags;

use super::{Action, Blocker, Plan, UserPlan};

/// How a saved plan differs from the plan derived again at apply time ([`compare`]), by kind;
/// each line names a user (or a tenant). Empty everywhere: the same plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mismatch {
    /// The saved plan's tenant id is not the live one (the credentials are for another tenant).
    pub other_tenant: Vec<String>,
    /// Changes in the saved plan that the safety rails block now (a privileged user without
    /// `allowPrivileged` in desired state, the caller's own account).
    pub protected: Vec<String>,
    /// Users whose live state changed since the plan was made (fingerprint).
    pub stale: Vec<String>,
    /// Anything else that differs: action, reset method, password source, flags,
    /// `allow_privileged`, users or tenants missing or extra.
    pub different: Vec<String>,
}

impl Mismatch {
    pub fn is_empty(&self) -> bool {
        self.other_tenant.is_empty()
            && self.protected.is_empty()
            && self.stale.is_empty()
            && self.different.is_empty()
    }
}

/// A short description of an action, for the lines of a [`Mismatch`] (no reason text; password
/// sources by name, never a secret).
fn describe_action(action: &Action) -> String {
    let flags = |f: &ForceFlags| {
        format!(
            "forceChangePasswordNextSignIn {}, forceChangePasswordNextSignInWithMfa {}",
            f.force_change_password_next_sign_in, f.force_change_password_next_sign_in_with_mfa
        )
    };
    match action {
        Action::NoChange { .. } => "no change".to_owned(),
        Action::SetFlags { after, .. } => format!("set flags ({})", flags(after)),
        Action::ResetPassword {
            method,
            password,
            after,
            ..
        } => {
            let source = match password {
                PasswordSource::Generate { length } => format!("generated, {length} characters"),
                PasswordSource::Env { var } => format!("from ${var}"),
                PasswordSource::File { path } => format!("from file {}", path.display()),
                PasswordSource::SystemGenerated => "system-generated".to_owned(),
            };
            format!(
                "reset the password ({}, {source}), then {}",
                method.label(),
                flags(after)
            )
        }
        Action::Blocked { blocker, .. } => format!("blocked ({})", blocker.label()),
    }
}

/// The deterministic content of an action: everything but its reason or detail text.
fn action_content(action: &Action) -> Action {
    let mut a = action.clone();
    match &mut a {
        Action::NoChange { reason }
        | Action::SetFlags { reason, .. }
        | Action::ResetPassword { reason, .. } => reason.clear(),
        Action::Blocked { detail, .. } => detail.clear(),
    }
    a
}

/// Compares a saved plan with the plan derived again from the same desired-state files and
/// filters against live state ([`Mismatch`]). Compared: the tenants (by name, and their ids) and,
/// per user (by object id), the fingerprint of the live state, the action with its reset method,
/// password source and flags, and `allow_privileged`. Not compared: `created_at`, reason and
/// detail texts, notes, the user's order.
pub fn compare(saved: &Plan, derived: &Plan) -> Mismatch {
    use std::collections::HashMap;
    let mut m = Mismatch::default();
    for st in &saved.tenants {
        let Some(dt) = derived
            .tenants
            .iter()
            .find(|d| d.tenant.eq_ignore_ascii_case(&st.tenant))
        else {
            m.different.push(format!(
                "tenant {}: in the saved plan, not in the plan the desired state gives now",
                st.tenant
            ));
            continue;
        };
        if !dt.tenant_id.eq_ignore_ascii_case(&st.tenant_id) {
            m.other_tenant.push(format!(
                "{}: the plan says tenant id {}, the credentials are for {}",
                st.tenant, st.tenant_id, dt.tenant_id
            ));
            continue;
        }
        let live: HashMap<String, &UserPlan> = dt
            .users
            .iter()
            .map(|u| (u.user_id.to_ascii_lowercase(), u))
            .collect();
        for su in &st.users {
            let name = format!("{} ({})", su.user_principal_name, su.user_id);
            let Some(du) = live.get(&su.user_id.to_ascii_lowercase()) else {
                m.different.push(format!(
                    "{name}: in the saved plan, not in the plan the desired state gives now"
                ));
                continue;
            };
            if du.fingerprint != su.fingerprint {
                m.stale.push(format!("{name}: changed since the plan"));
                continue;
            }
            let blocked_now = matches!(
                du.action,
                Action::Blocked {
                    blocker: Blocker::PrivilegedTarget | Blocker::CallersOwnAccount,
                    ..
                }
            );
            if su.action.is_change() && blocked_now {
                let Action::Blocked { detail, .. } = &du.action else {
                    unreachable!("matched above")
                };
                m.protected.push(format!(
                    "{name}: the saved plan says {}; desired and live state say {}: {detail}",
                    describe_action(&su.action),
                    describe_action(&du.action)
                ));
                continue;
            }
            let mut why = Vec::new();
            if action_content(&su.action) != action_content(&du.action) {
                why.push(format!(
                    "the saved plan says {}; desired and live state say {}",
                    describe_action(&su.action),
                    describe_action(&du.action)
                ));
            }
            if su.allow_privileged != du.allow_privileged {
                why.push(format!(
                    "allow_privileged is {} in the saved plan, {} in desired state",
                    su.allow_privileged, du.allow_privileged
                ));
            }
            if !why.is_empty() {
                m.different.push(format!("{name}: {}", why.join("; ")));
            }
        }
        // (a set: a saved plan may list 100,000 users, and a scan per user would be quadratic)
        let saved_ids: std::collections::HashSet<String> = st
            .users
            .iter()
            .map(|s| s.user_id.to_ascii_lowercase())
            .collect();
        for du in &dt.users {
            if !saved_ids.contains(&du.user_id.to_ascii_lowercase()) {
                m.different.push(format!(
                    "{} ({}): managed by the desired state now, not in the saved plan",
                    du.user_principal_name, du.user_id
                ));
            }
        }
    }
    for dt in &derived.tenants {
        if !saved
            .tenants
            .iter()
            .any(|s| s.tenant.eq_ignore_ascii_case(&dt.tenant))
        {
            m.different.push(format!(
                "tenant {}: in the plan the desired state gives now, not in the saved plan",
                dt.tenant
            ));
        }
    }
    m
}
