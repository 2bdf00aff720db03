//! From the command line to the engine's settings ([`crate::engine::settings`]), resolved once
//! here from the flags, the environment and the defaults: the connection flags (`--cloud`,
//! `--graph-url`, `--authority-host`, `--insecure-skip-tls-verify`, `--request-timeout`), what
//! `plan`, `apply` and `import` act on, and the two environment knobs
//! (`PWDRIFT_WRITE_QUOTA_SCALE`, `PWDRIFT_SIGNAL_GRACE_MS`). The conversion lives here, in the
//! command layer, so that neither the engine nor `graph/` imports clap types from `cli.rs`. The
//! notices the Graph library returns instead of printing (device-code prompt, insecure-TLS
//! warning) are printed from here.

use std::time::Duration;

use crate::cli::{self, ApplyArgs, ConnectionArgs, ImportArgs, TargetArgs};
use crate::engine::settings::{ApplySettings, ConnectSettings, ImportSettings, TargetSettings};
use crate::graph::auth::Cloud;
use crate::graph::notice::Notifier;

/// The Graph client's cloud for a `--cloud` value.
pub fn cloud(c: cli::Cloud) -> Cloud {
    match c {
        cli::Cloud::Global => Cloud::Global,
        cli::Cloud::Usgov => Cloud::UsGov,
        cli::Cloud::UsgovDod => Cloud::UsGovDod,
        cli::Cloud::China => Cloud::China,
    }
}

/// Prints each notice of the Graph library on stderr, through the printer (never silenced by
/// `--quiet`: a device-code prompt must reach the user).
pub fn stderr_notices() -> Notifier {
    Notifier::new(|notice| crate::printer::notice(notice.message()))
}

/// How to reach Graph, from the connection flags; `request_timeout`: `--request-timeout`, for
/// the commands that have it.
pub fn connect_settings(
    connection: &ConnectionArgs,
    request_timeout: Option<Duration>,
) -> ConnectSettings {
    ConnectSettings {
        cloud: cloud(connection.cloud),
        graph_url: connection.graph_url.clone(),
        authority_host: connection.authority_host.clone(),
        insecure_skip_tls_verify: connection.insecure_skip_tls_verify,
        request_timeout,
        write_quota_scale: write_quota_scale(),
        reset_rate: crate::graph::retry::AUTH_METHOD_QUOTA,
        app_quota_shares: 1,
        notices: stderr_notices(),
    }
}

/// What `plan` and `apply` act on; `concurrency`: requests in flight per tenant.
pub fn target_settings(target: &TargetArgs, concurrency: usize) -> TargetSettings {
    let mut connect = connect_settings(
        &target.connection,
        Some(Duration::from_secs(target.request_timeout)),
    );
    connect.reset_rate = crate::graph::retry::WriteQuota {
        writes: target.reset_rate.requests as usize,
        window: Duration::from_secs(u64::from(target.reset_rate.seconds)),
    };
    connect.app_quota_shares = target
        .app_quota_shares
        .or(target.shard.map(|s| s.count))
        .unwrap_or(1);
    TargetSettings {
        paths: target.paths.clone(),
        sandbox: target.sandbox.clone(),
        tenants: target.tenants.clone(),
        targets: target.targets.clone(),
        shard: target.shard,
        connect,
        delegated: target.delegated,
        reads: crate::live::ReadOptions {
            assume_no_eligible_admins: target.assume_no_eligible_admins,
            synced_flags_writable: target.synced_flags_writable,
            admin_units: target.admin_units.clone(),
        },
        concurrency,
        allow_password_dirs: target.allow_password_dirs.clone(),
    }
}

/// How long the writes in flight may take to finish after the first SIGINT/SIGTERM.
const GRACE: Duration = Duration::from_secs(10);

