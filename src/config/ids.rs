//! Parsing of the identifiers and timestamps written in desired state.
//!
//! Each parser returns the normalised value or an [`IdError`], whose message is for people (no
//! position: the validator adds it). Normalisation makes comparison simple: UPNs and domains lower-case (Entra compares them
//! case-insensitively), GUIDs lower-case hyphenated, SIDs with an upper-case `S`.
//!
//! What a user reference is, is decided by its shape, in this order: something `uuid` parses is an
//! object id; something starting with `S-` is a SID; something with an `@` is a UPN. Anything else
//! is refused with a message that says which of the three it most resembles.

use chrono::{DateTime, Utc};

use super::model::{GroupRef, TenantRef, UserRef};

/// Why an identifier or timestamp written in desired state was refused. The message names the
/// text as written and what was expected; it never carries a position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error(
        "`{}` is not a valid GUID: expected 8-4-4-4-12 hexadecimal digits, \
         like 6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0"
    , crate::escape::value(.0))]
    Guid(String),
    #[error(
        "`{}` is not a valid SID ({why}): expected S-1-<authority>-<sub-authority>..., \
         like S-1-5-21-1004336348-1177238915-682003330-1104"
    , crate::escape::value(.input))]
    Sid { input: String, why: &'static str },
    /// a domain name, with the reason only (the caller names the text)
    #[error("{0}")]
    Domain(&'static str),
    #[error(
        "`{}` is not a valid user principal name ({why}); expected name@domain, like alice@contoso.com"
    , crate::escape::value(.input))]
    Upn { input: String, why: String },
    #[error(
        "`{}` is not a user principal name (no `@`), an object id (GUID) or an on-premises SID (S-1-...)"
    , crate::escape::value(.0))]
    UserRef(String),
    #[error("the group name is empty")]
    EmptyGroupName,
    #[error("a group display name has at most 256 characters")]
    GroupNameTooLong,
    #[error("a group display name cannot contain control characters")]
    GroupNameControl,
    #[error(
        "`{}` is a multi-tenant alias of the identity platform, not a tenant: name one \
         tenant by its domain (e.g. contoso.onmicrosoft.com) or its tenant id (GUID)"
    , crate::escape::value(.0))]
    TenantAlias(String),
    #[error(
        "`{}` is not a valid tenant ({why}); expected a domain like contoso.onmicrosoft.com or a tenant id (GUID)"
    , crate::escape::value(.input))]
    Tenant { input: String, why: &'static str },
    #[error("`{}` is a date without a time and time zone; write e.g. {}T00:00:00Z", crate::escape::value(.0), crate::escape::value(.0))]
    DateWithoutTime(String),
    #[error("`{}` has no time zone; add `Z` (UTC) or an offset like +01:00", crate::escape::value(.0))]
    NoTimeZone(String),
    #[error("`{}` is not an RFC 3339 timestamp; write e.g. 2026-11-20T00:00:00Z", crate::escape::value(.0))]
    NotTimestamp(String),
}

/// Parses a GUID written hyphenated (`6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0`), any case, optionally
/// in braces. Returns it lower-case hyphenated.
pub fn parse_guid(s: &str) -> Result<String, IdError> {
    let inner = s
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(s);
    let groups: Vec<&str> = inner.split('-').collect();
    let shape_ok = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()));
    if !shape_ok {
        return Err(IdError::Guid(s.to_owned()));
    }
    Ok(inner.to_ascii_lowercase())
}

/// True when `s` looks like an attempt at a GUID: hex digits and hyphens only, at least 20 long.
fn looks_like_guid(s: &str) -> bool {
    let t = s.trim_start_matches('{').trim_end_matches('}');
    t.len() >= 20
        && t.contains('-')
        && t.chars().filter(|c| c.is_ascii_hexdigit()).count() * 10 >= t.len() * 8
}

