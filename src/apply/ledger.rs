//! Where each user of a run stands ([`Ledger`]): in flight, written, or done with its result,
//! so that a run stopped before its end (the grace after a signal expired) still reports what
//! was done, what was in flight and what was not started.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::report::{result, Status, UserResult, UNKNOWN_HINT};
use crate::plan::{Action, Plan};

/// Where each user of a run stands, written by the concurrent writes as they go and read when
/// the run must stop before its end (the grace after a signal expired): a user is in flight from
/// the moment its intent is recorded (its write may be on the wire), written once Graph
/// acknowledged it, and done with its final result.
#[derive(Debug, Default)]
pub struct Ledger(Mutex<HashMap<(String, String), Stage>>);

#[derive(Debug)]
/// How far one user's write has come.
pub(super) enum Stage {
    InFlight,
    Written,
    Done(Box<UserResult>),
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Stage>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn set(&self, tenant: &str, user_id: &str, stage: Stage) {
        self.lock()
            .insert((tenant.to_owned(), user_id.to_owned()), stage);
    }

    /// Records a final result and returns it.
    pub(super) fn done(&self, r: UserResult) -> UserResult {
        self.set(&r.tenant, &r.user_id, Stage::Done(Box::new(r.clone())));
        r
    }

    /// Every user of `plan`, in plan order, as it stands now: a finished user as it ended; a
    /// write in flight (sent, or about to be) as `unknown`, with the hint to resolve it; a write
    /// Graph acknowledged but not yet read back as `unknown` too (it was not verified); every
    /// other change as `not_started`.
    pub fn snapshot(&self, plan: &Plan, why: &str) -> Vec<UserResult> {
        let stages = self.lock();
        let mut out = Vec::new();
        for t in &plan.tenants {
            for u in &t.users {
                let stage = stages.get(&(t.tenant.clone(), u.user_id.clone()));
                out.push(match (stage, &u.action) {
                    (Some(Stage::Done(r)), _) => (**r).clone(),
                    (_, Action::NoChange { .. }) => result(t, u, Status::Unchanged, None),
                    (_, Action::Blocked { detail, .. }) => {
                        result(t, u, Status::Blocked, Some(detail.clone()))
                    }
                    (Some(Stage::InFlight), _) => {
                        let mut r = result(
                            t,
                            u,
                            Status::Unknown,
                            Some(format!("the write was in flight when {why}")),
                        );
                        r.hint = Some(UNKNOWN_HINT.into());
                        r
                    }
                    (Some(Stage::Written), _) => {
                        let mut r = result(
                            t,
                            u,
                            Status::Unknown,
                            Some(format!(
                                "written (Graph acknowledged it) but not yet read back when {why}"
                            )),
                        );
                        r.hint = Some(
                            "run `pwdrift plan` with the same desired state: it shows whether the \
                             change holds"
                                .into(),
                        );
                        r
                    }
                    (None, _) => result(
                        t,
                        u,
                        Status::NotStarted,
                        Some(format!("not written: {why} before this change was started")),
                    ),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PasswordSource;
    use crate::graph::model::ForceFlags;
    use crate::plan::{ResetMethod, TenantPlan, UserPlan};
    use chrono::Utc;

    fn user_plan(id: &str, action: Action) -> UserPlan {
        UserPlan {
            user_id: id.into(),
            user_principal_name: format!("{id}@x"),
            declared_at: vec![],
            fingerprint: String::new(),
            allow_privileged: false,
            synced: false,
            last_password_change: None,
            action,
        }
    }

    /// A run stopped before its end reports every user of the plan, in plan order: finished
    /// users as they ended, writes in flight or not yet read back as `unknown` (with a hint),
    /// the other changes as `not_started`, and users with nothing to do as such even in a
    /// tenant that had not started.
    #[test]
    fn a_ledger_snapshot_says_where_every_user_stands() {
        let reset = || Action::ResetPassword {
            method: ResetMethod::PatchPasswordProfile,
            password: PasswordSource::Generate { length: 20 },
            before: ForceFlags::default(),
            after: ForceFlags::default(),
            reason: String::new(),
        };
        let tenant = |name: &str, users: Vec<UserPlan>| TenantPlan {
            tenant: name.into(),
            tenant_id: name.into(),
            decided_at: Utc::now(),
            clock: crate::plan::ClockSource::Graph,
            users,
            notes: vec![],
            excluded: 0,
        };
        let t1 = tenant(
            "t1",
            vec![
                user_plan("a", reset()),
                user_plan("b", reset()),
                user_plan("c", reset()),
                user_plan("d", reset()),
            ],
        );
        let t2 = tenant(
            "t2",
            vec![
                user_plan("e", reset()),
                user_plan(
                    "f",
                    Action::NoChange {
                        reason: String::new(),
                    },
                ),
            ],
        );
        let plan = Plan {
            format_version: "3".into(),
            pwdrift_version: "test".into(),
            created_at: Utc::now(),
            tenants: vec![t1.clone(), t2],
            content_hash: None,
            made_from: Default::default(),
        };
        let ledger = Ledger::default();
        ledger.set("t1", "c", Stage::InFlight);
        ledger.set("t1", "b", Stage::Written);
        ledger.done(result(&t1, &t1.users[0], Status::Verified, None));
        let got = ledger.snapshot(&plan, "stopped");
        let statuses: Vec<(&str, Status)> =
            got.iter().map(|r| (r.user_id.as_str(), r.status)).collect();
        assert_eq!(
            statuses,
            [
                ("a", Status::Verified),
                ("b", Status::Unknown),
                ("c", Status::Unknown),
                ("d", Status::NotStarted),
                ("e", Status::NotStarted),
                ("f", Status::Unchanged),
            ]
        );
        assert!(got[2].hint.as_deref().unwrap().contains("--secrets-append"));
        assert!(got[1]
            .detail
            .as_deref()
            .unwrap()
            .contains("not yet read back"));
    }
}
