//! Diagnostics: errors and warnings that point into desired-state files, and their rendering.
//!
//! A [`Diagnostic`] is a message, labelled positions ([`Origin`]s) and an optional help line.
//! [`render`] prints them the way rustc and cargo do, through the crate they use
//! (annotate-snippets, driven by `diag/report.rs`): `--> file:line:column`, the offending source line
//! and an underline under each label, then the help line. Source lines are taken from the
//! [`SourceMap`] the loader built: the text of every file it read, as it read it. Nothing is read
//! again from disk at render time, and there is no global state.
//!
//! Secrets: a literal password written in a file must never be echoed, not even in the source line
//! shown under an error. The loader records where such values sit
//! ([`SourceMap::mark_secret`]) and every line is masked (`*`) before it is handed to the
//! renderer; as a second line of defence the value of any `password:`-like key on a shown line is
//! masked too. Messages never quote such values.
//!
//! Terminal safety: messages, labels, help and file names pass through [`clean`] (control
//! characters escaped as `\u{1b}`, bidirectional overrides too, length capped); in a shown source
//! line each such character is replaced by one visible character (a control picture such as `␛`,
//! or `�`), so that the line keeps its columns. At most [`MAX_DIAGNOSTICS`] are rendered per run.
//!
//! A label whose line is 0 points at a file as a whole (an empty file, a file too large to read):
//! only the file name is shown, with the label's text under it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::model::Origin;

mod report;
#[cfg(test)]
mod snapshot_tests;

/// How bad a diagnostic is: errors fail the run, warnings do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// A position in a file and what to say about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub origin: Origin,
    pub text: String,
}

/// One error or warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub labels: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            labels: Vec::new(),
            help: None,
        }
    }

    pub fn warning(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(message)
        }
    }

    pub fn with_label(mut self, origin: Origin, text: impl Into<String>) -> Self {
        self.labels.push(Label {
            origin,
            text: text.into(),
        });
        self
    }

    pub fn with_help(mut self, text: impl Into<String>) -> Self {
        self.help = Some(text.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// How much of a line a secret covers, from its start column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretExtent {
    /// exactly this many characters (a plain scalar: its source text is its value)
    Chars(usize),
    /// a quoted scalar: up to and including the closing quote (or the end of the line)
    Quoted,
    /// the rest of the line (a line of a block scalar, or anything of unknown length)
    RestOfLine,
}

/// The loaded files' text and where secrets sit in them: built by the loader
/// ([`super::load_paths`]), read by [`render`].
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    files: HashMap<PathBuf, SourceFile>,
}

#[derive(Clone, Debug, Default)]
struct SourceFile {
    /// the text, tabs shown as one space so that columns hold (the renderer would widen a tab to
    /// four); `None` until the text is added
    text: Option<SourceText>,
    /// secret values by (line, column)
    secrets: BTreeMap<(usize, usize), SecretExtent>,
    /// no line of it is shown: it is not (recognisably) desired state
    hidden: bool,
}

/// A file's text in one piece with where each line starts (one allocation per file, not one per
/// line: with 100,000 declared users the text is kept for the whole run).
#[derive(Clone, Debug, Default)]
struct SourceText {
    text: String,
    /// byte offset of the start of each line (split on `\n`)
    starts: Vec<usize>,
}

impl SourceText {
    /// Line `i` (0-based) without its `\n` and trailing `\r`s.
    fn line(&self, i: usize) -> Option<&str> {
        let start = *self.starts.get(i)?;
        let end = self
            .starts
            .get(i + 1)
            .map_or(self.text.len(), |next| next - 1);
        Some(self.text[start..end].trim_end_matches('\r'))
    }
}

impl SourceMap {
    /// Keeps the text of `file` (a leading byte-order mark removed) for the lines [`render`] shows.
    pub fn add_file(&mut self, file: &Path, text: &str) {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        // a tab and a space are both one byte: the line offsets hold either way
        let text = text.replace('\t', " ");
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        self.files.entry(file.to_path_buf()).or_default().text = Some(SourceText { text, starts });
    }

