//! URL handling of the Graph client: the versioned API root, relative paths under it, the
//! same-origin rule for `@odata.nextLink` and `Location` (the token never leaves the Graph
//! origin), percent-encoding of path segments and query values, and URLs as they may be logged
//! (opaque paging tokens elided).

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use url::Url;

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

    /// Accepts an absolute URL on the Graph origin, or a path relative to the API root.
    pub(super) fn same_origin_url(&self, raw: &str) -> Result<Url, GraphError> {
        match Url::parse(raw) {
            Ok(u) => {
                if auth::origin(&u) == self.inner.graph_origin {
                    Ok(u)
                } else {
                    Err(GraphError::ForeignUrl {
                        url: format!("{}{}", auth::origin(&u), loggable_url(&u)),
                        origin: self.inner.graph_origin.clone(),
                    })
                }
            }
            Err(url::ParseError::RelativeUrlWithoutBase) => {
                if raw.starts_with('/') {
                    // absolute path on the Graph origin
                    let base = Url::parse(&self.inner.graph_origin).expect("origin parses");
                    base.join(raw)
                        .map_err(|e| GraphError::InvalidRequest(format!("bad URL: {e}")))
                } else {
                    self.url(raw)
                }
            }
            Err(e) => Err(GraphError::InvalidRequest(format!("bad URL: {e}"))),
        }
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
/// system segment such as `$count` (graph-facts: UPNs starting with `$`).
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
