//! The one redactor: every secret of the run (the client secret, the certificate's private key,
//! client assertions, access and refresh tokens, every password pwdrift sends, reads from a
//! password file or variable, or receives from a system-generated reset) is [`remember`]ed the
//! moment pwdrift holds it, and [`redact`] replaces each occurrence of any of them, raw,
//! JSON-escaped or URL-encoded, with `***`.
//!
//! Why: a peer may quote what it was sent. Graph's error text can echo a submitted password
//! (`{"error":{"message":"... <password> ..."}}`), the authority's `error_description` a client
//! secret; pwdrift logs, reports and prints those texts. So the client's error types redact the
//! peer's words where they are built (`client::error`, `auth::token`), and the log writer and
//! the printer pass everything through [`redact`] once more before it leaves the process.
//!
//! One registry for the process (secrets are added, never removed: masking more than needed is
//! harmless; a run is one process). Lookup is by the first three bytes of each form, so redacting
//! a message costs about its length, whatever the number of secrets (a run may set a hundred
//! thousand passwords). Forms shorter than [`MIN_LEN`] bytes are not remembered: they would mask
//! ordinary words, and no real secret is that short (Entra's passwords have at least 8
//! characters).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{PoisonError, RwLock};

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use secrecy::{ExposeSecret, SecretString};

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// The shortest form remembered, in bytes.
pub const MIN_LEN: usize = 6;

/// Every form of every secret, by its first three bytes, then by length (tried longest first);
/// and which bytes start one (most positions of a text are ruled out without hashing). Secrets
/// that share a prefix (`Welcome-0001`, `Welcome-0002`, ...) cost a hash lookup per distinct
/// length, not a comparison each.
struct Known {
    first: [bool; 256],
    by_prefix: HashMap<[u8; 3], ByLength>,
}

/// The forms of one prefix, by length.
type ByLength = BTreeMap<usize, HashSet<Box<[u8]>>>;

static KNOWN: RwLock<Option<Known>> = RwLock::new(None);

fn prefix(b: &[u8]) -> [u8; 3] {
    [b[0], b[1], b[2]]
}

/// The forms in which a peer may quote `secret`: as is, JSON-escaped (a quote, a backslash, a
/// control character), percent-encoded (upper and lower case hex) and form-encoded (`+` for a
/// space).
fn forms(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_owned()];
    if let Ok(json) = serde_json::to_string(secret) {
        out.push(json[1..json.len() - 1].to_owned());
    }
    let pct = utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string();
    out.push(pct.to_ascii_lowercase());
    out.push(pct);
    out.push(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
    out.sort();
    out.dedup();
    out
}

/// Remembers a secret of the run: from now on [`redact`] masks it. Leading and trailing
/// whitespace is not part of it (a file's newline); a multi-line secret (a PEM private key) is
/// also remembered line by line.
pub fn remember(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_LEN {
        return;
    }
    let mut all = forms(secret);
    if secret.contains('\n') {
        for line in secret.lines().map(str::trim) {
            if line.len() >= 16 && !line.starts_with("-----") {
                all.extend(forms(line));
            }
        }
    }
    let mut known = KNOWN.write().unwrap_or_else(PoisonError::into_inner);
    let k = known.get_or_insert_with(|| Known {
        first: [false; 256],
        by_prefix: HashMap::new(),
    });
    for f in all.into_iter().filter(|f| f.len() >= MIN_LEN) {
        k.first[usize::from(f.as_bytes()[0])] = true;
        k.by_prefix
            .entry(prefix(f.as_bytes()))
            .or_default()
            .entry(f.len())
            .or_default()
            .insert(f.into_bytes().into_boxed_slice());
    }
}

/// [`remember`] of a [`SecretString`].
pub fn remember_secret(secret: &SecretString) {
    remember(secret.expose_secret());
}

/// `text` with every remembered secret, in any of its forms, replaced by [`MASK`].
pub fn redact(text: &str) -> Cow<'_, str> {
    let known = KNOWN.read().unwrap_or_else(PoisonError::into_inner);
    let Some(k) = known.as_ref() else {
        return Cow::Borrowed(text);
    };
    let b = text.as_bytes();
    let mut out = String::new();
    let (mut last, mut i) = (0, 0);
    while i + MIN_LEN <= b.len() {
        let hit = if k.first[usize::from(b[i])] {
            k.by_prefix.get(&prefix(&b[i..])).and_then(|by_len| {
                by_len
                    .iter()
                    .rev()
                    .find(|(len, forms)| {
                        b.get(i..i + **len)
                            .is_some_and(|candidate| forms.contains(candidate))
                    })
                    .map(|(len, _)| *len)
            })
        } else {
            None
        };
        match hit {
            // a remembered form is valid UTF-8, so it starts and ends on character boundaries
            Some(len) => {
                out.push_str(&text[last..i]);
                out.push_str(MASK);
                i += len;
                last = i;
            }
            None => i += 1,
        }
    }
    if last == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[last..]);
    Cow::Owned(out)
}

/// [`redact`] into an owned string.
pub fn redacted(text: &str) -> String {
    redact(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_a_secret_is_masked() {
        remember("Redact-Me \"1\"&x/y+z");
        let s = "Redact-Me \"1\"&x/y+z";
        let json = serde_json::to_string(s).unwrap();
        let pct = utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        let form: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
        for (what, text) in [
            ("raw", format!("bad password {s} given")),
            ("json", format!("{{\"message\":{json}}}")),
            ("pct", format!("password={pct}&x=1")),
            (
                "pct lower",
                format!("password={}", pct.to_ascii_lowercase()),
            ),
            ("form", format!("password={form}")),
        ] {
            let r = redact(&text);
            assert!(!r.contains("Redact-Me"), "{what}: {r}");
            assert!(r.contains(MASK), "{what}: {r}");
        }
    }

    #[test]
    fn other_text_is_untouched_and_short_secrets_are_not_remembered() {
        remember("abc");
        assert_eq!(redact("abc def é"), "abc def é");
        remember("Zq9-Üñî-code-77");
        assert_eq!(
            redact("é Zq9-Üñî-code-77 and Zq9-Üñî-code-77é"),
            "é *** and ***é"
        );
    }

    #[test]
    fn a_pem_is_masked_line_by_line() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n-----END PRIVATE KEY-----\n";
        remember(pem);
        let r = redact("key line BKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj quoted");
        assert_eq!(r, "key line *** quoted");
    }

    /// A run of many resets: every password stays masked, and a long text costs about its length.
    #[test]
    fn many_secrets_and_a_long_text() {
        for i in 0..20_000 {
            remember(&format!("Many-{i:05}-Pw!x"));
        }
        let mut text = "plain words, nothing secret; ".repeat(40_000);
        text.push_str("then Many-12345-Pw!x at the end");
        let t = std::time::Instant::now();
        let r = redact(&text);
        eprintln!("redacted {} bytes in {:?}", text.len(), t.elapsed());
        assert!(r.ends_with("then *** at the end"), "{}", &r[r.len() - 40..]);
        assert!(!r.contains("Many-12345"));
    }
}
