//! The `--lock-blob` container: its URL, the storage account it belongs to, and how requests to
//! it are authorized.
//!
//! The account is the first label of the host (`https://ACCOUNT.blob.core.windows.net/CONTAINER`)
//! or, for a path-style URL to an IP address or `localhost` (Azurite's
//! `http://127.0.0.1:10000/devstoreaccount1/CONTAINER`), the first path segment. Plain `http` is
//! accepted only to a loopback host (the Graph client's rule). A query is a SAS token, passed
//! through as it is; without one, requests are signed with the account key from
//! `AZURE_STORAGE_KEY` (Shared Key). Both are secrets: remembered by the redactor, and never
//! part of the URL as shown ([`Container::shown`] has no query).

use secrecy::{ExposeSecret as _, SecretString};
use url::Url;

use crate::graph::redact;

/// How requests to the container are authorized.
#[derive(Clone)]
pub enum Auth {
    /// Shared Key: the Base64-decoded account key
    SharedKey(SecretString),
    /// a SAS token (the URL's query), appended to every request
    Sas(SecretString),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::SharedKey(_) => "SharedKey(..)",
            Auth::Sas(_) => "Sas(..)",
        })
    }
}

/// A blob container that holds the leases, one blob per tenant.
#[derive(Clone, Debug)]
pub struct Container {
    /// `scheme://host[:port]/[account/]container`, no query, no trailing slash
    base: Url,
    /// the storage account
    pub account: String,
    /// the container's name
    pub name: String,
    pub auth: Auth,
}

