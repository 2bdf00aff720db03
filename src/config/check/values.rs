//! The checker's values: scalars (`true`/`false`, strings, timestamps), mappings, the "expected X,
//! found Y" error, and the masking of secret values in the source map.

use super::super::diag::{Diagnostic, SecretExtent};
use super::super::ids;
use super::super::yaml::{is_bool, Entry, Node, Pos, Style};
use super::Checker;

impl Checker<'_> {
    /// Marks every scalar below `node` as secret.
    pub(super) fn mask(&mut self, node: &Node) {
        match node {
            Node::Scalar { value, style, pos } => match style {
                // single-line plain scalar: its source text is its value
                Style::Plain if !value.contains('\n') && !value.contains(' ') => {
                    self.sources
                        .mark_secret(&self.at(*pos), SecretExtent::Chars(value.chars().count()));
                }
                Style::SingleQuoted | Style::DoubleQuoted => {
                    self.sources
                        .mark_secret(&self.at(*pos), SecretExtent::Quoted);
                }
                // block scalars (and anything that may span lines): whole lines
                _ => {
                    self.sources
                        .mark_secret(&self.at(*pos), SecretExtent::RestOfLine);
                    for extra in 1..value.lines().count().max(1) {
                        let line = Pos {
                            line: pos.line + extra,
                            col: 1,
                        };
                        self.sources
                            .mark_secret(&self.at(line), SecretExtent::RestOfLine);
                    }
                }
            },
            Node::Seq { items, .. } => items.iter().for_each(|n| self.mask(n)),
            Node::Map { entries, .. } => entries.iter().for_each(|e| self.mask(&e.value)),
        }
    }

    pub(super) fn wrong_type(&mut self, node: &Node, expected: &str, secret: bool) {
        if secret {
            self.mask(node);
        }
        let found = node.kind_name();
        let mut d = Diagnostic::error(format!("expected {expected}, found {found}"))
            .with_label(self.at(node.pos()), format!("expected {expected}"));
        if let Node::Scalar { value, style, .. } = node {
            if expected == "true or false" {
                if *style != Style::Plain && is_bool(value).is_some() {
                    d = d.with_help("remove the quotes: a quoted value is a string");
                } else if matches!(
                    value.to_ascii_lowercase().as_str(),
                    "yes" | "no" | "on" | "off" | "y" | "n"
                ) {
                    d = d.with_help(
                        "write `true` or `false` (YAML 1.1 yes/no/on/off are not booleans here)",
                    );
                }
            } else if expected == "an integer" && *style != Style::Plain {
                d = d.with_help("remove the quotes: a quoted value is a string");
            }
        }
        self.push(d);
    }

    pub(super) fn mapping<'n>(&mut self, node: &'n Node, expected: &str) -> Option<&'n [Entry]> {
        match node {
            Node::Map { entries, .. } => Some(entries),
            _ => {
                self.wrong_type(node, expected, false);
                None
            }
        }
    }

    pub(super) fn bool(&mut self, node: &Node) -> Option<bool> {
        match node {
            Node::Scalar {
                value,
                style: Style::Plain,
                ..
            } if is_bool(value).is_some() => is_bool(value),
            _ => {
                self.wrong_type(node, "true or false", false);
                None
            }
        }
    }

    pub(super) fn string<'n>(
        &mut self,
        node: &'n Node,
        expected: &str,
        secret: bool,
    ) -> Option<&'n str> {
        match node {
            Node::Scalar { value, style, .. }
                if !(node.is_null() || *style == Style::Plain && is_bool(value).is_some()) =>
            {
                Some(value)
            }
            _ => {
                self.wrong_type(node, expected, secret);
                None
            }
        }
    }

    pub(super) fn timestamp(&mut self, node: &Node) -> Option<chrono::DateTime<chrono::Utc>> {
        let s = self.string(node, "an RFC 3339 timestamp", false)?;
        match ids::parse_timestamp(s) {
            Ok(t) => Some(t),
            Err(e) => {
                let d =
                    Diagnostic::error(e.to_string()).with_label(self.at(node.pos()), "timestamp");
                self.push(d);
                None
            }
        }
    }
}
