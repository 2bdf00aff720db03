//! `GET /users`, `GET /users/{id | userPrincipalName}`, `GET /me`, `PATCH /users/{id | upn}`.
//!
//! Reads return only the properties Graph returns: without `$select`, the v1.0 default set (`id`,
//! `displayName`, `userPrincipalName`, names, mail, phones...); `passwordProfile`,
//! `passwordPolicies`, `lastPasswordChangeDateTime`, `onPremisesSyncEnabled`,
//! `onPremisesSecurityIdentifier` only when selected (the sandbox applies the same default set on
//! beta). `passwordProfile` is `null` unless a force flag is set, and never carries the password.
//!
//! PATCH rules ("Update user", <https://learn.microsoft.com/en-us/graph/api/user-update>, and
//! "passwordProfile resource type",
//! <https://learn.microsoft.com/en-us/graph/api/resources/passwordprofile>):
//! - permission `User-PasswordProfile.ReadWrite.All` or `User.ReadWrite.All` (delegated also
//!   `Directory.AccessAsUser.All`); properties other than `passwordProfile` need
//!   `User.ReadWrite.All` / `Directory.ReadWrite.All`;
//! - a `passwordProfile` write also needs a directory role of the caller (the app's service
//!   principal, or the signed-in user): User Administrator, Helpdesk Administrator, Password
//!   Administrator, Authentication Administrator, Privileged Authentication Administrator or Global
//!   Administrator for ordinary users; Privileged Authentication Administrator or Global
//!   Administrator when the target holds any directory role. Otherwise 403
//!   `Authorization_RequestDenied` "Insufficient privileges to complete the operation.";
//! - a password must pass Entra's complexity rules (relaxed by `DisableStrongPassword`), else 400
//!   `Request_BadRequest` with Graph's exact message; a synced user's password cannot be set (400);
//! - setting a password updates `lastPasswordChangeDateTime`; **an omitted
//!   `forceChangePasswordNextSignIn` next to a password defaults to true** (the password page:
//!   "the user will be required to change the password on the next login");
//!   an omitted `forceChangePasswordNextSignInWithMfa` next to a password defaults to false;
//! - flags without a password are applied, unless `--flag-only-patch-noop` reproduces the
//!   disputed behaviour (204, nothing changes);
//! - read-only properties (`id`, `lastPasswordChangeDateTime`, `onPremises*`, ...) are a 400;
//! - "admin targets" are every user Entra protects ([`Tenant::is_privileged`]): direct,
//!   group-held, AU-scoped, custom and PIM-eligible role holders, and members of role-assignable
//!   groups (counting eligible holders is the sandbox's conservative choice);
//! - **a password for a user of a federated domain** (not synced) is refused with 400
//!   `Request_BadRequest` ([`FEDERATED_PASSWORD`]) and **for a guest** (`userType: Guest`) with 400
//!   `Request_BadRequest` ([`GUEST_PASSWORD`]): the docs only say passwordProfile "cannot be used
//!   for federated users"; the exact responses are guesses. Flags without a password are applied.
//!
//! Reads lag writes with `--read-lag` ([`super::Realism`]): `GET /users`, `GET /users/{key}` and
//! `$batch` members serve [`Tenant::user_view`]; writes always see the current version.

use super::error::GraphPath;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chrono::SecondsFormat;
use serde_json::{json, Value};
use std::cmp::Ordering;

use super::auth::{Caller, CallerKind};
use super::error::{GraphError, GraphResult};
use super::odata::property;
use super::odata::{self, FilterRule, Property, Query, Val};
use super::server::{version, AppState};
use super::store::{Role, Tenant, User};

fn dt(d: &chrono::DateTime<chrono::Utc>) -> Value {
    Value::String(d.to_rfc3339_opts(SecondsFormat::Secs, true))
}
fn opt(s: &Option<String>) -> Value {
    s.as_ref().map_or(Value::Null, |v| Value::String(v.clone()))
}

/// `passwordProfile` as Graph returns it: null unless a flag is set; never the password.
pub fn password_profile(u: &User) -> Value {
    if u.force_change || u.force_change_mfa {
        json!({
            "password": null,
            "forceChangePasswordNextSignIn": u.force_change,
            "forceChangePasswordNextSignInWithMfa": u.force_change_mfa,
        })
    } else {
        Value::Null
    }
}

