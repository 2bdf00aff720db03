//! What `plan` and `apply` share: load desired state, connect to Graph (or start the embedded
//! sandbox), and read live state per tenant.
//!
//! `--sandbox SEED` starts the Graph sandbox in this process on an ephemeral loopback port, with
//! its own credentials, and keeps its state in `.pwdrift-sandbox/` beside the seed so that
//! `plan`, `apply`, `plan` shows "No changes". Without it, credentials come from the environment
//! in the Azure SDK conventions (see [`crate::graph::auth::Credential::from_env`]).

use std::path::{Path, PathBuf};

use anyhow::Context;
use futures_util::StreamExt;

use crate::apply::TenantClients;
use crate::cli::TargetArgs;
use crate::config::{self, DesiredState, SourceMap, TenantDesired};
use crate::graph::auth::Credential;
#[cfg(feature = "sandbox")]
use crate::graph::client::ClientOptions;
use crate::graph::client::GraphClient;
use crate::live::{self, Caller, LiveError, LiveTenant};
use crate::printer::Printer;

/// Live connections for every selected tenant, each with its desired state (moved here from the
/// loaded [`DesiredState`], not copied: with 100,000 declared users a second copy would cost
/// tens of megabytes).
pub struct Session {
    pub tenants: Vec<TenantSession>,
    /// how live state is read (`--assume-no-eligible-admins`)
    pub reads: live::ReadOptions,
    sandbox: Option<EmbeddedSandbox>,
}

#[cfg(feature = "sandbox")]
pub type EmbeddedSandbox = graph_sandbox::RunningSandbox;
#[cfg(not(feature = "sandbox"))]
pub type EmbeddedSandbox = std::convert::Infallible;

pub struct TenantSession {
    pub desired: TenantDesired,
    pub clients: TenantClients,
    pub caller: Caller,
}

/// How diagnostics are reported on stderr: as rustc does, or as GitHub workflow commands
/// (`plan --format github`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiagnosticStyle {
    Text,
    Github,
}

/// Prints diagnostics on stderr in `style`; the lines shown come from `sources`.
pub fn report_diagnostics(
    printer: &Printer,
    diags: &[config::Diagnostic],
    sources: &SourceMap,
    style: DiagnosticStyle,
) {
    printer.diagnostics(&match style {
        DiagnosticStyle::Text => config::diag::render(diags, sources, printer.color_err()),
        DiagnosticStyle::Github => crate::render::github::diagnostics(diags),
    });
}

/// Loads desired state, printing diagnostics in `style`; returns it with the files' source map
/// (for the diagnostics of the plan step) and digests (for a saved plan). `Ok(None)` means
/// invalid input (already reported).
pub fn load_desired(
    paths: &[PathBuf],
    printer: &Printer,
    style: DiagnosticStyle,
) -> anyhow::Result<Option<config::Loaded>> {
    match config::load_paths(paths) {
        Ok(loaded) => {
            if !loaded.warnings.is_empty() {
                report_diagnostics(printer, &loaded.warnings, &loaded.sources, style);
            }
            Ok(Some(loaded))
        }
        Err(invalid) => {
            report_diagnostics(printer, &invalid.diagnostics, &invalid.sources, style);
            printer.error("error: desired state is invalid; nothing was read or changed");
            Ok(None)
        }
    }
}

/// Checks that every tenant named by `--tenant` is in desired state.
pub fn check_selected_tenants(desired: &DesiredState, wanted: &[String]) -> anyhow::Result<()> {
    for w in wanted {
        desired
            .tenants
            .iter()
            .find(|t| t.tenant.as_str().eq_ignore_ascii_case(w))
            .with_context(|| format!("--tenant {w}: no such tenant in desired state"))?;
    }
    Ok(())
}

/// Whether the tenant whose id (the token's `tid`; its name when the token carries none) is
/// `tenant` is acted on under `--shard` (always, without it).
pub fn in_shard(shard: Option<crate::shard::Shard>, tenant: &str) -> bool {
    shard.is_none_or(|s| s.contains(tenant))
}

/// The state file of the embedded sandbox for a seed: `.pwdrift-sandbox/<seed name>.state.json`
/// beside the seed.
pub fn sandbox_state_path(seed: &Path) -> PathBuf {
    let dir = seed
        .parent()
        .unwrap_or(Path::new("."))
        .join(".pwdrift-sandbox");
    let name = seed
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "seed".into());
    dir.join(format!("{name}.state.json"))
}

