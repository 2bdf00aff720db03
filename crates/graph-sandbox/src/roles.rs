//! The role-management API of the directory provider and the tenant's domains:
//! `GET /roleManagement/directory/roleDefinitions`, `.../roleAssignments`,
//! `.../roleEligibilityScheduleInstances`, `GET /domains`, `GET /domains/{id}`, and
//! `GET /organization` (the one organization object: `id` = tenant id, `displayName`,
//! `verifiedDomains` with `name`, `isDefault`, `isInitial`, `type`, `capabilities`; application
//! permission `Organization.Read.All` or `Directory.Read.All` (or their ReadWrite forms),
//! delegated also `User.Read`).
//!
//! What is modelled, from the v1.0 pages (unifiedRoleDefinition, unifiedRoleAssignment,
//! unifiedRoleEligibilityScheduleInstance, domain), and public reports where they are silent
//! (named below):
//!
//! - role definitions: the built-in roles the sandbox knows (`isBuiltIn: true`, id = template
//!   id) and the seed's custom roles (`isBuiltIn: false`); `$filter` `eq`/`in` on `id`,
//!   `displayName`, `isBuiltIn`, `templateId`;
//! - role assignments: every active assignment: the `directoryRoles` of users and apps
//!   (tenant-wide) and the seed's `roleAssignments` (any role, to a user, a role-assignable group
//!   or a service principal, `directoryScopeId` `/` or `/administrativeUnits/{id}`). A role held
//!   through a group lists the group as the principal (the client must read its members);
//!   `$filter` `eq`/`in` on `principalId`, `roleDefinitionId`, `directoryScopeId`, `id`;
//!   `$expand=principal` (and `roleDefinition`);
//! - eligibility schedule instances: the seed's `roleEligibilities`, same shape plus
//!   `startDateTime`, `endDateTime`, `memberType` (`Direct`), `roleEligibilityScheduleId`,
//!   independent of activation. Reading them needs `RoleEligibilitySchedule.Read.Directory`,
//!   `RoleEligibilitySchedule.ReadWrite.Directory`, `RoleManagement.Read.Directory`,
//!   `RoleManagement.Read.All` or `RoleManagement.ReadWrite.Directory` (not `Directory.Read.All`):
//!   otherwise 403 `Authorization_RequestDenied`. A tenant without a PIM licence (seed
//!   `pimLicense: false`, `--no-pim-license`) answers **400 `AadPremiumLicenseRequired`, "The
//!   tenant needs an AAD Premium 2 license."**: undocumented for Graph; the code is the one
//!   reported for Graph's PIM endpoints (e.g. Galvnyz/M365-Assess#117, mondoohq/mql#8955) and the
//!   message the one reported for the same code on the Azure PIM API: a guess;
//! - all three are paged with `@odata.nextLink` (default page `--role-page-size`, 5, so that
//!   clients must follow it; `$top` 1..999 honoured) and accept `$select`. Delegated callers
//!   also need a directory role that may read them (Global Administrator, Global Reader,
//!   Privileged Role Administrator, Security Administrator; Directory Readers for
//!   definitions and assignments), else 403;
//! - domains: `id`, `authenticationType` (`Managed` | `Federated`), `isVerified`, `isDefault`,
//!   `isInitial`, `isRoot`, `isAdminManaged`, `supportedServices`, password policy defaults;
//!   permission `Domain.Read.All`, `Domain.ReadWrite.All`, `Directory.Read.All` or
//!   `Directory.ReadWrite.All`.

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};

use super::auth::{Caller, CallerKind};
use super::error::{GraphError, GraphPath, GraphResult};
use super::odata::property;
use super::odata::{self, FilterRule, Property, Query, Val};
use super::server::{version, AppState};
use super::store::{Assignment, Principal, Role, Tenant};

/// One row of a role collection, owned, so that the generic `$select` machinery applies.
pub struct Row {
    pub id: String,
    pub principal_id: String,
    pub role_definition_id: String,
    pub directory_scope_id: String,
    pub start: Option<String>,
    pub end: Option<String>,
    pub eligible: bool,
    principal: Principal,
    role: usize,
}

static ASSIGNMENT_PROPS: &[Property<Row>] = &[
    property!("id", |r| json!(r.id)),
    property!("principalId", |r| json!(r.principal_id)),
    property!("roleDefinitionId", |r| json!(r.role_definition_id)),
    property!("directoryScopeId", |r| json!(r.directory_scope_id)),
    property!("appScopeId", |_| Value::Null),
    property!("resourceScope", |r| json!(r.directory_scope_id)),
];
const ASSIGNMENT_DEFAULT: &[&str] = &[
    "id",
    "principalId",
    "resourceScope",
    "directoryScopeId",
    "roleDefinitionId",
];