/// The user properties the sandbox knows (unknown ones in `$select` are Graph's 400).
pub static USER_PROPS: &[Property<User>] = &[
    property!("id", |u| Value::String(u.id.clone())),
    property!("businessPhones", |_| json!([])),
    property!("displayName", |u| Value::String(u.display_name.clone())),
    property!("givenName", |u| opt(&u.given_name)),
    property!("jobTitle", |u| opt(&u.job_title)),
    property!("mail", |u| opt(&u.mail)),
    property!("mobilePhone", |_| Value::Null),
    property!("officeLocation", |_| Value::Null),
    property!("preferredLanguage", |_| Value::Null),
    property!("surname", |u| opt(&u.surname)),
    property!("userPrincipalName", |u| Value::String(u.upn.clone())),
    property!("accountEnabled", |u| Value::Bool(u.account_enabled)),
    property!("userType", |u| Value::String(
        u.user_type.clone().unwrap_or_else(|| "Member".into())
    )),
    property!("creationType", |u| opt(&u.creation_type)),
    property!("externalUserState", |u| opt(&u.external_user_state)),
    property!("createdDateTime", |u| dt(&u.created)),
    property!("mailNickname", |u| Value::String(
        u.upn.split('@').next().unwrap_or_default().to_owned()
    )),
    property!("passwordProfile", |u| password_profile(u)),
    property!("passwordPolicies", |u| opt(&u.password_policies)),
    property!(
        "lastPasswordChangeDateTime",
        |u| dt(&u.last_password_change)
    ),
    property!("onPremisesSyncEnabled", |u| u
        .on_premises_sync_enabled
        .map_or(Value::Null, Value::Bool)),
    property!("onPremisesSecurityIdentifier", |u| opt(&u.on_premises_sid)),
    property!("onPremisesImmutableId", |_| Value::Null),
    property!("onPremisesSamAccountName", |u| if u.is_synced() {
        Value::String(u.upn.split('@').next().unwrap_or_default().to_owned())
    } else {
        Value::Null
    }),
    property!("onPremisesLastSyncDateTime", |u| if u.is_synced() {
        dt(&u.created)
    } else {
        Value::Null
    }),
    property!("department", |_| Value::Null),
    property!("companyName", |_| Value::Null),
    property!("employeeId", |_| Value::Null),
    property!("usageLocation", |_| Value::Null),
    property!("otherMails", |_| json!([])),
    property!("proxyAddresses", |_| json!([])),
];

/// Graph's default property set for users (no `$select`).
pub const USER_DEFAULT: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

/// Properties PATCH refuses as read-only.
const READ_ONLY: &[&str] = &[
    "id",
    "lastPasswordChangeDateTime",
    "createdDateTime",
    "onPremisesSyncEnabled",
    "onPremisesSecurityIdentifier",
    "onPremisesLastSyncDateTime",
    "onPremisesSamAccountName",
    "onPremisesDomainName",
    "mailNickname",
    "proxyAddresses",
    "creationType",
    "externalUserState",
];

/// Filterable user properties and their operators ("user resource type",
/// <https://learn.microsoft.com/en-us/graph/api/resources/user>, and "Advanced query capabilities
/// on Microsoft Entra ID objects", <https://learn.microsoft.com/en-us/graph/aad-advanced-queries>).
/// `GET /users` (and group members, which are users).
pub const USERS: odata::CollectionSpec<User> = odata::CollectionSpec {
    filters: Some(USER_FILTERS),
    resource: "User",
    props: USER_PROPS,
    default: USER_DEFAULT,
    type_name: "microsoft.graph.user",
};

