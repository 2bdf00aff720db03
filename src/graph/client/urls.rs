//! URL handling of the Graph client: the versioned API root, relative paths under it, the
//! same-origin rule for `@odata.nextLink` and `Location` (the token never leaves the Graph
//! origin), percent-encoding of path segments and query values, and URLs as they may be logged
//! (opaque paging tokens elided).

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use url::Url;

use super::error::escape_for_message;
use super::{GraphClient, GraphError};
use crate::graph::auth;

impl GraphClient {
    /// `{api_base}{relative}` where `relative` is e.g. `users?$select=...` (no leading slash
    /// needed; one is tolerated).
    pub(super) fn url(&self, relative: &str) -> Result<Url, GraphError> {
        self.inner
            .api_base
            .join(relative.trim_start_matches('/'))
            .map_err(|e| GraphError::InvalidRequest(format!("bad Graph path: {e}")))
    }

    /// Resolves a URL Graph handed us (`@odata.nextLink`, a `Location` header) against the API
    /// root and accepts it only when it is on the Graph origin; see [`resolve_same_origin`].
    /// Public so that the rule can be tested from outside; the client calls it before every
    /// request to a URL it did not build itself.
    pub fn same_origin_url(&self, raw: &str) -> Result<Url, GraphError> {
        resolve_same_origin(&self.inner.api_base, raw)
    }
}

/// The same-origin rule for URLs pwdrift follows.
///
/// 1. The raw text is refused outright when it holds anything a URL parser would silently drop
///    or reinterpret: ASCII control characters and whitespace anywhere (WHATWG strips leading
///    and trailing ones and deletes tabs and newlines inside, so `/<TAB>/evil/` would become
///    `//evil/`), and a backslash (WHATWG reads `\` as `/` in `http(s)` URLs, so `/\evil/`
///    would become `//evil/`). Graph never sends these unencoded.
/// 2. It is resolved against the API root (`base`), as a browser would: `//host/...` is a
///    network-path reference and resolves to another host, which step 3 then refuses.
/// 3. The resolved URL must have the scheme, host and port of `base` (after the parser's
///    normalisation: case, IDNA, percent-decoding of the host, default ports) and no userinfo
///    (`https://graph.microsoft.com@evil/` is a URL of host `evil`; `https://x@graph...` is
///    refused too, so that credentials are never attached by the HTTP stack).
///
/// Only then may a request be sent; the error names the foreign origin, not the path.
pub fn resolve_same_origin(base: &Url, raw: &str) -> Result<Url, GraphError> {
    let origin = auth::origin(base);
    let shown = || escape_for_message(raw, 200);
    if let Some(c) = raw
        .chars()
        .find(|c| c.is_ascii_control() || c.is_whitespace() || *c == '\\')
    {
        return Err(GraphError::ForeignUrl {
            url: format!(
                "{} (contains {:?}, which URL parsers reinterpret)",
                shown(),
                c
            ),
            origin,
        });
    }
    if raw.is_empty() {
        return Err(GraphError::InvalidRequest("empty URL to follow".into()));
    }
    let u = base
        .join(raw)
        .map_err(|e| GraphError::InvalidRequest(format!("bad URL {}: {e}", shown())))?;
    let same = u.scheme() == base.scheme()
        && u.host() == base.host()
        && u.port_or_known_default() == base.port_or_known_default()
        && u.username().is_empty()
        && u.password().is_none();
    if same {
        Ok(u)
    } else {
        let with_userinfo = if u.username().is_empty() && u.password().is_none() {
            ""
        } else {
            " with userinfo"
        };
        Err(GraphError::ForeignUrl {
            url: format!("{}{with_userinfo}{}", auth::origin(&u), loggable_url(&u)),
            origin,
        })
    }
}

