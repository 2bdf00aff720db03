//! `GET /groups`, `GET /groups/{id}`, `GET /groups/{id}/transitiveMembers/microsoft.graph.user`
//! and `GET /directoryRoles?$expand=members`.
//!
//! Transitive membership is resolved breadth-first through nested groups, each group visited once
//! (so a cycle cannot loop), each user listed once. The OData cast `microsoft.graph.user` needs
//! `ConsistencyLevel: eventual` and `$count=true` as documented, else 400
//! `Request_UnsupportedQuery` (message: the sandbox's wording, modelled on Graph's advanced-query
//! errors); `--transitive-members lenient` accepts it without them (as reported), and
//! `cast-ignored` also returns the nested groups (`#microsoft.graph.group`), as reported once.
//!
//! `/directoryRoles` lists only activated *built-in* roles (assigned at least once, at any scope,
//! active or eligible) and, under `$expand=members`, only the tenant-wide active members: users,
//! service principals, and role-assignable groups as groups (not their users). Custom roles,
//! administrative-unit scopes and eligibilities are not there, as documented. The expansion is
//! capped at `--expand-cap` (default 20, as documented) members, with no next link.

use super::error::GraphPath;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::{GraphError, GraphResult};
use super::odata::property;
use super::odata::{self, FilterRule, Property, Query, Val};
use super::server::{version, AppState};
use super::store::{Group, Member, Principal, Role, ROLES};
use super::users::{collection, page_over};

static GROUP_PROPS: &[Property<Group>] = &[
    property!("id", |g| Value::String(g.id.clone())),
    property!("displayName", |g| Value::String(g.display_name.clone())),
    property!("description", |g| g
        .description
        .clone()
        .map_or(Value::Null, Value::String)),
    property!("groupTypes", |_| json!([])),
    property!("mail", |_| Value::Null),
    property!("mailEnabled", |_| Value::Bool(false)),
    property!("mailNickname", |g| Value::String(
        g.display_name.replace(' ', "")
    )),
    property!("securityEnabled", |_| Value::Bool(true)),
    property!("onPremisesSyncEnabled", |_| Value::Null),
];

const GROUP_DEFAULT: &[&str] = &[
    "id",
    "description",
    "displayName",
    "groupTypes",
    "mail",
    "mailEnabled",
    "mailNickname",
    "onPremisesSyncEnabled",
    "securityEnabled",
];

/// `GET /groups`.
const GROUPS: odata::CollectionSpec<Group> = odata::CollectionSpec {
    filters: Some(GROUP_FILTERS),
    resource: "Group",
    props: GROUP_PROPS,
    default: GROUP_DEFAULT,
    type_name: "microsoft.graph.group",
};

const GROUP_FILTERS: &[FilterRule] = &[
    FilterRule {
        prop: "id",
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
];

fn group_val<'a>(g: &'a Group, prop: &str) -> Val<'a> {
    match prop.to_ascii_lowercase().as_str() {
        "id" => Val::Str(Some(&g.id)),
        "displayname" => Val::Str(Some(&g.display_name)),
        _ => Val::Str(None),
    }
}

fn can_read_groups(caller: &Caller) -> bool {
    caller.has_any(&[
        "GroupMember.Read.All",
        "Group.Read.All",
        "Group.ReadWrite.All",
        "GroupMember.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "Directory.AccessAsUser.All",
    ])
}

/// `GET /groups`.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    headers: HeaderMap,
) -> GraphResult<Response> {
    if !can_read_groups(&caller) {
        return Err(GraphError::insufficient_privileges());
    }
    let odata::CollectionQuery {
        query,
        top,
        want_count,
        filter,
        props,
        start,
    } = odata::collection_query(&uri, &headers, &GROUPS, &state.skip_secret)?;
    let store = state.read();
    let t = &store.tenants[caller.tenant];
    let keep = |i: usize| {
        filter
            .as_ref()
            .is_none_or(|f| odata::eval(f, &|p| group_val(&t.groups[i], p)))
    };
    let page = page_over(
        t.groups.len(),
        &|p| p,
        &keep,
        start,
        top,
        want_count,
        filter.is_some(),
    );
    let value = page
        .items
        .iter()
        .map(|&i| Value::Object(odata::render(&t.groups[i], &props)))
        .collect();
    drop(store);
    let context = format!("groups{}", odata::context_select(&query));
    Ok(collection(
        &state, &uri, &query, &context, value, page.next, page.count,
    ))
}

