//! The Graph sandbox: a real HTTP server on loopback implementing the documented behaviour of the
//! Microsoft Graph endpoints pwdrift uses (auth, users, groups, passwordProfile PATCH,
//! resetPassword, $batch), with the documented throttling model, fault injection and an
//! observation endpoint outside the Graph namespace.
//!
//! # A test oracle, not a mirror
//!
//! This crate imports nothing from pwdrift. It is written from Microsoft's documentation and from
//! public reports of how Graph behaves (issue threads on Microsoft's Graph documentation, named
//! where each is used), with its own password rules ([`password`]) and its own wire types (e.g.
//! the `$batch` envelope in `batch`),
//! duplicated on purpose: a bug in pwdrift's client is not mirrored here, so the integration
//! tests can catch it. Where real tenants differ or sources disagree, each case is a switch
//! ([`SandboxConfig`], seed fields).
//!
//! # Surface
//!
//! [`start`] a sandbox from a [`SandboxConfig`] (whose [`SeedSource`] is a [`seed::Seed`] file,
//! text or generated tenant) and get a [`RunningSandbox`] with its [`SandboxInfo`] (URLs and the
//! credentials it accepts). [`testing`] exposes the pieces the integration tests drive directly
//! (the `$batch` layer, the throttling model, fault injection, the generator). pwdrift embeds it
//! behind its default-on `sandbox` feature (`pwdrift sandbox`, `plan --sandbox SEED`).
//!
//! # Modules
//!
//! - [`seed`]: the seed format (documented, with a JSON Schema) and `generate` (`--generate N`);
//! - `store`: the in-memory directory with its indexes; `--state` files are seeds;
//! - `server`: router, request pipeline, background work; `error`: Graph's error body;
//! - `auth`: token endpoint (client secret, certificate and federated assertions, ROPC, device
//!   code) and bearer validation;
//! - `odata`: `$select`/`$top`/`$filter`/`$count`/skip tokens; `users`, `groups`, `reset`,
//!   `roles` (role management, domains and the organization), `risky` (Identity Protection's
//!   risky users): the Graph endpoints; `observe`: `/_sandbox/...`;
//! - `throttle`, `faults`, `batch`: the documented limits, fault injection and `$batch`.
//!
//! Where real tenants differ, or the docs and public reports disagree, the behaviour is a switch
//! ([`Realism`], `pwdrift sandbox` flags, seed fields); [`Realism`] lists which documented or
//! disputed behaviour each one models.
//!
//! Where Graph's behaviour is disputed or undocumented, the choice is stated in the module that
//! makes it (e.g. `users`: an omitted `forceChangePasswordNextSignIn` next to a password
//! defaults to true; `reset`: a reset of one's own account is a 403).

mod auth;
mod batch;
pub mod clock;
mod error;
mod faults;
mod generate;
mod groups;
mod observe;
mod odata;
mod password;
mod reset;
mod risky;
mod roles;
pub mod seed;
mod server;
mod store;
pub mod testing;
mod throttle;
mod units;
mod users;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use self::seed::Seed;
use self::server::{AppState, Runtime, Shared};
use self::store::Store;

/// Where the initial directory comes from.
#[derive(Clone)]
pub enum SeedSource {
    /// A seed file (YAML or JSON).
    File(PathBuf),
    /// Seed text (YAML or JSON); `name` is used in error messages.
    Text { name: String, text: String },
    /// An already parsed seed.
    Seed(Box<Seed>),
    /// `--generate N --rng-seed S`.
    Generate { users: usize, rng_seed: u64 },
    /// `--generate N --generate-tenants K --rng-seed S`: K tenants of N users (seeds S, S+1, ...)
    /// sharing one multi-tenant app (see `generate::generate_tenants`).
    GenerateTenants {
        tenants: usize,
        users: usize,
        rng_seed: u64,
    },
}