impl Container {
    /// Parses `--lock-blob` (`raw`) with the account key `key` (`AZURE_STORAGE_KEY`), needed
    /// only when the URL carries no SAS token.
    pub fn parse(raw: &str, key: Option<&str>) -> Result<Container, String> {
        let shown = raw.split('?').next().unwrap_or(raw);
        let bad = |reason: &str| format!("--lock-blob {shown}: {reason}");
        let url = Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
        if let Some(q) = url.query().filter(|q| !q.is_empty()) {
            redact::remember(q);
            for (_, v) in url.query_pairs() {
                redact::remember(&v);
            }
        }
        match url.scheme() {
            "https" => {}
            "http" if crate::graph::auth::is_loopback(&url) => {}
            "http" => {
                return Err(bad(
                    "plain http is accepted only to a loopback host (Azurite); use https",
                ))
            }
            other => return Err(bad(&format!("scheme {other:?} is not http(s)"))),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("a user name or password in the URL is not accepted"));
        }
        if url.fragment().is_some() {
            return Err(bad("a #fragment is not part of a container URL"));
        }
        let host = url.host().ok_or_else(|| bad("no host"))?;
        let segments: Vec<String> = url
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        let path_style = match host {
            url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
            _ => true,
        };
        let (account, name) = match (path_style, segments.as_slice()) {
            (true, [account, name]) => (account.clone(), name.clone()),
            (true, _) => {
                return Err(bad(
                    "a path-style URL names the account and the container: http://127.0.0.1:10000/ACCOUNT/CONTAINER",
                ))
            }
            (false, [name]) => {
                let d = host.to_string();
                let account = d.split('.').next().unwrap_or_default().to_owned();
                (account, name.clone())
            }
            (false, _) => {
                return Err(bad(
                    "the URL names the container only: https://ACCOUNT.blob.core.windows.net/CONTAINER",
                ))
            }
        };
        if account.is_empty()
            || account.len() > 24
            || !account
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(bad(&format!(
                "{account:?} is not a storage account name (3 to 24 lower-case letters and digits)"
            )));
        }
        // https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata
        let valid_name = (3..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-')
            && !name.contains("--");
        if !valid_name {
            return Err(bad(&format!(
                "{name:?} is not a container name (3 to 63 lower-case letters, digits and single hyphens)"
            )));
        }
        let auth = match url.query().filter(|q| !q.is_empty()) {
            Some(q) => Auth::Sas(SecretString::from(q.to_owned())),
            None => {
                let key = key.map(str::trim).filter(|k| !k.is_empty()).ok_or_else(|| {
                    bad("no credential: set AZURE_STORAGE_KEY to the storage account's key, or give a SAS token as the URL's query")
                })?;
                redact::remember(key);
                use base64::Engine as _;
                if base64::engine::general_purpose::STANDARD
                    .decode(key)
                    .is_err()
                {
                    return Err(bad(
                        "AZURE_STORAGE_KEY is not Base64 (an account key as the portal shows it)",
                    ));
                }
                Auth::SharedKey(SecretString::from(key.to_owned()))
            }
        };
        let mut base = url.clone();
        base.set_query(None);
        base.set_path(&if path_style {
            format!("/{account}/{name}")
        } else {
            format!("/{name}")
        });
        Ok(Container {
            base,
            account,
            name,
            auth,
        })
    }

    /// The container's URL as it may be shown: without the query.
    pub fn shown(&self) -> String {
        self.base.to_string()
    }

    /// The URL of a blob in the container, without the SAS token.
    pub fn blob(&self, blob: &str) -> Url {
        let mut u = self.base.clone();
        u.path_segments_mut()
            .expect("an http(s) URL has a path")
            .push(blob);
        u
    }

    /// The container's own URL, without the SAS token.
    pub fn url(&self) -> Url {
        self.base.clone()
    }

    /// The Base64-decoded account key (Shared Key only).
    pub fn key(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        match &self.auth {
            Auth::SharedKey(k) => base64::engine::general_purpose::STANDARD
                .decode(k.expose_secret())
                .ok(),
            Auth::Sas(_) => None,
        }
    }

    /// The SAS token, when requests carry one.
    pub fn sas(&self) -> Option<&str> {
        match &self.auth {
            Auth::Sas(s) => Some(s.expose_secret()),
            Auth::SharedKey(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    #[test]
    fn the_account_comes_from_the_host_or_the_first_path_segment() {
        let c = Container::parse(
            "https://acme.blob.core.windows.net/pwdrift-locks",
            Some(KEY),
        )
        .unwrap();
        assert_eq!(
            (c.account.as_str(), c.name.as_str()),
            ("acme", "pwdrift-locks")
        );
        assert_eq!(
            c.blob("t.lock").as_str(),
            "https://acme.blob.core.windows.net/pwdrift-locks/t.lock"
        );
        let c = Container::parse(
            "http://127.0.0.1:10000/devstoreaccount1/pwdrift-locks/",
            Some(KEY),
        )
        .unwrap();
        assert_eq!(
            (c.account.as_str(), c.name.as_str()),
            ("devstoreaccount1", "pwdrift-locks")
        );
        assert_eq!(
            c.blob("t.lock").as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/pwdrift-locks/t.lock"
        );
        assert!(c.key().is_some() && c.sas().is_none());
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let e = Container::parse("http://acme.blob.core.windows.net/locks", Some(KEY)).unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        Container::parse("http://localhost:10000/devstoreaccount1/locks", Some(KEY)).unwrap();
        Container::parse("http://[::1]:10000/devstoreaccount1/locks", Some(KEY)).unwrap();
        let e = Container::parse("ftp://acme.blob.core.windows.net/locks", Some(KEY)).unwrap_err();
        assert!(e.contains("not http(s)"), "{e}");
    }

    #[test]
    fn a_sas_token_is_passed_through_and_never_shown() {
        let raw = "https://acme.blob.core.windows.net/locks?sv=2022-11-02&sig=c2VjcmV0LXNpZ25hdHVyZQ%3D%3D";
        let c = Container::parse(raw, None).unwrap();
        assert_eq!(
            c.sas(),
            Some("sv=2022-11-02&sig=c2VjcmV0LXNpZ25hdHVyZQ%3D%3D")
        );
        assert_eq!(c.shown(), "https://acme.blob.core.windows.net/locks");
        assert!(!format!("{c:?}").contains("c2VjcmV0"));
        assert!(!redact::redacted(&format!("said {raw}")).contains("c2VjcmV0"));
        let e = Container::parse(
            "http://acme.blob.core.windows.net/locks?sig=c2VjcmV0LXNpZ25hdHVyZQ%3D%3D",
            None,
        )
        .unwrap_err();
        assert!(!e.contains("c2VjcmV0"), "{e}");
    }

    #[test]
    fn bad_urls_and_keys_are_refused_clearly() {
        let cases = [
            (
                "https://acme.blob.core.windows.net/",
                Some(KEY),
                "names the container only",
            ),
            (
                "https://acme.blob.core.windows.net/a/b",
                Some(KEY),
                "names the container only",
            ),
            ("http://127.0.0.1:10000/locks", Some(KEY), "path-style"),
            (
                "https://acme.blob.core.windows.net/Locks",
                Some(KEY),
                "not a container name",
            ),
            (
                "https://u:p@acme.blob.core.windows.net/locks",
                Some(KEY),
                "user name",
            ),
            (
                "https://acme.blob.core.windows.net/locks",
                None,
                "AZURE_STORAGE_KEY",
            ),
            (
                "https://acme.blob.core.windows.net/locks",
                Some("not base64!"),
                "not Base64",
            ),
        ];
        for (url, key, want) in cases {
            let e = Container::parse(url, key).unwrap_err();
            assert!(
                e.contains(want) && e.starts_with("--lock-blob "),
                "{url}: {e}"
            );
        }
    }
}
