//! `POST /users/{id | upn}/authentication/methods/28c10230-6103-485e-b985-444c60001490/resetPassword`
//! and `GET /users/{id | upn}/authentication/operations/{id}`, on v1.0 and beta.
//!
//! Rules, from the reference page ("authenticationMethod: resetPassword",
//! <https://learn.microsoft.com/en-us/graph/api/authenticationmethod-resetpassword>) and the
//! pages it links:
//! - delegated tokens only: app-only tokens get 403 ("Application: Not supported");
//! - scope `UserAuthenticationMethod.ReadWrite.All`, and a role of the signed-in user:
//!   Authentication Administrator or Privileged Authentication Administrator (Global Administrator,
//!   and for non-admin targets User / Helpdesk / Password Administrator, also qualify: "Who can
//!   reset passwords"); an admin target (a user holding any role) needs Privileged Authentication
//!   Administrator or Global Administrator; otherwise 403;
//! - not on the caller's own account: **403** `accessDenied` (the page says it "can't be
//!   performed on a user's own account"; the sandbox treats it as an authorization refusal);
//! - a synced (hybrid) user needs `newPassword`: 400 without it;
//! - the password must pass the complexity rules (400 `Request_BadRequest`, Graph's message);
//! - `202 Accepted`, `Location: {graph}/{version}/users/{id}/authentication/operations/{opId}`,
//!   `Retry-After` (seconds, configurable); no body when `newPassword` was given, a
//!   `passwordResetResponse` with the generated password otherwise.
//!
//! Switches ([`super::Realism`]): `--reset-no-location` answers the 202 without `Location` (the
//! page marks it required but also says the response "may" include it); `--reset-fail` makes
//! every operation end `failed` (per user: the seed's `resetFails`); `--reset-location-query`
//! adds the query parameters real tenants put in `Location` (`?aadgdc=...&aadgsu=...`; the docs'
//! example has none); the operation URL answers with or without them. Status values are the documented camelCase ones.
//!
//! The operation goes `notStarted` (first third of its duration) -> `running` -> `succeeded`
//! (or `failed` for users seeded with `resetFails: true`, with a `statusDetail`). The change (new password,
//! `lastPasswordChangeDateTime`, and `forceChangePasswordNextSignIn = true`: "The user is prompted
//! to change their password on their next sign in") takes effect when it succeeds.

use super::error::GraphPath;
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chrono::SecondsFormat;
use serde_json::{json, Value};

use super::auth::{Caller, CallerKind};
use super::error::{GraphError, GraphResult};
use super::server::{version, AppState};
use super::store::{Operation, Role};
use super::users::WEAK_PASSWORD;

pub const PASSWORD_METHOD_ID: &str = "28c10230-6103-485e-b985-444c60001490";

fn access_denied() -> GraphError {
    GraphError::new(
        StatusCode::FORBIDDEN,
        "accessDenied",
        "Request Authorization failed",
    )
}

fn may_reset(roles: &[Role], target_is_admin: bool) -> bool {
    if target_is_admin {
        roles.iter().any(|r| {
            [
                Role::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR,
                Role::GLOBAL_ADMINISTRATOR,
            ]
            .contains(r)
        })
    } else {
        super::users::may_manage_password(roles, false)
    }
}

