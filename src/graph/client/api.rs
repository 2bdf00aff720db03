//! The endpoint catalogue: the Graph calls pwdrift makes (list and look up users, groups and
//! their transitive members, activated directory roles, `/me`, `passwordProfile` PATCHes singly
//! or by `$batch`, `resetPassword` and polling its operation), each written on the executor and
//! the `$batch` queue, with the result type of a reset ([`ResetOutcome`]).

use std::time::Duration;

use reqwest::Method;
use secrecy::SecretString;

use super::error::{decode, error_from, error_from_inner, escape_for_message};
use super::execute::{header_str, Pool, Req, WriteSlot};
use super::key::UserKey;
use super::parse::batch_user;
use super::urls::{encode_query_value, encode_segment, user_path};
use super::{GraphClient, GraphError};
use crate::graph::model::{
    AdministrativeUnit, BatchRequest, DirectoryObjectRef, Domain, GraphGroup, GraphUser,
    GroupScheduleInstance, LongRunningOperation, Organization, PasswordProfile,
    PasswordResetResponse, ResetPasswordRequest, RoleAssignment, RoleDefinition, PAGE_SIZE,
    PASSWORD_METHOD_ID, USER_SELECT,
};
use crate::graph::redact;
use crate::graph::retry::parse_retry_after;

/// The answer to a resetPassword (a 202): the generated password if the service made one, and
/// where to poll. The password is returned even when the `Location` is missing or unusable, so
/// that the caller can record it before anything else can fail. `Debug` redacts the password (a
/// [`SecretString`]).
#[derive(Clone, Debug)]
pub struct ResetOutcome {
    /// `Location` of the `passwordResetOperation` (absolute URL, on the Graph origin), or why
    /// there is none to poll (absent, or on another origin).
    pub location: Result<String, GraphError>,
    pub retry_after: Option<Duration>,
    pub generated_password: Option<SecretString>,
    /// When the 202 carries no generated password: what it carried instead (an empty body, JSON
    /// without a string `newPassword`, a body of another content type), in words without the
    /// body itself. `None` when a password was read.
    pub no_password: Option<String>,
    /// The `Date` of the 202: Graph's clock when it accepted the reset (compare
    /// `lastPasswordChangeDateTime` with this, not with the local clock).
    pub server_date: Option<chrono::DateTime<chrono::Utc>>,
}

/// What a resetPassword 202 body without a readable `newPassword` holds, in words (never the
/// body itself, which may hold a secret).
fn odd_reset_body(status: u16, content_type: &str, body: &[u8]) -> String {
    let json = content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    let shape = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) if m.contains_key("newPassword") => {
            "JSON whose newPassword is not a string"
        }
        Ok(serde_json::Value::Object(_)) => "JSON without newPassword",
        Ok(_) => "JSON that is not an object",
        Err(_) => "a body that is not JSON",
    };
    let ct = if content_type.is_empty() {
        "no content type".to_owned()
    } else {
        format!("content type {}", escape_for_message(content_type, 80))
    };
    format!(
        "HTTP {status} with {shape} ({ct}{})",
        if json { "" } else { ", not application/json" }
    )
}

impl GraphClient {
    /// Every user (or those matching the OData `filter`), with exactly [`USER_SELECT`], 999 per page.
    pub async fn list_users(
        &self,
        tenant: &str,
        filter: Option<&str>,
    ) -> Result<Vec<GraphUser>, GraphError> {
        self.list_users_selecting(tenant, filter, USER_SELECT).await
    }

    /// [`Self::list_users`] with another `$select` (`pwdrift import` reads `displayName` too:
    /// [`crate::graph::model::IMPORT_USER_SELECT`]).
    pub async fn list_users_selecting(
        &self,
        tenant: &str,
        filter: Option<&str>,
        select: &str,
    ) -> Result<Vec<GraphUser>, GraphError> {
        let mut q = format!("users?$select={select}&$top={PAGE_SIZE}");
        let mut headers = Vec::new();
        if let Some(f) = filter {
            q.push_str("&$filter=");
            q.push_str(&encode_query_value(f));
            if needs_advanced_query(f) {
                // `ne`, `not` and `endsWith` on users are advanced queries ("Advanced query
                // capabilities on Microsoft Entra ID objects")
                q.push_str("&$count=true");
                headers.push(("ConsistencyLevel", "eventual"));
            }
        }
        let users: Vec<GraphUser> = self.get_paged_with(tenant, self.url(&q)?, headers).await?;
        if filter.is_none() {
            // every user: the tenant's size, which its resource-unit quota depends on
            self.note_tenant_users(tenant, users.len());
        }
        Ok(users)
    }

