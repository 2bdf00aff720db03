//! The settings of a run, resolved once: the command layer builds them from the flags, the
//! environment and the defaults (one function per command, in `commands/target.rs`), and the
//! engine reads nothing else (as ripgrep's `HiArgs` or uv's settings do). Credentials are the
//! exception: they are read per tenant, when a tenant is signed in to, in the Azure SDK
//! conventions ([`crate::graph::auth::Credential::from_env`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::graph::auth::{AuthError, Cloud, Endpoints};
use crate::graph::client::ClientOptions;
use crate::graph::notice::Notifier;
use crate::graph::retry::WriteQuota;
use crate::live::ReadOptions;
use crate::shard::Shard;

/// How to reach Graph and the identity authority.
#[derive(Clone, Debug)]
pub struct ConnectSettings {
    /// `--cloud`
    pub cloud: Cloud,
    /// `--graph-url`
    pub graph_url: Option<String>,
    /// `--authority-host` (or `AZURE_AUTHORITY_HOST`)
    pub authority_host: Option<String>,
    /// `--insecure-skip-tls-verify`
    pub insecure_skip_tls_verify: bool,
    /// `--request-timeout`: the overall deadline of one request (the client's default without)
    pub request_timeout: Option<Duration>,
    /// Graph's documented write quotas are divided by this (`PWDRIFT_WRITE_QUOTA_SCALE`, a
    /// benchmark knob matching the sandbox's `--throttle scaled:K`; 1 against Graph)
    pub write_quota_scale: u32,
    /// resetPassword and its operation polls per tenant (`--reset-rate`, default 5 per 10 s),
    /// before [`write_quota_scale`](Self::write_quota_scale)
    pub reset_rate: WriteQuota,
    /// the application's quotas across tenants are divided by this (`--app-quota-shares`,
    /// default N of `--shard I/N`, else 1)
    pub app_quota_shares: u32,
    /// where the Graph library's notices (device-code prompt, insecure-TLS warning) go
    pub notices: Notifier,
}

impl ConnectSettings {
    /// The client options these settings give; `http://` only to loopback.
    pub fn client_options(&self) -> Result<ClientOptions, AuthError> {
        let endpoints = Endpoints::new(
            self.cloud,
            self.graph_url.as_deref(),
            self.authority_host.as_deref(),
        )?;
        let mut options = ClientOptions::new(endpoints);
        options.insecure_skip_tls_verify = self.insecure_skip_tls_verify;
        options.notices = self.notices.clone();
        options.write_quotas = self.write_quotas();
        options.auth_method_quota = self.reset_rate.scaled(self.write_quota_scale);
        options.app_quotas = crate::graph::retry::DOCUMENTED_APP_QUOTAS
            .scaled(self.write_quota_scale)
            .shared_by(self.app_quota_shares);
        options.tenant_unit_quotas = crate::graph::retry::DOCUMENTED_TENANT_UNIT_QUOTAS
            .map(|q| q.scaled(self.write_quota_scale));
        if let Some(t) = self.request_timeout {
            options.request_deadline = t;
        }
        Ok(options)
    }

    /// The write quotas to pace to: Graph's documented ones, divided by
    /// [`write_quota_scale`](Self::write_quota_scale).
    pub fn write_quotas(&self) -> Vec<WriteQuota> {
        crate::graph::retry::DOCUMENTED_WRITE_QUOTAS
            .iter()
            .map(|q| q.scaled(self.write_quota_scale))
            .collect()
    }
}

/// Which desired state to act on, and where: what `plan` and `apply` share.
#[derive(Clone, Debug)]
pub struct TargetSettings {
    /// desired-state files or directories
    pub paths: Vec<PathBuf>,
    /// `--sandbox SEED`: the embedded sandbox instead of Graph
    pub sandbox: Option<PathBuf>,
    /// `--tenant`: only these tenants (as written in desired state)
    pub tenants: Vec<String>,
    /// `--target`: only these users (as written in desired state)
    pub targets: Vec<String>,
    /// `--shard I/N`
    pub shard: Option<Shard>,
    pub connect: ConnectSettings,
    /// `--delegated`: also sign in as an administrator (device code)
    pub delegated: bool,
    /// how live state is read (`--assume-no-eligible-admins`)
    pub reads: ReadOptions,
    /// requests in flight per tenant
    pub concurrency: usize,
    /// `--allow-password-dir`: where password files may lie besides the desired-state directory
    pub allow_password_dirs: Vec<PathBuf>,
}