impl std::fmt::Debug for SeedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SeedSource::File(p) => write!(f, "File({})", p.display()),
            SeedSource::Text { name, .. } => write!(f, "Text({name})"),
            SeedSource::Seed(_) => f.write_str("Seed(..)"),
            SeedSource::Generate { users, rng_seed } => {
                write!(f, "Generate({users}, seed {rng_seed})")
            }
            SeedSource::GenerateTenants {
                tenants,
                users,
                rng_seed,
            } => write!(f, "Generate({tenants} x {users}, seed {rng_seed})"),
        }
    }
}

impl SeedSource {
    /// Reads, parses or generates the seed.
    pub fn load(&self) -> anyhow::Result<Seed> {
        Ok(match self {
            SeedSource::File(p) => seed::load(p)?,
            SeedSource::Text { name, text } => seed::parse(name, text)?,
            SeedSource::Seed(s) => (**s).clone(),
            SeedSource::Generate { users, rng_seed } => generate::generate(*users, *rng_seed),
            SeedSource::GenerateTenants {
                tenants,
                users,
                rng_seed,
            } => generate::generate_tenants(*tenants, *users, *rng_seed),
        })
    }
    fn name(&self) -> String {
        match self {
            SeedSource::File(p) => p.display().to_string(),
            SeedSource::Text { name, .. } => name.clone(),
            SeedSource::Seed(_) => "(seed)".to_owned(),
            SeedSource::Generate { users, rng_seed } => {
                format!("(generated: {users} users, seed {rng_seed})")
            }
            SeedSource::GenerateTenants {
                tenants,
                users,
                rng_seed,
            } => format!("(generated: {tenants} tenants of {users} users, seed {rng_seed})"),
        }
    }
}

/// Everything a sandbox needs to start.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    pub seed: SeedSource,
    /// `--state FILE`: loaded at start when it exists (the seed is then ignored, except to
    /// print the delegated admin's password), saved on changes (at most every
    /// `persist_interval`) and at shutdown.
    pub state_file: Option<PathBuf>,
    /// `--throttle real|off|scaled:K` (interpreted by the throttling module when wired).
    pub throttle: String,
    /// `--auth-method-limit on|off`: resetPassword and its operation polls held to 5 requests
    /// per 10 s per app and tenant (scaled like the other limits). On by default.
    pub auth_method_limit: bool,
    /// `--throttle-scope-on-success`: a successful answer's `x-ms-throttle-limit-percentage`
    /// comes with the `x-ms-throttle-scope` of the fullest limit. Off by default: Microsoft
    /// documents the scope on throttled answers only.
    pub throttle_scope_on_success: bool,
    /// `--latency MS[+-JITTER]` (interpreted by the fault module when wired).
    pub latency: Option<String>,
    /// `--latency-per-item MS` (fractional): added per object a response returns; see the
    /// `faults` module ("Cost per returned object"). 0: none (the default).
    pub latency_per_item: f64,
    /// `--faults SPEC` (interpreted by the fault module when wired).
    pub faults: Option<String>,
    /// Seed of fault injection (and of `--generate`).
    pub rng_seed: u64,
    /// `--flag-only-patch-noop`.
    pub flag_only_patch_noop: bool,
    /// `--synced-flags-refused`: a flag-only `passwordProfile` PATCH of a user synced from
    /// on-premises is refused as on-premises mastered (400, as reported of real tenants)
    /// instead of accepted (204, the default).
    pub synced_flags_refused: bool,
    /// Access token lifetime, seconds (`expires_in`).
    pub token_lifetime: u64,
    /// Total time of a resetPassword operation (notStarted -> running -> terminal).
    pub reset_operation_duration: Duration,
    /// `Retry-After` of the resetPassword 202, seconds.
    pub reset_retry_after: u64,
    /// `interval` of device code responses, seconds.
    pub device_code_interval: u64,
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// How often `--state` is saved when something changed.
    pub persist_interval: Duration,
    /// Where real tenants differ or the docs and reports disagree (see [`Realism`]).
    pub realism: Realism,
    /// `--clock-offset`: how far the sandbox's clock is from the real one (the `Date` header,
    /// the timestamps it writes, its tokens' lifetimes; see [`clock`]). Zero by default.
    pub clock_offset: chrono::Duration,
}

