//! The one escaping of values for display: every value that comes from Graph, a file or a user
//! (a UPN, a display name, a group name, a file name, an error text) goes through it before it
//! reaches a terminal, a log line, a CI log or a comment in a generated file.
//!
//! Escaped ([`must_escape`]): every control character (C0 including tab, newline and carriage
//! return; DEL; C1 `U+0080..=U+009F`), the bidirectional controls (`U+061C`, `U+200E`, `U+200F`,
//! `U+202A..=U+202E`, `U+2066..=U+2069`), the line and paragraph separators (`U+2028`, `U+2029`)
//! and the byte-order mark (`U+FEFF`). Newline, carriage return and tab are shown as `\n`, `\r`,
//! `\t`, every other one as `\u{1b}`. So a value can neither drive the terminal (an `ESC [2J`,
//! an OSC 8 hyperlink, a C1 CSI), nor reorder what is shown around it (a right-to-left
//! override), nor start a new line (a forged plan line, a forged `::add-mask::` workflow
//! command). Everything else, other scripts and emoji included, is shown as it is.
//!
//! Two forms: [`value`] for a value (nothing kept: the result is always one line), and [`lines`]
//! for a multi-line message pwdrift composed itself around values already escaped (newlines kept,
//! the rest escaped as in [`value`]), the last line of defence of the printer and the
//! diagnostics. [`Shown`] is [`value`] as a `Display`, for log fields
//! (`tracing::warn!(user = %Shown(&upn), ...)`).
//!
//! JSON output (`--format json`, saved plans, reports) is not escaped here: serde_json escapes C0
//! and its consumers get the exact values. A backslash is not escaped, so a value that holds the
//! six characters `\u{1b}` looks like an escaped ESC: the display is safe, not reversible.

use std::borrow::Cow;
use std::fmt;

/// Whether `c` is shown escaped (see the module comment).
pub fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{feff}'
        )
}

/// Appends `c` escaped: `\n`, `\r`, `\t`, else `\u{..}`.
fn push_escaped(out: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        c => write!(out, "\\u{{{:x}}}", c as u32),
    }
}

/// `s` as one line of display: every character of [`must_escape`] escaped.
pub fn value(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// `s`, a message pwdrift composed, with its newlines kept and every other character of
/// [`must_escape`] escaped.
pub fn lines(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// [`value`] cut to at most `max` characters of `s` (then `...`).
pub fn value_capped(s: &str, max: usize) -> String {
    capped(s, max, false)
}

/// [`lines`] cut to at most `max` characters of `s` (then `...`).
pub fn lines_capped(s: &str, max: usize) -> String {
    capped(s, max, true)
}

fn escape(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    // printable ASCII needs no escape: one pass over the bytes for the common case
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Cow::Borrowed(s);
    }
    let shown = |c: char| !must_escape(c) || (keep_newlines && c == '\n');
    if s.chars().all(shown) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if shown(c) {
            out.push(c);
        } else {
            let _ = push_escaped(&mut out, c);
        }
    }
    Cow::Owned(out)
}

fn capped(s: &str, max: usize, keep_newlines: bool) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", escape(&s[..end], keep_newlines)),
        None => escape(s, keep_newlines).into_owned(),
    }
}

/// A value shown through [`value`] when formatted with `{}`: for log fields and `format!`.
#[derive(Clone, Copy)]
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if must_escape(c) {
                push_escaped(f, c)?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every character the issue names, and a few neighbours that must stay as they are.
    #[test]
    fn every_unsafe_character_is_escaped_and_nothing_else() {
        for c in ('\u{0}'..='\u{1f}')
            .chain(['\u{7f}'])
            .chain('\u{80}'..='\u{9f}')
        {
            assert!(must_escape(c), "{:x}", c as u32);
        }
        for c in [
            '\u{061c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}',
            '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{2028}', '\u{2029}',
            '\u{feff}',
        ] {
            assert!(must_escape(c), "{:x}", c as u32);
        }
        for c in [
            'a', ' ', '~', 'é', 'ß', '\u{a0}', 'Ω', '漢', '🙂', '\u{200d}', '|', '%',
        ] {
            assert!(!must_escape(c), "{:x}", c as u32);
        }
    }

    #[test]
    fn a_value_is_one_line_and_cannot_drive_the_terminal() {
        let hostile =
            "a\u{1b}[2J\u{1b}]8;;http://x\u{7}b\u{9b}c\u{202e}d\u{2028}e\n::add-mask::x\r\tf";
        let shown = value(hostile);
        assert_eq!(
            shown,
            "a\\u{1b}[2J\\u{1b}]8;;http://x\\u{7}b\\u{9b}c\\u{202e}d\\u{2028}e\\n::add-mask::x\\r\\tf"
        );
        assert!(!shown.chars().any(must_escape));
        assert_eq!(Shown(hostile).to_string(), shown);
        assert_eq!(format!("{:?}", Shown("a\nb")), "\"a\\nb\"");
        // nothing to escape: borrowed, unchanged
        assert!(matches!(
            value("Zoë Ødegård <zoe@contoso.com>"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn lines_keep_only_newlines() {
        assert_eq!(lines("one\ntwo\u{1b}[31m\r\t"), "one\ntwo\\u{1b}[31m\\r\\t");
    }

    #[test]
    fn capped_counts_characters_of_the_value() {
        assert_eq!(value_capped("abcdef", 3), "abc...");
        assert_eq!(value_capped("a\u{1b}", 3), "a\\u{1b}");
        assert_eq!(lines_capped("ééé\n", 2), "éé...");
    }
}