/// What `apply` adds to [`TargetSettings`].
#[derive(Clone, Debug)]
pub struct ApplySettings {
    pub target: TargetSettings,
    /// `--force`, `--change-threshold`, `--max-changes`
    pub rails: crate::rails::Rails,
    /// `--verify-timeout`
    pub verify_timeout: Duration,
    /// `--secrets-out`
    pub secrets_out: Option<PathBuf>,
    /// `--secrets-append`
    pub secrets_append: bool,
    /// `--secrets-recipient`, each a recipient (`age1...`) or a file of them
    pub secrets_recipients: Vec<String>,
    /// `--report`
    pub report: Option<PathBuf>,
    /// `--lock-timeout`: how long to wait for another run's lock of a tenant (zero: fail at once)
    pub lock_timeout: Duration,
    /// `--lock-blob` (or `PWDRIFT_LOCK_BLOB`): the Azure Blob Storage container whose leases
    /// serialize applies across machines (see [`super::lease`]); a SAS token in its query is a
    /// secret
    pub lock_blob: Option<String>,
    /// how long the writes in flight may take to finish once cancelled (10 s;
    /// `PWDRIFT_SIGNAL_GRACE_MS` in tests)
    pub grace: Duration,
}

/// What `import` reads and how it reaches the tenant.
#[derive(Clone, Debug)]
pub struct ImportSettings {
    /// `--tenant`, as given
    pub tenants: Vec<String>,
    /// `--group`, as given
    pub groups: Vec<String>,
    /// `--filter`
    pub filter: Option<String>,
    /// `--users-from`
    pub users_from: Option<PathBuf>,
    /// `--sandbox SEED`
    pub sandbox: Option<PathBuf>,
    pub connect: ConnectSettings,
    /// `--out DIR`
    pub out: PathBuf,
    /// `--split-by-group`
    pub split_by_group: bool,
    /// `--force`: overwrite files that exist
    pub force: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect() -> ConnectSettings {
        ConnectSettings {
            cloud: Cloud::Global,
            graph_url: None,
            authority_host: None,
            insecure_skip_tls_verify: false,
            request_timeout: None,
            write_quota_scale: 1,
            reset_rate: crate::graph::retry::AUTH_METHOD_QUOTA,
            app_quota_shares: 1,
            notices: Notifier::default(),
        }
    }

    #[test]
    fn client_options_take_the_deadline_and_the_quota_scale() {
        let defaults = connect().client_options().unwrap();
        let mut c = connect();
        c.request_timeout = Some(Duration::from_secs(7));
        c.write_quota_scale = 10;
        let o = c.client_options().unwrap();
        assert_eq!(o.request_deadline, Duration::from_secs(7));
        assert_eq!(
            defaults.request_deadline,
            ClientOptions::new(o.endpoints.clone()).request_deadline
        );
        assert_eq!(o.write_quotas, c.write_quotas());
        assert_eq!(
            defaults.write_quotas,
            crate::graph::retry::DOCUMENTED_WRITE_QUOTAS.to_vec()
        );
        assert_ne!(o.write_quotas, defaults.write_quotas);
        assert_eq!(defaults.auth_method_quota.writes, 5);
        assert_eq!(defaults.app_quotas.writes.writes, 70_000);
        c.write_quota_scale = 1;
        c.app_quota_shares = 4;
        assert_eq!(c.client_options().unwrap().app_quotas.writes.writes, 17_500);
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let mut c = connect();
        c.graph_url = Some("http://graph.example.com".into());
        assert!(matches!(
            c.client_options(),
            Err(AuthError::InsecureUrl { .. })
        ));
    }
}
