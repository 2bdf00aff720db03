//! The committed JSON Schemas under `schemas/` are exactly what `pwdrift schema --write` writes:
//! same file names, same bytes. Generic over every schema pwdrift exports.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn committed_schemas_are_up_to_date() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pwdrift"))
        .args(["schema", "--write"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = files(tmp.path());
    let committed = files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas"));
    assert!(!fresh.is_empty());
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&fresh),
        names(&committed),
        "the set of schema files differs: run `cargo run -- schema --write schemas/`"
    );
    for (name, bytes) in &fresh {
        assert!(
            committed[name] == *bytes,
            "schemas/{name} is stale: run `cargo run -- schema --write schemas/`"
        );
    }
}

/// `pwdrift schema config` prints the desired-state schema, and `--list` names it.
#[test]
fn config_schema_is_listed_and_printed() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pwdrift"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(run(&["schema", "--list"])
        .lines()
        .any(|l| l.starts_with("config ")));
    let schema: serde_json::Value = serde_json::from_str(&run(&["schema", "config"])).unwrap();
    assert_eq!(schema["title"], "pwdrift desired state");
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["properties"]["version"]["const"], 1);
}
