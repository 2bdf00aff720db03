//! The tenant check: right after a tenant's clients are opened, and before any user is read or
//! anything written, each client (the app's and the delegated one) is asked which tenant it is
//! talking to, and the run is refused when that is not the tenant the desired state names.
//!
//! Two witnesses are asked. Graph itself: `GET /organization?$select=id,verifiedDomains` answers
//! with the one organization of the tenant the token acts in ("List organization",
//! <https://learn.microsoft.com/en-us/graph/api/organization-list>; "organization resource
//! type", <https://learn.microsoft.com/en-us/graph/api/resources/organization>). And the token's
//! `tid` claim, where the token is a readable JWT ("Access token claims reference",
//! <https://learn.microsoft.com/en-us/entra/identity-platform/access-token-claims-reference>).
//! A tenant named by its id matches an organization of that id; a tenant named by a domain
//! matches an organization that lists it among its `verifiedDomains` (both case-insensitively).
//! When both witnesses speak they must agree (a token of one tenant answered for by another is a
//! Graph URL pointing somewhere else).
//!
//! An app without `Organization.Read.All` (or `Directory.Read.All`) gets a 403: that does not pass
//! silently. The `tid` claim decides then (a domain is looked up among the tenant's `/domains`,
//! which pwdrift reads anyway, with `Domain.Read.All`); with neither readable (an opaque
//! pre-acquired token) the run is refused, saying which permission is missing.

use secrecy::ExposeSecret;

use crate::graph::auth::{tenant_id_from_token, Credential};
use crate::graph::client::{escape_for_message, GraphClient, GraphError};
use crate::graph::model::Organization;

use super::error::Context;
use super::EngineError;

/// Which of a tenant's clients is checked (named in the refusal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// the app-only client (or a pre-acquired token)
    App,
    /// the `--delegated` sign-in
    Delegated,
}

/// The tenant a client talks to, as far as it could be learned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answered {
    /// the tenant id (GUID, lower-case)
    pub id: String,
    /// its initial (`*.onmicrosoft.com`) domain, or failing that its default one, when known
    pub domain: Option<String>,
}

impl std::fmt::Display for Answered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.domain {
            Some(d) => write!(f, "{} ({d})", self.id),
            None => write!(f, "{}", self.id),
        }
    }
}

/// Why a client is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// the client talks to the named tenant, of this id
    Matches(String),
    /// the client talks to another tenant
    Other(Answered),
    /// the token says one tenant, Graph answers for another
    Disagree { token: String, graph: Answered },
    /// the tenant cannot be learned: no organization, no readable `tid`
    Unknown,
}

/// Whether `name` (a tenant id or a domain) names the organization `org`.
fn names_org(name: &str, org: &Organization) -> bool {
    if uuid::Uuid::parse_str(name).is_ok() {
        return org.id.eq_ignore_ascii_case(name);
    }
    org.verified_domains
        .iter()
        .any(|d| d.name.eq_ignore_ascii_case(name))
}

fn answered(org: &Organization) -> Answered {
    let pick = |f: fn(&crate::graph::model::VerifiedDomain) -> Option<bool>| {
        org.verified_domains
            .iter()
            .find(|d| f(d) == Some(true))
            .map(|d| d.name.clone())
    };
    Answered {
        id: org.id.to_ascii_lowercase(),
        domain: pick(|d| d.is_initial).or_else(|| pick(|d| d.is_default)),
    }
}

/// The pure decision: `name` is what desired state says; `tid` the token's claim, if readable;
/// `org` what `/organization` answered, if it could be read; `domains` the tenant's domains
/// (`/domains`), read only when the organization could not be and `name` is a domain.
pub fn judge(
    name: &str,
    tid: Option<&str>,
    org: Option<&Organization>,
    domains: Option<&[String]>,
) -> Verdict {
    if let Some(org) = org {
        let graph = answered(org);
        if let Some(tid) = tid {
            if !tid.eq_ignore_ascii_case(&org.id) {
                return Verdict::Disagree {
                    token: tid.to_ascii_lowercase(),
                    graph,
                };
            }
        }
        return if names_org(name, org) {
            Verdict::Matches(graph.id)
        } else {
            Verdict::Other(graph)
        };
    }
    let Some(tid) = tid else {
        return Verdict::Unknown;
    };
    let tid = tid.to_ascii_lowercase();
    let matches = if uuid::Uuid::parse_str(name).is_ok() {
        tid.eq_ignore_ascii_case(name)
    } else {
        domains.is_some_and(|ds| ds.iter().any(|d| d.eq_ignore_ascii_case(name)))
    };
    if matches {
        Verdict::Matches(tid)
    } else {
        Verdict::Other(Answered {
            id: tid,
            domain: None,
        })
    }
}