/// Starts the embedded sandbox seeded from `seed`, its state kept in
/// [`sandbox_state_path`] (so that `import`, `plan` and `apply` runs see each other's writes).
#[cfg(feature = "sandbox")]
pub async fn start_embedded_sandbox(seed: &Path) -> anyhow::Result<EmbeddedSandbox> {
    use graph_sandbox::{SandboxConfig, SeedSource};
    check_seed(seed)?;
    let state = sandbox_state_path(seed);
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut config = SandboxConfig::new(SeedSource::File(seed.to_path_buf()));
    config.state_file = Some(state);
    let running = graph_sandbox::start(config, "127.0.0.1:0".parse()?).await?;
    tracing::info!(graph_url = %running.info.graph_url, "embedded Graph sandbox started");
    Ok(running)
}

/// Without the `sandbox` feature, `--sandbox` is refused.
#[cfg(not(feature = "sandbox"))]
pub async fn start_embedded_sandbox(_seed: &Path) -> anyhow::Result<EmbeddedSandbox> {
    anyhow::bail!("--sandbox: this pwdrift was built without the `sandbox` feature")
}

/// Client options that reach the embedded sandbox (its Graph URL and authority).
#[cfg(feature = "sandbox")]
pub fn embedded_sandbox_options(running: &EmbeddedSandbox) -> anyhow::Result<ClientOptions> {
    use crate::graph::auth::Endpoints;
    let info = &running.info;
    let endpoints = Endpoints::new(
        crate::graph::auth::Cloud::Global,
        Some(&info.graph_url),
        Some(&info.authority_host),
    )?;
    let mut options = ClientOptions::new(endpoints);
    options.notices = super::target::stderr_notices();
    Ok(options)
}

/// The embedded sandbox's application client for `tenant` (client credentials it issued itself).
#[cfg(feature = "sandbox")]
pub fn embedded_sandbox_app(
    running: &EmbeddedSandbox,
    options: ClientOptions,
    tenant: &str,
) -> anyhow::Result<GraphClient> {
    let info = &running.info;
    Ok(GraphClient::new(
        options,
        Credential::ClientSecret {
            tenant: tenant.to_owned(),
            client_id: info.client_id.clone(),
            secret: info.client_secret.clone().into(),
        },
    )?)
}

/// Stops the embedded sandbox, persisting its state.
pub async fn stop_embedded_sandbox(running: EmbeddedSandbox) {
    #[cfg(feature = "sandbox")]
    running.shutdown().await;
    #[cfg(not(feature = "sandbox"))]
    match running {}
}

impl Session {
    /// Connects to Graph (or starts the embedded sandbox) for the selected tenants.
    pub async fn open(
        args: &TargetArgs,
        desired: DesiredState,
        concurrency: usize,
        printer: &Printer,
    ) -> anyhow::Result<Session> {
        // `--tenant` names are checked now, but a tenant is its id: every name of the tenant
        // `--tenant` names (another domain, its GUID) is selected once the names are resolved.
        check_selected_tenants(&desired, &args.tenants)?;
        // Every tenant is signed in to, even under `--shard`: the shard of a tenant is decided by
        // its id (the token's `tid`), so that all the names of one tenant land in one shard.
        let tenants: Vec<TenantDesired> = desired.tenants;
        let mut sandbox = None;
        let mut connected = Vec::new();

        if let Some(seed) = &args.sandbox {
            let (running, opened) =
                Self::open_sandbox(seed, tenants, concurrency, args.request_timeout).await?;
            connected = opened;
            sandbox = Some(running);
        } else {
            for t in tenants {
                let mut options = super::target::client_options(args)?;
                options.concurrency = concurrency;
                let credential = Credential::from_env(Some(t.tenant.as_str()))?;
                let app = GraphClient::new(options.clone(), credential)?;
                let delegated = if args.delegated {
                    Some(GraphClient::new(
                        options,
                        Credential::delegated_from_env(Some(t.tenant.as_str()))?,
                    )?)
                } else {
                    None
                };
                connected.push((t, app, delegated));
            }
        }
        let joined = match join_aliases(connected).await {
            Ok(joined) => joined,
            Err(e) => {
                if let Some(s) = sandbox {
                    stop_embedded_sandbox(s).await;
                }
                return Err(e);
            }
        };
        let mut opening = Vec::new();
        let mut in_this_shard = 0;
        for ((t, app, delegated), names, key) in joined {
            if !in_shard(args.shard, &key) {
                continue;
            }
            in_this_shard += 1;
            let wanted = args.tenants.is_empty()
                || names
                    .iter()
                    .any(|n| args.tenants.iter().any(|w| w.eq_ignore_ascii_case(n)));
            if wanted {
                opening.push(Self::tenant_session(t, app, delegated));
            }
        }
        if let (Some(shard), 0) = (args.shard, in_this_shard) {
            printer.info(&format!(
                "note: no tenant of the desired state is in shard {shard}"
            ));
        }
        // tenants are opened side by side (each signs in; `--delegated` also reads /me)
        let sessions = all_tenants(opening).await?;
        Ok(Session {
            tenants: sessions,
            reads: live::ReadOptions {
                assume_no_eligible_admins: args.assume_no_eligible_admins,
            },
            sandbox,
        })
    }