    /// Records that a value at `origin` is (or may be) a secret, so that [`render`] masks it in
    /// every source line it shows.
    pub fn mark_secret(&mut self, origin: &Origin, extent: SecretExtent) {
        self.files
            .entry(origin.file.to_path_buf())
            .or_default()
            .secrets
            .insert((origin.line, origin.column), extent);
    }

    /// Marks `file` as one whose lines are never shown (diagnostics give its positions and
    /// messages only): the loader marks a file that is not recognisably pwdrift desired state (not
    /// UTF-8, not YAML, not a mapping with `version`), which may be anything from a credentials
    /// file to a `.env`, whose lines must not reach a terminal or a CI log.
    pub fn hide_lines(&mut self, file: &Path) {
        self.files.entry(file.to_path_buf()).or_default().hidden = true;
    }

    /// Line `n` (1-based) of `file`, if its text is known and its lines may be shown.
    fn line(&self, file: &Path, n: usize) -> Option<&str> {
        let f = self.files.get(file)?;
        if f.hidden {
            return None;
        }
        f.text.as_ref()?.line(n.checked_sub(1)?)
    }

    fn secrets_on(&self, file: &Path, line: usize) -> Vec<(usize, SecretExtent)> {
        self.files.get(file).map_or_else(Vec::new, |f| {
            f.secrets
                .range((line, 0)..=(line, usize::MAX))
                .map(|((_, col), extent)| (*col, *extent))
                .collect()
        })
    }
}

/// Renders diagnostics like rustc and cargo (through annotate-snippets, see `diag/report.rs`),
/// separated by blank lines:
///
/// ```text
/// error: unknown key `forceChangePasswordNextSignon`
///  --> desired/contoso.yaml:6:5
///   |
/// 6 |     forceChangePasswordNextSignon: false
///   |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ unknown key
///   |
///   = help: did you mean `forceChangePasswordNextSignIn`?
/// ```
///
/// Source lines come from `sources` (a label in a file it does not hold shows its location and
/// text, no line). ANSI colours only when `color` is true.
pub fn render(diags: &[Diagnostic], sources: &SourceMap, color: bool) -> String {
    let renderer = report::renderer(color);
    let mut out = String::new();
    for (i, d) in diags.iter().take(MAX_DIAGNOSTICS).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&report::render_one(d, sources, &renderer));
    }
    if let Some(more) = not_shown(diags.len()) {
        out.push('\n');
        out.push_str(&more);
        out.push('\n');
    }
    out
}

/// Diagnostics shown per run; the rest are counted ("N more not shown").
pub const MAX_DIAGNOSTICS: usize = 200;

/// Longest message (or label, help, shown value) of a diagnostic, in characters.
pub const MAX_MESSAGE_CHARS: usize = 500;

/// The line that replaces diagnostics beyond [`MAX_DIAGNOSTICS`], if any.
pub fn not_shown(total: usize) -> Option<String> {
    (total > MAX_DIAGNOSTICS).then(|| {
        format!(
            "... and {} more diagnostics not shown (the first {MAX_DIAGNOSTICS} are above); fix \
             these and run again",
            total - MAX_DIAGNOSTICS
        )
    })
}

/// Text echoed from input, made safe for a terminal and short: the one escaping of
/// [`crate::escape`] (control characters other than newline, bidirectional controls, line
/// separators shown as `\u{1b}`, `\t`, ...), at most `max` characters (then `...`).
pub fn clean(s: &str, max: usize) -> String {
    crate::escape::lines_capped(s, max)
}

/// Whether `c` must not reach a terminal as it is ([`crate::escape::must_escape`]).
pub(crate) fn unsafe_char(c: char) -> bool {
    crate::escape::must_escape(c)
}