/// `POST .../authentication/methods/{passwordMethods-id}/resetPassword`.
pub async fn reset_password(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    GraphPath((key, method)): GraphPath<(String, String)>,
    uri: Uri,
    body: axum::body::Body,
) -> GraphResult<Response> {
    let CallerKind::Delegated { user: me, .. } = caller.kind else {
        return Err(access_denied());
    };
    if !caller.has_any(&["UserAuthenticationMethod.ReadWrite.All"]) {
        return Err(access_denied());
    }
    if !method.eq_ignore_ascii_case(PASSWORD_METHOD_ID) {
        return Err(GraphError::resource_not_found(&method));
    }
    let bytes = super::error::read_body(body, state.runtime.max_body_bytes).await?;
    let v = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        super::error::parse_json(&bytes)?
    };
    let Value::Object(fields) = v else {
        return Err(GraphError::bad_request(
            "The request payload must be a JSON object.",
        ));
    };
    let mut new_password: Option<String> = None;
    for (k, v) in &fields {
        match (k.as_str(), v) {
            ("newPassword", Value::String(s)) => new_password = Some(s.clone()),
            ("newPassword", Value::Null) => {}
            ("newPassword", _) => {
                return Err(GraphError::bad_request(
                    "Invalid value for parameter 'newPassword': a string is expected.",
                ))
            }
            (other, _) => {
                return Err(GraphError::bad_request(format!(
                    "The parameter '{other}' in the request payload is not a valid parameter for the operation 'resetPassword'."
                )))
            }
        }
    }

    let ver = version(&uri);
    let mut store = state.write();
    let roles = caller.roles(&store.tenants[caller.tenant]);
    let t = &mut store.tenants[caller.tenant];
    let target = t
        .user_index(&key)
        .ok_or_else(|| GraphError::resource_not_found(&key))?;
    if target == me {
        return Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "accessDenied",
            "A password reset can't be performed on the caller's own account.",
        ));
    }
    let privileged = t.is_privileged(target);
    let u = &t.users[target];
    if !may_reset(&roles, privileged) {
        return Err(access_denied());
    }
    if let Some(e) = super::units::restricted_refusal(t, &caller, target) {
        return Err(e);
    }
    let generated = match &new_password {
        Some(pw) => {
            if !crate::password::acceptable(pw, u.strong_password_required()) {
                return Err(GraphError::request_bad_request(WEAK_PASSWORD));
            }
            None
        }
        None if u.is_synced() => {
            return Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "badRequest",
                "A new password must be provided for users whose password is managed on-premises (hybrid password scenario).",
            ))
        }
        None => Some(crate::password::system_generated()),
    };
    let password_hash = super::seed::password_hash(
        new_password
            .as_deref()
            .or(generated.as_deref())
            .unwrap_or_default(),
    );
    let op_id = uuid::Uuid::new_v4().to_string();
    let duration = chrono::Duration::from_std(state.runtime.reset_operation_duration)
        .unwrap_or_else(|_| chrono::Duration::milliseconds(200));
    let user_id = u.id.clone();
    let upn = u.upn.clone();
    t.operations.insert(
        op_id.clone(),
        Operation {
            id: op_id.clone(),
            user: target,
            created: state.now(),
            duration,
            new_password_sha256: password_hash,
            fails: u.reset_fails || state.runtime.realism.reset_fail,
            settled: false,
        },
    );
    t.pending_operations.push(op_id.clone());
    drop(store);
    *state.stats().resets_per_user.entry(upn).or_default() += 1;

    // Real tenants' Location carries routing query parameters (the docs' example has none).
    let query = if state.runtime.realism.reset_location_query {
        "?aadgdc=DUB02P&aadgsu=ssprprod-a"
    } else {
        ""
    };
    let location = format!(
        "{}/{ver}/users/{user_id}/authentication/operations/{op_id}{query}",
        state.base_url
    );
    let retry = state.runtime.reset_retry_after.to_string();
    let mut resp = match generated {
        None => StatusCode::ACCEPTED.into_response(),
        Some(pw) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({
                "@odata.context": format!("{}/{ver}/$metadata#microsoft.graph.passwordResetResponse", state.base_url),
                "newPassword": pw,
            })),
        )
            .into_response(),
    };
    let h = resp.headers_mut();
    if !state.runtime.realism.reset_no_location {
        if let Ok(v) = header::HeaderValue::from_str(&location) {
            h.insert(header::LOCATION, v);
        }
    }
    if let Ok(v) = header::HeaderValue::from_str(&retry) {
        h.insert(header::RETRY_AFTER, v);
    }
    Ok(resp)
}

/// `GET .../authentication/operations/{id}`.
pub async fn operation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    GraphPath((key, op_id)): GraphPath<(String, String)>,
    uri: Uri,
) -> GraphResult<Response> {
    if caller.is_app()
        || !caller.has_any(&[
            "UserAuthenticationMethod.ReadWrite.All",
            "UserAuthenticationMethod.Read.All",
        ])
    {
        return Err(access_denied());
    }
    // `now` is taken before settling, so an operation reported as succeeded is already applied.
    let now = state.now();
    super::server::settle_all(&state);
    let store = state.read();
    let t = &store.tenants[caller.tenant];
    let target = t
        .user_index(&key)
        .ok_or_else(|| GraphError::resource_not_found(&key))?;
    let op = t
        .operations
        .get(&op_id)
        .filter(|op| op.user == target)
        .ok_or_else(|| GraphError::resource_not_found(&op_id))?;
    let ver = version(&uri);
    let status = op.status_at(now);
    let user_id = &t.users[target].id;
    let body = json!({
        "@odata.context": format!("{}/{ver}/$metadata#users('{user_id}')/authentication/operations/$entity", state.base_url),
        "id": op.id,
        "createdDateTime": op.created.to_rfc3339_opts(SecondsFormat::Millis, true),
        "lastActionDateTime": op.last_action_at(now).to_rfc3339_opts(SecondsFormat::Millis, true),
        "resourceLocation": format!("{}/{ver}/users/{user_id}/authentication/methods/{PASSWORD_METHOD_ID}", state.base_url),
        "status": status.as_str(),
        "statusDetail": match status {
            super::store::OpStatus::Failed => Value::String("The password could not be reset.".into()),
            _ => Value::Null,
        },
    });
    Ok(axum::Json(body).into_response())
}