/// `graph_url` with `/v1.0/` appended unless its path already ends in a version segment.
pub(super) fn api_base(graph_url: &Url) -> Url {
    let mut u = graph_url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let path = u.path().trim_end_matches('/').to_owned();
    let last = path.rsplit('/').next().unwrap_or("");
    let path = if last == "v1.0" || last == "beta" {
        format!("{path}/")
    } else {
        format!("{path}/v1.0/")
    };
    u.set_path(&path);
    u
}

/// What a path segment keeps unencoded: RFC 3986 unreserved characters and `@`.
const SEGMENT_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

/// What a query value keeps unencoded: [`SEGMENT_KEEP`] plus the characters OData expressions
/// use (`'(),/:$`), so that filters stay readable in logs.
const QUERY_VALUE_KEEP: &AsciiSet = &SEGMENT_KEEP
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b',')
    .remove(b'/')
    .remove(b':')
    .remove(b'$');

/// Percent-encodes a path segment (everything but RFC 3986 unreserved characters and `@`).
pub(super) fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT_KEEP).to_string()
}

/// Percent-encodes a query value, keeping the characters OData expressions use readable.
pub(super) fn encode_query_value(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE_KEEP).to_string()
}

/// The path of one user, relative to the API root: `users/{key}`, or `users('{key}')` (OData
/// key syntax, `'` doubled) for a key starting with `$`, which Graph would otherwise take for a
/// system segment such as `$count` (Microsoft's "Get user",
/// <https://learn.microsoft.com/en-us/graph/api/user-get>: a UPN that begins with `$`).
pub(crate) fn user_path(key: &str) -> String {
    if key.starts_with('$') {
        format!("users('{}')", encode_key_literal(&key.replace('\'', "''")))
    } else {
        format!("users/{}", encode_segment(key))
    }
}

/// What the inside of a `users('...')` literal keeps: [`SEGMENT_KEEP`] plus `'` and `$`.
const KEY_LITERAL_KEEP: &AsciiSet = &SEGMENT_KEEP.remove(b'\'').remove(b'$');

fn encode_key_literal(s: &str) -> String {
    utf8_percent_encode(s, KEY_LITERAL_KEEP).to_string()
}

/// A relative `$batch` URL as it may be logged (see [`loggable_url`]).
pub(super) fn loggable_relative(relative: &str) -> String {
    let base = Url::parse("http://graph.invalid/").expect("static URL parses");
    match base.join(relative.trim_start_matches('/')) {
        Ok(u) => loggable_url(&u),
        Err(_) => "(unparsable)".into(),
    }
}

