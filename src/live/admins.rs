//! Who holds a directory role in a tenant: any role, active or eligible, makes a user a
//! privileged target that the diff blocks unless desired state says `allowPrivileged`.
//!
//! Read from Microsoft Graph's role management: the role definitions (for their names), the
//! active role assignments ("unifiedRoleAssignment resource type",
//! <https://learn.microsoft.com/en-us/graph/api/resources/unifiedroleassignment>) and the PIM
//! eligibilities ("unifiedRoleEligibilityScheduleInstance resource type",
//! <https://learn.microsoft.com/en-us/graph/api/resources/unifiedroleeligibilityscheduleinstance>),
//! and the transitive user members of every role-assignable group a role is held through. A
//! tenant without the licence PIM needs, or (under `--assume-no-eligible-admins`) a refused
//! eligibility read, becomes a note the plan carries.
//!
//! A role held through a role-assignable group also reaches whoever PIM for Groups makes an
//! eligible or active member or owner of that group ([`pim_for_groups`]).

use std::collections::{BTreeSet, HashMap};

use crate::graph::client::{GraphClient, GraphError};
use crate::graph::model::{GraphUser, GroupScheduleInstance};

use super::domains::unmanaged_password;
use super::{LiveError, LiveUser, ReadOptions};

/// Who holds directory roles in a tenant (any role makes a user a privileged target), and the
/// tenant's federated domains: what [`LiveUser`] needs beyond the user object itself.
#[derive(Clone, Debug, Default)]
pub struct PrivilegedRoles {
    /// user id -> descriptions of the roles held (sorted, deduplicated)
    by_user: HashMap<String, Vec<String>>,
    /// federated domains (lowercase), set once they are read (see [`super::domains`])
    pub(super) federated: BTreeSet<String>,
    /// user id -> the restricted management administrative units it is a member of and the
    /// credential is not scoped to (see [`super::units`])
    pub(super) restricted: HashMap<String, Vec<String>>,
}

/// How one role is held, before it is tied to users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleGrant {
    pub role: String,
    pub eligible: bool,
    /// `/` (tenant-wide) or `/administrativeUnits/{id}`
    pub scope: String,
    /// the role-assignable group it is held through, by name (or id)
    pub via_group: Option<String>,
}

impl RoleGrant {
    /// `Global Administrator (eligible, via group Tier0 Admins, scope /administrativeUnits/..)`
    fn describe(&self) -> String {
        let mut how = vec![if self.eligible { "eligible" } else { "active" }.to_owned()];
        if let Some(g) = &self.via_group {
            how.push(format!("via group {g}"));
        }
        if self.scope != "/" && !self.scope.is_empty() {
            how.push(format!("scope {}", self.scope));
        }
        format!("{} ({})", self.role, how.join(", "))
    }
}

/// Whether Graph's answer says the tenant lacks the licence PIM needs (undocumented: the code
/// reported is `AadPremiumLicenseRequired`; matched leniently on any 400/403 whose code or
/// message names a premium, P2 or licence requirement).
fn is_license_error(e: &GraphError) -> bool {
    let GraphError::Http {
        status,
        code,
        message,
        ..
    } = e
    else {
        return false;
    };
    if !matches!(status, 400 | 403) {
        return false;
    }
    let text = format!("{code} {message}").to_ascii_lowercase();
    text.contains("licen") || text.contains("premium") || text.contains("p2")
}

/// The note a plan carries when the tenant has no PIM licence.
pub(crate) const NO_PIM_LICENSE_NOTE: &str = "the tenant has no licence for Privileged Identity Management (Graph answered that it needs Microsoft Entra ID P2): no one can be eligible for a role, so only active role assignments were considered";

/// The note a plan carries under `--assume-no-eligible-admins` when eligibility was refused.
const ASSUMED_NO_ELIGIBLE_NOTE: &str = "PIM role eligibilities could not be read (permission RoleEligibilitySchedule.Read.Directory missing) and --assume-no-eligible-admins was given: eligible administrators are treated as ordinary users";

