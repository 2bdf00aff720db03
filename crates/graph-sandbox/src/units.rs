//! Administrative units with restricted management, and PIM for Groups.
//!
//! - `GET /directory/administrativeUnits` ("List administrativeUnits",
//!   <https://learn.microsoft.com/en-us/graph/api/directory-list-administrativeunits>): `id`,
//!   `displayName`, `isMemberManagementRestricted`; `$filter` `eq` on
//!   `isMemberManagementRestricted`, `displayName`, `id`; paged (`--role-page-size`).
//!   `GET /directory/administrativeUnits/{id}/members` ("List members",
//!   <https://learn.microsoft.com/en-us/graph/api/administrativeunit-list-members>): the unit's
//!   users, paged. Both need `AdministrativeUnit.Read.All`, `AdministrativeUnit.ReadWrite.All`,
//!   `Directory.Read.All` or `Directory.ReadWrite.All`, else 403.
//! - A member of a restricted management unit can be changed only by an administrator scoped to
//!   the unit ("Restricted management administrative units in Microsoft Entra ID",
//!   <https://learn.microsoft.com/en-us/entra/identity/role-based-access-control/admin-units-restricted-management>):
//!   a password write (PATCH, resetPassword) from a caller without a role assignment scoped to
//!   `/administrativeUnits/{id}` gets 403 `Authorization_RequestDenied` ([`restricted_refusal`]).
//! - `GET /identityGovernance/privilegedAccess/group/eligibilityScheduleInstances` and
//!   `.../assignmentScheduleInstances` ("List eligibilityScheduleInstances",
//!   <https://learn.microsoft.com/en-us/graph/api/privilegedaccessgroup-list-eligibilityscheduleinstances>):
//!   the seed's `groupEligibilities` / `groupAssignments`; `$filter` on `groupId` or
//!   `principalId` is required (400 without); permission
//!   `PrivilegedEligibilitySchedule.Read.AzureADGroup` (or `...ReadWrite...`) for eligibilities,
//!   `PrivilegedAssignmentSchedule.Read.AzureADGroup` for assignments (`PrivilegedAccess.Read.AzureADGroup`
//!   for both); a tenant without a PIM licence answers as the role eligibilities do.

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Value};

use super::auth::{Caller, CallerKind};
use super::error::{GraphError, GraphPath, GraphResult};
use super::odata::{self, FilterRule, Query, Val};
use super::server::AppState;
use super::store::{Principal, Tenant};

