//! The desired-state file format as a serde-shaped type tree, for `pwdrift schema config`.
//!
//! These types mirror the YAML files key for key so that schemars can derive a JSON Schema that
//! editors (yaml-language-server, VS Code) use for completion, hover text and early red squiggles.
//! They are not used to load files: the loader ([`super::check`]) works on spanned nodes so that it
//! can point at the exact text and report every problem. The tests below make sure both agree on
//! the examples, so the schema cannot drift from the format silently.

use schemars::JsonSchema;
use serde::Deserialize;

/// A pwdrift desired-state file (format version 1): the password state that the users of one
/// Microsoft Entra ID tenant must be in. Several files may name the same tenant; they are merged.
/// Check a file with `pwdrift validate`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(
    title = "pwdrift desired state",
    extend("$id" = "pwdrift-config.schema.json")
)]
pub struct ConfigDocument {
    /// Format version of this file. Only version 1 exists.
    #[schemars(schema_with = "version_schema")]
    pub version: u32,
    /// The tenant: a verified domain (e.g. `contoso.onmicrosoft.com`) or the tenant id (a GUID).
    #[schemars(regex(
        pattern = r"^(?:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]*[A-Za-z][A-Za-z0-9-]*)$"
    ))]
    pub tenant: String,
    /// Users declared one by one. `users` and `groups` cannot both be absent or empty.
    #[serde(default)]
    pub users: Vec<UserDoc>,
    /// Groups: their directives apply to every transitive user member of the group.
    #[serde(default)]
    pub groups: Vec<GroupDoc>,
}

fn version_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "integer", "const": 1 })
}

/// One user and the password state it must be in. A user may be declared only once per tenant.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserDoc {
    /// The user: userPrincipalName (`alice@contoso.com`), object id (a GUID) or on-premises
    /// security identifier of a synced user (`S-1-5-21-...`).
    #[schemars(regex(
        pattern = r"^(?:[^@\s]+@[^@\s]+\.[^@\s]+|\{?[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}?|[Ss]-1-[0-9]+(?:-[0-9]+){1,15})$"
    ))]
    pub user: String,
    #[serde(flatten)]
    pub directives: DirectivesDoc,
}

/// A group: the directives apply to all its transitive user members, merged with the members'
/// own entries at plan time (the same directive with different values is an error).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GroupDoc {
    /// The group: its exact display name (must match exactly one group) or its object id (a GUID).
    #[schemars(length(min = 1, max = 256))]
    pub group: String,
    #[serde(flatten)]
    pub directives: DirectivesDoc,
}

/// The directives of a user or group entry. All optional; contradictory combinations (for
/// example a literal flag `false` with `requirePasswordChange`, or `requirePasswordChange` with
/// `resetPassword`) are refused by `pwdrift validate`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectivesDoc {
    /// Literal flag: the live `passwordProfile.forceChangePasswordNextSignIn` must equal this.
    /// `true` is allowed but warned about: Graph clears the flag after the user changes the
    /// password, so a literal `true` forces the user again on every run; use
    /// `requirePasswordChange` for a one-time change.
    #[serde(default)]
    pub force_change_password_next_sign_in: bool,
    /// Literal flag: the live `passwordProfile.forceChangePasswordNextSignInWithMfa` must equal
    /// this (same caveat about `true` as `forceChangePasswordNextSignIn`).
    #[serde(default)]
    pub force_change_password_next_sign_in_with_mfa: bool,
    /// One-shot: the user must change the password once. Met once the user has changed it at or
    /// after `since` (`lastPasswordChangeDateTime >= since`); until then the force flag is set.
    #[serde(default)]
    #[schemars(with = "RequirePasswordChangeDoc")]
    pub require_password_change: Option<RequirePasswordChangeDoc>,
    /// One-shot: reset the password. Met when `lastPasswordChangeDateTime >= notBefore`, so the
    /// reset happens once, not on every run.
    #[serde(default)]
    #[schemars(with = "ResetPasswordDoc")]
    pub reset_password: Option<ResetPasswordDoc>,
    /// Allow changes to users who hold privileged directory roles (e.g. Global Administrator).
    /// Without it such users are left alone and reported.
    #[serde(default)]
    pub allow_privileged: bool,
}

/// Require one password change, at or after `since`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequirePasswordChangeDoc {
    /// RFC 3339 timestamp with a time zone (`Z` or an offset), e.g. `2026-11-20T00:00:00Z`.
    /// A password change at or after it satisfies the directive.
    pub since: chrono::DateTime<chrono::FixedOffset>,
    /// Use `forceChangePasswordNextSignInWithMfa` (MFA before the change) instead of
    /// `forceChangePasswordNextSignIn`. Default false.
    #[serde(default)]
    pub with_mfa: bool,
}