pub const USER_FILTERS: &[FilterRule] = &[
    FilterRule {
        prop: "id",
        eq: true,
        ne: true,
        starts_with: false,
        ends_with: false,
        range: false,
    },
    FilterRule {
        prop: "userPrincipalName",
        eq: true,
        ne: true,
        starts_with: true,
        ends_with: true,
        range: true,
    },
    FilterRule {
        prop: "onPremisesSecurityIdentifier",
        eq: true,
        ne: false,
        starts_with: false,
        ends_with: false,
        range: false,
    },
    FilterRule {
        prop: "passwordProfile/forceChangePasswordNextSignIn",
        eq: true,
        ne: true,
        starts_with: false,
        ends_with: false,
        range: false,
    },
    FilterRule {
        prop: "passwordProfile/forceChangePasswordNextSignInWithMfa",
        eq: true,
        ne: true,
        starts_with: false,
        ends_with: false,
        range: false,
    },
    FilterRule {
        prop: "displayName",
        eq: true,
        ne: true,
        starts_with: true,
        ends_with: true,
        range: true,
    },
    FilterRule {
        prop: "mail",
        eq: true,
        ne: true,
        starts_with: true,
        ends_with: true,
        range: false,
    },
    FilterRule {
        prop: "accountEnabled",
        eq: true,
        ne: true,
        starts_with: false,
        ends_with: false,
        range: false,
    },
    FilterRule {
        prop: "onPremisesSyncEnabled",
        eq: true,
        ne: true,
        starts_with: false,
        ends_with: false,
        range: false,
    },
];

fn user_val<'a>(u: &'a User, prop: &str) -> Val<'a> {
    match prop.to_ascii_lowercase().as_str() {
        "id" => Val::Str(Some(&u.id)),
        "userprincipalname" => Val::Str(Some(&u.upn)),
        "onpremisessecurityidentifier" => Val::Str(u.on_premises_sid.as_deref()),
        "passwordprofile/forcechangepasswordnextsignin" => Val::Bool(Some(u.force_change)),
        "passwordprofile/forcechangepasswordnextsigninwithmfa" => {
            Val::Bool(Some(u.force_change_mfa))
        }
        "displayname" => Val::Str(Some(&u.display_name)),
        "mail" => Val::Str(u.mail.as_deref()),
        "accountenabled" => Val::Bool(Some(u.account_enabled)),
        "onpremisessyncenabled" => Val::Bool(u.on_premises_sync_enabled),
        _ => Val::Str(None),
    }
}

/// The range of lowercase UPNs a filter can only match, when it is a comparison of
/// `userPrincipalName` with a string (`ge`, `gt`, `le`, `lt`) or an `and` of such.
type UpnRange = (std::ops::Bound<String>, std::ops::Bound<String>);

fn upn_range(f: &odata::Filter) -> Option<UpnRange> {
    use odata::{Filter, Lit, Op};
    use std::ops::Bound::{Excluded, Included, Unbounded};
    match f {
        Filter::Cmp {
            prop,
            op,
            value: Lit::Str(v),
        } if prop.eq_ignore_ascii_case("userPrincipalName") => {
            let v = v.to_lowercase();
            Some(match op {
                Op::Ge => (Included(v), Unbounded),
                Op::Gt => (Excluded(v), Unbounded),
                Op::Le => (Unbounded, Included(v)),
                Op::Lt => (Unbounded, Excluded(v)),
                Op::Eq | Op::Ne => return None,
            })
        }
        Filter::And(a, b) => match (upn_range(a), upn_range(b)) {
            (Some((alo, ahi)), Some((blo, bhi))) => Some((
                tighter(alo, blo, Ordering::Greater),
                tighter(ahi, bhi, Ordering::Less),
            )),
            (one, None) | (None, one) => one,
        },
        _ => None,
    }
}

/// Whether a filter compares `userPrincipalName` with `ge`/`gt`/`le`/`lt` anywhere.
fn has_upn_range(f: &odata::Filter) -> bool {
    use odata::{Filter, Op};
    match f {
        Filter::Cmp { prop, op, .. } => {
            prop.eq_ignore_ascii_case("userPrincipalName")
                && matches!(op, Op::Ge | Op::Gt | Op::Le | Op::Lt)
        }
        Filter::And(a, b) | Filter::Or(a, b) => has_upn_range(a) || has_upn_range(b),
        Filter::Not(x) => has_upn_range(x),
        _ => false,
    }
}

/// The filter as a service that accepts `userPrincipalName` range clauses and ignores them
/// (`--upn-range-filter ignored`): each such clause counts as true; `None` when nothing is left.
fn without_upn_range(f: odata::Filter) -> Option<odata::Filter> {
    use odata::Filter;
    match f {
        Filter::Cmp { .. } if has_upn_range(&f) => None,
        Filter::And(a, b) => match (without_upn_range(*a), without_upn_range(*b)) {
            (Some(a), Some(b)) => Some(Filter::And(Box::new(a), Box::new(b))),
            (one, None) | (None, one) => one,
        },
        Filter::Or(a, b) => match (without_upn_range(*a), without_upn_range(*b)) {
            (Some(a), Some(b)) => Some(Filter::Or(Box::new(a), Box::new(b))),
            _ => None,
        },
        other => Some(other),
    }
}

