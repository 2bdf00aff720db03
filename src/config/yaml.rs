//! A small, strict YAML reader: yaml-rust2's event parser turned into our own spanned node tree.
//!
//! Why not a ready-made loader: serde_yaml loses positions, and marked-yaml panics on aliases.
//! Desired-state files are small and simple, so we build the tree ourselves from parser events and
//! keep, for every node, the line and column where it starts, and for scalars their style (a
//! quoted `"true"` stays a string). While building it we refuse what a config file never needs and
//! what hostile input uses:
//!
//! - anchors and aliases (this alone defeats "billion laughs" alias bombs: nothing is expanded),
//! - tags (`!!str`, `!custom`),
//! - nesting deeper than [`MAX_DEPTH`] (refused at the event that goes too deep; parsing stops
//!   there, so `[[[[...` of any length costs nothing),
//! - duplicate keys in a mapping (both places named; parsing goes on so that later problems are
//!   reported too),
//! - more than one document, and a stream without any document (empty file, only comments),
//! - keys that are not scalars.
//!
//! Size limits and UTF-8 checks happen before this module sees the text (see [`super::load_paths`]).

use std::collections::HashMap;
use std::path::Path;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::diag::Diagnostic;
use super::model::Origin;

/// Deepest nesting of mappings and sequences accepted. Version 1 needs 5.
pub const MAX_DEPTH: usize = 32;

/// 1-based line and column (in characters) where a node starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    fn from_marker(m: &Marker) -> Pos {
        // yaml-rust2 lines are 1-based, columns 0-based.
        Pos {
            line: m.line(),
            col: m.col() + 1,
        }
    }

    /// The position as an [`Origin`] in `file` (a path, or one already shared).
    pub fn origin(&self, file: impl Into<std::sync::Arc<Path>>) -> Origin {
        Origin {
            file: file.into(),
            line: self.line,
            column: self.col,
        }
    }
}

/// How a scalar was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    /// `|` or `>` block scalar
    Block,
}

/// One node of the tree.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Scalar {
        value: String,
        style: Style,
        pos: Pos,
    },
    Seq {
        items: Vec<Node>,
        pos: Pos,
    },
    Map {
        entries: Vec<Entry>,
        pos: Pos,
    },
}

/// A mapping entry: the key (always a scalar) and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

impl Node {
    pub fn pos(&self) -> Pos {
        match self {
            Node::Scalar { pos, .. } | Node::Seq { pos, .. } | Node::Map { pos, .. } => *pos,
        }
    }

    /// What kind of value this is, for "expected X, found Y" messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Node::Scalar { value, style, .. } => match style {
                Style::Plain if is_null(value) => "null",
                Style::Plain if is_bool(value).is_some() => "a boolean",
                Style::Plain if value.parse::<i64>().is_ok() => "an integer",
                Style::Plain if value.parse::<f64>().is_ok() => "a number",
                _ => "a string",
            },
            Node::Seq { .. } => "a list",
            Node::Map { .. } => "a mapping",
        }
    }

    /// True for a plain `~`, `null` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(self, Node::Scalar { value, style: Style::Plain, .. } if is_null(value))
    }
}

/// YAML 1.2 core schema null.
fn is_null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

/// YAML 1.2 core schema booleans (plain scalars only; `yes`/`no` are strings).
pub fn is_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// Builder frame: a container being filled.
enum Frame {
    Seq {
        items: Vec<Node>,
        pos: Pos,
    },
    Map {
        entries: Vec<Entry>,
        pos: Pos,
        /// the key read, waiting for its value
        pending_key: Option<(String, Pos)>,
        /// key -> where it was first seen
        seen: HashMap<String, Pos>,
    },
}

