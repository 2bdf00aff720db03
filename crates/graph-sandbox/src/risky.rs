//! Identity Protection's risky users: `GET /identityProtection/riskyUsers` (v1.0 and beta).
//!
//! Written from Microsoft's v1.0 pages "riskyUser resource type" and "List riskyUsers"
//! (<https://learn.microsoft.com/en-us/graph/api/riskyuser-list>), with wire types of its own:
//!
//! - a `riskyUser` has `id` (the user's object id), `isDeleted`, `isProcessing`, `riskDetail`,
//!   `riskLastUpdatedDateTime`, `riskLevel` (`low`, `medium`, `high`, `hidden`, `none`,
//!   `unknownFutureValue`), `riskState` (`none`, `confirmedSafe`, `remediated`, `dismissed`,
//!   `atRisk`, `confirmedCompromised`, `unknownFutureValue`), `userDisplayName`,
//!   `userPrincipalName`; the seed's `riskyUsers` of a tenant (`userDisplayName` and
//!   `userPrincipalName` those of the user when it was seeded; `isDeleted` once the user is gone);
//! - `$filter` with `eq` on `riskLevel`, `riskState`, `id`, `userPrincipalName`, joined by
//!   `and` (any other operator: 400 `Request_UnsupportedQuery`); `$select`; `$top` (1..999);
//!   pages with `@odata.nextLink` (page size `--risky-page-size`, default 20: the real default
//!   is undocumented);
//! - permission: `IdentityRiskyUser.Read.All` or `IdentityRiskyUser.ReadWrite.All`, else 403
//!   `Authorization_RequestDenied` (an app seeded without it is the switch);
//! - licence: the tenant needs Microsoft Entra ID P2 ("Microsoft Entra ID Protection", license
//!   requirements). Without it (seed `identityProtectionLicense: false`,
//!   `--no-identity-protection-license`) the sandbox answers **403 `Forbidden`, "Your tenant is
//!   not licensed for this feature."**: the exact body is not documented and no public report
//!   quoting it was found; the status is the one public reports give (403 on riskyUsers), the
//!   text is the sandbox's guess;
//! - limit: "Identity protection and conditional access service limits" (Microsoft Graph
//!   service-specific throttling limits): 1 request per second per tenant, for all apps
//!   together, and the 429 carries no `Retry-After`. The sandbox admits one riskyUsers request
//!   per tenant per second (requests refused with 429 do not count) unless
//!   `--no-identity-protection-limit`.
//!
//! Delegated callers' directory roles (Security Reader and the like) are not checked.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::{GraphError, GraphResult};
use super::odata::property;
use super::odata::{self, Filter, FilterRule, Op, Property, Query, Val};
use super::seed::{SeedRiskyUser, SeedTenant};
use super::server::AppState;
use super::store::Tenant;

/// The documented `riskLevel` values (`unknownFutureValue` is a sentinel, never seeded).
const LEVELS: &[&str] = &["low", "medium", "high", "hidden", "none"];
/// The documented `riskState` values.
const STATES: &[&str] = &[
    "none",
    "confirmedSafe",
    "remediated",
    "dismissed",
    "atRisk",
    "confirmedCompromised",
];
/// The permissions that may list risky users.
const READ: &[&str] = &[
    "IdentityRiskyUser.Read.All",
    "IdentityRiskyUser.ReadWrite.All",
];
/// Identity Protection's limit: one request per second per tenant.
const INTERVAL: Duration = Duration::from_secs(1);

/// One risky user.
#[derive(Clone, Debug)]
pub struct RiskyRecord {
    pub user_id: String,
    pub upn: String,
    pub display_name: String,
    pub level: String,
    pub state: String,
    pub detail: String,
    pub updated: DateTime<Utc>,
    pub processing: bool,
    /// How the seed named the user (kept in a saved state).
    seed_key: String,
}

/// A tenant's risky users, its licence and the time of the last admitted request.
#[derive(Debug)]
pub struct RiskyUsers {
    pub records: Vec<RiskyRecord>,
    pub licensed: bool,
    last_admitted: Option<Instant>,
}