const READ_UNITS: &[&str] = &[
    "AdministrativeUnit.Read.All",
    "AdministrativeUnit.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
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

const UNIT_FILTERS: &[FilterRule] = &[
    eq_rule("id"),
    eq_rule("displayName"),
    eq_rule("isMemberManagementRestricted"),
];

const SCHEDULE_FILTERS: &[FilterRule] = &[
    eq_rule("id"),
    eq_rule("groupId"),
    eq_rule("principalId"),
    eq_rule("accessId"),
];

/// `GET /directory/administrativeUnits`.
pub async fn list_units(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> GraphResult<Response> {
    if !caller.has_any(READ_UNITS) {
        return Err(GraphError::insufficient_privileges());
    }
    let query = Query::parse(uri.query())?;
    query.refuse_unimplemented(&["$select", "$top", "$filter", "$skiptoken"])?;
    let f = odata::checked_filter(&query, UNIT_FILTERS, "AdministrativeUnit")?;
    let store = state.read();
    let t = &store.tenants[caller.tenant];
    let keep = |i: usize| {
        let u = &t.admin_units[i];
        f.as_ref().is_none_or(|f| {
            odata::eval(f, &|p| match p.to_ascii_lowercase().as_str() {
                "id" => Val::Str(Some(&u.id)),
                "displayname" => Val::Str(Some(&u.display_name)),
                "ismembermanagementrestricted" => Val::Bool(Some(u.restricted)),
                _ => Val::Str(None),
            })
        })
    };
    let (items, next) = super::roles::page(&state, &uri, &query, t.admin_units.len(), &keep)?;
    let value: Vec<Value> = items
        .iter()
        .map(|&i| {
            let u = &t.admin_units[i];
            json!({
                "id": u.id,
                "displayName": u.display_name,
                "description": null,
                "visibility": null,
                "isMemberManagementRestricted": u.restricted,
            })
        })
        .collect();
    drop(store);
    Ok(super::users::collection(
        &state,
        &uri,
        &query,
        "directory/administrativeUnits",
        value,
        next,
        None,
    ))
}

/// `GET /directory/administrativeUnits/{id}/members`.
pub async fn list_unit_members(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    GraphPath(id): GraphPath<String>,
    uri: Uri,
) -> GraphResult<Response> {
    if !caller.has_any(READ_UNITS) {
        return Err(GraphError::insufficient_privileges());
    }
    let query = Query::parse(uri.query())?;
    query.refuse_unimplemented(&["$select", "$top", "$skiptoken"])?;
    let store = state.read();
    let t = &store.tenants[caller.tenant];
    let unit = t
        .admin_units
        .iter()
        .find(|u| u.id.eq_ignore_ascii_case(&id))
        .ok_or_else(|| GraphError::resource_not_found(&id))?;
    let (items, next) = super::roles::page(&state, &uri, &query, unit.members.len(), &|_| true)?;
    let value: Vec<Value> = items
        .iter()
        .map(|&i| {
            let u = &t.users[unit.members[i]];
            json!({
                "@odata.type": "#microsoft.graph.user",
                "id": u.id,
                "displayName": u.display_name,
                "userPrincipalName": u.upn,
            })
        })
        .collect();
    drop(store);
    Ok(super::users::collection(
        &state,
        &uri,
        &query,
        "directoryObjects",
        value,
        next,
        None,
    ))
}

/// The 403 for a password write to a member of a restricted management unit by a caller that
/// holds no role scoped to it; `None` when the write may go ahead.
pub fn restricted_refusal(t: &Tenant, caller: &Caller, user: usize) -> Option<GraphError> {
    let me = match &caller.kind {
        CallerKind::App { .. } => Principal::App(
            t.apps
                .iter()
                .position(|a| a.client_id.eq_ignore_ascii_case(&caller.app_id))?,
        ),
        CallerKind::Delegated { user, .. } => Principal::User(*user),
    };
    let blocked = t.admin_units.iter().any(|u| {
        u.restricted
            && u.members.contains(&user)
            && !t.assignments.iter().any(|a| {
                a.principal == me
                    && a.scope
                        .trim_start_matches("/administrativeUnits/")
                        .eq_ignore_ascii_case(&u.id)
            })
    });
    blocked.then(GraphError::insufficient_privileges)
}

/// `GET /identityGovernance/privilegedAccess/group/eligibilityScheduleInstances`.
pub async fn group_eligibilities(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> GraphResult<Response> {
    group_schedules(&state, &caller, &uri, true)
}

/// `GET /identityGovernance/privilegedAccess/group/assignmentScheduleInstances`.
pub async fn group_assignments(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> GraphResult<Response> {
    group_schedules(&state, &caller, &uri, false)
}

fn group_schedules(
    state: &AppState,
    caller: &Caller,
    uri: &Uri,
    eligible: bool,
) -> GraphResult<Response> {
    let perms: &[&str] = if eligible {
        &[
            "PrivilegedEligibilitySchedule.Read.AzureADGroup",
            "PrivilegedEligibilitySchedule.ReadWrite.AzureADGroup",
            "PrivilegedAccess.Read.AzureADGroup",
            "PrivilegedAccess.ReadWrite.AzureADGroup",
        ]
    } else {
        &[
            "PrivilegedAssignmentSchedule.Read.AzureADGroup",
            "PrivilegedAssignmentSchedule.ReadWrite.AzureADGroup",
            "PrivilegedAccess.Read.AzureADGroup",
            "PrivilegedAccess.ReadWrite.AzureADGroup",
        ]
    };
    if !caller.has_any(perms) {
        return Err(GraphError::insufficient_privileges());
    }
    let query = Query::parse(uri.query())?;
    query.refuse_unimplemented(&["$select", "$top", "$filter", "$skiptoken"])?;
    let resource = if eligible {
        "PrivilegedAccessGroupEligibilityScheduleInstance"
    } else {
        "PrivilegedAccessGroupAssignmentScheduleInstance"
    };
    let raw = query.get("$filter").unwrap_or("").to_ascii_lowercase();
    if !raw.contains("groupid") && !raw.contains("principalid") {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The filter on groupId or principalId is required.",
        ));
    }
    let f = odata::checked_filter(&query, SCHEDULE_FILTERS, resource)?;
    let store = state.read();
    let t = &store.tenants[caller.tenant];
    if !t.pim_license {
        return Err(super::roles::license_required());
    }
    let rows: Vec<usize> = (0..t.group_schedules.len())
        .filter(|&i| t.group_schedules[i].eligible == eligible)
        .collect();
    let keep = |i: usize| {
        let s = &t.group_schedules[rows[i]];
        f.as_ref().is_none_or(|f| {
            odata::eval(f, &|p| match p.to_ascii_lowercase().as_str() {
                "id" => Val::Str(Some(&s.id)),
                "groupid" => Val::Str(Some(&t.groups[s.group].id)),
                "principalid" => Val::Str(Some(&t.users[s.user].id)),
                "accessid" => Val::Str(Some(&s.access)),
                _ => Val::Str(None),
            })
        })
    };
    let (items, next) = super::roles::page(state, uri, &query, rows.len(), &keep)?;
    let value: Vec<Value> = items
        .iter()
        .map(|&i| {
            let s = &t.group_schedules[rows[i]];
            json!({
                "id": s.id,
                "groupId": t.groups[s.group].id,
                "principalId": t.users[s.user].id,
                "accessId": s.access,
                "memberType": "direct",
                "startDateTime": null,
                "endDateTime": null,
            })
        })
        .collect();
    drop(store);
    let context = if eligible {
        "identityGovernance/privilegedAccess/group/eligibilityScheduleInstances"
    } else {
        "identityGovernance/privilegedAccess/group/assignmentScheduleInstances"
    };
    Ok(super::users::collection(
        state, uri, &query, context, value, next, None,
    ))
}