/// How `GET /groups/{id}/transitiveMembers/microsoft.graph.user` treats its requirements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransitiveMembersMode {
    /// As documented: the OData cast needs `ConsistencyLevel: eventual` and `$count=true`,
    /// else 400 `Request_UnsupportedQuery`.
    #[default]
    Documented,
    /// As reported: the cast works without them.
    Lenient,
    /// As reported once: the cast is ignored, groups (and devices) come back too.
    CastIgnored,
}

impl std::str::FromStr for TransitiveMembersMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "documented" => Ok(Self::Documented),
            "lenient" => Ok(Self::Lenient),
            "cast-ignored" => Ok(Self::CastIgnored),
            other => Err(format!(
                "'{other}' is not one of documented, lenient, cast-ignored"
            )),
        }
    }
}

/// How `GET /users` treats a `$filter` comparing `userPrincipalName` with `ge`/`le` (`gt`/`lt`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpnRangeFilterMode {
    /// As documented ("user resource type" lists `ge`/`le` for `userPrincipalName`): applied.
    #[default]
    Honoured,
    /// Refused: 400 `Request_UnsupportedQuery`.
    Rejected,
    /// As a public docs issue reports (microsoft-graph-docs-contrib #6581): accepted, and the
    /// range comparisons ignored (the rest of the filter still applies).
    Ignored,
}

impl std::str::FromStr for UpnRangeFilterMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "honoured" | "honored" => Ok(Self::Honoured),
            "rejected" => Ok(Self::Rejected),
            "ignored" => Ok(Self::Ignored),
            other => Err(format!(
                "'{other}' is not one of honoured, rejected, ignored"
            )),
        }
    }
}

/// Behaviours where real tenants differ, or where the documentation and public reports
/// disagree, each with the sandbox's default (the documented behaviour where there is one):
///
/// - `expand_cap` (`--expand-cap N`, default 20, 0 = none): `$expand` on a directory-object
///   collection returns at most N related objects and no next link (documented: "returns at most
///   20 items" for `GET /directoryRoles?$expand=members`; some pages say 100);
/// - `role_page_size` (`--role-page-size N`, default 5): the page size of the role-management
///   collections without `$top`, small so that clients must follow `@odata.nextLink` (the real
///   default is undocumented);
/// - `read_lag` (`--read-lag MS`, default 0): reads are served from replicas that lag writes
///   (documented in spirit: "replication delays", no bound published): a GET of a user within
///   `read_lag` of a write to that user returns the pre-write version (exact, deterministic; see
///   [`store::Tenant::user_view`]);
/// - `transitive_members` (`--transitive-members documented|lenient|cast-ignored`): the docs
///   require `ConsistencyLevel: eventual` and `$count=true` for the OData cast; reports say it
///   works without; one says the cast was ignored;
/// - `reset_no_location` (`--reset-no-location`): the resetPassword page marks `Location`
///   required but also says the 202 "may" include it: answer without it;
/// - `reset_location_query` (`--reset-location-query`): `Location` carries the query parameters
///   real tenants send (`?aadgdc=...&aadgsu=...`), absent from the docs' example;
/// - `reset_fail` (`--reset-fail`): every resetPassword operation ends `failed` (per user: the
///   seed's `resetFails`);
/// - `no_pim_license` (`--no-pim-license`): every tenant lacks a PIM licence (per tenant: the
///   seed's `pimLicense: false`): the eligibility endpoints answer 400
///   `AadPremiumLicenseRequired`;
/// - `legacy_certificate_assertions` (`--legacy-certificate-assertions`): certificate client
///   assertions in the older documented form (RS256, SHA-1 `x5t`) are accepted beside the
///   current one (PS256, `x5t#S256`), which alone is accepted by default (see the `auth` module).
/// - `upn_range_filter` (`--upn-range-filter honoured|rejected|ignored`, default honoured):
///   `userPrincipalName ge/le` in a `GET /users` filter is applied (documented), refused with
///   400, or accepted and ignored (reported: microsoft-graph-docs-contrib #6581);
/// - `eventual_lag` (`--eventual-lag MS`, default 0): reads with `ConsistencyLevel: eventual`
///   (advanced queries, `transitiveMembers` casts) are served from an index that lags writes: a
///   user written within MS shows its state from before that write (or burst of writes);
///   ordinary reads are current (unless `read_lag`);
/// - `b2c` (`--b2c`): the tenants are Azure AD B2C tenants, which do not support advanced
///   queries: a request with `ConsistencyLevel: eventual` is refused with 400
///   `Request_UnsupportedQuery`.
/// - `risky_page_size` (`--risky-page-size N`, default 20): the page size of
///   `identityProtection/riskyUsers` without `$top` (the real default is undocumented);
/// - `no_identity_protection_license` (`--no-identity-protection-license`): every tenant lacks
///   Entra ID P2 (per tenant: the seed's `identityProtectionLicense: false`): riskyUsers answers
///   403;
/// - `no_identity_protection_limit` (`--no-identity-protection-limit`): riskyUsers is not held
///   to Identity Protection's documented 1 request per second per tenant.
///
/// Writes whose response is lost are a fault kind: `lost=RATE` in `--faults`
/// ([`faults::FaultSpec`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Realism {
    pub expand_cap: Option<usize>,
    pub role_page_size: usize,
    pub read_lag: Duration,
    pub transitive_members: TransitiveMembersMode,
    pub reset_no_location: bool,
    pub reset_location_query: bool,
    pub reset_fail: bool,
    pub no_pim_license: bool,
    pub legacy_certificate_assertions: bool,
    pub upn_range_filter: UpnRangeFilterMode,
    pub eventual_lag: Duration,
    pub b2c: bool,
    pub risky_page_size: usize,
    pub no_identity_protection_license: bool,
    pub no_identity_protection_limit: bool,
}

