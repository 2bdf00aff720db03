//! Restricted management administrative units: their members can be changed only by
//! administrators scoped to the unit; a tenant-wide role or application is refused ("Restricted
//! management administrative units in Microsoft Entra ID",
//! <https://learn.microsoft.com/en-us/entra/identity/role-based-access-control/admin-units-restricted-management>).
//! pwdrift reads them before planning, so that their members are planned as blocked (naming the
//! unit) instead of being found out one 403 at a time.
//!
//! Read: `GET /directory/administrativeUnits?$filter=isMemberManagementRestricted eq true`, then
//! each unit's `/members` (paged), with permission `AdministrativeUnit.Read.All` ("List
//! administrativeUnits",
//! <https://learn.microsoft.com/en-us/graph/api/directory-list-administrativeunits>). Units the
//! credential is scoped to (`--admin-unit`, by display name or id) are skipped.

use std::collections::HashMap;

use crate::graph::client::{GraphClient, GraphError};

use super::LiveError;

/// user id -> display names of the restricted units it is a member of, except the units named
/// in `scoped` (display name, case-insensitive, or id). Each list is sorted.
pub(super) async fn restricted_members(
    client: &GraphClient,
    tenant: &str,
    scoped: &[String],
) -> Result<HashMap<String, Vec<String>>, LiveError> {
    let denied = |e: GraphError| match e.status() {
        Some(401 | 403) => LiveError::UnitsDenied {
            tenant: tenant.to_owned(),
            source: e,
        },
        _ => e.into(),
    };
    let units = client
        .restricted_admin_units(tenant)
        .await
        .map_err(denied)?;
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for unit in units {
        if unit.is_member_management_restricted == Some(false) {
            continue;
        }
        let name = unit.display_name.clone().unwrap_or_else(|| unit.id.clone());
        if is_scoped(&unit.id, &name, scoped) {
            continue;
        }
        let members = client
            .admin_unit_members(tenant, &unit.id)
            .await
            .map_err(denied)?;
        for m in members {
            let is_user = m.odata_type.as_deref().is_none_or(|t| {
                t.trim_start_matches('#')
                    .eq_ignore_ascii_case("microsoft.graph.user")
            });
            if is_user {
                out.entry(m.id).or_default().push(name.clone());
            }
        }
    }
    for names in out.values_mut() {
        names.sort();
        names.dedup();
    }
    Ok(out)
}

/// Whether the credential is declared scoped to this unit (by display name, case-insensitive,
/// or by id).
fn is_scoped(id: &str, name: &str, scoped: &[String]) -> bool {
    scoped
        .iter()
        .any(|s| s.eq_ignore_ascii_case(id) || s.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::is_scoped;

    #[test]
    fn a_unit_is_scoped_by_name_or_id_case_insensitively() {
        let scoped = ["executives".to_owned(), "AU-2".to_owned()];
        assert!(is_scoped("au-1", "Executives", &scoped));
        assert!(is_scoped("au-2", "Board", &scoped));
        assert!(!is_scoped("au-3", "Board", &scoped));
        assert!(!is_scoped("au-3", "Board", &[]));
    }
}