/// The URL as it may be logged: path and query, with opaque paging tokens elided.
pub(super) fn loggable_url(url: &Url) -> String {
    let mut s = url.path().to_owned();
    if let Some(q) = url.query() {
        let parts: Vec<String> = q
            .split('&')
            .map(|pair| {
                let key = pair.split('=').next().unwrap_or("");
                let lower = key.to_ascii_lowercase();
                if ["token", "secret", "password", "code", "sig", "key"]
                    .iter()
                    .any(|w| lower.contains(w))
                {
                    format!("{key}=(elided)")
                } else {
                    pair.to_owned()
                }
            })
            .collect();
        s.push('?');
        s.push_str(&parts.join("&"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every form found to reach another host, and every parser ambiguity tried: `Ok` is the
    /// URL a request would go to (always on the Graph origin), `Err` is a refusal.
    #[test]
    fn followed_urls_stay_on_the_graph_origin() {
        let base = Url::parse("https://graph.microsoft.com/v1.0/").unwrap();
        let ok = |raw: &str, want: &str| {
            let got =
                resolve_same_origin(&base, raw).unwrap_or_else(|e| panic!("{raw:?} refused: {e}"));
            assert_eq!(got.as_str(), want, "{raw:?}");
        };
        let refused = |raw: &str| {
            let err =
                resolve_same_origin(&base, raw).expect_err(&format!("{raw:?} must be refused"));
            let msg = err.to_string();
            assert!(
                matches!(
                    err,
                    GraphError::ForeignUrl { .. } | GraphError::InvalidRequest(_)
                ),
                "{raw:?}: {err:?}"
            );
            assert!(!msg.chars().any(|c| c.is_control()), "{msg:?}");
        };
        // the forms of the issue: network-path and backslash tricks
        refused("//evil.example:8443/v1.0/users");
        refused("/\\evil.example/v1.0/users");
        refused("\\\\evil.example/v1.0/users");
        refused("/\t/evil.example/v1.0/users");
        refused("/\n/evil.example/");
        refused("/\r/evil.example/");
        refused("\\/evil.example/");
        refused("///evil.example/");
        // absolute foreign URLs, userinfo, scheme and port
        refused("https://evil.example/v1.0/users");
        refused("https://graph.microsoft.com@evil.example/");
        refused("https://graph.microsoft.com:443@evil.example/");
        refused("https://user:pass@graph.microsoft.com/v1.0/users");
        refused("https://user@graph.microsoft.com/v1.0/users");
        refused("https://graph.microsoft.com:8443/v1.0/users");
        refused("http://graph.microsoft.com/v1.0/users");
        refused("http:evil.example/");
        refused("http:/v1.0/users");
        refused("ftp://graph.microsoft.com/");
        refused("file:///etc/passwd");
        refused("javascript:alert(1)");
        refused("data:text/plain,x");
        refused("https://graph.microsoft.com./v1.0/users");
        refused("https://graph.microsoft.com.evil.example/");
        refused("https://evil.example#@graph.microsoft.com/");
        refused("https://evil.example?@graph.microsoft.com/");
        refused("https://graph.microsoft.com%2F@evil.example/");
        refused("https://graph.microsoft.com%40evil.example/");
        refused("https://127.0.0.1/");
        refused("https://[::1]/");
        // whitespace and controls anywhere, even where a parser would strip them harmlessly
        refused(" https://graph.microsoft.com/v1.0/users");
        refused("https://graph.microsoft.com/v1.0/users ");
        refused("\u{0}https://graph.microsoft.com/v1.0/users");
        refused("https://graph.microsoft.com/v1.0/users\u{1b}[2J");
        refused("https://graph.microsoft.com/v1.0/us\u{7f}ers");
        refused("\u{a0}//evil.example/");
        refused("");
        // the same origin, however it is spelled: the request goes to graph.microsoft.com
        ok(
            "https://graph.microsoft.com/v1.0/users?$skiptoken=x",
            "https://graph.microsoft.com/v1.0/users?$skiptoken=x",
        );
        ok(
            "https://GRAPH.Microsoft.COM:443/v1.0/users",
            "https://graph.microsoft.com/v1.0/users",
        );
        ok(
            "HTTPS://graph.microsoft.com/v1.0/users",
            "https://graph.microsoft.com/v1.0/users",
        );
        ok(
            "https://graph%2Emicrosoft.com/v1.0/users",
            "https://graph.microsoft.com/v1.0/users",
        );
        // IDNA maps fullwidth letters to ASCII: still the Graph host
        ok(
            "https://\u{ff47}raph.microsoft.com/v1.0/users",
            "https://graph.microsoft.com/v1.0/users",
        );
        ok(
            "https:users?$skiptoken=x",
            "https://graph.microsoft.com/v1.0/users?$skiptoken=x",
        );
        ok(
            "/v1.0/users?$skiptoken=x",
            "https://graph.microsoft.com/v1.0/users?$skiptoken=x",
        );
        ok(
            "users?$skiptoken=x",
            "https://graph.microsoft.com/v1.0/users?$skiptoken=x",
        );
        ok(
            "/%2F%2Fevil.example/x",
            "https://graph.microsoft.com/%2F%2Fevil.example/x",
        );
        ok(
            "/..//evil.example/",
            "https://graph.microsoft.com//evil.example/",
        );
        ok(
            "%2F%2Fevil.example/",
            "https://graph.microsoft.com/v1.0/%2F%2Fevil.example/",
        );
        ok(
            "?x=//evil.example",
            "https://graph.microsoft.com/v1.0/?x=//evil.example",
        );
        ok(
            "#//evil.example",
            "https://graph.microsoft.com/v1.0/#//evil.example",
        );
    }

    #[test]
    fn followed_urls_on_a_loopback_origin_keep_the_port() {
        let base = Url::parse("http://127.0.0.1:8080/v1.0/").unwrap();
        assert!(resolve_same_origin(&base, "http://127.0.0.1:8080/v1.0/x").is_ok());
        assert!(resolve_same_origin(&base, "http://2130706433:8080/v1.0/x").is_ok());
        for raw in [
            "http://127.0.0.1:8081/v1.0/x",
            "http://127.0.0.1/v1.0/x",
            "http://localhost:8080/v1.0/x",
            "http://[::1]:8080/v1.0/x",
            "https://127.0.0.1:8080/v1.0/x",
            "//127.0.0.1:8081/v1.0/x",
            "http://127.0.0.2:8080/",
        ] {
            assert!(resolve_same_origin(&base, raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn api_base_appends_version_once() {
        let u = |s: &str| api_base(&Url::parse(s).unwrap()).to_string();
        assert_eq!(
            u("https://graph.microsoft.com"),
            "https://graph.microsoft.com/v1.0/"
        );
        assert_eq!(
            u("https://graph.microsoft.com/"),
            "https://graph.microsoft.com/v1.0/"
        );
        assert_eq!(u("http://127.0.0.1:9/v1.0"), "http://127.0.0.1:9/v1.0/");
        assert_eq!(u("http://127.0.0.1:9/v1.0/"), "http://127.0.0.1:9/v1.0/");
        assert_eq!(
            u("http://127.0.0.1:9/graph/beta"),
            "http://127.0.0.1:9/graph/beta/"
        );
        assert_eq!(
            u("http://127.0.0.1:9/graph"),
            "http://127.0.0.1:9/graph/v1.0/"
        );
    }

    /// The `percent-encoding` sets give what the hand-written encoder they replaced gave:
    /// uppercase hex, every byte of a non-ASCII character, and only the listed ASCII kept.
    #[test]
    fn percent_encoding_keeps_exactly_the_listed_characters() {
        let reference = |s: &str, keep: &[u8]| -> String {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || keep.contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        };
        let all_ascii: String = (0x20u8..0x7f).map(char::from).collect();
        for s in [
            all_ascii.as_str(),
            "ext_user#EXT#@contoso.com",
            "Zoë Ångström/ü?&=+%",
            "\u{1F600} \t\n",
            "",
        ] {
            assert_eq!(encode_segment(s), reference(s, b"-._~@"), "{s:?}");
            assert_eq!(
                encode_query_value(s),
                reference(s, b"-._~@'(),/:$"),
                "{s:?}"
            );
        }
        assert_eq!(encode_segment("zoë"), "zo%C3%AB");
    }

    #[test]
    fn user_paths_use_key_syntax_for_a_leading_dollar() {
        assert_eq!(user_path("a@contoso.com"), "users/a@contoso.com");
        assert_eq!(user_path("x$y@contoso.com"), "users/x%24y@contoso.com");
        assert_eq!(user_path("$ines@contoso.com"), "users('$ines@contoso.com')");
        assert_eq!(user_path("$o'b@contoso.com"), "users('$o''b@contoso.com')");
        assert_eq!(user_path("$a b#c"), "users('$a%20b%23c')");
    }

    #[test]
    fn loggable_url_elides_tokens() {
        let u =
            Url::parse("http://127.0.0.1/v1.0/users?$select=id&$skiptoken=abc123&code=x").unwrap();
        let s = loggable_url(&u);
        assert_eq!(
            s,
            "/v1.0/users?$select=id&$skiptoken=(elided)&code=(elided)"
        );
    }
}