static ELIGIBILITY_PROPS: &[Property<Row>] = &[
    property!("id", |r| json!(r.id)),
    property!("principalId", |r| json!(r.principal_id)),
    property!("roleDefinitionId", |r| json!(r.role_definition_id)),
    property!("directoryScopeId", |r| json!(r.directory_scope_id)),
    property!("appScopeId", |_| Value::Null),
    property!("startDateTime", |r| json!(r.start)),
    property!("endDateTime", |r| json!(r.end)),
    property!("memberType", |_| json!("Direct")),
    property!("roleEligibilityScheduleId", |r| json!(r
        .id
        .trim_end_matches("-1-e"))),
];
const ELIGIBILITY_DEFAULT: &[&str] = &[
    "id",
    "principalId",
    "roleDefinitionId",
    "directoryScopeId",
    "appScopeId",
    "startDateTime",
    "endDateTime",
    "memberType",
    "roleEligibilityScheduleId",
];

const fn eq_rule(prop: &'static str) -> FilterRule {
    FilterRule {
        prop,
        eq: true,
        ne: false,
        starts_with: false,
        ends_with: false,
        range: false,
    }
}

const ROW_FILTERS: &[FilterRule] = &[
    eq_rule("id"),
    eq_rule("principalId"),
    eq_rule("roleDefinitionId"),
    eq_rule("directoryScopeId"),
    eq_rule("memberType"),
];

fn row_val<'a>(r: &'a Row, prop: &str) -> Val<'a> {
    match prop.to_ascii_lowercase().as_str() {
        "id" => Val::Str(Some(&r.id)),
        "principalid" => Val::Str(Some(&r.principal_id)),
        "roledefinitionid" => Val::Str(Some(&r.role_definition_id)),
        "directoryscopeid" => Val::Str(Some(&r.directory_scope_id)),
        "membertype" => Val::Str(Some("Direct")),
        _ => Val::Str(None),
    }
}

fn dt(d: &chrono::DateTime<chrono::Utc>) -> String {
    d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn rows(t: &Tenant, list: &[Assignment], eligible: bool) -> Vec<Row> {
    list.iter()
        .map(|a| Row {
            id: a.id.clone(),
            principal_id: t.principal_id(a.principal).to_owned(),
            role_definition_id: t.role_defs[a.role].id.clone(),
            directory_scope_id: a.scope.clone(),
            start: a.start.as_ref().map(dt),
            end: a.end.as_ref().map(dt),
            eligible,
            principal: a.principal,
            role: a.role,
        })
        .collect()
}

/// Graph-role holders that may read role management data as a signed-in user.
fn delegated_role_ok(caller: &Caller, t: &Tenant, directory_readers: bool) -> bool {
    if !matches!(caller.kind, CallerKind::Delegated { .. }) {
        return true;
    }
    let mut ok = vec![
        Role::GLOBAL_ADMINISTRATOR,
        Role::by_name("Global Reader").unwrap_or(Role(0)),
        Role::by_name("Privileged Role Administrator").unwrap_or(Role(0)),
        Role::by_name("Security Administrator").unwrap_or(Role(0)),
    ];
    if directory_readers {
        ok.extend(Role::by_name("Directory Readers"));
    }
    caller.roles(t).iter().any(|r| ok.contains(r))
}

const READ_ROLES: &[&str] = &[
    "RoleManagement.Read.Directory",
    "RoleManagement.Read.All",
    "Directory.Read.All",
    "RoleManagement.ReadWrite.Directory",
    "Directory.ReadWrite.All",
];

const READ_ELIGIBILITY: &[&str] = &[
    "RoleEligibilitySchedule.Read.Directory",
    "RoleEligibilitySchedule.ReadWrite.Directory",
    "RoleManagement.Read.All",
    "RoleManagement.Read.Directory",
    "RoleManagement.ReadWrite.Directory",
];

/// 400 for a tenant without a licence that includes PIM (see the module documentation).
pub fn license_required() -> GraphError {
    GraphError::new(
        StatusCode::BAD_REQUEST,
        "AadPremiumLicenseRequired",
        "The tenant needs an AAD Premium 2 license.",
    )
}

/// What `$expand` asks for on an assignment collection.
struct Expand {
    principal: bool,
    role_definition: bool,
}

fn parse_expand(query: &Query, type_name: &str) -> GraphResult<Expand> {
    let mut e = Expand {
        principal: false,
        role_definition: false,
    };
    if let Some(v) = query.get("$expand") {
        for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part.eq_ignore_ascii_case("principal") {
                e.principal = true;
            } else if part.eq_ignore_ascii_case("roleDefinition") {
                e.role_definition = true;
            } else {
                return Err(GraphError::bad_request(format!(
                    "Could not find a property named '{part}' on type '{type_name}'."
                )));
            }
        }
    }
    Ok(e)
}

