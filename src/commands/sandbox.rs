//! `pwdrift sandbox`: runs the Graph sandbox until SIGINT/SIGTERM.
//!
//! The first line on stdout is one JSON object ([`graph_sandbox::SandboxInfo`]) with the URLs and
//! the app-only credentials the sandbox accepts, flushed at once so scripts can read it; nothing
//! else is written to stdout. Logs go to stderr. On SIGINT/SIGTERM the server stops and `--state`
//! is saved.

use std::net::SocketAddr;

use anyhow::Context;

use crate::cli::{ExitStatus, SandboxArgs};
use crate::printer::Printer;
use graph_sandbox::{start, Realism, SandboxConfig, SeedSource};

pub fn run(args: SandboxArgs, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let listen: SocketAddr = args.listen.parse().with_context(|| {
        format!(
            "--listen {}: expected ADDRESS:PORT, e.g. 127.0.0.1:0",
            args.listen
        )
    })?;
    if !listen.ip().is_loopback() {
        anyhow::bail!(
            "--listen {listen}: the sandbox listens on loopback addresses only (127.0.0.1 or ::1)"
        );
    }
    let config = config_from_args(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Listen for signals before announcing readiness: a script that sends SIGTERM as soon as
        // it has read the info line must get a clean shutdown (and a saved --state), not the
        // default action.
        let stop = shutdown_signal()?;
        let sandbox = start(config, listen).await?;
        printer.outln(&serde_json::to_string(&sandbox.info)?)?;
        tracing::info!("sandbox listening on {}", sandbox.info.graph_url);
        stop.await;
        sandbox.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitStatus::Success)
}

/// The sandbox's configuration from `pwdrift sandbox` arguments.
pub fn config_from_args(args: &SandboxArgs) -> anyhow::Result<SandboxConfig> {
    let seed = match (&args.seed, args.generate) {
        (Some(p), None) => {
            crate::engine::sandbox::check_seed(p)?;
            SeedSource::File(p.clone())
        }
        (None, Some(n)) if args.generate_tenants > 1 => SeedSource::GenerateTenants {
            tenants: args.generate_tenants,
            users: n,
            rng_seed: args.rng_seed,
        },
        (None, Some(n)) => SeedSource::Generate {
            users: n,
            rng_seed: args.rng_seed,
        },
        (None, None) => anyhow::bail!("give a seed: --seed FILE or --generate N"),
        (Some(_), Some(_)) => anyhow::bail!("--seed and --generate exclude each other"),
    };
    if args.generate_tenants == 0 {
        anyhow::bail!("--generate-tenants must be at least 1");
    }
    if args.token_lifetime == 0 {
        anyhow::bail!("--token-lifetime must be at least 1 second");
    }
    let mut c = SandboxConfig::new(seed);
    c.state_file = args.state.clone();
    c.throttle = args.throttle.clone();
    c.auth_method_limit = args.auth_method_limit;
    c.throttle_scope_on_success = args.throttle_scope_on_success;
    c.latency = args.latency.clone();
    c.latency_per_item = args.latency_per_item;
    if let Some(offset) = &args.clock_offset {
        c.clock_offset = graph_sandbox::clock::parse_offset(offset)
            .map_err(|e| anyhow::anyhow!("--clock-offset: {e}"))?;
    }
    c.faults = args.faults.clone();
    c.rng_seed = args.rng_seed;
    c.flag_only_patch_noop = args.flag_only_patch_noop;
    c.synced_flags_refused = args.synced_flags_refused;
    c.token_lifetime = args.token_lifetime;
    c.reset_operation_duration = std::time::Duration::from_millis(args.reset_operation_ms);
    c.reset_retry_after = args.reset_retry_after;
    let r = &args.realism;
    if r.role_page_size == 0 {
        anyhow::bail!("--role-page-size must be at least 1");
    }
    c.realism = Realism {
        expand_cap: (r.expand_cap > 0).then_some(r.expand_cap),
        role_page_size: r.role_page_size,
        read_lag: std::time::Duration::from_millis(r.read_lag),
        transitive_members: r
            .transitive_members
            .parse()
            .map_err(|e| anyhow::anyhow!("--transitive-members: {e}"))?,
        reset_no_location: r.reset_no_location,
        reset_location_query: r.reset_location_query,
        reset_fail: r.reset_fail,
        no_pim_license: r.no_pim_license,
        legacy_certificate_assertions: r.legacy_certificate_assertions,
        upn_range_filter: r
            .upn_range_filter
            .parse()
            .map_err(|e| anyhow::anyhow!("--upn-range-filter: {e}"))?,
        eventual_lag: std::time::Duration::from_millis(r.eventual_lag),
        b2c: r.b2c,
        risky_page_size: r.risky_page_size.max(1),
        no_identity_protection_license: r.no_identity_protection_license,
        no_identity_protection_limit: r.no_identity_protection_limit,
    };
    Ok(c)
}

/// Installs the SIGINT/SIGTERM handlers now and returns a future that resolves on the first.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