/// Parses an on-premises security identifier: `S-1-<authority>-<sub>[-<sub>...]`, with 1 to 15
/// sub-authorities, each a 32-bit decimal number, and a 48-bit authority.
pub fn parse_sid(s: &str) -> Result<String, IdError> {
    let bad = |why: &'static str| {
        Err(IdError::Sid {
            input: s.to_owned(),
            why,
        })
    };
    let Some(rest) = s.strip_prefix("S-").or_else(|| s.strip_prefix("s-")) else {
        return bad("it must start with S-");
    };
    let parts: Vec<&str> = rest.split('-').collect();
    if parts[0] != "1" {
        return bad("the revision must be 1");
    }
    if parts.len() < 3 {
        return bad("it needs an authority and at least one sub-authority");
    }
    if parts.len() > 17 {
        return bad("at most 15 sub-authorities");
    }
    let decimal = |p: &str| !p.is_empty() && p.len() <= 20 && p.chars().all(|c| c.is_ascii_digit());
    if !decimal(parts[1]) || parts[1].parse::<u64>().map_or(true, |a| a >= 1 << 48) {
        return bad("the authority must be a number below 2^48");
    }
    for sub in &parts[2..] {
        if !decimal(sub) || sub.parse::<u32>().is_err() {
            return bad("each sub-authority must be a number from 0 to 4294967295");
        }
    }
    Ok(format!("S-{rest}"))
}

/// Parses a DNS domain name (as used in tenants and after the `@` of a UPN); lower-cases it.
pub fn parse_domain(s: &str) -> Result<String, IdError> {
    domain(s).map_err(IdError::Domain)
}

/// [`parse_domain`], failing with the reason alone, for the parsers that name the whole text.
fn domain(s: &str) -> Result<String, &'static str> {
    let d = s.to_ascii_lowercase();
    let why = if d.is_empty() {
        Some("it is empty")
    } else if d.len() > 253 {
        Some("it is longer than 253 characters")
    } else if !d.contains('.') {
        Some("it needs at least two labels, like contoso.com")
    } else if d.split('.').any(str::is_empty) {
        Some("it has an empty label: `..`, or a leading or trailing dot")
    } else if d
        .split('.')
        .any(|l| l.len() > 63 || l.starts_with('-') || l.ends_with('-'))
    {
        Some("a label is longer than 63 characters or starts/ends with `-`")
    } else if !d
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        Some("only letters, digits, `-` and `.` are allowed")
    } else if d
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        Some("the last label cannot be numeric")
    } else {
        None
    };
    match why {
        Some(why) => Err(why),
        None => Ok(d),
    }
}