impl Default for Realism {
    fn default() -> Self {
        Realism {
            expand_cap: Some(20),
            role_page_size: 5,
            read_lag: Duration::ZERO,
            transitive_members: TransitiveMembersMode::Documented,
            reset_no_location: false,
            reset_location_query: false,
            reset_fail: false,
            no_pim_license: false,
            legacy_certificate_assertions: false,
            upn_range_filter: UpnRangeFilterMode::Honoured,
            eventual_lag: Duration::ZERO,
            b2c: false,
            risky_page_size: 20,
            no_identity_protection_license: false,
            no_identity_protection_limit: false,
        }
    }
}

impl Realism {
    /// How far behind writes a read with these headers is served: `eventual_lag` for an advanced
    /// query (`ConsistencyLevel: eventual`) when it is the longer, else `read_lag`.
    pub fn view_lag(&self, headers: &axum::http::HeaderMap) -> Duration {
        if odata::eventual(headers) {
            self.read_lag.max(self.eventual_lag)
        } else {
            self.read_lag
        }
    }

    /// How long the version of a user before a write is kept for lagging reads.
    pub fn retain_lag(&self) -> Duration {
        self.read_lag.max(self.eventual_lag)
    }
}

impl SandboxConfig {
    /// Defaults around a seed source.
    pub fn new(seed: SeedSource) -> Self {
        SandboxConfig {
            seed,
            state_file: None,
            throttle: "real".to_owned(),
            auth_method_limit: true,
            throttle_scope_on_success: false,
            latency: None,
            latency_per_item: 0.0,
            faults: None,
            rng_seed: 1,
            flag_only_patch_noop: false,
            synced_flags_refused: false,
            token_lifetime: 3599,
            reset_operation_duration: Duration::from_millis(200),
            reset_retry_after: 1,
            device_code_interval: 1,
            max_body_bytes: 1024 * 1024,
            persist_interval: Duration::from_secs(2),
            realism: Realism::default(),
            clock_offset: chrono::Duration::zero(),
        }
    }
}