    /// Starts the embedded sandbox (state kept beside the seed) and opens every tenant on it.
    #[cfg(feature = "sandbox")]
    async fn open_sandbox(
        seed: &Path,
        tenants: Vec<TenantDesired>,
        concurrency: usize,
        request_timeout: u64,
    ) -> anyhow::Result<(EmbeddedSandbox, Vec<Connected>)> {
        let mut sessions = Vec::new();
        let running = start_embedded_sandbox(seed).await?;
        let info = running.info.clone();
        for t in tenants {
            let mut options = embedded_sandbox_options(&running)?;
            options.concurrency = concurrency;
            options.request_deadline = std::time::Duration::from_secs(request_timeout);
            options.write_quotas = super::target::write_quotas();
            let app = embedded_sandbox_app(&running, options.clone(), t.tenant.as_str())?;
            let delegated = match (
                &info.delegated_client_id,
                &info.delegated_username,
                &info.delegated_password,
            ) {
                (Some(public_client), Some(user), Some(pw)) => Some(GraphClient::new(
                    options,
                    Credential::UsernamePassword {
                        tenant: t.tenant.as_str().to_owned(),
                        client_id: public_client.clone(),
                        username: user.clone(),
                        password: pw.clone().into(),
                    },
                )?),
                _ => None,
            };
            sessions.push((t, app, delegated));
        }
        Ok((running, sessions))
    }

    #[cfg(not(feature = "sandbox"))]
    async fn open_sandbox(
        _seed: &Path,
        _tenants: Vec<TenantDesired>,
        _concurrency: usize,
        _request_timeout: u64,
    ) -> anyhow::Result<(EmbeddedSandbox, Vec<Connected>)> {
        anyhow::bail!("--sandbox: this pwdrift was built without the `sandbox` feature")
    }

    async fn tenant_session(
        desired: TenantDesired,
        app: GraphClient,
        delegated: Option<GraphClient>,
    ) -> anyhow::Result<TenantSession> {
        let caller = match &delegated {
            Some(d) => {
                let me = d
                    .me(desired.tenant.as_str())
                    .await
                    .context("delegated sign-in: cannot read the signed-in user (/me)")?;
                Caller::Delegated { user_id: me.id }
            }
            None => Caller::Application,
        };
        Ok(TenantSession {
            desired,
            clients: TenantClients {
                app,
                delegated,
                verify_timeout: crate::verify::DEFAULT_TIMEOUT,
            },
            caller,
        })
    }