/// The note a plan carries when PIM for Groups answered that the tenant has no licence for it.
pub(crate) const NO_PIM_GROUPS_LICENSE_NOTE: &str = "the tenant has no licence for PIM for Groups (Graph answered that it needs Microsoft Entra ID P2): no one can be eligible for a group, so only current members of role-holding groups were considered";

/// The note a plan carries under `--assume-no-eligible-admins` when PIM for Groups was refused.
const ASSUMED_NO_GROUP_ELIGIBLE_NOTE: &str = "PIM for Groups eligibilities and assignments of the role-holding groups could not be read (permission PrivilegedEligibilitySchedule.Read.AzureADGroup or PrivilegedAssignmentSchedule.Read.AzureADGroup missing) and --assume-no-eligible-admins was given: users eligible for or owning those groups are treated as ordinary users";

/// Who is eligible for, or assigned through PIM as, a member or owner of a role-assignable group
/// that holds a directory role ("PIM for Groups": eligible membership is one activation away
/// from the group's roles; ownership lets the owner add themselves). Read per group:
/// `GET /identityGovernance/privilegedAccess/group/eligibilityScheduleInstances` and
/// `.../assignmentScheduleInstances` with `$filter=groupId eq '{id}'` (the API requires a filter
/// on `groupId` or `principalId`: "List eligibilityScheduleInstances",
/// <https://learn.microsoft.com/en-us/graph/api/privilegedaccessgroup-list-eligibilityscheduleinstances>).
/// A licence answer is a note (as for role eligibilities); a refusal (401/403) stops the read
/// unless `--assume-no-eligible-admins`, which makes it a note.
async fn pim_for_groups(
    client: &GraphClient,
    tenant: &str,
    groups: &[(String, RoleGrant)],
    options: ReadOptions,
    notes: &mut Vec<String>,
) -> Result<Vec<(String, RoleGrant)>, LiveError> {
    let mut out = Vec::new();
    let mut read: HashMap<&str, (Vec<GroupScheduleInstance>, Vec<GroupScheduleInstance>)> =
        HashMap::new();
    for (group_id, grant) in groups {
        if !read.contains_key(group_id.as_str()) {
            let (eligible, active) = tokio::join!(
                client.group_schedule_instances(tenant, group_id, true),
                client.group_schedule_instances(tenant, group_id, false)
            );
            let mut lists = (Vec::new(), Vec::new());
            for (answer, list) in [(eligible, &mut lists.0), (active, &mut lists.1)] {
                match answer {
                    Ok(l) => *list = l,
                    Err(e) if is_license_error(&e) => {
                        if !notes.iter().any(|n| n == NO_PIM_GROUPS_LICENSE_NOTE) {
                            notes.push(NO_PIM_GROUPS_LICENSE_NOTE.to_owned());
                        }
                    }
                    Err(e) if matches!(e.status(), Some(401 | 403)) => {
                        if !options.assume_no_eligible_admins {
                            return Err(LiveError::GroupEligibilityDenied {
                                tenant: tenant.to_owned(),
                                source: e,
                            });
                        }
                        if !notes.iter().any(|n| n == ASSUMED_NO_GROUP_ELIGIBLE_NOTE) {
                            notes.push(ASSUMED_NO_GROUP_ELIGIBLE_NOTE.to_owned());
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            read.insert(group_id, lists);
        }
        let (eligible, active) = &read[group_id.as_str()];
        for (list, how) in [(eligible, "eligible"), (active, "active")] {
            for i in list {
                if !i.group_id.eq_ignore_ascii_case(group_id) {
                    continue;
                }
                let access = i.access_id.as_deref().unwrap_or("member");
                let mut g = grant.clone();
                let group = g.via_group.take().unwrap_or_else(|| group_id.clone());
                g.via_group = Some(format!("{group}, {how} {access} through PIM for Groups"));
                out.push((i.principal_id.clone(), g));
            }
        }
    }
    Ok(out)
}

impl PrivilegedRoles {
    /// Reads role definitions, active assignments and PIM eligibilities (every page), and the
    /// transitive user members of every group a role is held through. Returns the notes the plan
    /// must carry.
    pub(super) async fn read(
        client: &GraphClient,
        tenant: &str,
        options: ReadOptions,
    ) -> Result<(Self, Vec<String>), LiveError> {
        let denied = |e: &GraphError| matches!(e.status(), Some(401 | 403));
        // The three lists are independent: read side by side, judged in this order.
        let (definitions, active, eligible) = tokio::join!(
            client.role_definitions(tenant),
            client.role_assignments(tenant),
            client.role_eligibilities(tenant)
        );
        let definitions = match definitions {
            Ok(d) => d,
            Err(e) if denied(&e) => {
                return Err(LiveError::RolesDenied {
                    tenant: tenant.to_owned(),
                    source: e,
                })
            }
            Err(e) => return Err(e.into()),
        };
        let active = match active {
            Ok(a) => a,
            Err(e) if denied(&e) => {
                return Err(LiveError::RolesDenied {
                    tenant: tenant.to_owned(),
                    source: e,
                })
            }
            Err(e) => return Err(e.into()),
        };
        let mut notes = Vec::new();
        let eligible = match eligible {
            Ok(a) => a,
            Err(e) if is_license_error(&e) => {
                notes.push(NO_PIM_LICENSE_NOTE.to_owned());
                Vec::new()
            }
            Err(e) if denied(&e) => {
                if !options.assume_no_eligible_admins {
                    return Err(LiveError::EligibilityDenied {
                        tenant: tenant.to_owned(),
                        source: e,
                    });
                }
                notes.push(ASSUMED_NO_ELIGIBLE_NOTE.to_owned());
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        };

        let names: HashMap<String, String> = definitions
            .iter()
            .flat_map(|d| {
                let name = d.display_name.clone().unwrap_or_else(|| d.id.clone());
                let mut keys = vec![(d.id.to_ascii_lowercase(), name.clone())];
                if let Some(t) = &d.template_id {
                    keys.push((t.to_ascii_lowercase(), name));
                }
                keys
            })
            .collect();

        let mut users: Vec<(String, RoleGrant)> = Vec::new();
        let mut through_groups: Vec<(String, RoleGrant, bool)> = Vec::new();
        for (list, is_eligible) in [(&active, false), (&eligible, true)] {
            for a in list {
                let role = names
                    .get(&a.role_definition_id.to_ascii_lowercase())
                    .cloned()
                    .unwrap_or_else(|| a.role_definition_id.clone());
                let mut grant = RoleGrant {
                    role,
                    eligible: is_eligible,
                    scope: a.directory_scope_id.clone().unwrap_or_else(|| "/".into()),
                    via_group: None,
                };
                let kind = a
                    .principal
                    .as_ref()
                    .and_then(|p| p.odata_type.as_deref())
                    .map(|t| t.trim_start_matches('#').to_ascii_lowercase());
                match kind.as_deref() {
                    Some("microsoft.graph.user") => users.push((a.principal_id.clone(), grant)),
                    Some("microsoft.graph.group") => {
                        grant.via_group = Some(
                            a.principal
                                .as_ref()
                                .and_then(|p| p.display_name.clone())
                                .unwrap_or_else(|| a.principal_id.clone()),
                        );
                        through_groups.push((a.principal_id.clone(), grant, true));
                    }
                    Some(_) => {} // a service principal or other non-user
                    None => {
                        // principal not expanded: it may be a user or a group
                        users.push((a.principal_id.clone(), grant.clone()));
                        grant.via_group = Some(a.principal_id.clone());
                        through_groups.push((a.principal_id.clone(), grant, false));
                    }
                }
            }
        }

        let mut members: HashMap<String, Vec<GraphUser>> = HashMap::new();
        // the groups a role is held through, confirmed to be groups, with their grants
        let mut groups: Vec<(String, RoleGrant)> = Vec::new();
        let mut confirmed: BTreeSet<String> = BTreeSet::new();
        for (group_id, grant, known_group) in through_groups {
            if !members.contains_key(&group_id) {
                let read = match client.group_user_members(tenant, &group_id).await {
                    Ok(m) => {
                        confirmed.insert(group_id.clone());
                        m
                    }
                    Err(GraphError::NotFound { .. }) if !known_group => Vec::new(),
                    Err(e) => return Err(e.into()),
                };
                members.insert(group_id.clone(), read);
            }
            if confirmed.contains(&group_id) {
                groups.push((group_id.clone(), grant.clone()));
            }
            for m in &members[&group_id] {
                users.push((m.id.clone(), grant.clone()));
            }
        }
        users.extend(pim_for_groups(client, tenant, &groups, options, &mut notes).await?);
        Ok((Self::from_grants(users), notes))
    }

    /// Role descriptions per user (sorted, deduplicated).
    pub fn from_grants(grants: impl IntoIterator<Item = (String, RoleGrant)>) -> Self {
        let mut by_user: HashMap<String, Vec<String>> = HashMap::new();
        for (user, grant) in grants {
            by_user.entry(user).or_default().push(grant.describe());
        }
        for names in by_user.values_mut() {
            names.sort();
            names.dedup();
        }
        PrivilegedRoles {
            by_user,
            federated: BTreeSet::new(),
            restricted: HashMap::new(),
        }
    }

    /// The live form of a listed user, with the privileged roles it holds and whether its
    /// password is Entra's to set (its strings are moved, not copied).
    pub(super) fn live(&self, user: GraphUser) -> LiveUser {
        let unmanaged = unmanaged_password(&user, &self.federated);
        let roles = self.by_user.get(&user.id).cloned().unwrap_or_default();
        let units = self.restricted.get(&user.id).cloned().unwrap_or_default();
        let mut live = LiveUser::from_graph_owned(user, roles);
        live.unmanaged_password = unmanaged;
        live.restricted_units = units;
        live
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::testing::user;

    #[test]
    fn roles_are_described_with_how_they_are_held_sorted_and_deduplicated() {
        let grant = |role: &str, eligible: bool, scope: &str, via: Option<&str>| RoleGrant {
            role: role.into(),
            eligible,
            scope: scope.into(),
            via_group: via.map(str::to_owned),
        };
        let roles = PrivilegedRoles::from_grants([
            (
                "u1".to_owned(),
                grant("Global Administrator", true, "/", Some("Tier0")),
            ),
            (
                "u1".to_owned(),
                grant("Password Resetter", false, "/", None),
            ),
            (
                "u1".to_owned(),
                grant("Password Resetter", false, "/", None),
            ),
            (
                "u2".to_owned(),
                grant(
                    "User Administrator",
                    false,
                    "/administrativeUnits/au1",
                    None,
                ),
            ),
        ]);
        assert_eq!(
            roles.live(user("u1", "u1@x.com", None)).privileged_roles,
            [
                "Global Administrator (eligible, via group Tier0)",
                "Password Resetter (active)"
            ]
        );
        assert_eq!(
            roles.live(user("u2", "u2@x.com", None)).privileged_roles,
            ["User Administrator (active, scope /administrativeUnits/au1)"]
        );
        assert!(roles
            .live(user("u3", "u3@x.com", None))
            .privileged_roles
            .is_empty());
    }

    #[test]
    fn licence_errors_are_recognised_leniently() {
        let http = |status: u16, code: &str, message: &str| GraphError::Http {
            status,
            code: code.into(),
            message: message.into(),
            request_id: None,
        };
        assert!(is_license_error(&http(
            400,
            "AadPremiumLicenseRequired",
            "The tenant needs an AAD Premium 2 license."
        )));
        assert!(is_license_error(&http(
            403,
            "Forbidden",
            "Requires a P2 licence"
        )));
        assert!(!is_license_error(&http(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation."
        )));
        assert!(!is_license_error(&http(
            500,
            "AadPremiumLicenseRequired",
            ""
        )));
    }
}