/// The tighter of two lower bounds (`wins`: `Greater`) or of two upper bounds (`Less`): the
/// one whose value is further in that direction; with equal values, the exclusive one.
fn tighter(
    a: std::ops::Bound<String>,
    b: std::ops::Bound<String>,
    wins: Ordering,
) -> std::ops::Bound<String> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    match (a, b) {
        (Unbounded, x) | (x, Unbounded) => x,
        (a, b) => {
            let (Included(x) | Excluded(x)) = &a else {
                unreachable!()
            };
            let (Included(y) | Excluded(y)) = &b else {
                unreachable!()
            };
            match x.cmp(y) {
                o if o == wins => a,
                Ordering::Equal if matches!(a, Excluded(_)) => a,
                _ => b,
            }
        }
    }
}

/// Users a filter can only match, from the indexes (`id`/`userPrincipalName`/SID `eq` or `in`,
/// `userPrincipalName` ranges), in directory order; `None` when the filter needs a scan. The
/// page still applies the whole filter to them.
fn candidates(f: &odata::Filter, t: &Tenant) -> Option<Vec<usize>> {
    use odata::{Filter, Lit, Op};
    if let Some((lo, hi)) = upn_range(f) {
        return Some(t.users_by_upn_range(
            lo.as_ref().map(String::as_str),
            hi.as_ref().map(String::as_str),
        ));
    }
    // Some(hit) for an indexed property (a non-string literal matches nothing), None otherwise.
    let lookup = |prop: &str, v: &Lit| -> Option<Option<usize>> {
        let index: fn(&Tenant, &str) -> Option<usize> = match prop.to_ascii_lowercase().as_str() {
            "id" => Tenant::user_by_id,
            "userprincipalname" => Tenant::user_by_upn,
            "onpremisessecurityidentifier" => Tenant::user_by_sid,
            _ => return None,
        };
        match v {
            Lit::Str(s) => Some(index(t, s)),
            _ => Some(None),
        }
    };
    let mut out = match f {
        Filter::Cmp {
            prop,
            op: Op::Eq,
            value,
        } => lookup(prop, value)?.into_iter().collect::<Vec<_>>(),
        Filter::In { prop, values } => {
            let mut v = Vec::new();
            for x in values {
                v.extend(lookup(prop, x)?);
            }
            v
        }
        Filter::And(a, b) => return candidates(a, t).or_else(|| candidates(b, t)),
        _ => return None,
    };
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// Permission to read users.
fn can_read_users(caller: &Caller) -> bool {
    caller.has_any(&[
        "User.Read.All",
        "User.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "User.ReadBasic.All",
        "Directory.AccessAsUser.All",
    ])
}

/// One page of a collection over `positions` (candidate list or all users).
pub struct Page {
    pub items: Vec<usize>,
    pub next: Option<usize>,
    pub count: Option<usize>,
}

/// Pages over a sequence of item positions with a predicate: O(page) without a filter.
pub fn page_over(
    len: usize,
    at: &dyn Fn(usize) -> usize,
    keep: &dyn Fn(usize) -> bool,
    start: usize,
    top: usize,
    want_count: bool,
    filtered: bool,
) -> Page {
    let mut items = Vec::with_capacity(top.min(len));
    let mut pos = start;
    let mut next = None;
    while pos < len {
        let idx = at(pos);
        if keep(idx) {
            if items.len() == top {
                next = Some(pos);
                break;
            }
            items.push(idx);
        }
        pos += 1;
    }
    let count = want_count.then(|| {
        if filtered {
            (0..len).filter(|&p| keep(at(p))).count()
        } else {
            len
        }
    });
    Page { items, next, count }
}

/// `GET /users`.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    headers: HeaderMap,
) -> GraphResult<Response> {
    if !can_read_users(&caller) {
        return Err(GraphError::insufficient_privileges());
    }
    let odata::CollectionQuery {
        query,
        top,
        want_count,
        filter,
        props,
        start,
    } = odata::collection_query(&uri, &headers, &USERS, &state.skip_secret)?;

    let filter = match (filter, state.runtime.realism.upn_range_filter) {
        (Some(f), mode) if has_upn_range(&f) => match mode {
            super::UpnRangeFilterMode::Honoured => Some(f),
            super::UpnRangeFilterMode::Rejected => {
                return Err(GraphError::unsupported_query(
                    "Unsupported or invalid query filter clause specified for property 'userPrincipalName' of resource 'User'.",
                ))
            }
            super::UpnRangeFilterMode::Ignored => without_upn_range(f),
        },
        (f, _) => f,
    };
    let store = state.read();
    let t = &store.tenants[caller.tenant];
    let (now, lag) = (
        std::time::Instant::now(),
        state.runtime.realism.view_lag(&headers),
    );
    let cands = filter.as_ref().and_then(|f| candidates(f, t));
    let keep = |i: usize| {
        filter
            .as_ref()
            .is_none_or(|f| odata::eval(f, &|p| user_val(t.user_view(i, now, lag), p)))
    };
    let page = match &cands {
        Some(c) => page_over(c.len(), &|p| c[p], &keep, start, top, want_count, true),
        None => page_over(
            t.users.len(),
            &|p| p,
            &keep,
            start,
            top,
            want_count,
            filter.is_some(),
        ),
    };
    let value: Vec<Value> = page
        .items
        .iter()
        .map(|&i| Value::Object(odata::render(t.user_view(i, now, lag), &props)))
        .collect();
    drop(store);

    let context = format!("users{}", odata::context_select(&query));
    Ok(collection(
        &state, &uri, &query, &context, value, page.next, page.count,
    ))
}

