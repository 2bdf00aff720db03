//! Graph's clock decides. `lastPasswordChangeDateTime` is written by Graph's clock, so every date
//! of desired state (`requirePasswordChange.since`, `resetPassword.notBefore`) is compared with
//! Graph's time, never the local clock: a runner whose clock is a year ahead would otherwise
//! reset the same users on every run, one a year behind would skip the resets that are due.
//!
//! Graph's time is read from the `Date` header of its answers (RFC 9110 section 6.6.1: an
//! origin server with a clock sends its time in every response): the latest one the
//! tenant's clients received while live state was read, carried forward to the moment of the
//! decision by the local clock's elapsed time (at most the length of the reads; the header has
//! whole seconds, so the result is truncated to the second). A tenant whose answers carried no
//! `Date` header is decided by the local clock, with a warning; a difference of more than
//! [`MAX_SKEW`] between the two clocks is warned about once per run, naming both times.

use chrono::{DateTime, Duration, Timelike, Utc};

use crate::plan::ClockSource;

use crate::apply::TenantClients;

/// A difference between the local clock and Graph's above which a run warns.
pub const MAX_SKEW: Duration = Duration::minutes(5);

/// The instant a tenant's plan is decided by, and whose clock it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decided {
    pub at: DateTime<Utc>,
    pub clock: ClockSource,
}

/// Graph's "now" from what a tenant's clients saw (each: the latest `Date` received and the local
/// instant it arrived), at the local instant `local`: the sample with the newest `Date`, moved
/// forward by the local time elapsed since it arrived. Without any sample, `local` (the local
/// clock).
pub fn graph_now(
    samples: &[Option<(DateTime<Utc>, DateTime<Utc>)>],
    local: DateTime<Utc>,
) -> Decided {
    match samples.iter().flatten().max_by_key(|(server, _)| *server) {
        Some((server, arrived)) => {
            let elapsed = (local - *arrived).max(Duration::zero());
            let at = *server + elapsed;
            Decided {
                at: at.with_nanosecond(0).unwrap_or(at),
                clock: ClockSource::Graph,
            }
        }
        None => Decided {
            at: local,
            clock: ClockSource::Local,
        },
    }
}

/// [`graph_now`] for a tenant: what its app client and, with `--delegated`, its delegated
/// client saw.
pub fn tenant_now(clients: &TenantClients, local: DateTime<Utc>) -> Decided {
    let samples = [
        clients.app.clock_sample(),
        clients.delegated.as_ref().and_then(|d| d.clock_sample()),
    ];
    graph_now(&samples, local)
}

/// What to warn about the clocks of a run (tenant name, decided), at the local instant `local`:
/// at most one warning about skew (the tenant whose clock differs most, if by more than
/// [`MAX_SKEW`]) and one naming the tenants decided by the local clock.
pub fn warnings(clocks: &[(&str, Decided)], local: DateTime<Utc>) -> Vec<String> {
    let mut out = Vec::new();
    let skewed = clocks
        .iter()
        .filter(|(_, d)| d.clock == ClockSource::Graph)
        .max_by_key(|(_, d)| (d.at - local).abs());
    if let Some((tenant, d)) = skewed {
        let skew = d.at - local;
        if skew.abs() > MAX_SKEW {
            let way = if skew > Duration::zero() {
                "ahead of"
            } else {
                "behind"
            };
            out.push(format!(
                "Graph's clock is {} {way} the local clock (Graph: {} for tenant {tenant}; \
                 local: {}): every date of desired state is decided by Graph's clock; set the \
                 local clock right (e.g. NTP)",
                human(skew.abs()),
                stamp(d.at),
                stamp(local),
            ));
        }
    }
    let local_only: Vec<&str> = clocks
        .iter()
        .filter(|(_, d)| d.clock == ClockSource::Local)
        .map(|(t, _)| *t)
        .collect();
    if !local_only.is_empty() {
        out.push(format!(
            "Graph's answers carried no Date header (tenant {}): dates are decided by \
             the local clock ({}), which may not be Graph's",
            local_only.join(", "),
            stamp(local),
        ));
    }
    out
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `365 days`, `2 h 5 min`, `7 min 3 s` (days are whole days from 2 on).
fn human(d: Duration) -> String {
    let mut s = d.num_seconds();
    if s >= 3_600 {
        // to the nearest minute: `Date` has whole seconds, a year is not 364 days 23 h 59 min
        s = (s + 30) / 60 * 60;
    }
    let (days, h, m, sec) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60, s % 60);
    match (days, h) {
        (0, 0) => format!("{m} min {sec} s"),
        (0, _) => format!("{h} h {m} min"),
        (1, _) => format!("1 day {h} h"),
        _ => format!("{days} days"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn no_date_seen_is_the_local_clock() {
        let local = t("2026-12-06T12:00:00.5Z");
        assert_eq!(
            graph_now(&[None, None], local),
            Decided {
                at: local,
                clock: ClockSource::Local
            }
        );
    }

    #[test]
    fn the_newest_date_is_carried_forward_to_now() {
        let local = t("2026-12-06T12:00:10.7Z");
        // a year ahead: Date 2027-12-06T12:00:05 received at local 12:00:05.2
        let ahead = (t("2027-12-06T12:00:05Z"), t("2026-12-06T12:00:05.2Z"));
        // an older Date seen by the other client
        let older = (t("2027-12-06T11:59:00Z"), t("2026-12-06T12:00:09Z"));
        let d = graph_now(&[Some(older), Some(ahead)], local);
        assert_eq!(d.clock, ClockSource::Graph);
        assert_eq!(
            d.at,
            t("2027-12-06T12:00:10Z"),
            "5.5 s later, whole seconds"
        );
        // a year behind
        let behind = (t("2025-12-06T12:00:05Z"), t("2026-12-06T12:00:05Z"));
        assert_eq!(
            graph_now(&[None, Some(behind)], local).at,
            t("2025-12-06T12:00:10Z")
        );
    }

    #[test]
    fn skew_above_five_minutes_is_one_warning_naming_both_times() {
        let local = t("2026-12-06T12:00:00Z");
        let graph = |at: &str| Decided {
            at: t(at),
            clock: ClockSource::Graph,
        };
        assert!(warnings(&[("a", graph("2026-12-06T12:04:59Z"))], local).is_empty());
        assert!(warnings(&[("a", graph("2026-12-06T11:55:00Z"))], local).is_empty());
        let w = warnings(
            &[
                ("a", graph("2026-12-06T12:06:00Z")),
                ("b", graph("2025-12-06T12:00:00Z")),
            ],
            local,
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("365 days behind"), "{}", w[0]);
        assert!(w[0].contains("2025-12-06T12:00:00Z"), "{}", w[0]);
        assert!(w[0].contains("2026-12-06T12:00:00Z"), "{}", w[0]);
        assert!(w[0].contains("tenant b"), "{}", w[0]);
        let w = warnings(&[("a", graph("2026-12-06T12:06:00Z"))], local);
        assert!(w[0].contains("6 min 0 s ahead of"), "{}", w[0]);
    }

    #[test]
    fn a_tenant_without_date_is_named() {
        let local = t("2026-12-06T12:00:00Z");
        let w = warnings(
            &[(
                "contoso.com",
                Decided {
                    at: local,
                    clock: ClockSource::Local,
                },
            )],
            local,
        );
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("no Date header (tenant contoso.com)"),
            "{}",
            w[0]
        );
    }
}