impl Default for RiskyUsers {
    fn default() -> Self {
        RiskyUsers {
            records: Vec::new(),
            licensed: true,
            last_admitted: None,
        }
    }
}

type ErrFn<'a> = dyn Fn(String, String) -> super::seed::SeedError + 'a;

impl RiskyUsers {
    /// The seed's `riskyUsers` of `st`, resolved against the users of `t`.
    pub fn from_seed(
        t: &Tenant,
        st: &SeedTenant,
        at: &str,
        err: &ErrFn,
    ) -> Result<RiskyUsers, super::seed::SeedError> {
        let mut records: Vec<RiskyRecord> = Vec::with_capacity(st.risky_users.len());
        for (i, r) in st.risky_users.iter().enumerate() {
            let at = format!("{at}.riskyUsers[{i}]");
            let Some(u) = t.user_index(&r.user) else {
                return Err(err(
                    format!("{at}.user"),
                    format!("'{}' is not a user of this tenant", r.user),
                ));
            };
            let level = LEVELS
                .iter()
                .find(|l| l.eq_ignore_ascii_case(&r.risk_level))
                .ok_or_else(|| {
                    err(
                        format!("{at}.riskLevel"),
                        format!("'{}' is not one of {}", r.risk_level, LEVELS.join(", ")),
                    )
                })?;
            let state = STATES
                .iter()
                .find(|s| s.eq_ignore_ascii_case(&r.risk_state))
                .ok_or_else(|| {
                    err(
                        format!("{at}.riskState"),
                        format!("'{}' is not one of {}", r.risk_state, STATES.join(", ")),
                    )
                })?;
            let user = &t.users[u];
            if records.iter().any(|x| x.user_id == user.id) {
                return Err(err(
                    format!("{at}.user"),
                    format!("'{}' is already a risky user", r.user),
                ));
            }
            records.push(RiskyRecord {
                user_id: user.id.clone(),
                upn: user.upn.clone(),
                display_name: user.display_name.clone(),
                level: (*level).to_owned(),
                state: (*state).to_owned(),
                detail: r.risk_detail.clone().unwrap_or_else(|| "none".to_owned()),
                updated: r
                    .risk_last_updated_date_time
                    .unwrap_or_else(|| Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()),
                processing: r.is_processing.unwrap_or(false),
                seed_key: r.user.clone(),
            });
        }
        Ok(RiskyUsers {
            records,
            licensed: st.identity_protection_license.unwrap_or(true),
            last_admitted: None,
        })
    }

    /// Back to the seed form (for `--state`).
    pub fn to_seed(&self) -> Vec<SeedRiskyUser> {
        self.records
            .iter()
            .map(|r| SeedRiskyUser {
                user: r.seed_key.clone(),
                risk_level: r.level.clone(),
                risk_state: r.state.clone(),
                risk_detail: (r.detail != "none").then(|| r.detail.clone()),
                risk_last_updated_date_time: Some(r.updated),
                is_processing: r.processing.then_some(true),
            })
            .collect()
    }

    /// Admits a request at `now` under the limit of one per second (a refused one does not
    /// count).
    fn admit(&mut self, now: Instant) -> bool {
        match self.last_admitted {
            Some(last) if now.saturating_duration_since(last) < INTERVAL => false,
            _ => {
                self.last_admitted = Some(now);
                true
            }
        }
    }
}

/// A row, owned so that the generic `$select` machinery applies: the record and whether its
/// user is gone.
struct Row {
    r: RiskyRecord,
    deleted: bool,
}

