//! The JSON Schemas pwdrift publishes: `pwdrift schema NAME`, `--list`, `--write DIR`.
//!
//! Each schema is generated, never pasted as a string: with schemars from the Rust type that reads
//! or writes the document, and for desired-state files from the key tables the checker reads them
//! with ([`crate::config::format`], walked by [`crate::config::schema_doc`]).
//! The committed files under `schemas/` are exactly what
//! `pwdrift schema --write schemas/` writes; a test fails when they are stale.

use schemars::{schema_for, Schema};

/// One exported schema.
pub struct SchemaSpec {
    /// name on the command line, and file stem under `schemas/`
    pub name: &'static str,
    pub about: &'static str,
    pub generate: fn() -> Schema,
}

/// Every schema pwdrift exports, in `--list` order.
pub fn all() -> Vec<SchemaSpec> {
    vec![
        SchemaSpec {
            name: "password-profile",
            about: "microsoft.graph.passwordProfile, as Microsoft publishes it",
            generate: || {
                let mut schema = schema_for!(crate::graph::model::PasswordProfile);
                crate::graph::model::published_key_order(&mut schema);
                schema
            },
        },
        SchemaSpec {
            name: "config",
            about: "pwdrift desired-state files (format version 1), for editors and CI",
            generate: crate::config::schema_doc::schema,
        },
        SchemaSpec {
            name: "plan",
            about: "the plan document of `pwdrift plan --format json` / `--out FILE`",
            generate: crate::plan::plan_schema,
        },
        #[cfg(feature = "sandbox")]
        SchemaSpec {
            name: "sandbox-seed",
            about: "seed (and --state file) of the Graph sandbox: tenants, apps, users, groups",
            generate: || schema_for!(graph_sandbox::seed::Seed),
        },
    ]
}

/// Finds a schema by name.
pub fn find(name: &str) -> Option<SchemaSpec> {
    all().into_iter().find(|s| s.name == name)
}

/// The file name a schema is written to.
pub fn file_name(spec: &SchemaSpec) -> String {
    match spec.name {
        // The published name of Microsoft's file.
        "password-profile" => "microsoft.graph.passwordProfile.schema.json".to_owned(),
        name => format!("pwdrift-{name}.schema.json"),
    }
}

/// Renders a schema as pretty JSON with a trailing newline, as written to disk.
pub fn render(spec: &SchemaSpec) -> String {
    // Serialise the underlying JSON value: `Schema`'s own `Serialize` reorders keywords for
    // readability, which would undo the published order.
    let schema = (spec.generate)();
    let mut s = serde_json::to_string_pretty(schema.as_value()).expect("schema serialises");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published schema, as Microsoft publishes it in the OpenAPI description of Graph v1.0
    /// (`#/components/schemas/microsoft.graph.passwordProfile`,
    /// <https://github.com/microsoftgraph/msgraph-metadata>).
    const PUBLISHED: &str = r##"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "$id": "#/components/schemas/microsoft.graph.passwordProfile",
  "title": "passwordProfile",
  "required": [
    "@odata.type"
  ],
  "type": "object",
  "properties": {
    "forceChangePasswordNextSignIn": {
      "type": "boolean",
      "description": "true if the user must change their password on the next sign-in; otherwise false.",
      "nullable": true
    },
    "forceChangePasswordNextSignInWithMfa": {
      "type": "boolean",
      "description": "If true, at next sign-in, the user must perform a multifactor authentication (MFA) before being forced to change their password. The behavior is identical to forceChangePasswordNextSignIn except that the user is required to first perform a multifactor authentication before password change. After a password change, this property will be automatically reset to false. If not set, default is false.",
      "nullable": true
    },
    "password": {
      "type": "string",
      "description": "The password for the user. This property is required when a user is created. It can be updated, but the user will be required to change the password on the next sign-in. The password must satisfy minimum requirements as specified by the user's passwordPolicies property. By default, a strong password is required.",
      "nullable": true
    },
    "@odata.type": {
      "type": "string"
    }
  }
}"##;

    #[test]
    fn password_profile_equals_published_schema_in_order() {
        let ours = render(&find("password-profile").unwrap());
        assert_eq!(ours.trim_end(), PUBLISHED);
        // value equality too, independent of whitespace
        let a: serde_json::Value = serde_json::from_str(&ours).unwrap();
        let b: serde_json::Value = serde_json::from_str(PUBLISHED).unwrap();
        assert_eq!(a, b);
    }
}