/// The settings of `apply`: a grace of 10 s, or, for tests only, `PWDRIFT_SIGNAL_GRACE_MS` (so that a
/// test of an expiring grace stays fast).
pub fn apply_settings(args: &ApplyArgs) -> ApplySettings {
    ApplySettings {
        target: target_settings(&args.target, args.concurrency),
        rails: crate::rails::Rails {
            max_changes: args.max_changes,
            change_threshold: args.change_threshold,
            force: args.force,
        },
        verify_timeout: Duration::from_secs(args.verify_timeout),
        secrets_out: args.secrets_out.clone(),
        secrets_append: args.secrets_append,
        secrets_recipients: args.secrets_recipient.clone(),
        report: args.report.clone(),
        lock_timeout: args.lock_timeout,
        lock_blob: args.lock_blob.clone(),
        grace: std::env::var("PWDRIFT_SIGNAL_GRACE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(GRACE, Duration::from_millis),
    }
}

/// The settings of `import` (the client's default request deadline).
pub fn import_settings(args: &ImportArgs) -> ImportSettings {
    ImportSettings {
        tenants: args.tenants.clone(),
        groups: args.groups.clone(),
        filter: args.filter.clone(),
        users_from: args.users_from.clone(),
        sandbox: args.sandbox.clone(),
        connect: connect_settings(&args.connection, None),
        out: args.out.clone(),
        split_by_group: args.split_by_group,
        force: args.force,
    }
}

/// `PWDRIFT_WRITE_QUOTA_SCALE=K`: Graph's documented write quotas divided by K (a benchmark knob
/// matching the sandbox's `--throttle scaled:K`; never needed against Graph). 1 without.
fn write_quota_scale() -> u32 {
    std::env::var("PWDRIFT_WRITE_QUOTA_SCALE")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::auth::AuthError;
    use crate::graph::client::ClientOptions;
    use clap::Parser as _;

    /// The client options these flags resolve to, as the engine builds them.
    fn client_options(target: &TargetArgs) -> Result<ClientOptions, AuthError> {
        target_settings(target, 4).connect.client_options()
    }

    #[derive(clap::Parser)]
    struct T {
        #[command(flatten)]
        target: TargetArgs,
    }

    /// `--reset-rate` and `--app-quota-shares` reach the client; `--shard I/N` divides the
    /// application's quotas by N unless `--app-quota-shares` says otherwise; a bad rate is
    /// refused by name.
    #[test]
    fn reset_rate_and_app_quota_shares_reach_the_client() {
        let o = client_options(&T::parse_from(["x"]).target).unwrap();
        assert_eq!(o.auth_method_quota.writes, 5);
        assert_eq!(o.auth_method_quota.window, Duration::from_secs(10));
        assert_eq!(o.app_quotas.writes.writes, 70_000);
        let t = T::parse_from(["x", "--reset-rate", "3/60", "--shard", "2/4"]);
        let o = client_options(&t.target).unwrap();
        assert_eq!(o.auth_method_quota.writes, 3);
        assert_eq!(o.auth_method_quota.window, Duration::from_secs(60));
        assert_eq!(o.app_quotas.writes.writes, 17_500);
        let t = T::parse_from(["x", "--shard", "2/4", "--app-quota-shares", "10"]);
        assert_eq!(
            client_options(&t.target).unwrap().app_quotas.writes.writes,
            7_000
        );
        for bad in ["0/10", "5", "5/0", "x/10", "5/\u{1b}[2J"] {
            let e = T::try_parse_from(["x", "--reset-rate", bad])
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("expected N/SECONDS"), "{bad}: {e}");
            assert!(!e.contains('\u{1b}'), "escaped: {e}");
        }
    }

    #[test]
    fn options_from_cli_apply_the_loopback_rule() {
        let t = T::parse_from(["x", "--cloud", "china", "--insecure-skip-tls-verify"]);
        let o = client_options(&t.target).unwrap();
        assert_eq!(
            o.endpoints.scope,
            "https://microsoftgraph.chinacloudapi.cn/.default"
        );
        assert!(o.insecure_skip_tls_verify);
        assert_eq!(
            format!("{:?}", o.notices),
            "Notifier(callback)",
            "notices are printed, not dropped"
        );
        let t = T::parse_from([
            "x",
            "--graph-url",
            "http://127.0.0.1:8080",
            "--authority-host",
            "http://localhost:8080",
        ]);
        assert!(client_options(&t.target).is_ok());
        let t = T::parse_from(["x", "--graph-url", "http://graph.example.com"]);
        assert!(matches!(
            client_options(&t.target),
            Err(AuthError::InsecureUrl { .. })
        ));
    }

    #[test]
    fn every_cli_cloud_maps_to_its_cloud() {
        assert_eq!(cloud(cli::Cloud::Global), Cloud::Global);
        assert_eq!(cloud(cli::Cloud::Usgov), Cloud::UsGov);
        assert_eq!(cloud(cli::Cloud::UsgovDod), Cloud::UsGovDod);
        assert_eq!(cloud(cli::Cloud::China), Cloud::China);
    }
}