/// Length in characters of the YAML token starting at `col` (1-based) on `line`: a quoted string
/// up to its closing quote, a key up to its colon, a plain value up to a comment, comma or bracket.
pub(crate) fn token_len(line: &str, col: usize) -> usize {
    let chars: Vec<char> = line.chars().collect();
    let start = col.saturating_sub(1);
    if start >= chars.len() {
        return 1;
    }
    let rest = &chars[start..];
    if rest.starts_with(&['-', '-', '-']) {
        return 3;
    }
    match rest[0] {
        q @ ('"' | '\'') => {
            let mut i = 1;
            while i < rest.len() {
                if rest[i] == '\\' && q == '"' {
                    i += 2;
                    continue;
                }
                if rest[i] == q {
                    if q == '\'' && rest.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    return i + 1;
                }
                i += 1;
            }
            rest.len()
        }
        '[' | '{' | '-' | '|' | '>' | '\u{fffd}' => 1,
        _ => {
            let mut end = rest.len();
            for i in 0..rest.len() {
                let c = rest[i];
                let next_blank = rest.get(i + 1).is_none_or(|n| n.is_whitespace());
                if (c == ':' && next_blank)
                    || c == ','
                    || c == ']'
                    || c == '}'
                    || (c == '#' && i > 0 && rest[i - 1].is_whitespace())
                {
                    end = i;
                    break;
                }
            }
            let token: String = rest[..end].iter().collect();
            token.trim_end().chars().count().max(1)
        }
    }
}

/// Replaces secret values (the marked ones, by column, and those of password-like keys) on a
/// shown line with `*`.
fn mask_line(secrets: &[(usize, SecretExtent)], line: &str) -> String {
    let mut chars: Vec<char> = line.chars().collect();
    let len = chars.len();
    let mut spans: Vec<(usize, usize)> = secrets
        .iter()
        .map(|&(col, extent)| {
            let start = col - 1;
            let end = match extent {
                SecretExtent::Chars(n) => start + n,
                SecretExtent::Quoted => start + token_len(line, col),
                SecretExtent::RestOfLine => len,
            };
            (start, end)
        })
        .collect();
    spans.extend(password_key_values(&chars));
    for (a, b) in spans {
        for c in chars.iter_mut().take(b.min(line.chars().count())).skip(a) {
            if !c.is_whitespace() {
                *c = '*';
            }
        }
    }
    chars.into_iter().collect()
}

