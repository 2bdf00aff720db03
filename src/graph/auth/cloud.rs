//! Where Graph and the identity platform are: the national clouds ([`Cloud`]), their endpoints
//! with optional overrides ([`Endpoints`]), and the transport rule every configured URL passes
//! ([`checked_url`]): `https` anywhere, plain `http` only to a loopback host.

use std::net::IpAddr;

use url::Url;

use super::AuthError;

/// National clouds: Graph host and login host (Microsoft's "National cloud deployments",
/// <https://learn.microsoft.com/en-us/graph/deployments>).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cloud {
    Global,
    UsGov,
    UsGovDod,
    China,
}

impl Cloud {
    /// `https://` root of the cloud's Microsoft Graph.
    pub fn graph_host(self) -> &'static str {
        match self {
            Cloud::Global => "https://graph.microsoft.com",
            Cloud::UsGov => "https://graph.microsoft.us",
            Cloud::UsGovDod => "https://dod-graph.microsoft.us",
            Cloud::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }

    /// `https://` root of the cloud's identity platform.
    pub fn login_host(self) -> &'static str {
        match self {
            Cloud::Global => "https://login.microsoftonline.com",
            Cloud::UsGov | Cloud::UsGovDod => "https://login.microsoftonline.us",
            Cloud::China => "https://login.chinacloudapi.cn",
        }
    }
}

/// Where Graph and the identity platform are. `graph_url` is the service root (with or without
/// a version segment: `/v1.0` is appended by the client when the path has none); `scope` is the
/// `.default` scope of the Graph resource tokens are requested for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub graph_url: Url,
    pub authority_host: Url,
    /// `{graph_url origin}/.default`: the cloud's own Graph host unless `graph_url` is overridden.
    pub scope: String,
}

impl Endpoints {
    /// The endpoints of a national cloud.
    pub fn for_cloud(cloud: Cloud) -> Endpoints {
        Endpoints::new(cloud, None, None).expect("built-in cloud endpoints are valid https URLs")
    }

    /// The cloud's endpoints with optional `--graph-url` / `--authority-host` overrides. Plain
    /// `http://` is accepted only to a loopback host.
    pub fn new(
        cloud: Cloud,
        graph_url: Option<&str>,
        authority_host: Option<&str>,
    ) -> Result<Endpoints, AuthError> {
        let graph_url = checked_url(graph_url.unwrap_or(cloud.graph_host()))?;
        let authority_host = checked_url(authority_host.unwrap_or(cloud.login_host()))?;
        let scope = format!("{}/.default", origin(&graph_url));
        Ok(Endpoints {
            graph_url,
            authority_host,
            scope,
        })
    }

    /// `POST` target for tokens of `tenant`.
    pub fn token_url(&self, tenant: &str) -> Result<Url, AuthError> {
        self.authority_path(tenant, "oauth2/v2.0/token")
    }

    /// `POST` target for device codes of `tenant`.
    pub fn device_code_url(&self, tenant: &str) -> Result<Url, AuthError> {
        self.authority_path(tenant, "oauth2/v2.0/devicecode")
    }

    fn authority_path(&self, tenant: &str, tail: &str) -> Result<Url, AuthError> {
        if tenant.is_empty()
            || !tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return Err(AuthError::NotConfigured(format!(
                "invalid tenant {tenant:?}: expected a tenant id (GUID) or a domain"
            )));
        }
        let mut base = self.authority_host.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        base.join(&format!("{tenant}/{tail}"))
            .map_err(|e| AuthError::InvalidUrl {
                url: self.authority_host.to_string(),
                reason: e.to_string(),
            })
    }
}

/// `scheme://host[:port]` of a URL.
pub(crate) fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Parses a URL and applies the transport rule: `https` anywhere, `http` only to loopback.
pub(crate) fn checked_url(raw: &str) -> Result<Url, AuthError> {
    let url = Url::parse(raw).map_err(|e| AuthError::InvalidUrl {
        url: raw.to_owned(),
        reason: e.to_string(),
    })?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(AuthError::InsecureUrl {
            url: strip_query(raw).to_owned(),
        }),
        other => Err(AuthError::InvalidUrl {
            url: strip_query(raw).to_owned(),
            reason: format!("scheme {other:?} is not http(s)"),
        }),
    }
}

/// `127.0.0.0/8`, `::1` or `localhost`.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A URL without its query (which may carry a token), for messages and `Debug`.
pub(super) fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_rule() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.5.6.7/",
            "http://[::1]:9/",
            "http://localhost:1",
            "http://LOCALHOST",
            "https://example.com",
        ] {
            assert!(checked_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com",
            "http://10.0.0.1",
            "http://128.0.0.1",
            "http://[::2]/",
            "http://localhost.evil.com",
            "ftp://127.0.0.1",
            "not a url",
        ] {
            assert!(checked_url(bad).is_err(), "{bad}");
        }
        let err = checked_url("http://graph.example.com/x?secret=1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("loopback") && !err.contains("secret=1"),
            "{err}"
        );
    }

    #[test]
    fn cloud_endpoints_and_scope() {
        let e = Endpoints::for_cloud(Cloud::China);
        assert_eq!(e.scope, "https://microsoftgraph.chinacloudapi.cn/.default");
        assert_eq!(
            e.token_url("t-1").unwrap().as_str(),
            "https://login.chinacloudapi.cn/t-1/oauth2/v2.0/token"
        );
        let e = Endpoints::for_cloud(Cloud::UsGovDod);
        assert_eq!(e.scope, "https://dod-graph.microsoft.us/.default");
        assert_eq!(
            e.authority_host.as_str(),
            "https://login.microsoftonline.us/"
        );
        assert_eq!(
            Endpoints::for_cloud(Cloud::UsGov).scope,
            "https://graph.microsoft.us/.default"
        );
        let e = Endpoints::for_cloud(Cloud::Global);
        assert_eq!(e.scope, "https://graph.microsoft.com/.default");
        assert_eq!(
            e.device_code_url("contoso.com").unwrap().as_str(),
            "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/devicecode"
        );

        let e = Endpoints::new(
            Cloud::Global,
            Some("http://127.0.0.1:4000/v1.0"),
            Some("http://127.0.0.1:4000/auth"),
        )
        .unwrap();
        assert_eq!(e.scope, "http://127.0.0.1:4000/.default");
        assert_eq!(
            e.token_url("tid").unwrap().as_str(),
            "http://127.0.0.1:4000/auth/tid/oauth2/v2.0/token"
        );
        assert!(e.token_url("../x").is_err());
        assert!(Endpoints::new(Cloud::Global, Some("http://graph.example"), None).is_err());
    }
}