/// `GET /groups/{id}`.
pub async fn get_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    GraphPath(id): GraphPath<String>,
    uri: Uri,
) -> GraphResult<Response> {
    if !can_read_groups(&caller) {
        return Err(GraphError::insufficient_privileges());
    }
    let query = Query::parse(uri.query())?;
    query.refuse_unimplemented(&["$select"])?;
    let props = odata::select(&query, GROUP_PROPS, GROUP_DEFAULT, "microsoft.graph.group")?;
    let store = state.read();
    let t = &store.tenants[caller.tenant];
    let g = t
        .group_index(&id)
        .ok_or_else(|| GraphError::resource_not_found(&id))?;
    let mut body = serde_json::Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(format!(
            "{}/{}/$metadata#groups{}/$entity",
            state.base_url,
            version(&uri),
            odata::context_select(&query)
        )),
    );
    body.extend(odata::render(&t.groups[g], &props));
    Ok(axum::Json(Value::Object(body)).into_response())
}

/// `GET /groups/{id}/transitiveMembers/microsoft.graph.user`.
pub async fn transitive_users(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    GraphPath(id): GraphPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> GraphResult<Response> {
    if !can_read_groups(&caller) {
        return Err(GraphError::insufficient_privileges());
    }
    let mode = state.runtime.realism.transitive_members;
    if mode == super::TransitiveMembersMode::Documented {
        let q = Query::parse(uri.query())?;
        if !(odata::eventual(&headers) && q.count()?) {
            return Err(GraphError::unsupported_query(CAST_NEEDS_ADVANCED));
        }
    }
    let members_spec = odata::CollectionSpec {
        filters: None,
        ..super::users::USERS
    };
    let odata::CollectionQuery {
        query,
        top,
        want_count,
        props,
        start,
        ..
    } = odata::collection_query(&uri, &headers, &members_spec, &state.skip_secret)?;
    let store = state.read();
    let t = &store.tenants[caller.tenant];
    let g = t
        .group_index(&id)
        .ok_or_else(|| GraphError::resource_not_found(&id))?;
    let mut members: Vec<Member> = t
        .transitive_users(g)
        .into_iter()
        .map(Member::User)
        .collect();
    if mode == super::TransitiveMembersMode::CastIgnored {
        members.extend(t.transitive_groups(g).into_iter().map(Member::Group));
    }
    let page = page_over(
        members.len(),
        &|p| p,
        &|_| true,
        start,
        top,
        want_count,
        false,
    );
    let (now, lag) = (
        std::time::Instant::now(),
        state.runtime.realism.view_lag(&headers),
    );
    let value = page
        .items
        .iter()
        .map(|&p| match members[p] {
            Member::User(i) => {
                let mut m = serde_json::Map::new();
                m.insert("@odata.type".into(), json!("#microsoft.graph.user"));
                m.extend(odata::render(t.user_view(i, now, lag), &props));
                Value::Object(m)
            }
            Member::Group(gi) => {
                let mut m = serde_json::Map::new();
                m.insert("@odata.type".into(), json!("#microsoft.graph.group"));
                m.extend(odata::render(&t.groups[gi], &group_props()));
                Value::Object(m)
            }
        })
        .collect();
    drop(store);
    let context = format!("users{}", odata::context_select(&query));
    Ok(collection(
        &state, &uri, &query, &context, value, page.next, page.count,
    ))
}

fn group_props() -> Vec<&'static Property<Group>> {
    GROUP_PROPS.iter().collect()
}

/// The sandbox's wording of the 400 for the OData cast without advanced-query parameters (the
/// docs say they are required, not what Graph answers without them).
pub const CAST_NEEDS_ADVANCED: &str = "The OData cast is not supported because the required parameters might be missing. Try adding $count=true query parameter and ConsistencyLevel:eventual header. Refer to https://aka.ms/graph-docs/advanced-queries for more information";

