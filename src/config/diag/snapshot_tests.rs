//! Snapshots of rendered diagnostics, from desired-state text through the loader
//! ([`crate::config::load_str`]) to [`super::render`]: two labels in one file, a label on a whole
//! file, a masked literal password, control characters in a value and in a shown line, a label
//! in a file the source map does not hold. Each also asserts what must hold whatever the format:
//! the location, the labels, the help, and that no secret or raw control character comes out.

use std::path::{Path, PathBuf};

use super::{render, Diagnostic, Origin, SourceMap};
use crate::config::load_str;

/// The plain rendering of what the loader says about `text` read as `name`.
fn rendered(name: &str, text: &str) -> String {
    let invalid = load_str(Path::new(name), text).expect_err("the text is invalid");
    render(&invalid.diagnostics, &invalid.sources, false)
}

#[test]
fn two_labels_in_one_file() {
    let text = rendered(
        "desired/contoso.yaml",
        "version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n  - user: alice@contoso.com\n    forceChangePasswordNextSignIn: false\n    requirePasswordChange: { since: 2026-11-20T00:00:00Z }\n",
    );
    assert!(text.contains(" --> desired/contoso.yaml:5:5\n"), "{text}");
    assert!(text.contains(" ::: desired/contoso.yaml:6:5\n"), "{text}");
    assert!(text.contains(" literal flag\n"), "{text}");
    assert!(text.contains(" one-shot change\n"), "{text}");
    assert!(
        text.contains("= help: keep only `requirePasswordChange`"),
        "{text}"
    );
    insta::assert_snapshot!(text);
}

#[test]
fn a_label_on_a_whole_file() {
    let text = rendered("desired/empty.yaml", "");
    assert!(text.contains(" --> desired/empty.yaml\n"), "{text}");
    assert!(text.contains("= help: "), "{text}");
    insta::assert_snapshot!("whole_file_from_the_loader", text);

    // a label with text on a whole file, and one on a line the map does not hold
    let whole = Origin {
        file: PathBuf::from("huge.yaml").into(),
        line: 0,
        column: 0,
    };
    let unseen = Origin {
        file: PathBuf::from("gone.yaml").into(),
        line: 7,
        column: 3,
    };
    let d = Diagnostic::error("file too large")
        .with_label(whole, "not read")
        .with_label(unseen, "nor this one")
        .with_help("split it");
    let text = render(&[d], &SourceMap::default(), false);
    assert!(text.contains(" --> huge.yaml\n"), "{text}");
    assert!(text.contains("= not read\n"), "{text}");
    assert!(text.contains(" ::: gone.yaml:7:3\n"), "{text}");
    assert!(text.contains("= nor this one\n"), "{text}");
    insta::assert_snapshot!("whole_file_and_unseen_line", text);
}

#[test]
fn a_literal_password_is_masked() {
    let text = rendered(
        "desired/contoso.yaml",
        "version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n  - user: alice@contoso.com\n    resetPassword:\n      notBefore: 2026-11-20T00:00:00Z\n      password: { literal: \"Hunter2-x, y\" }  # kept\n",
    );
    assert!(!text.contains("Hunter2"), "{text}");
    // the quotes too: every non-blank character of the value, so its length shows but not its text
    assert!(text.contains("{ literal: *********** ** }"), "{text}");
    assert!(text.contains("# kept"), "{text}");
    assert!(text.contains(" --> desired/contoso.yaml:7:28\n"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn control_characters_are_never_sent_to_the_terminal() {
    // escapes in a quoted value: the message quotes the value, escaped
    let text = rendered(
        "desired/contoso.yaml",
        "version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n  - user: \"al\\e[2J\\u0007ice@contoso.com\"\n",
    );
    assert!(!text.contains(['\u{1b}', '\u{7}']), "{text:?}");
    assert!(text.contains("\\u{1b}[2J\\u{7}"), "{text}");
    assert!(text.contains(" --> desired/contoso.yaml:4:11\n"), "{text}");
    insta::assert_snapshot!("escaped_in_the_message", text);

    // raw control characters in the file: one visible stand-in each in the shown line, so the
    // column under the label is still the loader's
    let raw = "version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n  - user: a\u{1b}[2J\u{9b}b\u{202e}c@contoso.com\n    forceChangePasswordNextSignon: false\n";
    let text = rendered("desired/raw.yaml", raw);
    assert!(!text.contains(['\u{1b}', '\u{9b}', '\u{202e}']), "{text:?}");
    assert!(text.contains(" --> desired/raw.yaml:4:11\n"), "{text}");
    assert!(
        text.contains("4 |   - user: a\u{241b}[2J\u{fffd}b\u{fffd}c@"),
        "{text}"
    );
    insta::assert_snapshot!("raw_in_the_file", text);
}