    /// The object ids of the users matching `filter` (sent as written; `ConsistencyLevel:
    /// eventual` and `$count=true` added when it is an advanced query), `$select=id` only: the
    /// index behind an eventual read can lag writes, so it selects who, never the state that
    /// decides a write (read that from `/users` without the header).
    pub async fn user_ids_matching(
        &self,
        tenant: &str,
        filter: &str,
    ) -> Result<Vec<String>, GraphError> {
        Ok(self
            .list_users_selecting(tenant, Some(filter), "id")
            .await?
            .into_iter()
            .map(|u| u.id)
            .collect())
    }

    /// The users Identity Protection reports at risk (`GET /identityProtection/riskyUsers`,
    /// `$filter=riskState eq 'atRisk'`; "List riskyUsers",
    /// <https://learn.microsoft.com/en-us/graph/api/riskdetection-list-riskyusers>), every page.
    /// Identity Protection allows 1 request per second per tenant, and its 429s carry no
    /// `Retry-After` ("Microsoft Graph service-specific throttling limits", identity protection
    /// and conditional access): pages are asked [`RISKY_USERS_INTERVAL`] apart, and a 429 is
    /// retried with the jittered backoff. Needs IdentityRiskyUser.Read.All and an Entra ID P2
    /// licence (a 403 otherwise).
    pub async fn risky_users_at_risk(
        &self,
        tenant: &str,
    ) -> Result<Vec<crate::graph::model::RiskyUser>, GraphError> {
        let filter = encode_query_value("riskState eq 'atRisk'");
        let mut next = Some(self.url(&format!(
            "identityProtection/riskyUsers?$filter={filter}&$select=id,userPrincipalName,riskLevel,riskState"
        ))?);
        let mut out = Vec::new();
        let mut pages = 0usize;
        while let Some(url) = next.take() {
            if pages > 0 {
                tokio::time::sleep(RISKY_USERS_INTERVAL).await;
            }
            pages += 1;
            if pages > self.inner.options.max_pages {
                return Err(GraphError::Decode {
                    what: url.path().to_owned(),
                    message: "too many pages of riskyUsers; stopped".into(),
                });
            }
            let page: crate::graph::model::Page<crate::graph::model::RiskyUser> =
                self.get_json(tenant, url).await?;
            out.extend(page.value);
            if let Some(link) = page.next_link {
                next = Some(self.same_origin_url(&link)?);
            }
        }
        Ok(out)
    }

    /// Reads the given users by `$batch` (20 per envelope): by id or UPN with `GET /users/{key}`,
    /// by SID with a `$filter` on `onPremisesSecurityIdentifier`. Results are in the order of
    /// `keys`; a missing user is `Err(NotFound)` for its key. The outer error is for failures
    /// that are not about one user (authentication).
    pub async fn get_users_by_batch(
        &self,
        tenant: &str,
        keys: &[UserKey],
    ) -> Result<Vec<(UserKey, Result<GraphUser, GraphError>)>, GraphError> {
        self.get_users_by_batch_selecting(tenant, keys, USER_SELECT)
            .await
    }