/// Spans of the values of `password:`/`newPassword:`-like keys on a line, unless the value is a
/// mapping or list (a password source such as `{ generate: ... }`).
fn password_key_values(chars: &[char]) -> Vec<(usize, usize)> {
    let line: String = chars.iter().collect();
    let lower = line.to_lowercase();
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(found) = lower[from..].find("password") {
        let key_end = from + found + "password".len();
        from = key_end;
        // allow a closing quote after the key, then `:`
        let after = &lower[key_end..];
        let after = after.strip_prefix(['"', '\'']).unwrap_or(after);
        let Some(after_colon) = after.strip_prefix(':') else {
            continue;
        };
        let value_start_byte = lower.len() - after_colon.trim_start().len();
        let value = &line[value_start_byte..];
        if value.is_empty() || value.starts_with(['{', '[', '#', '|', '>']) {
            continue;
        }
        let start = line[..value_start_byte].chars().count();
        let in_flow = line[..value_start_byte].contains(['{', '[']);
        let len = if value.starts_with(['"', '\'']) || in_flow {
            token_len(&line, start + 1)
        } else {
            // A plain value in block context may hold `,` `]` `}`: mask up to a comment.
            value.split(" #").next().unwrap_or(value).chars().count()
        };
        spans.push((start, start + len));
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(file: &Path, line: usize, column: usize) -> Origin {
        Origin {
            file: file.to_path_buf().into(),
            line,
            column,
        }
    }

    fn map(f: &Path, text: &str) -> SourceMap {
        let mut sources = SourceMap::default();
        sources.add_file(f, text);
        sources
    }

    #[test]
    fn renders_like_rustc_with_caret_under_the_token() {
        let f = Path::new("dir/a.yaml");
        let sources = map(f, "version: 1\ntenant: contoso\n");
        let d = Diagnostic::error("malformed tenant")
            .with_label(o(f, 2, 9), "not a domain")
            .with_help("write a domain");
        let text = render(&[d], &sources, false);
        let expected = format!(
            "error: malformed tenant\n --> {}:2:9\n  |\n2 | tenant: contoso\n  |         ^^^^^^^ not a domain\n  |\n  = help: write a domain\n",
            f.display()
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn source_lines_come_from_the_map_not_the_disk() {
        // the file does not exist: its text is what the loader read
        let f = Path::new("gone/b.yaml");
        let d = Diagnostic::error("e").with_label(o(f, 1, 1), "here");
        let shown = render(
            std::slice::from_ref(&d),
            &map(f, "\u{feff}x:\t1\r\n"),
            false,
        );
        assert!(shown.contains("1 | x: 1\n"), "{shown}");
        // a file the map does not hold: location only, no line
        let other = render(&[d], &SourceMap::default(), false);
        assert!(!other.contains(" | "), "{other}");
        assert!(other.contains("--> gone/b.yaml:1:1"), "{other}");
    }

    #[test]
    fn lines_of_the_kept_text() {
        let f = Path::new("a.yaml");
        let m = map(f, "\u{feff}one\r\n\ttwo\r\r\n\nlast");
        assert_eq!(m.line(f, 1), Some("one"));
        assert_eq!(m.line(f, 2), Some(" two"));
        assert_eq!(m.line(f, 3), Some(""));
        assert_eq!(m.line(f, 4), Some("last"));
        assert_eq!(m.line(f, 5), None);
        assert_eq!(m.line(f, 0), None);
        let m = map(f, "x\n");
        assert_eq!(
            m.line(f, 2),
            Some(""),
            "after the last newline, an empty line"
        );
        assert_eq!(m.line(f, 3), None);
    }

    #[test]
    fn colour_only_when_asked() {
        let d = Diagnostic::warning("w");
        let none = SourceMap::default();
        assert!(!render(std::slice::from_ref(&d), &none, false).contains('\u{1b}'));
        assert!(render(&[d], &none, true).contains('\u{1b}'));
    }

    #[test]
    fn token_lengths() {
        assert_eq!(token_len("  user: alice@x.com # c", 9), 11);
        assert_eq!(token_len("  \"a\\\"b\": 1", 3), 6);
        assert_eq!(token_len("  key: value", 3), 3);
        assert_eq!(token_len("{ a: b, c: d }", 6), 1);
        assert_eq!(token_len("x", 5), 1);
    }

    #[test]
    fn masks_registered_secrets_and_password_keys() {
        let f = PathBuf::from("s.yaml");
        let mut sources = map(
            &f,
            "a:\n  password: \"Secret1!\"\n  x: { newPassword: hunter2, y: 1 }\n  z: Hidden99\n  password: ab,cd]e # c\n",
        );
        sources.mark_secret(&o(&f, 4, 6), SecretExtent::Chars(8));
        let diags = [
            Diagnostic::error("e").with_label(o(&f, 2, 13), "here"),
            Diagnostic::error("e").with_label(o(&f, 3, 21), "here"),
            Diagnostic::error("e").with_label(o(&f, 4, 6), "here"),
            Diagnostic::error("e").with_label(o(&f, 5, 13), "here"),
        ];
        let text = render(&diags, &sources, false);
        assert!(!text.contains("Secret1!"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("Hidden99"), "{text}");
        assert!(!text.contains("cd]e"), "{text}");
        assert!(text.contains("# c"), "{text}");
        assert!(text.contains("y: 1"), "{text}");
        // source sources are not masked
        assert!(mask_line(&[], "password: { generate: { length: 20 } }").contains("20"));
        // a marked secret is masked wherever the map says, whatever the key
        let masked = mask_line(&sources.secrets_on(&f, 4), "  z: Hidden99");
        assert_eq!(masked, "  z: ********");
    }

    #[test]
    fn long_lines_are_trimmed_around_the_label() {
        let f = Path::new("l.yaml");
        let line = format!("{}x: 1", "[".repeat(1000));
        let d = Diagnostic::error("e").with_label(o(f, 1, 1001), "here");
        let text = render(&[d], &map(f, &line), false);
        assert!(text.len() < 600, "{text}");
        assert!(text.contains("--> l.yaml:1:1001"), "{text}");
        assert!(text.contains("1 | ...[[[["), "{text}");
        assert!(text.contains("[[[[x: 1\n"), "{text}");
    }
}