/// What to check, by credential kind.
fn hint(client: &GraphClient, role: Role, name: &str) -> String {
    // the origin only: a URL's userinfo or query is never shown
    let authority = crate::graph::auth::origin(&client.options().endpoints.authority_host);
    match (role, client.credential()) {
        (_, Credential::AccessToken { .. }) => format!(
            "PWDRIFT_ACCESS_TOKEN holds a token for another tenant: acquire one for {name} (e.g. \
             `az account get-access-token --tenant {name} --resource-type ms-graph`), or unset it \
             to sign in with the AZURE_* variables"
        ),
        (Role::Delegated, c) => format!(
            "the delegated sign-in ({}) got its token from {authority}: check --authority-host / \
             AZURE_AUTHORITY_HOST and --cloud, PWDRIFT_DELEGATED_CLIENT_ID and the account that \
             signs in (AZURE_USERNAME, or the device-code sign-in)",
            c.kind()
        ),
        (Role::App, c) => format!(
            "the {} credential got its token from {authority}: check --authority-host / \
             AZURE_AUTHORITY_HOST and --cloud, AZURE_CLIENT_ID and {}",
            c.kind(),
            match c {
                Credential::ClientSecret { .. } => "AZURE_CLIENT_SECRET",
                Credential::Certificate { .. } => "AZURE_CLIENT_CERTIFICATE_PATH",
                Credential::WorkloadIdentity { .. } => "AZURE_FEDERATED_TOKEN_FILE",
                Credential::GitHubOidc { .. } => "the federated credential of the workflow",
                _ => "the credential",
            }
        ),
    }
}

fn who(client: &GraphClient, role: Role) -> String {
    match role {
        Role::App => format!("the {} credential", client.credential().kind()),
        Role::Delegated => format!("the delegated sign-in ({})", client.credential().kind()),
    }
}