    /// One user by object id with [`USER_SELECT`] (`GET /users/{id}`, "Get user",
    /// <https://learn.microsoft.com/en-us/graph/api/user-get>): one request, where a `$batch` of
    /// one would be an envelope and its member. `None` when the user does not exist.
    pub async fn get_user_by_id(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<GraphUser>, GraphError> {
        let url = self.url(&user_lookup_url_selecting(
            &UserKey::Id(id.to_owned()),
            USER_SELECT,
        ))?;
        match self.get_json(tenant, url).await {
            Ok(user) => Ok(Some(user)),
            Err(GraphError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The users with these object ids read again from `/users/{id}` in `$batch` envelopes,
    /// without `ConsistencyLevel: eventual`, with `select`: the state that decides a write, for
    /// users an advanced query selected (its index can lag writes: "Advanced query capabilities
    /// on Microsoft Entra ID objects"). Users gone since are left out; input order kept.
    pub async fn reread_users(
        &self,
        tenant: &str,
        ids: &[String],
        select: &str,
    ) -> Result<Vec<GraphUser>, GraphError> {
        let keys: Vec<UserKey> = ids.iter().cloned().map(UserKey::Id).collect();
        let mut out = Vec::with_capacity(ids.len());
        for (_, r) in self
            .get_users_by_batch_selecting(tenant, &keys, select)
            .await?
        {
            match r {
                Ok(u) => out.push(u),
                Err(GraphError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// [`Self::get_users_by_batch`] with another `$select`.
    pub async fn get_users_by_batch_selecting(
        &self,
        tenant: &str,
        keys: &[UserKey],
        select: &str,
    ) -> Result<Vec<(UserKey, Result<GraphUser, GraphError>)>, GraphError> {
        let requests: Vec<BatchRequest> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| BatchRequest {
                id: i.to_string(),
                method: "GET".into(),
                url: user_lookup_url_selecting(key, select),
                headers: None,
                body: None,
                depends_on: None,
            })
            .collect();
        let mut responses = self.run_batches(tenant, requests).await;
        let mut out = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let result = match responses.remove(&i.to_string()) {
                None => Err(GraphError::Decode {
                    what: "$batch".into(),
                    message: format!("no response for {key}"),
                }),
                Some(Err(e)) => Err(e),
                Some(Ok(r)) => batch_user(key, r),
            };
            if let Err(GraphError::Auth(e)) = &result {
                return Err(GraphError::Auth(e.clone()));
            }
            out.push((key.clone(), result));
        }
        Ok(out)
    }

    /// Groups whose `displayName` equals `display_name`.
    pub async fn find_groups_by_name(
        &self,
        tenant: &str,
        display_name: &str,
    ) -> Result<Vec<GraphGroup>, GraphError> {
        let filter = format!("displayName eq '{}'", odata_quote(display_name));
        let q = format!(
            "groups?$filter={}&$select=id,displayName",
            encode_query_value(&filter)
        );
        self.get_paged(tenant, self.url(&q)?).await
    }

    /// One group by object id (`NotFound` when there is none).
    pub async fn get_group(&self, tenant: &str, group_id: &str) -> Result<GraphGroup, GraphError> {
        let url = self.url(&format!(
            "groups/{}?$select=id,displayName",
            encode_segment(group_id)
        ))?;
        self.get_json(tenant, url).await
    }

    /// The users among a group's transitive members (nested groups expanded), paged.
    pub async fn group_user_members(
        &self,
        tenant: &str,
        group_id: &str,
    ) -> Result<Vec<GraphUser>, GraphError> {
        self.group_user_members_selecting(tenant, group_id, USER_SELECT)
            .await
    }

    /// [`Self::group_user_members`] with another `$select`.
    pub async fn group_user_members_selecting(
        &self,
        tenant: &str,
        group_id: &str,
        select: &str,
    ) -> Result<Vec<GraphUser>, GraphError> {
        // The type cast is an advanced query: the docs require `ConsistencyLevel: eventual` and
        // `$count=true` (reports say it works without, and one that the cast was ignored). Send
        // both, and keep only the users, whatever comes back.
        let q = format!(
            "groups/{}/transitiveMembers/microsoft.graph.user?$select={select}&$top={PAGE_SIZE}&$count=true",
            encode_segment(group_id)
        );
        let members: Vec<GraphUser> = self
            .get_paged_with(
                tenant,
                self.url(&q)?,
                vec![("ConsistencyLevel", "eventual")],
            )
            .await?;
        Ok(members.into_iter().filter(GraphUser::is_user).collect())
    }

    /// Every active directory role assignment (built-in and custom roles, any scope), with its
    /// principal (`$expand=principal`: a single-valued navigation, not a collection), following
    /// every `@odata.nextLink`. Needs `RoleManagement.Read.Directory` (or `Directory.Read.All`).
    pub async fn role_assignments(&self, tenant: &str) -> Result<Vec<RoleAssignment>, GraphError> {
        let url = self.url(
            "roleManagement/directory/roleAssignments?$select=id,principalId,roleDefinitionId,directoryScopeId&$expand=principal",
        )?;
        self.get_paged(tenant, url).await
    }

    /// Every PIM eligibility (schedule instances: current eligibilities), with its principal,
    /// following every `@odata.nextLink`. Needs `RoleEligibilitySchedule.Read.Directory` or
    /// `RoleManagement.Read.Directory`; a tenant without a PIM licence answers an error instead.
    pub async fn role_eligibilities(
        &self,
        tenant: &str,
    ) -> Result<Vec<RoleAssignment>, GraphError> {
        let url = self.url(
            "roleManagement/directory/roleEligibilityScheduleInstances?$select=id,principalId,roleDefinitionId,directoryScopeId&$expand=principal",
        )?;
        self.get_paged(tenant, url).await
    }

    /// The administrative units with restricted management
    /// (`$filter=isMemberManagementRestricted eq true`), every page. Needs
    /// `AdministrativeUnit.Read.All` ("List administrativeUnits",
    /// <https://learn.microsoft.com/en-us/graph/api/directory-list-administrativeunits>).
    pub async fn restricted_admin_units(
        &self,
        tenant: &str,
    ) -> Result<Vec<AdministrativeUnit>, GraphError> {
        let q = format!(
            "directory/administrativeUnits?$filter={}&$select=id,displayName,isMemberManagementRestricted",
            encode_query_value("isMemberManagementRestricted eq true")
        );
        self.get_paged(tenant, self.url(&q)?).await
    }

    /// The members of an administrative unit (users, groups, devices), every page ("List
    /// members", <https://learn.microsoft.com/en-us/graph/api/administrativeunit-list-members>).
    pub async fn admin_unit_members(
        &self,
        tenant: &str,
        unit_id: &str,
    ) -> Result<Vec<DirectoryObjectRef>, GraphError> {
        let q = format!(
            "directory/administrativeUnits/{}/members?$select=id",
            encode_segment(unit_id)
        );
        self.get_paged(tenant, self.url(&q)?).await
    }

    /// PIM for Groups schedule instances of one group, eligible (`eligible`) or active, every
    /// page: `GET /identityGovernance/privilegedAccess/group/eligibilityScheduleInstances` (or
    /// `assignmentScheduleInstances`) `?$filter=groupId eq '{id}'` (a filter on `groupId` or
    /// `principalId` is required). Needs `PrivilegedEligibilitySchedule.Read.AzureADGroup` (or
    /// `PrivilegedAssignmentSchedule.Read.AzureADGroup`) ("List
    /// eligibilityScheduleInstances",
    /// <https://learn.microsoft.com/en-us/graph/api/privilegedaccessgroup-list-eligibilityscheduleinstances>).
    pub async fn group_schedule_instances(
        &self,
        tenant: &str,
        group_id: &str,
        eligible: bool,
    ) -> Result<Vec<GroupScheduleInstance>, GraphError> {
        let collection = if eligible {
            "eligibilityScheduleInstances"
        } else {
            "assignmentScheduleInstances"
        };
        let filter = format!("groupId eq '{}'", odata_quote(group_id));
        let q = format!(
            "identityGovernance/privilegedAccess/group/{collection}?$filter={}&$select=id,principalId,groupId,accessId",
            encode_query_value(&filter)
        );
        self.get_paged(tenant, self.url(&q)?).await
    }

    /// Every directory role definition (built-in and custom), for their names.
    pub async fn role_definitions(&self, tenant: &str) -> Result<Vec<RoleDefinition>, GraphError> {
        let url = self.url(
            "roleManagement/directory/roleDefinitions?$select=id,displayName,isBuiltIn,templateId",
        )?;
        self.get_paged(tenant, url).await
    }

    /// The tenant's domains with their `authenticationType`. Needs `Domain.Read.All` (or
    /// `Directory.Read.All`).
    pub async fn domains(&self, tenant: &str) -> Result<Vec<Domain>, GraphError> {
        let url = self.url("domains?$select=id,authenticationType")?;
        self.get_paged(tenant, url).await
    }

    /// The tenant Graph answers for: `GET /organization?$select=id,verifiedDomains`, a
    /// collection of exactly one organization. Needs `Organization.Read.All` (or
    /// `Directory.Read.All`; delegated: `User.Read`) ("List organization",
    /// <https://learn.microsoft.com/en-us/graph/api/organization-list>). `None`: Graph answered
    /// an empty collection.
    pub async fn organization(&self, tenant: &str) -> Result<Option<Organization>, GraphError> {
        let url = self.url("organization?$select=id,verifiedDomains")?;
        let orgs: Vec<Organization> = self.get_paged(tenant, url).await?;
        Ok(orgs.into_iter().next())
    }

    /// The signed-in user (delegated credentials only).
    pub async fn me(&self, tenant: &str) -> Result<GraphUser, GraphError> {
        let url = self.url(&format!("me?$select={USER_SELECT}"))?;
        self.get_json(tenant, url).await
    }

    /// PATCHes `passwordProfile` of each user by `$batch` (20 per envelope, `concurrency`
    /// envelopes in flight). Both force flags must be set in every profile: Graph may default an
    /// omitted one ("passwordProfile resource type",
    /// <https://learn.microsoft.com/en-us/graph/api/resources/passwordprofile>). Results are in
    /// input order.
    pub async fn patch_password_profiles(
        &self,
        tenant: &str,
        patches: Vec<(String, PasswordProfile)>,
    ) -> Vec<(String, Result<(), GraphError>)> {
        let mut out: Vec<(String, Option<Result<(), GraphError>>)> =
            Vec::with_capacity(patches.len());
        let mut requests = Vec::with_capacity(patches.len());
        for (i, (user_id, profile)) in patches.into_iter().enumerate() {
            let complete = profile.force_change_password_next_sign_in.is_some()
                && profile
                    .force_change_password_next_sign_in_with_mfa
                    .is_some();
            debug_assert!(complete, "passwordProfile PATCH without both force flags");
            if !complete {
                out.push((
                    user_id,
                    Some(Err(GraphError::InvalidRequest(
                        "a passwordProfile PATCH must set both force flags".into(),
                    ))),
                ));
                continue;
            }
            let mut headers = serde_json::Map::new();
            headers.insert("Content-Type".into(), "application/json".into());
            requests.push(BatchRequest {
                id: i.to_string(),
                method: "PATCH".into(),
                url: format!("/{}", user_path(&user_id)),
                headers: Some(headers),
                body: Some(serde_json::json!({ "passwordProfile": profile })),
                depends_on: None,
            });
            out.push((user_id, None));
        }
        let mut responses = self.run_batches(tenant, requests).await;
        out.into_iter()
            .enumerate()
            .map(|(i, (user_id, done))| {
                let result = done.unwrap_or_else(|| match responses.remove(&i.to_string()) {
                    None => Err(GraphError::Decode {
                        what: "$batch".into(),
                        message: format!("no response for the PATCH of user {user_id}"),
                    }),
                    Some(Err(e)) => Err(e),
                    Some(Ok(r)) if (200..300).contains(&r.status) => Ok(()),
                    Some(Ok(r)) => Err(error_from_inner(&r, &format!("user {user_id}"))),
                });
                (user_id, result)
            })
            .collect()
    }

    /// PATCHes one user's `passwordProfile` outside `$batch`, as a non-idempotent request: it is
    /// retried only when it provably did not run (429, 503, no connection). A lost response comes
    /// back as [`GraphError::Transport`] with `maybe_applied: true` ([`GraphError::outcome_unknown`])
    /// so that a password reset is never repeated blindly: the caller re-reads
    /// `lastPasswordChangeDateTime` first.
    pub async fn patch_password_profile_once(
        &self,
        tenant: &str,
        user_id: &str,
        profile: PasswordProfile,
    ) -> Result<(), GraphError> {
        self.patch_password_profile_in(tenant, user_id, profile, None)
            .await
    }

    /// [`Self::patch_password_profile_once`], sent with a slot admitted beforehand
    /// ([`GraphClient::admit_write`]) when one is given.
    pub async fn patch_password_profile_in(
        &self,
        tenant: &str,
        user_id: &str,
        profile: PasswordProfile,
        slot: Option<WriteSlot>,
    ) -> Result<(), GraphError> {
        if profile.force_change_password_next_sign_in.is_none()
            || profile
                .force_change_password_next_sign_in_with_mfa
                .is_none()
        {
            return Err(GraphError::InvalidRequest(
                "a passwordProfile PATCH must set both force flags".into(),
            ));
        }
        if let Some(pw) = &profile.password {
            redact::remember_secret(pw);
        }
        let url = self.url(&user_path(user_id))?;
        let body = serde_json::to_vec(&serde_json::json!({ "passwordProfile": profile }))
            .map_err(|e| GraphError::InvalidRequest(e.to_string()))?;
        let req = Req {
            method: Method::PATCH,
            url,
            body: Some(body),
            headers: Vec::new(),
            idempotent: false,
            paced_by_caller: false,
            pool: Pool::Requests,
            weight: 1,
            units: None,
            auth_method: false,
        };
        let resp = self.execute_write(tenant, &req, slot).await?;
        match resp.status {
            200..=299 => Ok(()),
            504 => Err(GraphError::Transport {
                attempts: 1,
                message: "gateway timeout (HTTP 504)".into(),
                maybe_applied: true,
            }),
            status => Err(error_from(
                status,
                &resp.body,
                resp.request_id,
                &format!("user {user_id}"),
            )),
        }
    }

    /// Resets a password through the password authentication method (delegated only). With
    /// `None` the service generates the password and returns it.
    pub async fn reset_password(
        &self,
        tenant: &str,
        user_id: &str,
        new_password: Option<SecretString>,
    ) -> Result<ResetOutcome, GraphError> {
        self.reset_password_in(tenant, user_id, new_password, None)
            .await
    }

    /// [`Self::reset_password`], sent with a slot admitted beforehand
    /// ([`GraphClient::admit_write`]) when one is given.
    pub async fn reset_password_in(
        &self,
        tenant: &str,
        user_id: &str,
        new_password: Option<SecretString>,
        slot: Option<WriteSlot>,
    ) -> Result<ResetOutcome, GraphError> {
        let url = self.url(&format!(
            "{}/authentication/methods/{PASSWORD_METHOD_ID}/resetPassword",
            user_path(user_id)
        ))?;
        if let Some(pw) = &new_password {
            redact::remember_secret(pw);
        }
        let body = serde_json::to_vec(&ResetPasswordRequest { new_password })
            .map_err(|e| GraphError::InvalidRequest(e.to_string()))?;
        let req = Req {
            method: Method::POST,
            url,
            body: Some(body),
            headers: Vec::new(),
            idempotent: false,
            paced_by_caller: false,
            pool: Pool::Requests,
            weight: 1,
            units: None,
            auth_method: true,
        };
        let what = format!("resetPassword of user {user_id}");
        let resp = self.execute_write(tenant, &req, slot).await?;
        if !(200..300).contains(&resp.status) {
            if resp.status >= 500 {
                return Err(GraphError::Transport {
                    attempts: 1,
                    message: format!(
                        "HTTP {} from Graph: the reset may or may not have happened",
                        resp.status
                    ),
                    maybe_applied: true,
                });
            }
            return Err(error_from(resp.status, &resp.body, resp.request_id, &what));
        }
        // The generated password first: it exists only in this body.
        // Read whatever the body is (a JSON body under another content type included): a
        // password it holds is never left unrecorded. When there is none, say what came instead.
        let content_type = header_str(&resp.headers, "content-type").unwrap_or_default();
        let (generated_password, no_password) = if resp.body.iter().all(u8::is_ascii_whitespace) {
            (
                None,
                Some(format!("HTTP {} with an empty body", resp.status)),
            )
        } else {
            match serde_json::from_slice::<PasswordResetResponse>(&resp.body) {
                Ok(r) => {
                    redact::remember_secret(&r.new_password);
                    (Some(r.new_password), None)
                }
                Err(_) => (
                    None,
                    Some(odd_reset_body(resp.status, &content_type, &resp.body)),
                ),
            }
        };
        let retry_after = parse_retry_after(header_str(&resp.headers, "retry-after").as_deref());
        let location = header_str(&resp.headers, "location")
            .ok_or_else(|| GraphError::Decode {
                what: what.clone(),
                message: format!("HTTP {} without a Location header", resp.status),
            })
            .and_then(|l| self.same_origin_url(&l).map(|u| u.to_string()));
        let server_date = header_str(&resp.headers, "date").and_then(|d| {
            chrono::DateTime::parse_from_rfc2822(d.trim())
                .ok()
                .map(|d| d.with_timezone(&chrono::Utc))
        });
        Ok(ResetOutcome {
            server_date,
            location,
            retry_after,
            generated_password,
            no_password,
        })
    }

    /// Polls a `passwordResetOperation` until `succeeded` or `failed`, waiting `Retry-After`
    /// (default 1 s) between polls, at most `timeout` in total.
    pub async fn poll_operation(
        &self,
        tenant: &str,
        location: &str,
        timeout: Duration,
    ) -> Result<LongRunningOperation, GraphError> {
        self.poll_operation_after(tenant, location, None, timeout)
            .await
    }

    /// [`Self::poll_operation`] of an operation just started: the first poll waits for the
    /// `Retry-After` of the 202 that started it ("the number of seconds to wait before
    /// polling"), capped like every `Retry-After`. Polls go through the tenant's poll pool, so
    /// that they never hold a slot a paced write is waiting for.
    pub async fn poll_operation_after(
        &self,
        tenant: &str,
        location: &str,
        retry_after: Option<Duration>,
        timeout: Duration,
    ) -> Result<LongRunningOperation, GraphError> {
        let url = self.same_origin_url(location)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let what = url.path().to_owned();
        if let Some(wait) = retry_after.map(|w| w.min(self.inner.policy.max_retry_after)) {
            if tokio::time::Instant::now() + wait <= deadline {
                tokio::time::sleep(wait).await;
            }
        }
        loop {
            let req = Req {
                method: Method::GET,
                url: url.clone(),
                body: None,
                headers: Vec::new(),
                idempotent: true,
                paced_by_caller: false,
                pool: Pool::Polls,
                weight: 1,
                units: None,
                auth_method: true,
            };
            // its turn within the authentication-method limit, outside the request's deadline
            self.admit_method_request(tenant).await;
            let resp = self.execute_rated(tenant, &req).await?;
            if !(200..300).contains(&resp.status) {
                return Err(error_from(resp.status, &resp.body, resp.request_id, &what));
            }
            let op: LongRunningOperation = decode(&resp.body, &what)?;
            if op.status.is_terminal() {
                return Ok(op);
            }
            let wait = parse_retry_after(header_str(&resp.headers, "retry-after").as_deref())
                .unwrap_or(Duration::from_secs(1))
                .min(self.inner.policy.max_retry_after);
            let now = tokio::time::Instant::now();
            if now + wait > deadline {
                return Err(GraphError::OperationTimeout {
                    location: what,
                    timeout,
                    last_status: format!("{:?}", op.status),
                });
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// How far apart the pages of riskyUsers are asked: Identity Protection's limit is 1 request per
/// second per tenant, for all applications.
pub const RISKY_USERS_INTERVAL: Duration = Duration::from_millis(1050);

/// The relative `$batch` URL that reads one user with `select` (normally [`USER_SELECT`]).
fn user_lookup_url_selecting(key: &UserKey, select: &str) -> String {
    match key {
        UserKey::Id(key) | UserKey::Upn(key) => {
            format!("/{}?$select={select}", user_path(key))
        }
        UserKey::Sid(sid) => {
            let filter = format!("onPremisesSecurityIdentifier eq '{}'", odata_quote(sid));
            format!(
                "/users?$filter={}&$select={select}",
                encode_query_value(&filter)
            )
        }
    }
}

/// Whether a `$filter` on users needs the advanced query parameters (`ConsistencyLevel:
/// eventual` and `$count=true`), per "Advanced query capabilities on Microsoft Entra ID objects"
/// (<https://learn.microsoft.com/en-us/graph/aad-advanced-queries>): the `ne`, `not` and
/// `endsWith` operators, `eq`/`ne` on `null`, `$count` on a collection
/// (`assignedLicenses/$count ne 0`), and properties only the advanced index can filter
/// (`showInAddressList`, `onPremisesExtensionAttributes/...`, `employeeOrgData/...`). Saying yes
/// too often costs only the header: what such a read selects is read again without it
/// ([`GraphClient::reread_users`]). Azure AD B2C tenants refuse all of them.
pub fn needs_advanced_query(filter: &str) -> bool {
    let f = filter.to_ascii_lowercase();
    let f = f.split_whitespace().collect::<Vec<_>>().join(" ");
    [
        " ne ",
        "not(",
        "not ",
        "endswith(",
        "eq null",
        "/$count",
        "showinaddresslist",
        "onpremisesextensionattributes/",
        "employeeorgdata/",
    ]
    .iter()
    .any(|needle| f.contains(needle) || f.starts_with(needle.trim_start()))
}

/// Whether Graph's answer to an advanced query is the refusal Azure AD B2C tenants give: 400
/// `Request_BadRequest` ("This request is not supported by the service", reported in
/// microsoft-graph-docs issues #9477 and #9856; the B2C pages say advanced queries are not
/// supported). A filter Graph cannot parse is `Request_UnsupportedQuery` instead.
pub fn is_advanced_query_refusal(e: &GraphError) -> bool {
    e.status() == Some(400) && e.code() == Some("Request_BadRequest")
}

/// OData string literal escaping: `'` doubles.
fn odata_quote(s: &str) -> String {
    s.replace('\'', "''")
}

#[cfg(test)]
mod tests {
    use super::super::urls::{encode_query_value, encode_segment};
    use super::*;

    #[test]
    fn lookup_urls() {
        assert_eq!(
            user_lookup_url_selecting(
                &UserKey::Upn("ext_user#EXT#@contoso.com".into()),
                USER_SELECT
            ),
            format!("/users/ext_user%23EXT%23@contoso.com?$select={USER_SELECT}")
        );
        assert_eq!(
            user_lookup_url_selecting(&UserKey::Upn("$ines@contoso.com".into()), USER_SELECT),
            format!("/users('$ines@contoso.com')?$select={USER_SELECT}")
        );
        assert_eq!(
            user_lookup_url_selecting(&UserKey::Sid("S-1-5-21-1-2-3-1104".into()), USER_SELECT),
            format!("/users?$filter=onPremisesSecurityIdentifier%20eq%20'S-1-5-21-1-2-3-1104'&$select={USER_SELECT}")
        );
        assert_eq!(odata_quote("O'Brien"), "O''Brien");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(
            encode_query_value("displayName eq 'A&B'"),
            "displayName%20eq%20'A%26B'"
        );
    }

    #[test]
    fn advanced_query_detection() {
        assert!(needs_advanced_query("userPrincipalName ne 'a'"));
        assert!(needs_advanced_query(
            "endsWith(userPrincipalName,'@contoso.com')"
        ));
        assert!(needs_advanced_query(
            "not(startsWith(userPrincipalName,'a'))"
        ));
        assert!(!needs_advanced_query(
            "passwordProfile/forceChangePasswordNextSignIn eq true"
        ));
        assert!(!needs_advanced_query("startsWith(displayName,'Anne')"));
        assert!(needs_advanced_query("NOT startsWith(displayName,'A')"));
        assert!(needs_advanced_query("assignedLicenses/$count ne 0"));
        assert!(needs_advanced_query("mail eq null"));
        assert!(needs_advanced_query("showInAddressList eq true"));
        assert!(needs_advanced_query(
            "onPremisesExtensionAttributes/extensionAttribute1 eq 'x'"
        ));
        assert!(needs_advanced_query("userPrincipalName  ne  'a'"));
        assert!(!needs_advanced_query("accountEnabled eq false"));
        assert!(!needs_advanced_query("userPrincipalName in ('a@x','b@x')"));
    }

    #[test]
    fn reset_outcome_debug_redacts() {
        let o = ResetOutcome {
            location: Ok("l".into()),
            retry_after: None,
            generated_password: Some(SecretString::from("Canary-Pw-1")),
            no_password: None,
            server_date: None,
        };
        assert!(!format!("{o:?}").contains("Canary"));
    }
}
