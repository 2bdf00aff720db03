//! A session: live connections to every selected tenant (or to the embedded sandbox), each with
//! its desired state; and the reads of live state through them. What `plan`, `apply` and the
//! re-check of a saved plan share.
//!
//! A tenant is its id: every tenant name of the desired state is signed in to (even under
//! `--shard`: the shard of a tenant is decided by its id), each of its clients is checked to talk
//! to the tenant that name names (`tenant_check`: the organization Graph answers for and the
//! token's `tid`; the id comes from there), the declarations of one tenant written several ways
//! are joined, and only then are `--shard` and `--tenant` applied.

use futures_util::StreamExt;

use crate::apply::TenantClients;
use crate::config::{self, DesiredState, TenantDesired};
use crate::graph::auth::Credential;
use crate::graph::client::GraphClient;
use crate::live::{self, Caller, LiveError, LiveTenant};
use crate::plan::Plan;

pub use super::error::AliasConflict;
use super::error::{Context, EngineError};
use super::sandbox::{self, EmbeddedSandbox};
use super::settings::TargetSettings;
use super::tenant_check;
use super::Observer;

/// Live connections for every selected tenant, each with its desired state (moved here from the
/// loaded [`DesiredState`], not copied: with 100,000 declared users a second copy would cost
/// tens of megabytes).
pub struct Session {
    pub tenants: Vec<TenantSession>,
    /// how live state is read (`--assume-no-eligible-admins`)
    pub reads: live::ReadOptions,
    sandbox: Option<EmbeddedSandbox>,
}

pub struct TenantSession {
    pub desired: TenantDesired,
    /// the tenant id every client of the tenant was checked to talk to (`tenant_check`)
    pub tenant_id: String,
    pub clients: TenantClients,
    pub caller: Caller,
}

/// Checks that every tenant named by `--tenant` is in desired state.
pub fn check_selected_tenants(
    desired: &DesiredState,
    wanted: &[String],
) -> Result<(), EngineError> {
    for w in wanted {
        if !desired
            .tenants
            .iter()
            .any(|t| t.tenant.as_str().eq_ignore_ascii_case(w))
        {
            return Err(EngineError::refused(format!(
                "--tenant {}: no such tenant in desired state",
                crate::escape::value(w)
            )));
        }
    }
    Ok(())
}

/// Whether the tenant whose id (as the tenant check found it) is `tenant` is acted on under `--shard` (always, without it).
pub fn in_shard(shard: Option<crate::shard::Shard>, tenant: &str) -> bool {
    shard.is_none_or(|s| s.contains(tenant))
}

/// A tenant's desired state with its app client and, with `--delegated`, its delegated client.
type Connected = (TenantDesired, GraphClient, Option<GraphClient>);