/// A collection response: `@odata.context`, `@odata.count` when asked, `@odata.nextLink` while
/// more pages remain, and `value`.
pub fn collection(
    state: &AppState,
    uri: &Uri,
    query: &Query,
    context: &str,
    value: Vec<Value>,
    next: Option<usize>,
    count: Option<usize>,
) -> Response {
    let mut body = serde_json::Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(format!(
            "{}/{}/$metadata#{context}",
            state.base_url,
            version(uri)
        )),
    );
    if let Some(c) = count {
        body.insert("@odata.count".into(), json!(c));
    }
    if let Some(next) = next {
        body.insert(
            "@odata.nextLink".into(),
            Value::String(odata::next_link(
                &state.base_url,
                uri.path(),
                query,
                next,
                &state.skip_secret,
            )),
        );
    }
    body.insert("value".into(), Value::Array(value));
    axum::Json(Value::Object(body)).into_response()
}

fn single_user(
    state: &AppState,
    caller: &Caller,
    uri: &Uri,
    key: &str,
    allow_self: bool,
) -> GraphResult<Response> {
    let query = Query::parse(uri.query())?;
    query.refuse_unimplemented(&["$select"])?;
    let props = odata::select(&query, USER_PROPS, USER_DEFAULT, "microsoft.graph.user")?;
    let ver = version(uri);
    let store = state.read();
    let t = &store.tenants[caller.tenant];
    let i = t
        .user_index(key)
        .ok_or_else(|| GraphError::resource_not_found(key))?;
    let is_self = matches!(caller.kind, CallerKind::Delegated { user, .. } if user == i);
    if !(can_read_users(caller) || (allow_self && is_self && caller.has_any(&["User.Read"]))) {
        return Err(GraphError::insufficient_privileges());
    }
    let mut body = serde_json::Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(format!(
            "{}/{ver}/$metadata#users{}/$entity",
            state.base_url,
            odata::context_select(&query)
        )),
    );
    let view = t.user_view(i, std::time::Instant::now(), state.runtime.realism.read_lag);
    body.extend(odata::render(view, &props));
    Ok(axum::Json(Value::Object(body)).into_response())
}

/// `GET /users/{id | userPrincipalName}` (and `GET /users/$count`).
pub async fn get_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    GraphPath(key): GraphPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> GraphResult<Response> {
    if key == "$count" {
        if !can_read_users(&caller) {
            return Err(GraphError::insufficient_privileges());
        }
        if !odata::eventual(&headers) {
            return Err(GraphError::unsupported_query(
                "Raw count (/$count) is not supported because the 'ConsistencyLevel:eventual' header is missing. Refer to https://aka.ms/graph-docs/advanced-queries for more information",
            ));
        }
        let n = state.read().tenants[caller.tenant].users.len();
        return Ok((
            [(axum::http::header::CONTENT_TYPE, "text/plain")],
            n.to_string(),
        )
            .into_response());
    }
    single_user(&state, &caller, &uri, &key, true)
}