/// Parses `text` (the contents of `file`) into one document's root node.
///
/// Fatal problems (syntax errors, aliases, tags, depth, several documents, no document) stop the
/// parse and are returned alone with whatever was found before; duplicate keys are collected and
/// the parse goes on. Any error means `Err`.
pub fn parse(file: &Path, text: &str) -> Result<Node, Vec<Diagnostic>> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut errors: Vec<Diagnostic> = Vec::new();
    let mut documents = 0usize;

    let at = |m: &Marker| Pos::from_marker(m).origin(file);

    loop {
        let (event, marker) = match parser.next_token() {
            Ok(ev) => ev,
            Err(e) => {
                let m = e.marker();
                // The scanner reads ahead through flow brackets (`[[[[...`) and stops by itself
                // at 256 levels, before we see the events: report that as the depth it is.
                let d = if e.info() == "recursion limit exceeded" {
                    depth_error(at(m))
                } else {
                    Diagnostic::error(format!("YAML syntax error: {}", e.info()))
                        .with_label(at(m), "here")
                };
                errors.push(d);
                return Err(errors);
            }
        };
        let pos = Pos::from_marker(&marker);
        let node = match event {
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => continue,
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    errors.push(
                        Diagnostic::error("more than one YAML document in this file")
                            .with_label(at(&marker), "a second document starts here")
                            .with_help("put each document in a file of its own"),
                    );
                    return Err(errors);
                }
                continue;
            }
            Event::Alias(_) => {
                errors.push(
                    Diagnostic::error("YAML anchors and aliases are not supported")
                        .with_label(at(&marker), "alias")
                        .with_help("write the value out in full"),
                );
                return Err(errors);
            }
            Event::Scalar(value, style, anchor, tag) => {
                refuse_anchor_tag(file, &marker, anchor, tag.is_some(), &mut errors)?;
                let style = match style {
                    TScalarStyle::Plain => Style::Plain,
                    TScalarStyle::SingleQuoted => Style::SingleQuoted,
                    TScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    TScalarStyle::Literal | TScalarStyle::Folded => Style::Block,
                };
                Node::Scalar { value, style, pos }
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                refuse_anchor_tag(file, &marker, anchor, tag.is_some(), &mut errors)?;
                if stack.len() >= MAX_DEPTH {
                    errors.push(depth_error(at(&marker)));
                    return Err(errors);
                }
                if let Some(Frame::Map {
                    pending_key: None, ..
                }) = stack.last()
                {
                    errors.push(
                        Diagnostic::error("mapping keys must be plain strings")
                            .with_label(at(&marker), "complex key"),
                    );
                    return Err(errors);
                }
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq {
                        items: Vec::new(),
                        pos,
                    }
                } else {
                    Frame::Map {
                        entries: Vec::new(),
                        pos,
                        pending_key: None,
                        seen: HashMap::new(),
                    }
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq { items, pos }) => Node::Seq { items, pos },
                Some(Frame::Map { entries, pos, .. }) => {
                    // A block mapping's start event is marked after the previous token; its
                    // first key is where it really starts. A flow mapping starts at its `{`.
                    let pos = entries.first().map_or(pos, |e| e.key_pos.min(pos));
                    Node::Map { entries, pos }
                }
                None => continue,
            },
        };
        // Attach the finished node to its parent, or make it the root.
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                seen,
                ..
            }) => match pending_key.take() {
                Some((key, key_pos)) => {
                    // An empty value (`key:` and nothing) is marked where the next token starts,
                    // often lines later: point just after the key's colon instead.
                    let node = match node {
                        Node::Scalar {
                            value,
                            style: Style::Plain,
                            ..
                        } if value.is_empty() => Node::Scalar {
                            value,
                            style: Style::Plain,
                            pos: Pos {
                                line: key_pos.line,
                                col: key_pos.col + key.chars().count() + 1,
                            },
                        },
                        node => node,
                    };
                    entries.push(Entry {
                        key,
                        key_pos,
                        value: node,
                    })
                }
                None => {
                    // `node` is a key: it must be a scalar (containers were refused above).
                    let Node::Scalar { value: key, .. } = node else {
                        unreachable!("container keys are refused when they start")
                    };
                    if let Some(first) = seen.get(&key) {
                        if errors.len() >= super::MAX_DIAGNOSTICS_PER_FILE {
                            errors.push(super::too_many(file));
                            return Err(errors);
                        }
                        errors.push(
                            Diagnostic::error(format!("duplicate key `{key}`"))
                                .with_label(first.origin(file), "first defined here")
                                .with_label(pos.origin(file), "defined again here"),
                        );
                    } else {
                        seen.insert(key.clone(), pos);
                    }
                    *pending_key = Some((key, pos));
                }
            },
        }
    }

    if documents == 0 || root.is_none() {
        errors.push(
            Diagnostic::error("the file is empty (no YAML document)")
                .with_label(
                    Origin {
                        file: file.into(),
                        line: 0,
                        column: 0,
                    },
                    "",
                )
                .with_help("a desired-state file starts with `version: 1` and `tenant: ...`"),
        );
    }
    match root {
        Some(root) if errors.is_empty() => Ok(root),
        _ => Err(errors),
    }
}

fn depth_error(at: Origin) -> Diagnostic {
    Diagnostic::error(format!(
        "nesting deeper than {MAX_DEPTH} levels is not supported"
    ))
    .with_label(at, "too deep")
}