/// `GET /directoryRoles` (with `$expand=members`, `$select`).
pub async fn directory_roles(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> GraphResult<Response> {
    if !caller.has_any(&[
        "RoleManagement.Read.Directory",
        "RoleManagement.ReadWrite.Directory",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "RoleManagement.Read.All",
        "Directory.AccessAsUser.All",
    ]) {
        return Err(GraphError::insufficient_privileges());
    }
    let query = Query::parse(uri.query())?;
    query.refuse_unimplemented(&["$expand", "$select", "$filter"])?;
    let expand = match query.get("$expand").map(str::trim) {
        None | Some("") => false,
        Some(e) if e.eq_ignore_ascii_case("members") => true,
        // `members($select=id)`: nested query options on the expansion, as Graph allows. Members
        // are rendered as `@odata.type` + `id` either way, so a `$select` of `id` changes nothing.
        Some(e)
            if e.len() > "members()".len()
                && e[..8].eq_ignore_ascii_case("members(")
                && e.ends_with(')')
                && e[8..e.len() - 1]
                    .split(';')
                    .all(|opt| opt.trim().eq_ignore_ascii_case("$select=id")) =>
        {
            true
        }
        Some(e) => {
            return Err(GraphError::bad_request(format!(
                "Could not find a property named '{e}' on type 'microsoft.graph.directoryRole'."
            )))
        }
    };
    let role_filter = match query.get("$filter") {
        None => None,
        Some(f) => {
            let f = odata::parse_filter(f)?;
            match &f {
                odata::Filter::Cmp {
                    prop,
                    op: odata::Op::Eq,
                    value: odata::Lit::Str(v),
                } if prop.eq_ignore_ascii_case("roleTemplateId")
                    || prop.eq_ignore_ascii_case("displayName") =>
                {
                    Some(v.to_lowercase())
                }
                _ => {
                    return Err(GraphError::unsupported_query(
                        "Unsupported or invalid query filter clause specified for property of resource 'DirectoryRole'.",
                    ))
                }
            }
        }
    };
    let store = state.read();
    let t = &store.tenants[caller.tenant];
    let cap = state.runtime.realism.expand_cap;
    let mut value = Vec::new();
    for (ri, (name, template)) in ROLES.iter().enumerate() {
        let role = Role(ri as u8);
        if let Some(f) = &role_filter {
            if f != &name.to_lowercase() && f != template {
                continue;
            }
        }
        // Activated: the role has been assigned (any scope, active or eligible). Members: the
        // tenant-wide active assignments, a group as the group (not its members).
        let activated = t
            .assignments
            .iter()
            .chain(&t.eligibilities)
            .any(|a| a.role == ri);
        if !activated {
            continue;
        }
        let mut members: Vec<Value> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for a in t
            .assignments
            .iter()
            .filter(|a| a.role == ri && a.scope == "/")
        {
            if !seen.insert(a.principal) {
                continue;
            }
            members.push(match a.principal {
                Principal::User(u) => {
                    let u = &t.users[u];
                    json!({
                        "@odata.type": "#microsoft.graph.user",
                        "id": u.id,
                        "displayName": u.display_name,
                        "userPrincipalName": u.upn,
                    })
                }
                Principal::Group(g) => {
                    let g = &t.groups[g];
                    json!({
                        "@odata.type": "#microsoft.graph.group",
                        "id": g.id,
                        "displayName": g.display_name,
                        "isAssignableToRole": true,
                    })
                }
                Principal::App(a) => {
                    let a = &t.apps[a];
                    json!({
                        "@odata.type": "#microsoft.graph.servicePrincipal",
                        "id": a.service_principal_id,
                        "appId": a.client_id,
                        "displayName": a.display_name,
                    })
                }
            });
        }
        // Documented: an expanded collection holds at most `expand_cap` items, with no next link.
        if let Some(cap) = cap {
            members.truncate(cap);
        }
        let mut obj = serde_json::Map::new();
        obj.insert("id".into(), Value::String(role.object_id(&t.id)));
        obj.insert("deletedDateTime".into(), Value::Null);
        obj.insert("description".into(), Value::String(format!("{name}.")));
        obj.insert("displayName".into(), Value::String((*name).to_owned()));
        obj.insert(
            "roleTemplateId".into(),
            Value::String((*template).to_owned()),
        );
        if expand {
            obj.insert("members".into(), Value::Array(members));
        }
        if let Some(sel) = query.get("$select") {
            let keep: Vec<String> = sel.split(',').map(|s| s.trim().to_lowercase()).collect();
            obj.retain(|k, _| k == "id" || k == "members" || keep.contains(&k.to_lowercase()));
        }
        value.push(Value::Object(obj));
    }
    drop(store);
    let context = if expand {
        "directoryRoles(members())".to_owned()
    } else {
        "directoryRoles".to_owned()
    };
    Ok(collection(
        &state, &uri, &query, &context, value, None, None,
    ))
}