fn principal_json(t: &Tenant, p: Principal) -> Value {
    match p {
        Principal::User(u) => {
            let u = &t.users[u];
            json!({
                "@odata.type": "#microsoft.graph.user",
                "id": u.id,
                "accountEnabled": u.account_enabled,
                "displayName": u.display_name,
                "userPrincipalName": u.upn,
                "mail": u.mail,
                "userType": u.user_type.clone().unwrap_or_else(|| "Member".into()),
            })
        }
        Principal::Group(g) => {
            let g = &t.groups[g];
            json!({
                "@odata.type": "#microsoft.graph.group",
                "id": g.id,
                "displayName": g.display_name,
                "isAssignableToRole": g.assignable_to_role,
                "securityEnabled": true,
                "mailEnabled": false,
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
    }
}

fn definition_json(t: &Tenant, i: usize) -> serde_json::Map<String, Value> {
    let d = &t.role_defs[i];
    let mut m = serde_json::Map::new();
    m.insert("id".into(), json!(d.id));
    m.insert("description".into(), json!(d.description));
    m.insert("displayName".into(), json!(d.display_name));
    m.insert("isBuiltIn".into(), json!(d.built_in));
    m.insert("isEnabled".into(), json!(d.enabled));
    m.insert("resourceScopes".into(), json!(["/"]));
    m.insert(
        "templateId".into(),
        if d.built_in { json!(d.id) } else { Value::Null },
    );
    m.insert("version".into(), json!("1"));
    m.insert(
        "rolePermissions".into(),
        json!([{"allowedResourceActions": d.actions, "condition": null}]),
    );
    m
}

/// Shared paging for the role collections (and the administrative units', `super::units`).
pub(crate) fn page(
    state: &AppState,
    uri: &Uri,
    query: &Query,
    total: usize,
    keep: &dyn Fn(usize) -> bool,
) -> GraphResult<(Vec<usize>, Option<usize>)> {
    let top = query.top(state.runtime.realism.role_page_size)?;
    let start = odata::page_start(uri.path(), query, &state.skip_secret)?;
    let p = super::users::page_over(total, &|i| i, keep, start, top, false, true);
    Ok((p.items, p.next))
}

fn assignment_like(
    state: &AppState,
    caller: &Caller,
    uri: &Uri,
    eligible: bool,
) -> GraphResult<Response> {
    let (perms, resource, type_name, context_name) = if eligible {
        (
            READ_ELIGIBILITY,
            "UnifiedRoleEligibilityScheduleInstance",
            "microsoft.graph.unifiedRoleEligibilityScheduleInstance",
            "roleManagement/directory/roleEligibilityScheduleInstances",
        )
    } else {
        (
            READ_ROLES,
            "UnifiedRoleAssignment",
            "microsoft.graph.unifiedRoleAssignment",
            "roleManagement/directory/roleAssignments",
        )
    };
    if !caller.has_any(perms) {
        return Err(GraphError::insufficient_privileges());
    }
    let query = Query::parse(uri.query())?;
    query.refuse_unimplemented(&["$select", "$top", "$filter", "$expand", "$skiptoken"])?;
    let (props, default) = if eligible {
        (ELIGIBILITY_PROPS, ELIGIBILITY_DEFAULT)
    } else {
        (ASSIGNMENT_PROPS, ASSIGNMENT_DEFAULT)
    };
    let props = odata::select(&query, props, default, type_name)?;
    let expand = parse_expand(&query, type_name)?;
    let filter = odata::checked_filter(&query, ROW_FILTERS, resource)?;
    let store = state.read();
    let t = &store.tenants[caller.tenant];
    if !delegated_role_ok(caller, t, !eligible) {
        return Err(GraphError::insufficient_privileges());
    }
    if eligible && !t.pim_license {
        return Err(license_required());
    }
    let list = if eligible {
        &t.eligibilities
    } else {
        &t.assignments
    };
    let all = rows(t, list, eligible);
    let keep = |i: usize| {
        filter
            .as_ref()
            .is_none_or(|f| odata::eval(f, &|p| row_val(&all[i], p)))
    };
    let (items, next) = page(state, uri, &query, all.len(), &keep)?;
    let value: Vec<Value> = items
        .iter()
        .map(|&i| {
            let r = &all[i];
            let mut m = odata::render(r, &props);
            if expand.principal {
                m.insert("principal".into(), principal_json(t, r.principal));
            }
            if expand.role_definition {
                m.insert(
                    "roleDefinition".into(),
                    Value::Object(definition_json(t, r.role)),
                );
            }
            debug_assert_eq!(r.eligible, eligible);
            Value::Object(m)
        })
        .collect();
    drop(store);
    let mut context = context_name.to_owned();
    let expanded: Vec<&str> = [
        (expand.principal, "principal()"),
        (expand.role_definition, "roleDefinition()"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, s)| *s)
    .collect();
    if !expanded.is_empty() {
        context.push_str(&format!("({})", expanded.join(",")));
    }
    Ok(super::users::collection(
        state, uri, &query, &context, value, next, None,
    ))
}

/// `GET /roleManagement/directory/roleAssignments`.
pub async fn role_assignments(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> GraphResult<Response> {
    assignment_like(&state, &caller, &uri, false)
}

/// `GET /roleManagement/directory/roleEligibilityScheduleInstances`.
pub async fn eligibility_instances(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> GraphResult<Response> {
    assignment_like(&state, &caller, &uri, true)
}

const DEFINITION_FILTERS: &[FilterRule] = &[
    eq_rule("id"),
    eq_rule("displayName"),
    eq_rule("isBuiltIn"),
    eq_rule("templateId"),
];

/// `GET /roleManagement/directory/roleDefinitions`.
pub async fn role_definitions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> GraphResult<Response> {
    if !caller.has_any(READ_ROLES) {
        return Err(GraphError::insufficient_privileges());
    }
    let query = Query::parse(uri.query())?;
    query.refuse_unimplemented(&["$select", "$top", "$filter", "$skiptoken"])?;
    let filter = odata::checked_filter(&query, DEFINITION_FILTERS, "UnifiedRoleDefinition")?;
    let select = Selected::parse(&query);
    let store = state.read();
    let t = &store.tenants[caller.tenant];
    if !delegated_role_ok(&caller, t, true) {
        return Err(GraphError::insufficient_privileges());
    }
    let keep = |i: usize| {
        let d = &t.role_defs[i];
        filter.as_ref().is_none_or(|f| {
            odata::eval(f, &|p| match p.to_ascii_lowercase().as_str() {
                "id" => Val::Str(Some(&d.id)),
                "displayname" => Val::Str(Some(&d.display_name)),
                "isbuiltin" => Val::Bool(Some(d.built_in)),
                "templateid" => Val::Str(d.built_in.then_some(d.id.as_str())),
                _ => Val::Str(None),
            })
        })
    };
    let (items, next) = page(&state, &uri, &query, t.role_defs.len(), &keep)?;
    let value: Vec<Value> = items
        .iter()
        .map(|&i| {
            let mut v = Value::Object(definition_json(t, i));
            select.apply(&mut v);
            v
        })
        .collect();
    drop(store);
    Ok(super::users::collection(
        &state,
        &uri,
        &query,
        "roleManagement/directory/roleDefinitions",
        value,
        next,
        None,
    ))
}

const READ_DOMAINS: &[&str] = &[
    "Domain.Read.All",
    "Domain.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "Directory.AccessAsUser.All",
];

fn domain_json(t: &Tenant, d: &str) -> Value {
    let initial = d == t.initial_domain;
    let default = match &t.default_domain {
        Some(x) => x == d,
        None => initial,
    };
    json!({
        "authenticationType": if t.federated_domains.iter().any(|f| f == d) { "Federated" } else { "Managed" },
        "availabilityStatus": null,
        "id": d,
        "isAdminManaged": !initial,
        "isDefault": default,
        "isInitial": initial,
        "isRoot": true,
        "isVerified": true,
        "passwordNotificationWindowInDays": 14,
        "passwordValidityPeriodInDays": 2147483647,
        "supportedServices": if initial { json!(["Email", "OfficeCommunicationsOnline"]) } else { json!(["Email"]) },
        "state": null,
    })
}

/// A `$select` of the simple collections here (role management, organization, domains): the
/// properties asked for, lower-cased; `id` is always kept.
struct Selected(Option<Vec<String>>);

impl Selected {
    fn parse(query: &Query) -> Self {
        Selected(
            query
                .get("$select")
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.split(',').map(|p| p.trim().to_lowercase()).collect()),
        )
    }

    /// Drops the properties of `v` (an object) that were not selected.
    fn apply(&self, v: &mut Value) {
        if let (Some(sel), Some(m)) = (&self.0, v.as_object_mut()) {
            m.retain(|k, _| k == "id" || sel.contains(&k.to_lowercase()));
        }
    }
}

fn all_domains(t: &Tenant) -> Vec<String> {
    std::iter::once(t.initial_domain.clone())
        .chain(t.domains.iter().cloned())
        .collect()
}

const READ_ORGANIZATION: &[&str] = &[
    "Organization.Read.All",
    "Directory.Read.All",
    "Organization.ReadWrite.All",
    "Directory.ReadWrite.All",
];

/// `GET /organization`: a collection of exactly one organization, the caller's tenant.
pub async fn list_organization(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> GraphResult<Response> {
    let delegated_user_read = !caller.is_app() && caller.has_any(&["User.Read"]);
    if !caller.has_any(READ_ORGANIZATION) && !delegated_user_read {
        return Err(GraphError::insufficient_privileges());
    }
    let query = Query::parse(uri.query())?;
    query.refuse_unimplemented(&["$select"])?;
    let select = Selected::parse(&query);
    let store = state.read();
    let t = &store.tenants[caller.tenant];
    let verified: Vec<Value> = all_domains(t)
        .iter()
        .map(|d| {
            let initial = *d == t.initial_domain;
            json!({
                "capabilities": if initial { "Email, OfficeCommunicationsOnline" } else { "Email" },
                "isDefault": t.default_domain.as_ref().map_or(initial, |x| x == d),
                "isInitial": initial,
                "name": d,
                "type": if t.federated_domains.iter().any(|f| f == d) { "Federated" } else { "Managed" },
            })
        })
        .collect();
    let mut org = json!({
        "id": t.id,
        "displayName": t.display_name,
        "tenantType": "AAD",
        "verifiedDomains": verified,
    });
    select.apply(&mut org);
    drop(store);
    Ok(super::users::collection(
        &state,
        &uri,
        &query,
        "organization",
        vec![org],
        None,
        None,
    ))
}

/// `GET /domains`.
pub async fn list_domains(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> GraphResult<Response> {
    if !caller.has_any(READ_DOMAINS) {
        return Err(GraphError::insufficient_privileges());
    }
    let query = Query::parse(uri.query())?;
    query.refuse_unimplemented(&["$select"])?;
    let select = Selected::parse(&query);
    let store = state.read();
    let t = &store.tenants[caller.tenant];
    let value: Vec<Value> = all_domains(t)
        .iter()
        .map(|d| {
            let mut v = domain_json(t, d);
            select.apply(&mut v);
            v
        })
        .collect();
    drop(store);
    Ok(super::users::collection(
        &state, &uri, &query, "domains", value, None, None,
    ))
}

/// `GET /domains/{id}`.
pub async fn get_domain(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    GraphPath(id): GraphPath<String>,
    uri: Uri,
) -> GraphResult<Response> {
    if !caller.has_any(READ_DOMAINS) {
        return Err(GraphError::insufficient_privileges());
    }
    let store = state.read();
    let t = &store.tenants[caller.tenant];
    let Some(d) = all_domains(t)
        .into_iter()
        .find(|d| d.eq_ignore_ascii_case(&id))
    else {
        return Err(GraphError::resource_not_found(&id));
    };
    let mut body = serde_json::Map::new();
    body.insert(
        "@odata.context".into(),
        json!(format!(
            "{}/{}/$metadata#domains/$entity",
            state.base_url,
            version(&uri)
        )),
    );
    if let Value::Object(m) = domain_json(t, &d) {
        body.extend(m);
    }
    Ok(axum::Json(Value::Object(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_keeps_the_id_and_what_was_asked_case_insensitively() {
        let obj = || json!({"id": "1", "displayName": "A", "isBuiltIn": true, "templateId": "t"});
        let q = Query::parse(Some("$select=DISPLAYNAME, templateId")).unwrap();
        let mut v = obj();
        Selected::parse(&q).apply(&mut v);
        assert_eq!(v, json!({"id": "1", "displayName": "A", "templateId": "t"}));
        // no `$select` (or an empty one): everything
        for raw in [None, Some("$select=")] {
            let mut v = obj();
            Selected::parse(&Query::parse(raw).unwrap()).apply(&mut v);
            assert_eq!(v, obj());
        }
    }
}