/// Checks that `client` talks to the tenant desired state names `name`, reading nothing but the
/// organization (and, without permission to read it, the tenant's domains). Returns the tenant
/// id; a refusal names both tenants and what to check. Token errors pass through as they are.
///
/// `known`: the tenant id another client of the same tenant was already checked to talk to (the
/// app's, when the delegated sign-in is checked): without the organization, a `tid` equal to it
/// is enough (a delegated sign-in rarely may read `/domains`).
pub async fn verify(
    name: &str,
    client: &GraphClient,
    role: Role,
    known: Option<&str>,
) -> Result<String, EngineError> {
    let shown = escape_for_message(name, 200);
    let token = client
        .token(name)
        .await
        .context_with(|| format!("tenant {shown}: cannot sign in"))?;
    let tid = tenant_id_from_token(token.expose_secret());
    drop(token);
    let org = match client.organization(name).await {
        Ok(org) => org,
        Err(e) if e.status() == Some(403) => {
            tracing::debug!(
                tenant = %shown,
                "Graph refused GET /organization (403): grant Organization.Read.All; the tenant \
                 is checked by the token's tid claim instead"
            );
            None
        }
        Err(e @ GraphError::Auth(_)) => return Err(e.into()),
        Err(e) => {
            return Err(e).context_with(|| {
                format!(
                "tenant {shown}: cannot read which tenant Graph answers for (GET /organization)"
            )
            })
        }
    };
    if let (None, Some(tid), Some(known)) = (&org, &tid, known) {
        if tid.eq_ignore_ascii_case(known) {
            return Ok(known.to_ascii_lowercase());
        }
    }
    let domains = if org.is_none()
        && tid.is_some()
        && known.is_none()
        && uuid::Uuid::parse_str(name).is_err()
    {
        let domains = client.domains(name).await.context_with(|| {
            format!(
                "tenant {shown}: cannot check which tenant Graph answers for: GET /organization \
                 was refused (grant Organization.Read.All) and so was GET /domains (grant \
                 Domain.Read.All)"
            )
        })?;
        Some(domains.into_iter().map(|d| d.id).collect::<Vec<_>>())
    } else {
        None
    };
    match judge(name, tid.as_deref(), org.as_ref(), domains.as_deref()) {
        Verdict::Matches(id) => Ok(id),
        Verdict::Other(answered) => Err(EngineError::refused(format!(
            "wrong tenant: desired state names tenant {shown}, but {} talks to tenant {answered}; \
             nothing was read or written. {}",
            who(client, role),
            hint(client, role, &shown)
        ))),
        Verdict::Disagree { token, graph } => Err(EngineError::refused(format!(
            "wrong tenant: desired state names tenant {shown}; the token of {} was issued for \
             tenant {token}, but Graph at {} answers for tenant {graph}; nothing was read or \
             written. Check --graph-url / PWDRIFT_GRAPH_URL and --cloud",
            who(client, role),
            crate::graph::auth::origin(&client.options().endpoints.graph_url)
        ))),
        Verdict::Unknown => Err(EngineError::refused(format!(
            "cannot tell which tenant {} talks to: Graph did not answer GET /organization (a \
             403: grant the app Organization.Read.All) and the token is not a JWT whose tid \
             claim could be read; \
             desired state names tenant {shown}, and nothing was read or written",
            who(client, role)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::model::VerifiedDomain;

    const A: &str = "7b3e1a52-9c4d-4f1e-a2b8-3d5c6e7f8a90";
    const B: &str = "11111111-2222-4333-8444-555555555555";

    fn org(id: &str, domains: &[&str]) -> Organization {
        Organization {
            id: id.into(),
            verified_domains: domains
                .iter()
                .enumerate()
                .map(|(i, d)| VerifiedDomain {
                    name: (*d).into(),
                    is_initial: Some(i == 0),
                    is_default: Some(i == 1),
                })
                .collect(),
        }
    }

    #[test]
    fn the_organization_decides_by_id_or_verified_domain() {
        let a = org(A, &["contoso.onmicrosoft.com", "contoso.com"]);
        let up = A.to_ascii_uppercase();
        for name in [A, up.as_str(), "CONTOSO.com", "contoso.onmicrosoft.com"] {
            assert_eq!(
                judge(name, Some(A), Some(&a), None),
                Verdict::Matches(A.into()),
                "{name}"
            );
        }
        // no readable tid (an opaque token): the organization alone
        assert_eq!(judge(A, None, Some(&a), None), Verdict::Matches(A.into()));
        let other = Verdict::Other(Answered {
            id: A.into(),
            domain: Some("contoso.onmicrosoft.com".into()),
        });
        assert_eq!(judge(B, Some(A), Some(&a), None), other);
        assert_eq!(judge("fabrikam.com", None, Some(&a), None), other);
        assert_eq!(
            other.to_string_for_test(),
            format!("{A} (contoso.onmicrosoft.com)")
        );
    }

    #[test]
    fn token_and_graph_must_agree() {
        let a = org(A, &["contoso.onmicrosoft.com"]);
        assert!(matches!(
            judge(A, Some(B), Some(&a), None),
            Verdict::Disagree { ref token, .. } if token == B
        ));
    }

    #[test]
    fn without_the_organization_the_tid_decides_or_nothing_passes() {
        assert_eq!(judge(A, Some(A), None, None), Verdict::Matches(A.into()));
        assert!(matches!(judge(A, Some(B), None, None), Verdict::Other(_)));
        let ds = vec!["contoso.com".to_owned()];
        assert_eq!(
            judge("Contoso.com", Some(A), None, Some(&ds)),
            Verdict::Matches(A.into())
        );
        assert!(matches!(
            judge("fabrikam.com", Some(A), None, Some(&ds)),
            Verdict::Other(_)
        ));
        assert_eq!(judge(A, None, None, None), Verdict::Unknown);
    }

    impl Verdict {
        fn to_string_for_test(&self) -> String {
            match self {
                Verdict::Other(a) => a.to_string(),
                v => format!("{v:?}"),
            }
        }
    }
}