/// Parses a userPrincipalName: `local@domain`. The local part takes the characters Entra allows
/// (`A-Z a-z 0-9 ' . - _ ! # ^ ~`, and `$`: Graph documents `/users('$x@...')` for UPNs that start
/// with it), 1 to 64 of them, not starting or ending with `.` and without
/// `..`; the domain is a DNS name; 113 characters at most in all. Returned lower-case.
pub fn parse_upn(s: &str) -> Result<String, IdError> {
    let bad = |why: &str| {
        Err(IdError::Upn {
            input: s.to_owned(),
            why: why.to_owned(),
        })
    };
    let Some((local, domain)) = s.split_once('@') else {
        return bad("no `@`");
    };
    if domain.contains('@') {
        return bad("more than one `@`");
    }
    if local.is_empty() || local.len() > 64 {
        return bad("the part before `@` must be 1 to 64 characters");
    }
    if let Some(c) = local
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "'.-_!#^~$".contains(*c)))
    {
        return bad(&format!("`{c}` is not allowed before `@`"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return bad("the part before `@` cannot start or end with `.` or contain `..`");
    }
    if s.len() > 113 {
        return bad("longer than 113 characters");
    }
    match self::domain(domain) {
        Ok(domain) => Ok(format!("{}@{domain}", local.to_lowercase())),
        Err(why) => bad(&format!("domain: {why}")),
    }
}

/// Parses a user reference: object id, SID or UPN (see the module comment).
pub fn parse_user_ref(s: &str) -> Result<UserRef, IdError> {
    if let Ok(id) = parse_guid(s) {
        return Ok(UserRef::ObjectId(id));
    }
    if s.starts_with("S-") || s.starts_with("s-") {
        return parse_sid(s).map(UserRef::Sid);
    }
    if s.contains('@') {
        return parse_upn(s).map(UserRef::Upn);
    }
    if looks_like_guid(s) {
        return parse_guid(s).map(UserRef::ObjectId);
    }
    Err(IdError::UserRef(s.to_owned()))
}

/// Parses a group reference: an object id when it is a GUID, else a display name (1 to 256
/// characters, no control characters, kept exactly as written).
pub fn parse_group_ref(s: &str) -> Result<GroupRef, IdError> {
    if let Ok(id) = parse_guid(s) {
        return Ok(GroupRef::ObjectId(id));
    }
    if looks_like_guid(s) {
        return parse_guid(s).map(GroupRef::ObjectId);
    }
    if s.trim().is_empty() {
        return Err(IdError::EmptyGroupName);
    }
    if s.chars().count() > 256 {
        return Err(IdError::GroupNameTooLong);
    }
    if s.chars().any(char::is_control) {
        return Err(IdError::GroupNameControl);
    }
    Ok(GroupRef::DisplayName(s.to_owned()))
}

/// Parses a tenant: its tenant id (GUID) or a domain (e.g. `contoso.onmicrosoft.com`).
///
/// The multi-tenant aliases `common`, `organizations` and `consumers` (any case) are refused: they
/// name no tenant, and a token from them would be for whichever tenant the credential lands in.
pub fn parse_tenant(s: &str) -> Result<TenantRef, IdError> {
    if ["common", "organizations", "consumers"]
        .iter()
        .any(|alias| s.trim().eq_ignore_ascii_case(alias))
    {
        return Err(IdError::TenantAlias(s.to_owned()));
    }
    if let Ok(id) = parse_guid(s) {
        return Ok(TenantRef::Id(id));
    }
    if looks_like_guid(s) {
        return parse_guid(s).map(TenantRef::Id);
    }
    domain(s)
        .map(TenantRef::Domain)
        .map_err(|why| IdError::Tenant {
            input: s.to_owned(),
            why,
        })
}

/// Parses an RFC 3339 timestamp that carries a time zone (`Z` or `+01:00`), as a UTC instant.
///
/// A date alone, or a date and time without zone, is refused: "midnight" in which time zone
/// would decide whether a password change made that night counts.
pub fn parse_timestamp(s: &str) -> Result<DateTime<Utc>, IdError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() {
        return Err(IdError::DateWithoutTime(s.to_owned()));
    }
    let no_zone = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ];
    if no_zone
        .iter()
        .any(|f| chrono::NaiveDateTime::parse_from_str(s, f).is_ok())
    {
        return Err(IdError::NoTimeZone(s.to_owned()));
    }
    Err(IdError::NotTimestamp(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_refs_by_shape_and_normalised() {
        assert_eq!(
            parse_user_ref("Alice@Contoso.COM"),
            Ok(UserRef::Upn("alice@contoso.com".into()))
        );
        assert_eq!(
            parse_user_ref("6EA91A8D-E32E-41A1-B7BD-D2D185EED0E0"),
            Ok(UserRef::ObjectId(
                "6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0".into()
            ))
        );
        assert_eq!(
            parse_user_ref("{6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0}"),
            Ok(UserRef::ObjectId(
                "6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0".into()
            ))
        );
        assert_eq!(
            parse_user_ref("s-1-5-21-1004336348-1177238915-682003330-1104"),
            Ok(UserRef::Sid(
                "S-1-5-21-1004336348-1177238915-682003330-1104".into()
            ))
        );
        assert_eq!(
            parse_user_ref("alice_example.com#EXT#@contoso.onmicrosoft.com"),
            Ok(UserRef::Upn(
                "alice_example.com#ext#@contoso.onmicrosoft.com".into()
            ))
        );
    }

    #[test]
    fn malformed_user_refs_say_what_they_resemble() {
        let e = parse_user_ref("6ea91a8d-e32e-41a1-b7bd-d2d185eed0e")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a valid GUID"), "{e}");
        let e = parse_user_ref("S-1-5-21-abc").unwrap_err().to_string();
        assert!(e.contains("not a valid SID"), "{e}");
        let e = parse_user_ref("S-2-5-21").unwrap_err().to_string();
        assert!(e.contains("revision"), "{e}");
        let e = parse_user_ref("S-1-5").unwrap_err().to_string();
        assert!(e.contains("sub-authority"), "{e}");
        let e = parse_user_ref("S-1-5-4294967296").unwrap_err().to_string();
        assert!(e.contains("4294967295"), "{e}");
        let e = parse_user_ref("alice@@contoso.com")
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than one"), "{e}");
        let e = parse_user_ref("alice@contoso").unwrap_err().to_string();
        assert!(e.contains("two labels"), "{e}");
        let e = parse_user_ref("al ice@contoso.com")
            .unwrap_err()
            .to_string();
        assert!(e.contains("` ` is not allowed"), "{e}");
        let e = parse_user_ref(".alice@contoso.com")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot start"), "{e}");
        let e = parse_user_ref("alice").unwrap_err().to_string();
        assert!(e.contains("not a user principal name"), "{e}");
        assert!(parse_user_ref(&format!("{}@contoso.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn tenants() {
        assert_eq!(
            parse_tenant("Contoso.OnMicrosoft.com"),
            Ok(TenantRef::Domain("contoso.onmicrosoft.com".into()))
        );
        assert_eq!(
            parse_tenant("72F988BF-86F1-41AF-91AB-2D7CD011DB47"),
            Ok(TenantRef::Id("72f988bf-86f1-41af-91ab-2d7cd011db47".into()))
        );
        for bad in [
            "contoso",
            "contoso..com",
            "-contoso.com",
            "contoso.com.",
            "con_toso.com",
            "alice@contoso.com",
            "10.0.0.1",
            "",
        ] {
            assert!(parse_tenant(bad).is_err(), "{bad}");
        }
        for alias in ["common", "Organizations", "CONSUMERS"] {
            let err = parse_tenant(alias).unwrap_err().to_string();
            assert!(err.contains("multi-tenant alias"), "{err}");
        }
    }

    #[test]
    fn groups() {
        assert_eq!(
            parse_group_ref("Finance"),
            Ok(GroupRef::DisplayName("Finance".into()))
        );
        assert_eq!(
            parse_group_ref("2F1B3E5A-0000-4000-8000-000000000001"),
            Ok(GroupRef::ObjectId(
                "2f1b3e5a-0000-4000-8000-000000000001".into()
            ))
        );
        assert!(parse_group_ref("2F1B3E5A-0000-4000-8000-00000000000").is_err());
        assert!(parse_group_ref("  ").is_err());
        assert!(parse_group_ref("a\u{7}b").is_err());
    }

    #[test]
    fn timestamps_need_a_zone() {
        let t = parse_timestamp("2026-11-20T01:00:00+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-20T00:00:00+00:00");
        assert!(parse_timestamp("2026-11-20T00:00:00Z").is_ok());
        assert!(parse_timestamp("2026-11-20T00:00:00.5Z").is_ok());
        let e = parse_timestamp("2026-11-20").unwrap_err().to_string();
        assert!(e.contains("date without a time"), "{e}");
        let e = parse_timestamp("2026-11-20T00:00:00")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no time zone"), "{e}");
        let e = parse_timestamp("2026-11-20 00:00:00")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no time zone"), "{e}");
        let e = parse_timestamp("next tuesday").unwrap_err().to_string();
        assert!(e.contains("not an RFC 3339"), "{e}");
        assert!(parse_timestamp("2026-02-30T00:00:00Z").is_err());
    }
}