    /// Reads live state and diffs it against desired state. `Ok(None)`: desired state does not
    /// match the tenant (a user that does not exist, a conflict through a group, ...), already
    /// reported on stderr with file, line and column (the lines shown come from `sources`), in
    /// `style`.
    pub async fn plan(
        &self,
        only: &[String],
        sources: &SourceMap,
        printer: &Printer,
        style: DiagnosticStyle,
    ) -> anyhow::Result<Option<crate::plan::Plan>> {
        match self.read_live(only).await {
            Ok(live) => {
                tracing::debug!("live state read and resolved; diffing");
                let plan = crate::diff::diff_owned(live, chrono::Utc::now());
                tracing::debug!("diffed");
                Ok(Some(plan))
            }
            Err(LiveError::Resolution(diags)) => {
                report_diagnostics(printer, &diags, sources, style);
                printer
                    .error("error: desired state does not match the tenant; nothing was changed");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reads live state for every tenant. Resolution problems are returned together.
    pub async fn read_live(&self, only: &[String]) -> Result<Vec<LiveTenant>, LiveError> {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        let reads = self.tenants.iter().map(|t| {
            live::read_tenant(
                &t.clients.app,
                &t.desired,
                t.caller.clone(),
                t.clients.delegated.is_some(),
                only,
                self.reads,
            )
        });
        let results: Vec<_> = futures_util::stream::iter(reads)
            .buffered(TENANT_CONCURRENCY)
            .collect()
            .await;
        for result in results {
            match result {
                Ok(l) => out.push(l),
                Err(LiveError::Resolution(d)) => problems.extend(d),
                Err(e) => return Err(e),
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(LiveError::Resolution(problems))
        }
    }

    /// Stops the embedded sandbox (persisting its state), if any.
    pub async fn close(self) {
        if let Some(s) = self.sandbox {
            stop_embedded_sandbox(s).await;
        }
    }

    pub fn tenant(&self, name: &str) -> Option<&TenantSession> {
        self.tenants
            .iter()
            .find(|t| t.desired.tenant.as_str().eq_ignore_ascii_case(name))
    }
}

/// Largest sandbox seed read.
pub const MAX_SEED_BYTES: u64 = 256 << 20;

/// A seed must be a regular file of at most [`MAX_SEED_BYTES`] (a FIFO would hang the sandbox).
pub fn check_seed(seed: &Path) -> anyhow::Result<()> {
    config::read::open_regular(seed, MAX_SEED_BYTES)
        .map(drop)
        .with_context(|| format!("cannot read the sandbox seed {}", seed.display()))
}

/// A tenant's desired state with its app client and, with `--delegated`, its delegated client.
type Connected = (TenantDesired, GraphClient, Option<GraphClient>);

/// Desired state that names one tenant several ways (its initial domain, a verified domain, its
/// id) and, across those files, declares a user or group twice. Found once the tenants are
/// resolved, before anything is read or written; the diagnostics name both places.
#[derive(Debug)]
pub struct AliasConflict(pub Vec<config::Diagnostic>);

impl std::fmt::Display for AliasConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "desired state declares {} user(s) or group(s) twice for one tenant written several ways",
            self.0.len()
        )
    }
}

impl std::error::Error for AliasConflict {}

/// A tenant is its id: resolves every tenant name to the tenant id (the `tid` of the token issued
/// for it; a name whose token does not say is its own key) and joins the declarations of one
/// tenant ([`config::merge::union`]), keeping the first one's name and clients. Users or groups
/// declared twice across the joined files are an [`AliasConflict`]. Each joined tenant comes
/// with every name it was written as and its key (the tenant id), by which `--shard` selects.
async fn join_aliases(
    connected: Vec<Connected>,
) -> anyhow::Result<Vec<(Connected, Vec<String>, String)>> {
    // every tenant signs in side by side
    let keys = futures_util::future::try_join_all(connected.iter().map(|c| async move {
        let name = c.0.tenant.as_str();
        let id =
            c.1.tenant_id(name)
                .await
                .with_context(|| format!("tenant {name}: cannot sign in to learn its tenant id"))?;
        anyhow::Ok(id.unwrap_or_else(|| name.to_owned()))
    }))
    .await?;
    let mut groups: Vec<(String, Vec<Connected>)> = Vec::new();
    for (c, key) in connected.into_iter().zip(keys) {
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(c),
            None => groups.push((key, vec![c])),
        }
    }
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (id, group) in groups {
        let names: Vec<String> = group.iter().map(|c| c.0.tenant.to_string()).collect();
        if names.len() > 1 {
            tracing::info!(tenant_id = %id, names = ?names, "one tenant written several ways: merged");
        }
        let mut parts = Vec::new();
        let mut clients = None;
        for (t, app, delegated) in group {
            parts.push(t);
            clients.get_or_insert((app, delegated));
        }
        let (app, delegated) = clients.expect("a group has at least one member");
        match config::merge::union(parts) {
            Ok(t) => out.push(((t, app, delegated), names, id)),
            Err(d) => problems.extend(d),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(AliasConflict(problems).into())
    }
}

/// [`Session::open`], reporting an [`AliasConflict`] on stderr in `style` (the lines shown come
/// from `sources`). `Ok(None)`: reported; nothing was read or written.
pub async fn open_reporting(
    args: &TargetArgs,
    desired: DesiredState,
    concurrency: usize,
    printer: &Printer,
    sources: &SourceMap,
    style: DiagnosticStyle,
) -> anyhow::Result<Option<Session>> {
    match Session::open(args, desired, concurrency, printer).await {
        Ok(s) => Ok(Some(s)),
        Err(e) => match e.downcast::<AliasConflict>() {
            Ok(AliasConflict(diags)) => {
                report_diagnostics(printer, &diags, sources, style);
                printer.error(
                    "error: desired state is invalid once its tenants are resolved; nothing was read or changed",
                );
                Ok(None)
            }
            Err(e) => Err(e),
        },
    }
}

/// Tenants worked on at once (opening, reading, applying). Each tenant has its own client
/// pacing (Graph's limits are per app + tenant), so tenants do not slow each other down on the
/// Graph side; the bound keeps the number of connections and of tenants' data in memory sane.
pub const TENANT_CONCURRENCY: usize = 32;

/// Runs tenant futures, [`TENANT_CONCURRENCY`] at a time, results in input order; the first
/// error (in input order) wins.
pub async fn all_tenants<T, E, F>(futures: Vec<F>) -> Result<Vec<T>, E>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    let results: Vec<Result<T, E>> = futures_util::stream::iter(futures)
        .buffered(TENANT_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// A tokio runtime for a command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
