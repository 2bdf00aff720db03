//! From the command line's target flags (`--cloud`, `--graph-url`, `--authority-host`,
//! `--insecure-skip-tls-verify`) to the Graph client's [`ClientOptions`]. The conversion lives
//! here, in the command layer, so that `graph/` never imports clap types from `cli.rs`. The
//! notices the Graph library returns instead of printing (device-code prompt, insecure-TLS
//! warning) are printed from here.

use crate::cli::{self, TargetArgs};
use crate::graph::auth::{AuthError, Cloud, Endpoints};
use crate::graph::client::ClientOptions;
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

/// Options from `--cloud`, `--graph-url`, `--authority-host` (or `AZURE_AUTHORITY_HOST`) and
/// `--insecure-skip-tls-verify`; `http://` only to loopback.
pub fn client_options(target: &TargetArgs) -> Result<ClientOptions, AuthError> {
    let mut options = connection_options(
        target.connection.cloud,
        target.connection.graph_url.as_deref(),
        target.connection.authority_host.as_deref(),
        target.connection.insecure_skip_tls_verify,
    )?;
    options.request_deadline = std::time::Duration::from_secs(target.request_timeout);
    Ok(options)
}

/// [`client_options`] from the connection flags alone (`import` has them without the rest of
/// [`TargetArgs`]).
pub fn connection_options(
    cloud_flag: cli::Cloud,
    graph_url: Option<&str>,
    authority_host: Option<&str>,
    insecure_skip_tls_verify: bool,
) -> Result<ClientOptions, AuthError> {
    let endpoints = Endpoints::new(cloud(cloud_flag), graph_url, authority_host)?;
    let mut options = ClientOptions::new(endpoints);
    options.insecure_skip_tls_verify = insecure_skip_tls_verify;
    options.notices = stderr_notices();
    options.write_quotas = write_quotas();
    Ok(options)
}

/// The write quotas to pace to: Graph's documented ones, divided by K when
/// `PWDRIFT_WRITE_QUOTA_SCALE=K` is set (a benchmark knob matching the sandbox's
/// `--throttle scaled:K`; never needed against Graph).
pub fn write_quotas() -> Vec<crate::graph::retry::WriteQuota> {
    let k = std::env::var("PWDRIFT_WRITE_QUOTA_SCALE")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(1);
    crate::graph::retry::DOCUMENTED_WRITE_QUOTAS
        .iter()
        .map(|q| q.scaled(k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct T {
        #[command(flatten)]
        target: TargetArgs,
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