/// `GET /me` (delegated tokens only).
pub async fn me(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> GraphResult<Response> {
    let CallerKind::Delegated { user, .. } = caller.kind else {
        return Err(GraphError::bad_request(
            "/me request is only valid with delegated authentication flow.",
        ));
    };
    let id = state.read().tenants[caller.tenant].users[user].id.clone();
    single_user(&state, &caller, &uri, &id, true)
}

/// Roles that may set the password profile of an ordinary user / of an admin.
pub fn may_manage_password(caller_roles: &[Role], target_is_admin: bool) -> bool {
    let privileged = [
        Role::GLOBAL_ADMINISTRATOR,
        Role::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR,
    ];
    let ordinary = [
        Role::GLOBAL_ADMINISTRATOR,
        Role::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR,
        Role::AUTHENTICATION_ADMINISTRATOR,
        Role::USER_ADMINISTRATOR,
        Role::HELPDESK_ADMINISTRATOR,
        Role::PASSWORD_ADMINISTRATOR,
    ];
    let allowed: &[Role] = if target_is_admin {
        &privileged
    } else {
        &ordinary
    };
    caller_roles.iter().any(|r| allowed.contains(r))
}

/// The parsed `passwordProfile` of a PATCH body.
struct ProfilePatch {
    password: Option<String>,
    force: Option<bool>,
    force_mfa: Option<bool>,
}

fn parse_profile(v: &Value) -> GraphResult<ProfilePatch> {
    let Value::Object(m) = v else {
        return Err(GraphError::bad_request(
            "Invalid value for property 'passwordProfile': an object is expected.",
        ));
    };
    let mut p = ProfilePatch {
        password: None,
        force: None,
        force_mfa: None,
    };
    for (k, v) in m {
        match k.as_str() {
            "password" => match v {
                Value::String(s) => p.password = Some(s.clone()),
                Value::Null => {}
                _ => {
                    return Err(GraphError::bad_request(
                        "Invalid value for property 'password': a string is expected.",
                    ))
                }
            },
            "forceChangePasswordNextSignIn" | "forceChangePasswordNextSignInWithMfa" => {
                let b = match v {
                    Value::Bool(b) => Some(*b),
                    Value::Null => None,
                    _ => {
                        return Err(GraphError::bad_request(format!(
                            "Invalid value for property '{k}': a boolean is expected."
                        )))
                    }
                };
                if k == "forceChangePasswordNextSignIn" {
                    p.force = b;
                } else {
                    p.force_mfa = b;
                }
            }
            "@odata.type" => {}
            other => {
                return Err(GraphError::bad_request(format!(
                    "The property '{other}' does not exist on type 'microsoft.graph.passwordProfile'. Make sure to only use property names that are defined by the type."
                )))
            }
        }
    }
    Ok(p)
}

/// Graph's message for a password that fails the complexity rules.
pub const WEAK_PASSWORD: &str = "The specified password does not comply with password complexity requirements. Please provide a different password.";

/// The sandbox's answer to a password set on a user of a federated domain (undocumented: a
/// guess).
pub const FEDERATED_PASSWORD: &str = "Unable to update the password of a user of a federated domain: the password is managed by the domain's identity provider.";

/// The sandbox's answer to a password set on a guest (undocumented: a guess).
pub const GUEST_PASSWORD: &str = "Unable to update the password of an external (guest) user: the password is managed by the user's home identity provider.";

/// Graph's message for a write to a property mastered on-premises.
pub const SYNCED_READ_ONLY: &str = "Unable to update the specified properties for on-premises mastered Directory Sync objects or objects currently undergoing migration.";

/// `PATCH /users/{id | userPrincipalName}`.
pub async fn patch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    GraphPath(key): GraphPath<String>,
    body: axum::body::Body,
) -> GraphResult<StatusCode> {
    if !caller.has_any(&[
        "User-PasswordProfile.ReadWrite.All",
        "User.ReadWrite.All",
        "Directory.ReadWrite.All",
        "Directory.AccessAsUser.All",
    ]) {
        return Err(GraphError::insufficient_privileges());
    }
    let bytes = super::error::read_body(body, state.runtime.max_body_bytes).await?;
    let v = super::error::parse_json(&bytes)?;
    let Value::Object(fields) = v else {
        return Err(GraphError::bad_request(
            "The request payload must be a JSON object.",
        ));
    };

    // Validate the whole body before touching anything.
    let mut profile = None;
    let mut policies: Option<Option<String>> = None;
    let mut others: Vec<(String, Value)> = Vec::new();
    for (k, v) in &fields {
        if let Some(ro) = READ_ONLY.iter().find(|r| r.eq_ignore_ascii_case(k)) {
            return Err(GraphError::request_bad_request(format!(
                "Property '{ro}' is read-only and cannot be set."
            )));
        }
        match k.as_str() {
            "passwordProfile" => profile = Some(parse_profile(v)?),
            "passwordPolicies" => match v {
                Value::String(s) => {
                    for p in s.split(',').map(str::trim) {
                        if !["None", "DisablePasswordExpiration", "DisableStrongPassword"]
                            .iter()
                            .any(|x| x.eq_ignore_ascii_case(p))
                        {
                            return Err(GraphError::request_bad_request(format!(
                                "Invalid value specified for property 'passwordPolicies' of resource 'User'. ('{p}')"
                            )));
                        }
                    }
                    policies = Some(Some(s.clone()));
                }
                Value::Null => policies = Some(None),
                _ => {
                    return Err(GraphError::bad_request(
                        "Invalid value for property 'passwordPolicies': a string is expected.",
                    ))
                }
            },
            "@odata.type" => {}
            k if USER_PROPS.iter().any(|p| p.name == k) => others.push((k.to_owned(), v.clone())),
            other => {
                return Err(GraphError::bad_request(format!(
                    "The property '{other}' does not exist on type 'microsoft.graph.user'. Make sure to only use property names that are defined by the type or mark the type as open type."
                )))
            }
        }
    }
    if (policies.is_some() || !others.is_empty())
        && !caller.has_any(&[
            "User.ReadWrite.All",
            "Directory.ReadWrite.All",
            "Directory.AccessAsUser.All",
        ])
    {
        return Err(GraphError::insufficient_privileges());
    }

    let mut store = state.write();
    let caller_roles = {
        let t = &store.tenants[caller.tenant];
        caller.roles(t)
    };
    let t = &mut store.tenants[caller.tenant];
    let i = t
        .user_index(&key)
        .ok_or_else(|| GraphError::resource_not_found(&key))?;
    let privileged = t.is_privileged(i);
    let federated = t.in_federated_domain(&t.users[i].upn);
    let u = &t.users[i];
    if profile.is_some() && !may_manage_password(&caller_roles, privileged) {
        return Err(GraphError::insufficient_privileges());
    }
    if profile.is_some() {
        if let Some(e) = super::units::restricted_refusal(t, &caller, i) {
            return Err(e);
        }
    }
    if profile.as_ref().is_some_and(|p| p.password.is_some()) {
        // Undocumented responses (the docs say only that passwordProfile "cannot be used for
        // federated users"): the sandbox's guesses, see the module documentation.
        if u.is_guest() {
            return Err(GraphError::request_bad_request(GUEST_PASSWORD));
        }
        if federated && !u.is_synced() {
            return Err(GraphError::request_bad_request(FEDERATED_PASSWORD));
        }
    }
    // passwordPolicies stays writable for synced users (DisablePasswordExpiration is commonly
    // set on them); the other modelled properties are mastered on-premises.
    if u.is_synced() && !others.is_empty() {
        return Err(GraphError::request_bad_request(SYNCED_READ_ONLY));
    }
    let strong = match &policies {
        Some(p) => !p.as_deref().is_some_and(|p| {
            p.split(',')
                .any(|x| x.trim().eq_ignore_ascii_case("DisableStrongPassword"))
        }),
        None => u.strong_password_required(),
    };
    if let Some(p) = &profile {
        if let Some(pw) = &p.password {
            if u.is_synced() {
                return Err(GraphError::request_bad_request(SYNCED_READ_ONLY));
            }
            if !crate::password::acceptable(pw, strong) {
                return Err(GraphError::request_bad_request(WEAK_PASSWORD));
            }
        }
    }
    let flag_only = profile
        .as_ref()
        .is_some_and(|p| p.password.is_none() && (p.force.is_some() || p.force_mfa.is_some()));
    // Flag-only changes of a synced user: refused as on-premises mastered (as reported) under
    // `--synced-flags-refused`.
    if flag_only && u.is_synced() && state.runtime.synced_flags_refused {
        return Err(GraphError::request_bad_request(SYNCED_READ_ONLY));
    }
    if flag_only && state.runtime.flag_only_patch_noop {
        // The disputed behaviour (microsoft-graph-docs #4267): 204 and nothing changes.
        let upn = t.users[i].upn.clone();
        drop(store);
        *state.stats().patches_per_user.entry(upn).or_default() += 1;
        return Ok(StatusCode::NO_CONTENT);
    }

    t.before_write(
        i,
        std::time::Instant::now(),
        state.runtime.realism.retain_lag(),
    );
    let u = &mut t.users[i];
    if let Some(p) = policies {
        u.password_policies = p;
    }
    for (k, v) in others {
        match (k.as_str(), v) {
            ("displayName", Value::String(s)) => u.display_name = s,
            ("givenName", Value::String(s)) => u.given_name = Some(s),
            ("surname", Value::String(s)) => u.surname = Some(s),
            ("jobTitle", Value::String(s)) => u.job_title = Some(s),
            ("mail", Value::String(s)) => u.mail = Some(s),
            ("accountEnabled", Value::Bool(b)) => u.account_enabled = b,
            // other writable properties are accepted and not modelled
            _ => {}
        }
    }
    if let Some(p) = profile {
        match p.password {
            Some(pw) => {
                u.password_changed(state.now(), Some(super::seed::password_hash(&pw)));
                u.force_change = p.force.unwrap_or(true);
                u.force_change_mfa = p.force_mfa.unwrap_or(false);
            }
            None => {
                if let Some(f) = p.force {
                    u.force_change = f;
                }
                if let Some(f) = p.force_mfa {
                    u.force_change_mfa = f;
                }
            }
        }
    }
    let upn = u.upn.clone();
    drop(store);
    state.mark_dirty();
    *state.stats().patches_per_user.entry(upn).or_default() += 1;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The UPN index gives what a scan of the filter gives: a superset of the matches, the
    /// page then applying the filter itself, and for pure ranges exactly the matches.
    #[test]
    fn upn_ranges_from_the_index_are_what_a_scan_finds() {
        let store = crate::store::Store::from_seed(&crate::generate::generate(600, 3), "g")
            .expect("generated seed loads");
        let t = &store.tenants[0];
        let now = std::time::Instant::now();
        for f in [
            "userPrincipalName le 'g'",
            "userPrincipalName lt 'g'",
            "userPrincipalName ge 'G' and userPrincipalName le 'n'",
            "userPrincipalName gt 'g' and userPrincipalName lt 'n'",
            "userPrincipalName ge 'n'",
            "userPrincipalName ge 'm' and userPrincipalName ge 'p' and userPrincipalName le 'z'",
            "userPrincipalName le 'm' and userPrincipalName lt 'c'",
            "userPrincipalName ge 'n' and userPrincipalName le 'c'",
            "userPrincipalName ge 'c' and accountEnabled eq true",
        ] {
            let filter = odata::parse_filter(f).expect(f);
            let keep = |i: usize| {
                odata::eval(&filter, &|p| {
                    user_val(t.user_view(i, now, std::time::Duration::ZERO), p)
                })
            };
            let scan: Vec<usize> = (0..t.users.len()).filter(|&i| keep(i)).collect();
            let cands = candidates(&filter, t).expect("a UPN range is indexed");
            assert!(
                cands.windows(2).all(|w| w[0] < w[1]),
                "{f}: directory order"
            );
            let found: Vec<usize> = cands.into_iter().filter(|&i| keep(i)).collect();
            assert_eq!(found, scan, "{f}");
            if !f.contains("accountEnabled") {
                let exact = candidates(&filter, t).unwrap();
                assert_eq!(exact, scan, "{f}: a pure range is exactly its matches");
            }
        }
        assert!(
            !candidates(&odata::parse_filter("userPrincipalName le 'g'").unwrap(), t)
                .unwrap()
                .is_empty()
        );
    }
}