/// One tenant's credentials, as printed at start.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct TenantInfo {
    pub tenant_id: String,
    pub tenant_domain: String,
    pub domains: Vec<String>,
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for TenantInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantInfo")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"(sensitive)")
            .finish_non_exhaustive()
    }
}

/// What a running sandbox accepts: printed as one JSON line by `pwdrift sandbox`.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct SandboxInfo {
    /// `http://127.0.0.1:PORT` (without `/v1.0`).
    pub graph_url: String,
    /// `http://127.0.0.1:PORT`: token endpoint at `{authority_host}/{tenant}/oauth2/v2.0/token`.
    pub authority_host: String,
    /// The first tenant's id, initial domain and app credentials.
    pub tenant_id: String,
    pub tenant_domain: String,
    pub client_id: String,
    pub client_secret: String,
    /// A public client allowed to sign in users (ROPC, device code), if seeded.
    pub delegated_client_id: Option<String>,
    /// The delegated admin (the device-code auto-approver, else the first user with a password).
    pub delegated_username: Option<String>,
    /// Their password, when known from the seed.
    pub delegated_password: Option<String>,
    /// Every tenant (the first one repeats the fields above).
    pub tenants: Vec<TenantInfo>,
}

impl std::fmt::Debug for SandboxInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxInfo")
            .field("graph_url", &self.graph_url)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"(sensitive)")
            .field("delegated_username", &self.delegated_username)
            .field("delegated_password", &"(sensitive)")
            .finish_non_exhaustive()
    }
}

fn info(store: &Store, seed: Option<&Seed>, base: &str) -> SandboxInfo {
    let tenants: Vec<TenantInfo> = store
        .tenants
        .iter()
        .map(|t| {
            let app = t.apps.first();
            TenantInfo {
                tenant_id: t.id.clone(),
                tenant_domain: t.initial_domain.clone(),
                domains: t.domains.clone(),
                client_id: app.map(|a| a.client_id.clone()).unwrap_or_default(),
                client_secret: app
                    .and_then(|a| a.secrets.first().cloned())
                    .unwrap_or_default(),
            }
        })
        .collect();
    let t0 = &store.tenants[0];
    let delegated = t0
        .device_code_auto_approve
        .or_else(|| {
            t0.users
                .iter()
                .position(|u| u.password_sha256.is_some() && u.is_admin())
        })
        .map(|i| &t0.users[i]);
    let delegated_password = delegated.and_then(|u| {
        let s = seed?;
        s.tenants
            .iter()
            .flat_map(|t| &t.users)
            .find(|su| su.user_principal_name.eq_ignore_ascii_case(&u.upn))
            .and_then(|su| su.password.clone())
            .filter(|pw| u.password_sha256.as_deref() == Some(&seed::password_hash(pw)))
    });
    SandboxInfo {
        graph_url: base.to_owned(),
        authority_host: base.to_owned(),
        tenant_id: tenants[0].tenant_id.clone(),
        tenant_domain: tenants[0].tenant_domain.clone(),
        client_id: tenants[0].client_id.clone(),
        client_secret: tenants[0].client_secret.clone(),
        delegated_client_id: t0.public_clients.first().map(|p| p.client_id.clone()),
        delegated_username: delegated.map(|u| u.upn.clone()),
        delegated_password,
        tenants,
    }
}

/// A running sandbox. Stop it with [`RunningSandbox::shutdown`] (which also saves `--state`).
pub struct RunningSandbox {
    pub info: SandboxInfo,
    pub addr: SocketAddr,
    state: AppState,
    state_file: Option<PathBuf>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    background: tokio::task::JoinHandle<()>,
}