impl Session {
    /// Connects to Graph (or starts the embedded sandbox) for the selected tenants. Notes (no
    /// tenant in the shard) go to `observer`. Desired state that declares a user twice for one
    /// tenant written several ways is an [`EngineError::AliasConflict`].
    pub async fn open(
        settings: &TargetSettings,
        desired: DesiredState,
        observer: &dyn Observer,
    ) -> Result<Session, EngineError> {
        // `--tenant` names are checked now, but a tenant is its id: every name of the tenant
        // `--tenant` names (another domain, its GUID) is selected once the names are resolved.
        check_selected_tenants(&desired, &settings.tenants)?;
        let tenants: Vec<TenantDesired> = desired.tenants;
        let mut running = None;
        let mut connected = Vec::new();

        if let Some(seed) = &settings.sandbox {
            let (r, opened) = Self::open_sandbox(seed, tenants, settings).await?;
            connected = opened;
            running = Some(r);
        } else {
            for t in tenants {
                let mut options = settings.connect.client_options()?;
                options.concurrency = settings.concurrency;
                let credential = Credential::from_env(Some(t.tenant.as_str()))?;
                let app = GraphClient::new(options.clone(), credential)?;
                let delegated = if settings.delegated {
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
                if let Some(s) = running {
                    sandbox::stop_embedded_sandbox(s).await;
                }
                return Err(e);
            }
        };
        let mut opening = Vec::new();
        let mut in_this_shard = 0;
        for ((t, app, delegated), names, key) in joined {
            if !in_shard(settings.shard, &key) {
                continue;
            }
            in_this_shard += 1;
            let wanted = settings.tenants.is_empty()
                || names
                    .iter()
                    .any(|n| settings.tenants.iter().any(|w| w.eq_ignore_ascii_case(n)));
            if wanted {
                opening.push(Self::tenant_session(t, key, app, delegated));
            }
        }
        if let (Some(shard), 0) = (settings.shard, in_this_shard) {
            observer.info(&format!(
                "note: no tenant of the desired state is in shard {shard}"
            ));
        }
        // tenants are opened side by side (each signs in; `--delegated` also reads /me)
        let sessions = super::all_tenants(opening).await?;
        Ok(Session {
            tenants: sessions,
            reads: settings.reads.clone(),
            sandbox: running,
        })
    }

    /// Starts the embedded sandbox (state kept beside the seed) and opens every tenant on it.
    #[cfg(feature = "sandbox")]
    async fn open_sandbox(
        seed: &std::path::Path,
        tenants: Vec<TenantDesired>,
        settings: &TargetSettings,
    ) -> Result<(EmbeddedSandbox, Vec<Connected>), EngineError> {
        let mut sessions = Vec::new();
        let running = sandbox::start_embedded_sandbox(seed).await?;
        for t in tenants {
            let mut options =
                sandbox::embedded_sandbox_options(&running, settings.connect.notices.clone())?;
            options.concurrency = settings.concurrency;
            if let Some(d) = settings.connect.request_timeout {
                options.request_deadline = d;
            }
            options.write_quotas = settings.connect.write_quotas();
            let tenant = t.tenant.as_str().to_owned();
            let app = sandbox::embedded_sandbox_app(&running, options.clone(), &tenant)?;
            let delegated = sandbox::embedded_sandbox_delegated(&running, options, &tenant)?;
            sessions.push((t, app, delegated));
        }
        Ok((running, sessions))
    }

    #[cfg(not(feature = "sandbox"))]
    async fn open_sandbox(
        _seed: &std::path::Path,
        _tenants: Vec<TenantDesired>,
        _settings: &TargetSettings,
    ) -> Result<(EmbeddedSandbox, Vec<Connected>), EngineError> {
        Err(EngineError::refused(
            "--sandbox: this pwdrift was built without the `sandbox` feature",
        ))
    }

    async fn tenant_session(
        desired: TenantDesired,
        tenant_id: String,
        app: GraphClient,
        delegated: Option<GraphClient>,
    ) -> Result<TenantSession, EngineError> {
        let caller = match &delegated {
            Some(d) => {
                let me = d.me(desired.tenant.as_str()).await.context_with(|| {
                    "delegated sign-in: cannot read the signed-in user (/me)".to_owned()
                })?;
                Caller::Delegated { user_id: me.id }
            }
            None => Caller::Application,
        };
        Ok(TenantSession {
            desired,
            tenant_id,
            clients: TenantClients {
                app,
                delegated,
                verify_timeout: crate::verify::DEFAULT_TIMEOUT,
            },
            caller,
        })
    }

    /// Reads live state and diffs it against desired state, each tenant decided by Graph's
    /// clock as its answers gave it (when a `requirePasswordChange { since }` is due; see
    /// [`super::clock`]); the clock warnings go to `observer`. [`LiveError::Resolution`]:
    /// desired state does not match the tenant (a user that does not exist, a conflict through
    /// a group, ...).
    pub async fn plan(&self, only: &[String], observer: &dyn Observer) -> Result<Plan, LiveError> {
        let live = self.read_live(only).await?;
        tracing::debug!("live state read and resolved; diffing");
        let local = chrono::Utc::now();
        let clocks: Vec<super::clock::Decided> = live
            .iter()
            .map(|l| match self.tenant(&l.tenant) {
                Some(t) => super::clock::tenant_now(&t.clients, local),
                None => super::clock::graph_now(&[], local),
            })
            .collect();
        let named: Vec<(&str, super::clock::Decided)> = live
            .iter()
            .map(|l| l.tenant.as_str())
            .zip(clocks.iter().copied())
            .collect();
        for w in super::clock::warnings(&named, local) {
            observer.warning(&w);
        }
        let created_at = clocks.iter().map(|c| c.at).max().unwrap_or(local);
        let decided = live
            .into_iter()
            .zip(clocks)
            .map(|(l, c)| (l, c.at, c.clock))
            .collect();
        let plan = crate::diff::diff_decided(decided, created_at);
        tracing::debug!("diffed");
        Ok(plan)
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
                self.reads.clone(),
            )
        });
        let results: Vec<_> = futures_util::stream::iter(reads)
            .buffered(super::TENANT_CONCURRENCY)
            .collect()
            .await;
        for result in results {
            match result {
                Ok(mut l) => {
                    // the id the tenant check established (also for a token that is not a JWT)
                    if let Some(t) = self.tenant(&l.tenant) {
                        l.tenant_id.clone_from(&t.tenant_id);
                    }
                    out.push(l)
                }
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
            sandbox::stop_embedded_sandbox(s).await;
        }
    }

    pub fn tenant(&self, name: &str) -> Option<&TenantSession> {
        self.tenants
            .iter()
            .find(|t| t.desired.tenant.as_str().eq_ignore_ascii_case(name))
    }
}

/// A tenant is its id: resolves every tenant name to the tenant id (the one its clients were
/// checked to talk to: [`tenant_check::verify`]; a wrong tenant stops here) and joins the declarations of one
/// tenant ([`config::merge::union`]), keeping the first one's name and clients. Users or groups
/// declared twice across the joined files are an [`AliasConflict`]. Each joined tenant comes
/// with every name it was written as and its key (the tenant id), by which `--shard` selects.
async fn join_aliases(
    connected: Vec<Connected>,
) -> Result<Vec<(Connected, Vec<String>, String)>, EngineError> {
    // every tenant signs in side by side, and each of its clients is checked to talk to the
    // tenant desired state names before anything else is read (see `tenant_check`)
    let keys = futures_util::future::try_join_all(connected.iter().map(|c| async move {
        let name = c.0.tenant.as_str();
        let id = tenant_check::verify(name, &c.1, tenant_check::Role::App, None).await?;
        if let Some(delegated) = &c.2 {
            tenant_check::verify(name, delegated, tenant_check::Role::Delegated, Some(&id)).await?;
        }
        Ok::<_, EngineError>(id)
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
