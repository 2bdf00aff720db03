//! One [`Diagnostic`] as an annotate-snippets report (the renderer rustc and cargo use).
//!
//! This module only decides what to hand to the crate; the crate draws it. Each label becomes one
//! of:
//!
//! - a snippet of the line it points at, masked and made safe for a terminal here, before the
//!   crate sees it, with one annotation: the diagnostic's first label is the primary annotation
//!   (`^`), the others are context (`-`). The crate prints `--> file:line:column` above the first
//!   label's snippet and `::: file:line:column` above each other one, so every label keeps its
//!   own location (even two labels in one file);
//! - a location alone (`--> file:line:column`, then the label's text) when the source map does
//!   not hold that line;
//! - a file name alone (then the label's text) when the label points at a whole file (line 0).
//!
//! Columns: the crate counts the column it prints in characters from the start of the line it is
//! given, and the loader counts [`super::Origin`] columns the same way in the text the source map keeps.
//! So the line is given whole (the crate trims long lines itself) and every character of it stays
//! one character: a masked value keeps its length, and an unsafe character becomes one visible
//! character (a control picture such as `␛`, or `�`) rather than an escape sequence.

use std::path::Path;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

use super::{
    mask_line, token_len, unsafe_char, Diagnostic, Label, Severity, SourceMap, MAX_MESSAGE_CHARS,
};

/// The crate's plain renderer, or its styled one (ANSI colours) when `color` is on.
pub(super) fn renderer(color: bool) -> Renderer {
    if color {
        Renderer::styled()
    } else {
        Renderer::plain()
    }
}

/// A file name as shown: escaped and capped like every other echoed text.
fn shown_path(file: &Path) -> String {
    crate::escape::value_capped(&file.display().to_string(), MAX_MESSAGE_CHARS)
}

/// A message, label or help as shown in the text report: it quotes input (a key, a tenant, a
/// group name), so it is one line, escaped like every value ([`crate::escape::value`]): a
/// newline in a quoted key cannot start a line that looks like pwdrift's own.
fn one_line(s: &str) -> String {
    crate::escape::value_capped(s, MAX_MESSAGE_CHARS)
}

/// A label's text, or none when it has no text.
fn label_text(label: &Label) -> Option<String> {
    (!label.text.is_empty()).then(|| one_line(&label.text))
}

/// One character of a source line as shown: itself, or one visible stand-in for a character that
/// must not reach a terminal (a control picture for C0 controls and DEL, else `�`).
fn shown_char(c: char) -> char {
    match c {
        '\0'..='\u{1f}' => char::from_u32(0x2400 + u32::from(c)).unwrap_or('\u{fffd}'),
        '\u{7f}' => '\u{2421}',
        c if unsafe_char(c) => '\u{fffd}',
        c => c,
    }
}

/// A line as handed to the crate: its secrets masked, then every character made safe, one
/// character for one. Also returns the masked line (before the stand-ins), whose tokens give the
/// labels' lengths.
fn shown_line(sources: &SourceMap, file: &Path, n: usize) -> (String, String) {
    let line = sources.line(file, n).unwrap_or_default();
    let masked = mask_line(&sources.secrets_on(file, n), line);
    let shown = masked.chars().map(shown_char).collect();
    (masked, shown)
}

/// Byte offset of character `chars` of `s` (its length past the end).
fn byte_at(s: &str, chars: usize) -> usize {
    s.char_indices().nth(chars).map_or(s.len(), |(i, _)| i)
}

/// The snippet of the line `label` points at, with its annotation: primary (`^`) for the
/// diagnostic's first label, context (`-`) for the others.
fn snippet<'a>(
    label: &Label,
    primary: bool,
    sources: &SourceMap,
) -> Snippet<'a, annotate_snippets::Annotation<'a>> {
    let o = &label.origin;
    let (masked, mut shown) = shown_line(sources, &o.file, o.line);
    let col = o.column.max(1);
    // a column past the end of the line (the loader's end of input): the crate prints the column
    // of the annotation's start, so the line reaches it
    let missing = (col - 1).saturating_sub(shown.chars().count());
    shown.extend(std::iter::repeat_n(' ', missing));
    let len = token_len(&masked, col).max(1);
    // the shown line has the masked line's characters, one for one
    let span = byte_at(&shown, col - 1)..byte_at(&shown, col - 1 + len);
    let kind = if primary {
        AnnotationKind::Primary
    } else {
        AnnotationKind::Context
    };
    Snippet::source(shown)
        .line_start(o.line)
        .path(shown_path(&o.file))
        .annotation(kind.span(span).label(label_text(label)))
}

/// `d` rendered by `renderer`, ending with a newline.
pub(super) fn render_one(d: &Diagnostic, sources: &SourceMap, renderer: &Renderer) -> String {
    let level = match d.severity {
        Severity::Error => Level::ERROR,
        Severity::Warning => Level::WARNING,
    };
    let mut group = Group::with_title(level.primary_title(one_line(&d.message)));
    for (i, label) in d.labels.iter().enumerate() {
        let o = &label.origin;
        if o.line > 0 && sources.line(&o.file, o.line).is_some() {
            group = group.element(snippet(label, i == 0, sources));
            continue;
        }
        // a whole file (line 0), or a line the source map does not hold: the location alone
        let mut at = annotate_snippets::Origin::path(shown_path(&o.file));
        if o.line > 0 {
            at = at.line(o.line).char_column(o.column.max(1));
        }
        group = group.element(at);
        if let Some(text) = label_text(label) {
            group = group.element(Level::NOTE.no_name().message(text));
        }
    }
    if let Some(help) = &d.help {
        group = group.element(Level::HELP.message(one_line(help)));
    }
    let mut out = renderer.render(&[group]);
    out.push('\n');
    out
}
