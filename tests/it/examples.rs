//! Every example desired-state file (`examples/desired/*.yaml`) carries the yaml-language-server
//! modeline pointing at the exported schema (by a relative path that resolves), and is valid
//! against `schemas/pwdrift-config.schema.json` by an independent JSON Schema validator.

use std::path::{Path, PathBuf};

const MODELINE: &str = "# yaml-language-server: $schema=";

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/desired");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no example in {}", dir.display());
    files
}

#[test]
fn every_example_starts_with_the_schema_modeline() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in examples() {
        let text = std::fs::read_to_string(&file).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let target = first.strip_prefix(MODELINE).unwrap_or_else(|| {
            panic!(
                "{}: first line is not the modeline: {first}",
                file.display()
            )
        });
        assert_eq!(target, "../../schemas/pwdrift-config.schema.json");
        let resolved = file.parent().unwrap().join(target).canonicalize().unwrap();
        assert_eq!(
            resolved,
            root.join("schemas/pwdrift-config.schema.json")
                .canonicalize()
                .unwrap()
        );
    }
}

#[test]
fn every_example_is_valid_against_the_exported_schema() {
    let schema_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/pwdrift-config.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the exported schema compiles");
    for file in examples() {
        let doc: serde_json::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
    }
    // and the validator does reject what the schema forbids
    let bad: serde_json::Value = serde_yaml::from_str(
        "version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n  - user: a@contoso.com\n    forceChangePasswordNextSignon: false\n",
    )
    .unwrap();
    assert!(!validator.is_valid(&bad));
}