fn refuse_anchor_tag(
    file: &Path,
    marker: &Marker,
    anchor: usize,
    tagged: bool,
    errors: &mut Vec<Diagnostic>,
) -> Result<(), Vec<Diagnostic>> {
    let origin = Pos::from_marker(marker).origin(file);
    if anchor != 0 {
        errors.push(
            Diagnostic::error("YAML anchors and aliases are not supported")
                .with_label(origin, "anchored node")
                .with_help("write the value out in full"),
        );
        return Err(std::mem::take(errors));
    }
    if tagged {
        errors.push(
            Diagnostic::error("YAML tags are not supported")
                .with_label(origin, "tagged node")
                .with_help("remove the `!tag`; values are typed by their key"),
        );
        return Err(std::mem::take(errors));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Node, Vec<Diagnostic>> {
        parse(Path::new("t.yaml"), text)
    }

    fn first_message(text: &str) -> String {
        p(text).unwrap_err()[0].message.clone()
    }

    #[test]
    fn builds_positions_styles_and_order() {
        let root = p("b: 1\na:\n  - \"true\"\n  - x: true\n").unwrap();
        let Node::Map { entries, pos } = root else {
            panic!()
        };
        assert_eq!(pos, Pos { line: 1, col: 1 });
        assert_eq!(entries[0].key, "b");
        assert_eq!(entries[1].key, "a");
        assert_eq!(entries[1].key_pos, Pos { line: 2, col: 1 });
        let Node::Seq { items, .. } = &entries[1].value else {
            panic!()
        };
        assert_eq!(
            items[0],
            Node::Scalar {
                value: "true".into(),
                style: Style::DoubleQuoted,
                pos: Pos { line: 3, col: 5 }
            }
        );
        assert_eq!(items[0].kind_name(), "a string");
        let Node::Map { entries: inner, .. } = &items[1] else {
            panic!()
        };
        assert_eq!(inner[0].value.kind_name(), "a boolean");
        assert_eq!(inner[0].value.pos(), Pos { line: 4, col: 8 });
        // an empty value points just after its key's colon, not at the next token
        let Node::Map { entries, .. } = p("a:\n\n\nb: 1\n").unwrap() else {
            panic!()
        };
        assert!(entries[0].value.is_null());
        assert_eq!(entries[0].value.pos(), Pos { line: 1, col: 3 });
    }

    #[test]
    fn refuses_aliases_anchors_and_tags() {
        assert_eq!(
            first_message("a: &x 1\nb: *x\n"),
            "YAML anchors and aliases are not supported"
        );
        assert_eq!(first_message("a: !!str 1\n"), "YAML tags are not supported");
    }

    #[test]
    fn refuses_deep_nesting_quickly() {
        let deep = "[".repeat(100_000);
        let errs = p(&deep).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("nesting deeper than 32"));
        // between the scanner's own limit and ours, the event-level check is what stops it
        let errs = p(&"[".repeat(40)).unwrap_err();
        assert!(errs[0].message.contains("nesting deeper than 32"));
        assert_eq!(errs[0].labels[0].origin.column, 33);
        let block: String = (0..40).map(|i| format!("{}k:\n", "  ".repeat(i))).collect();
        let errs = p(&block).unwrap_err();
        assert!(errs[0].message.contains("nesting deeper than 32"));
        // exactly the limit is fine
        let ok = format!("{}{}", "[".repeat(32), "]".repeat(32));
        assert!(p(&ok).is_ok());
    }

    #[test]
    fn duplicate_keys_name_both_places_and_parsing_goes_on() {
        let errs = p("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n").unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].message, "duplicate key `c`");
        assert_eq!(errs[0].labels[0].origin.line, 3);
        assert_eq!(errs[0].labels[1].origin.line, 4);
        assert_eq!(errs[1].message, "duplicate key `a`");
    }

    #[test]
    fn refuses_empty_and_multi_document_streams() {
        assert!(first_message("").contains("empty"));
        assert!(first_message("# only a comment\n\n").contains("empty"));
        assert!(first_message("a: 1\n---\nb: 2\n").contains("more than one YAML document"));
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let errs = p("a: [1, 2\n").unwrap_err();
        assert!(errs[0].message.starts_with("YAML syntax error"));
        assert!(errs[0].labels[0].origin.line >= 1);
    }

    #[test]
    fn complex_keys_are_refused() {
        assert!(first_message("? [a]\n: 1\n").contains("keys must be plain"));
    }
}