impl RunningSandbox {
    /// Stops serving (in-flight requests finish, within 5 s), completes accepted resetPassword
    /// operations and saves
    /// the state file if configured.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let abort = self.server.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), &mut self.server)
            .await
            .is_err()
        {
            abort.abort();
        }
        self.background.abort();
        server::settle_all_at(&self.state, self.state.now() + chrono::Duration::days(1));
        if let Some(path) = &self.state_file {
            if let Err(e) = server::save_state(&self.state, path) {
                tracing::warn!("cannot save sandbox state: {e:#}");
            }
        }
    }

    /// Saves the state file now (if configured).
    pub fn persist(&self) -> anyhow::Result<()> {
        match &self.state_file {
            Some(path) => server::save_state(&self.state, path),
            None => Ok(()),
        }
    }
}

/// Starts a sandbox on `listen` (loopback only; port 0 picks one).
pub async fn start(config: SandboxConfig, listen: SocketAddr) -> anyhow::Result<RunningSandbox> {
    if !listen.ip().is_loopback() {
        anyhow::bail!(
            "the sandbox listens on loopback addresses only (127.0.0.1 or ::1), not {}",
            listen.ip()
        );
    }
    let seed_result = config.seed.load();
    let (mut store, seed) = match &config.state_file {
        Some(path) if path.exists() => {
            let state_seed = seed::load(path)?;
            let store = Store::from_seed(&state_seed, &path.display().to_string())?;
            (store, seed_result.ok())
        }
        _ => {
            let seed = seed_result?;
            let store = Store::from_seed(&seed, &config.seed.name())?;
            (store, Some(seed))
        }
    };
    if config.realism.no_pim_license {
        for t in &mut store.tenants {
            if !t.eligibilities.is_empty() {
                anyhow::bail!(
                    "--no-pim-license: tenant {} has eligible role assignments, which a tenant without a PIM licence cannot have",
                    t.id
                );
            }
            t.pim_license = false;
        }
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    let info = info(&store, seed.as_ref(), &base);
    drop(seed);
    let runtime = Runtime {
        token_lifetime: config.token_lifetime,
        flag_only_patch_noop: config.flag_only_patch_noop,
        synced_flags_refused: config.synced_flags_refused,
        reset_operation_duration: config.reset_operation_duration,
        reset_retry_after: config.reset_retry_after,
        device_code_interval: config.device_code_interval,
        max_body_bytes: config.max_body_bytes,
        realism: config.realism.clone(),
        clock_offset: config.clock_offset,
    };
    let mode: throttle::ThrottleMode = config
        .throttle
        .parse()
        .map_err(|e| anyhow::anyhow!("--throttle {}: {e}", config.throttle))?;
    let spec = config
        .faults
        .as_deref()
        .map(str::parse::<faults::FaultSpec>)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--faults: {e}"))?;
    let latency = config
        .latency
        .as_deref()
        .map(str::parse::<faults::Latency>)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--latency: {e}"))?;
    if !config.latency_per_item.is_finite() || config.latency_per_item < 0.0 {
        anyhow::bail!(
            "--latency-per-item {}: expected a non-negative number of milliseconds",
            config.latency_per_item
        );
    }
    let injector = faults::FaultInjector::new(spec, latency, config.rng_seed)
        .with_latency_per_item(Duration::from_secs_f64(config.latency_per_item / 1000.0));
    let state: AppState = Arc::new(Shared::new(
        store,
        base,
        runtime,
        throttle::Throttler::new(mode)
            .with_auth_method_limit(config.auth_method_limit)
            .with_scope_on_success(config.throttle_scope_on_success),
        injector,
    ));
    // `users('{key}')` is rewritten before routing (a `Router::layer` would run after it).
    let app = tower::Layer::layer(
        &tower::util::MapRequestLayer::new(server::rewrite_users_key),
        server::router(state.clone()),
    );
    let app = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::warn!("sandbox server stopped: {e}");
        }
    });
    let background = tokio::spawn(server::background(
        state.clone(),
        config.state_file.clone(),
        config.persist_interval,
    ));
    Ok(RunningSandbox {
        info,
        addr,
        state,
        state_file: config.state_file,
        stop: Some(stop),
        server,
        background,
    })
}