static PROPS: &[Property<Row>] = &[
    property!("id", |x| json!(x.r.user_id)),
    property!("isDeleted", |x| json!(x.deleted)),
    property!("isProcessing", |x| json!(x.r.processing)),
    property!("riskLastUpdatedDateTime", |x| json!(x
        .r
        .updated
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true))),
    property!("riskLevel", |x| json!(x.r.level)),
    property!("riskState", |x| json!(x.r.state)),
    property!("riskDetail", |x| json!(x.r.detail)),
    property!("userDisplayName", |x| json!(x.r.display_name)),
    property!("userPrincipalName", |x| json!(x.r.upn)),
];
const DEFAULT: &[&str] = &[
    "id",
    "isDeleted",
    "isProcessing",
    "riskLastUpdatedDateTime",
    "riskLevel",
    "riskState",
    "riskDetail",
    "userDisplayName",
    "userPrincipalName",
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
const FILTERS: &[FilterRule] = &[
    eq_rule("riskLevel"),
    eq_rule("riskState"),
    eq_rule("id"),
    eq_rule("userPrincipalName"),
];

/// Whether `f` is comparisons with `eq` joined by `and`.
fn eq_and_only(f: &Filter) -> bool {
    match f {
        Filter::And(a, b) => eq_and_only(a) && eq_and_only(b),
        Filter::Cmp { op: Op::Eq, .. } => true,
        _ => false,
    }
}

fn row_val<'a>(x: &'a Row, prop: &str) -> Val<'a> {
    match prop.to_ascii_lowercase().as_str() {
        "risklevel" => Val::Str(Some(&x.r.level)),
        "riskstate" => Val::Str(Some(&x.r.state)),
        "id" => Val::Str(Some(&x.r.user_id)),
        "userprincipalname" => Val::Str(Some(&x.r.upn)),
        _ => Val::Str(None),
    }
}

/// 403 for a tenant without Entra ID P2 (see the module documentation: the text is a guess).
pub fn license_required() -> GraphError {
    GraphError::new(
        StatusCode::FORBIDDEN,
        "Forbidden",
        "Your tenant is not licensed for this feature.",
    )
}

/// 429 without `Retry-After`: Identity Protection's answer past its limit.
fn too_many() -> Response {
    let ids = super::error::current_ids();
    let date = ids.date.format("%Y-%m-%dT%H:%M:%S").to_string();
    let body = super::throttle::too_many_requests_body(
        &ids.request_id,
        Some(&ids.client_request_id),
        &date,
    );
    (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response()
}

/// `GET /identityProtection/riskyUsers`.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> GraphResult<Response> {
    if !caller.has_any(READ) {
        return Err(GraphError::insufficient_privileges());
    }
    let query = Query::parse(uri.query())?;
    query.refuse_unimplemented(&["$select", "$top", "$filter", "$skiptoken"])?;
    let props = odata::select(&query, PROPS, DEFAULT, "riskyUser")?;
    let filter = odata::checked_filter(&query, FILTERS, "riskyUser")?;
    if filter.as_ref().is_some_and(|f| !eq_and_only(f)) {
        return Err(GraphError::unsupported_query(
            "Invalid filter clause: only 'eq' comparisons joined by 'and' are supported on riskyUsers.",
        ));
    }
    let realism = &state.runtime.realism;
    let mut store = state.write();
    let t = &mut store.tenants[caller.tenant];
    if !realism.no_identity_protection_limit && !t.risky.admit(Instant::now()) {
        return Ok(too_many());
    }
    if !t.risky.licensed || realism.no_identity_protection_license {
        return Err(license_required());
    }
    let rows: Vec<Row> = t
        .risky
        .records
        .iter()
        .map(|r| Row {
            r: r.clone(),
            deleted: t.user_by_id(&r.user_id).is_none(),
        })
        .collect();
    let keep = |i: usize| {
        filter
            .as_ref()
            .is_none_or(|f| odata::eval(f, &|p| row_val(&rows[i], p)))
    };
    let top = query.top(realism.risky_page_size.max(1))?;
    let start = odata::page_start(uri.path(), &query, &state.skip_secret)?;
    let p = super::users::page_over(rows.len(), &|i| i, &keep, start, top, false, true);
    let value: Vec<Value> = p
        .items
        .iter()
        .map(|&i| Value::Object(odata::render(&rows[i], &props)))
        .collect();
    drop(store);
    Ok(super::users::collection(
        &state,
        &uri,
        &query,
        "identityProtection/riskyUsers",
        value,
        p.next,
        None,
    ))
}
