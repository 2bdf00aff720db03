//! Microsoft Graph: the wire types pwdrift (de)serialises ([`model`]), the credentials it
//! authenticates with ([`auth`]), the retry policy (`retry`), the per-tenant pacing (`pacing`)
//! and the write quotas it keeps to (`quota`), the one client
//! through which all Graph I/O goes ([`client`]), and the notices it returns instead of
//! printing ([`notice`]), and the redactor every peer's words pass through ([`redact`]). Nothing here imports from the layers above (commands, cli).

pub mod auth;
pub mod client;
pub mod model;
pub mod notice;
pub(crate) mod pacing;
pub(crate) mod quota;
pub mod redact;
pub(crate) mod retry;

/// A reqwest error with its causes (`error sending request: connection reset ...`), without the
/// URL.
pub(crate) fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        source = cause.source();
    }
    redact::redacted(&text)
}

#[cfg(test)]
mod tests {
    /// Layers point down: no file under `src/graph` names a module of the crate outside
    /// `graph` (`cli`, `commands`, `config`, ...) through a crate-rooted path.
    #[test]
    fn graph_imports_nothing_above_it() {
        fn visit(dir: &std::path::Path, offenders: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    visit(&path, offenders);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    // spelt in two halves so that this file does not match itself
                    let needle = concat!("crate", "::");
                    for (i, line) in text.lines().enumerate() {
                        let mut rest = line;
                        while let Some(at) = rest.find(needle) {
                            let after = &rest[at + needle.len()..];
                            // `escape` is the one layer below (the display escaping)
                            if !after.starts_with("graph") && !after.starts_with("escape") {
                                offenders.push(format!("{}:{}: {line}", path.display(), i + 1));
                            }
                            rest = after;
                        }
                    }
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/graph");
        let mut offenders = Vec::new();
        visit(&root, &mut offenders);
        assert!(offenders.is_empty(), "{}", offenders.join("\n"));
    }
}
