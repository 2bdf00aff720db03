//! Safety rails: whether a plan may be applied at all, decided before anything is written.
//!
//! A pure function of the plan's counts and the options (`--max-changes N`, `--change-threshold
//! PERCENT`, `--force`), so that every boundary is unit-tested here rather than in the command.
//! The rails, in order:
//!
//! 1. more changes than `--max-changes` is refused, whatever `--force` says;
//! 2. a change set touching more than `--change-threshold` percent (default 30) of the managed
//!    users is refused without `--force`, when there are at least [`MIN_MANAGED_FOR_THRESHOLD`]
//!    managed users (as octoDNS does: a small tenant would trip it on every run).
//!
//! Managed users are all the users of the plan (unchanged, changed and blocked); changes are the
//! users whose flags are set or whose password is reset. Which users are blocked (privileged
//! roles, the caller's own account) is decided by [`crate::diff`], not here.

use crate::plan::{Plan, Summary};

/// The threshold rail applies from this many managed users.
pub const MIN_MANAGED_FOR_THRESHOLD: usize = 10;

/// The options of the rails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rails {
    /// `--max-changes N`
    pub max_changes: Option<usize>,
    /// `--change-threshold PERCENT`
    pub change_threshold: u8,
    /// `--force`: lifts the threshold rail (not `--max-changes`)
    pub force: bool,
}

/// Why a plan is refused. The messages are shown to the user as is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the plan has {changes} changes, more than --max-changes {max}; nothing was written")]
    TooManyChanges { changes: usize, max: usize },
    #[error(
        "the plan changes {changes} of {managed} managed users ({}%), more than the {threshold}% \
         threshold; review it and pass --force to proceed (or raise --change-threshold); nothing \
         was written",
        changes * 100 / (*managed).max(1)
    )]
    OverThreshold {
        changes: usize,
        managed: usize,
        threshold: u8,
    },
}

impl Rails {
    /// Whether `plan` may be applied.
    pub fn check(&self, plan: &Plan) -> Result<(), Refusal> {
        self.check_summary(&plan.summary())
    }

    /// [`Rails::check`] on a plan's counts.
    pub fn check_summary(&self, s: &Summary) -> Result<(), Refusal> {
        let changes = s.set_flags + s.reset_password;
        if let Some(max) = self.max_changes {
            if changes > max {
                return Err(Refusal::TooManyChanges { changes, max });
            }
        }
        let managed = s.total();
        let over = changes * 100 > usize::from(self.change_threshold) * managed;
        if managed >= MIN_MANAGED_FOR_THRESHOLD && over && !self.force {
            return Err(Refusal::OverThreshold {
                changes,
                managed,
                threshold: self.change_threshold,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: Rails = Rails {
        max_changes: None,
        change_threshold: 30,
        force: false,
    };

    fn counts(
        unchanged: usize,
        set_flags: usize,
        reset_password: usize,
        blocked: usize,
    ) -> Summary {
        Summary {
            unchanged,
            set_flags,
            reset_password,
            blocked,
        }
    }

    #[test]
    fn threshold_applies_from_ten_managed_users() {
        // 9 managed users: even 9 changes (100%) pass
        assert_eq!(DEFAULT.check_summary(&counts(0, 9, 0, 0)), Ok(()));
        assert_eq!(DEFAULT.check_summary(&counts(4, 3, 2, 0)), Ok(()));
        // 10 managed users: 4 changes (40%) are refused
        assert_eq!(
            DEFAULT.check_summary(&counts(6, 4, 0, 0)),
            Err(Refusal::OverThreshold {
                changes: 4,
                managed: 10,
                threshold: 30
            })
        );
    }

    #[test]
    fn exactly_the_threshold_passes_one_more_is_refused() {
        // 3 of 10 is exactly 30%: allowed
        assert_eq!(DEFAULT.check_summary(&counts(7, 3, 0, 0)), Ok(()));
        // 30 of 100 allowed, 31 of 100 refused
        assert_eq!(DEFAULT.check_summary(&counts(70, 20, 10, 0)), Ok(()));
        assert!(DEFAULT.check_summary(&counts(69, 20, 11, 0)).is_err());
        // 4 of 13 is 30.7%: refused (no rounding down)
        assert!(DEFAULT.check_summary(&counts(9, 4, 0, 0)).is_err());
    }

    #[test]
    fn blocked_and_unchanged_users_count_as_managed_not_as_changes() {
        // 3 changes, 7 blocked: 30% of 10, allowed
        assert_eq!(DEFAULT.check_summary(&counts(0, 2, 1, 7)), Ok(()));
        // 4 changes of 10 with 6 blocked: refused
        assert!(DEFAULT.check_summary(&counts(0, 2, 2, 6)).is_err());
        // blocked users alone are no change
        assert_eq!(DEFAULT.check_summary(&counts(0, 0, 0, 50)), Ok(()));
    }

    #[test]
    fn force_lifts_the_threshold_but_not_max_changes() {
        let forced = Rails {
            force: true,
            ..DEFAULT
        };
        assert_eq!(forced.check_summary(&counts(0, 100, 0, 0)), Ok(()));
        let capped = Rails {
            max_changes: Some(5),
            ..forced
        };
        assert_eq!(capped.check_summary(&counts(0, 5, 0, 0)), Ok(()));
        assert_eq!(
            capped.check_summary(&counts(0, 3, 3, 0)),
            Err(Refusal::TooManyChanges { changes: 6, max: 5 })
        );
    }

    #[test]
    fn max_changes_is_checked_first_and_zero_means_none_allowed() {
        let rails = Rails {
            max_changes: Some(0),
            ..DEFAULT
        };
        assert_eq!(rails.check_summary(&counts(10, 0, 0, 0)), Ok(()));
        assert_eq!(
            rails.check_summary(&counts(0, 20, 0, 0)),
            Err(Refusal::TooManyChanges {
                changes: 20,
                max: 0
            })
        );
    }

    #[test]
    fn other_thresholds() {
        let zero = Rails {
            change_threshold: 0,
            ..DEFAULT
        };
        assert!(zero.check_summary(&counts(9, 1, 0, 0)).is_err());
        assert_eq!(zero.check_summary(&counts(10, 0, 0, 0)), Ok(()));
        let all = Rails {
            change_threshold: 100,
            ..DEFAULT
        };
        assert_eq!(all.check_summary(&counts(0, 10, 0, 0)), Ok(()));
        // above 100 cannot be exceeded either
        let lax = Rails {
            change_threshold: 255,
            ..DEFAULT
        };
        assert_eq!(lax.check_summary(&counts(0, 1000, 0, 0)), Ok(()));
    }

    #[test]
    fn messages_are_the_ones_shown_to_the_user() {
        assert_eq!(
            Refusal::TooManyChanges { changes: 6, max: 5 }.to_string(),
            "the plan has 6 changes, more than --max-changes 5; nothing was written"
        );
        assert_eq!(
            Refusal::OverThreshold {
                changes: 4,
                managed: 13,
                threshold: 30
            }
            .to_string(),
            "the plan changes 4 of 13 managed users (30%), more than the 30% threshold; review it \
             and pass --force to proceed (or raise --change-threshold); nothing was written"
        );
    }
}
