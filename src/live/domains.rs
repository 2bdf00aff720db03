//! Whose password Entra ID manages: not a guest's or an external identity's (their home tenant
//! or identity provider owns it), nor a cloud user's of a federated domain (the federation's
//! identity provider authenticates it). A domain is federated when its `authenticationType` is
//! `Federated` ("domain resource type",
//! <https://learn.microsoft.com/en-us/graph/api/resources/domain>); a user's kind is its `userType`
//! ("user resource type", <https://learn.microsoft.com/en-us/graph/api/resources/user>).

use std::collections::BTreeSet;

use crate::graph::client::GraphClient;
use crate::graph::model::GraphUser;

use super::LiveError;

/// Why Entra ID does not manage a user's password, if it does not: a guest or other external
/// identity (`userType` Guest, or `#EXT#` in the UPN: its home tenant or identity provider owns
/// the password), or a cloud user of a federated domain (the federation's identity provider
/// authenticates it). A synced user of a federated domain keeps the resetPassword path (its
/// password lives in the on-premises directory, written back by resetPassword).
pub(super) fn unmanaged_password(user: &GraphUser, federated: &BTreeSet<String>) -> Option<String> {
    let upn = user.user_principal_name.as_deref().unwrap_or_default();
    if user
        .user_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("guest"))
    {
        return Some(
            "a guest (userType Guest): its home tenant or identity provider owns the password"
                .into(),
        );
    }
    if upn.to_ascii_uppercase().contains("#EXT#") {
        return Some("an external identity (#EXT# in the userPrincipalName): its home tenant or identity provider owns the password".into());
    }
    let domain = upn.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase())?;
    if federated.contains(&domain) && user.on_premises_sync_enabled != Some(true) {
        return Some(format!(
            "in the federated domain {domain}: the federation's identity provider owns the password"
        ));
    }
    None
}

/// The tenant's federated domains (lowercase). A refusal (403) stops the read: guessing would
/// plan writes to passwords Entra does not own.
pub(super) async fn federated_domains(
    client: &GraphClient,
    tenant: &str,
) -> Result<BTreeSet<String>, LiveError> {
    match client.domains(tenant).await {
        Ok(domains) => Ok(domains
            .into_iter()
            .filter(|d| {
                d.authentication_type
                    .as_deref()
                    .is_some_and(|t| t.eq_ignore_ascii_case("federated"))
            })
            .map(|d| d.id.to_ascii_lowercase())
            .collect()),
        Err(e) if matches!(e.status(), Some(401 | 403)) => Err(LiveError::DomainsDenied {
            tenant: tenant.to_owned(),
            source: e,
        }),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::testing::user;

    #[test]
    fn guests_external_and_federated_cloud_users_are_unmanaged() {
        let federated: BTreeSet<String> = ["corp.contoso.com".to_owned()].into();
        let mut guest = user("g", "g_fabrikam.com#ext#@contoso.onmicrosoft.com", None);
        assert!(unmanaged_password(&guest, &federated)
            .unwrap()
            .contains("#EXT#"));
        guest.user_type = Some("Guest".into());
        assert!(unmanaged_password(&guest, &federated)
            .unwrap()
            .contains("guest"));
        let fed = user("f", "f@Corp.Contoso.com", None);
        assert!(unmanaged_password(&fed, &federated)
            .unwrap()
            .contains("federated domain corp.contoso.com"));
        let mut synced = fed.clone();
        synced.on_premises_sync_enabled = Some(true);
        assert_eq!(unmanaged_password(&synced, &federated), None);
        let mut member = user("m", "m@contoso.com", None);
        member.user_type = Some("Member".into());
        assert_eq!(unmanaged_password(&member, &federated), None);
    }
}