/// Reset the password once, from a password source (never a literal password).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResetPasswordDoc {
    /// RFC 3339 timestamp with a time zone. The reset is due while the last password change is
    /// older than this, and done once it is not.
    pub not_before: chrono::DateTime<chrono::FixedOffset>,
    /// Where the new password comes from.
    pub password: PasswordSourceDoc,
    /// After the reset, the user must change the password at next sign-in. Default false.
    #[serde(default)]
    pub force_change_after: bool,
    /// After the reset, the user must perform MFA and then change the password at next sign-in.
    /// Default false.
    #[serde(default)]
    pub force_change_after_with_mfa: bool,
}

/// A password source: exactly one of `generate`, `env`, `file`, `systemGenerated`. Literal
/// passwords are refused.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum PasswordSourceDoc {
    /// Generate a random password at apply time (operating-system CSPRNG; meets Entra's
    /// complexity rules), one per user, also for the members of a group.
    Generate(
        #[schemars(description = "Generate a password of this length (the OS CSPRNG).")]
        GenerateDoc,
    ),
    /// Read the password from this environment variable at apply time (its name, not its value).
    /// Not allowed on groups (every member would get the same password).
    Env(
        #[schemars(
            regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"),
            description = "Name of the environment variable that holds the password."
        )]
        String,
    ),
    /// Read the password from this file at apply time (trailing newline removed); a relative path
    /// is relative to the desired-state file. Not allowed on groups.
    File(
        #[schemars(
            length(min = 1),
            description = "Path of the file that holds the password, relative to this file."
        )]
        String,
    ),
    /// Let Microsoft generate the password (resetPassword API; cloud-only users only).
    SystemGenerated(
        #[schemars(description = "`true`: Microsoft generates the password.")] SystemGeneratedDoc,
    ),
}

/// Parameters of a generated password.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GenerateDoc {
    /// Number of characters, 8 to 256 (Entra's limits).
    #[schemars(range(min = 8, max = 256))]
    pub length: u16,
}

/// Must be `true`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(extend("const" = true))]
pub struct SystemGeneratedDoc(pub bool);

/// The JSON Schema of the desired-state format, with `$schema`, `$id`, `title` and `description`
/// first, as people expect to read them.
pub fn schema() -> schemars::Schema {
    let schema = schemars::schema_for!(ConfigDocument);
    let mut value = schema.to_value();
    if let serde_json::Value::Object(map) = &mut value {
        let mut ordered = serde_json::Map::new();
        for key in ["$schema", "$id", "title", "description"] {
            if let Some(v) = map.remove(key) {
                ordered.insert(key.to_owned(), v);
            }
        }
        ordered.append(map);
        value = serde_json::Value::Object(ordered);
    }
    unwrap_descriptions(&mut value);
    schemars::Schema::try_from(value).expect("an object is a schema")
}

/// Doc comments are wrapped at 100 columns; editors show descriptions as prose, so line breaks
/// inside a paragraph become spaces (blank lines between paragraphs stay).
fn unwrap_descriptions(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    serde_json::Value::String(s) if key == "description" => {
                        *s = s
                            .split("\n\n")
                            .map(|p| p.replace('\n', " "))
                            .collect::<Vec<_>>()
                            .join("\n\n");
                    }
                    other => unwrap_descriptions(other),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema's types accept the shipped example, so schema and format agree on it.
    #[test]
    fn example_deserialises_into_the_schema_types() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/desired/contoso.yaml"),
        )
        .unwrap();
        let doc: ConfigDocument = serde_yaml::from_str(&text).unwrap();
        assert_eq!(doc.version, 1);
        assert_eq!(doc.users.len(), 5);
        assert!(
            doc.users[2]
                .directives
                .require_password_change
                .as_ref()
                .unwrap()
                .with_mfa
        );
        assert!(matches!(
            doc.users[3]
                .directives
                .reset_password
                .as_ref()
                .unwrap()
                .password,
            PasswordSourceDoc::Generate(GenerateDoc { length: 20 })
        ));
        // and refuse an unknown key, as the schema's additionalProperties: false does
        let bad = text.replace("forceChangeAfter: true", "forceChangeAfterr: true");
        assert!(serde_yaml::from_str::<ConfigDocument>(&bad).is_err());
    }

    #[test]
    fn schema_has_descriptions_everywhere() {
        let value = schema().to_value();
        assert_eq!(
            value["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(value["properties"]["version"]["const"], 1);
        fn walk(v: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
            if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
                for (k, p) in props {
                    if p.get("description").is_none() {
                        missing.push(format!("{path}.{k}"));
                    }
                }
            }
            if let Some(obj) = v.as_object() {
                for (k, child) in obj {
                    walk(child, &format!("{path}/{k}"), missing);
                }
            }
            if let Some(items) = v.as_array() {
                for (i, child) in items.iter().enumerate() {
                    walk(child, &format!("{path}/{i}"), missing);
                }
            }
        }
        let mut missing = Vec::new();
        walk(&value, "", &mut missing);
        assert!(missing.is_empty(), "no description: {missing:?}");
        for (name, def) in value["$defs"].as_object().unwrap() {
            assert!(
                def.get("description").is_some(),
                "{name} has no description"
            );
        }
    }
}
