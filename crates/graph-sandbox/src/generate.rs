//! `--generate N --rng-seed S`: a deterministic, realistic tenant of N users.
//!
//! The same (N, S) always gives the same seed (ChaCha8 from S; dates relative to a fixed
//! reference instant, never "now"). The mix: about 30% users synced from on-premises AD (with
//! SIDs under one domain SID), 3% with `forceChangePasswordNextSignIn`, 1% with the MFA variant,
//! `lastPasswordChangeDateTime` spread uniformly over the two years before 2026-06-01, 10%
//! `DisablePasswordExpiration` and 2% `DisablePasswordExpiration, DisableStrongPassword`; about
//! N/50 groups (departments with nested teams, so transitive membership has depth); a few admins
//! (Global Administrator, User Administrator, Helpdesk Administrator, Authentication
//! Administrator) and one delegated admin `admin@DOMAIN` (Privileged Authentication
//! Administrator) whose password is printed in the start line. Every 25th user (from the 8th) is
//! a risky user of Identity Protection, at levels and states in turn. One app with the permissions and
//! roles pwdrift needs, and a public client for delegated sign-in.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::seed::{
    Seed, SeedApp, SeedGroup, SeedPasswordProfile, SeedPublicClient, SeedRiskyUser, SeedTenant,
    SeedUser,
};

const FIRST: &[&str] = &[
    "Ada", "Ben", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemal",
    "Lena", "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma",
    "Viktor", "Wen", "Ximena", "Yusuf", "Zoe",
];
const LAST: &[&str] = &[
    "Andersen", "Bauer", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito",
    "Jensen", "Kowalski", "Larsen", "Moreau", "Nakamura", "Okafor", "Petrov", "Quinn", "Rossi",
    "Silva", "Tanaka", "Ueda", "Varga", "Weber", "Xu", "Yilmaz", "Zimmer",
];
const DEPARTMENTS: &[&str] = &[
    "Finance",
    "Engineering",
    "Sales",
    "Marketing",
    "Support",
    "Legal",
    "Operations",
    "Research",
    "People",
    "Security",
];

/// The public client id used for delegated sign-in in generated tenants (Microsoft Graph
/// Command Line Tools' well-known id).
pub const PUBLIC_CLIENT_ID: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";

fn guid(rng: &mut ChaCha8Rng) -> String {
    let mut b = [0u8; 16];
    rng.fill(&mut b);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

fn secret(rng: &mut ChaCha8Rng, len: usize) -> String {
    const SET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789~._-";
    (0..len)
        .map(|_| SET[rng.random_range(0..SET.len())] as char)
        .collect()
}

/// A generated tenant of `users` users.
pub fn generate(users: usize, rng_seed: u64) -> Seed {
    let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
    let reference: DateTime<Utc> = Utc
        .with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let created = reference - Duration::days(3 * 365);
    let two_years = 2 * 365 * 24 * 3600i64;
    let domain = format!("tenant{rng_seed}.onmicrosoft.com");
    let tenant_id = guid(&mut rng);
    let client_id = guid(&mut rng);
    let client_secret = format!("sbx~{}", secret(&mut rng, 34));
    let admin_password = format!("Sbx-{}-9a", secret(&mut rng, 12));
    let domain_sid = format!(
        "S-1-5-21-{}-{}-{}",
        rng.random_range(1_000_000_000u64..4_000_000_000),
        rng.random_range(1_000_000_000u64..4_000_000_000),
        rng.random_range(100_000_000u64..999_999_999)
    );

    let mut seed_users = Vec::with_capacity(users + 1);
    for i in 0..users {
        let first = FIRST[rng.random_range(0..FIRST.len())];
        let last = LAST[rng.random_range(0..LAST.len())];
        let upn = format!(
            "{}.{}{}@{domain}",
            first.to_lowercase(),
            last.to_lowercase(),
            i
        );
        let synced = rng.random_bool(0.30);
        let roll: f64 = rng.random();
        let profile = if roll < 0.03 {
            Some(SeedPasswordProfile {
                force_change_password_next_sign_in: true,
                force_change_password_next_sign_in_with_mfa: false,
            })
        } else if roll < 0.04 {
            Some(SeedPasswordProfile {
                force_change_password_next_sign_in: false,
                force_change_password_next_sign_in_with_mfa: true,
            })
        } else {
            None
        };
        let policy_roll: f64 = rng.random();
        let password_policies = if policy_roll < 0.02 {
            Some("DisablePasswordExpiration, DisableStrongPassword".to_owned())
        } else if policy_roll < 0.12 {
            Some("DisablePasswordExpiration".to_owned())
        } else {
            None
        };
        let last_change = reference - Duration::seconds(rng.random_range(0..two_years));
        let id = guid(&mut rng);
        seed_users.push(SeedUser {
            id: Some(id),
            user_principal_name: upn.clone(),
            display_name: Some(format!("{first} {last}")),
            given_name: Some(first.to_owned()),
            surname: Some(last.to_owned()),
            mail: Some(upn),
            job_title: None,
            account_enabled: Some(rng.random_bool(0.97)),
            password_profile: profile,
            password_policies,
            last_password_change_date_time: Some(last_change),
            created_date_time: Some(created),
            on_premises_sync_enabled: synced.then_some(true),
            on_premises_security_identifier: synced.then(|| format!("{domain_sid}-{}", 1100 + i)),
            directory_roles: Vec::new(),
            password: None,
            password_sha256: None,
            reset_fails: false,
            ..SeedUser::default()
        });
    }
    // A few admins among the cloud users.
    let admin_roles = [
        "Global Administrator",
        "User Administrator",
        "User Administrator",
        "Helpdesk Administrator",
        "Authentication Administrator",
    ];
    let mut k = 0;
    for u in seed_users.iter_mut() {
        if k == admin_roles.len() {
            break;
        }
        if u.on_premises_sync_enabled.is_none() {
            u.directory_roles.push(admin_roles[k].to_owned());
            k += 1;
        }
    }
    let admin_upn = format!("admin@{domain}");
    seed_users.push(SeedUser {
        id: Some(guid(&mut rng)),
        user_principal_name: admin_upn.clone(),
        display_name: Some("Sandbox Admin".to_owned()),
        account_enabled: Some(true),
        last_password_change_date_time: Some(reference - Duration::days(30)),
        created_date_time: Some(created),
        directory_roles: vec!["Privileged Authentication Administrator".to_owned()],
        password: Some(admin_password),
        ..SeedUser::default()
    });

    // Groups: ~N/50, departments at the top, teams nested under them.
    let n_groups = (users / 50).max(1);
    let mut groups: Vec<SeedGroup> = (0..n_groups)
        .map(|g| {
            let dept = DEPARTMENTS[g % DEPARTMENTS.len()];
            let name = if g < DEPARTMENTS.len() {
                dept.to_owned()
            } else {
                format!("{dept} Team {}", g / DEPARTMENTS.len())
            };
            SeedGroup {
                id: Some(guid(&mut rng)),
                display_name: name,
                description: None,
                members: Vec::new(),
                is_assignable_to_role: false,
            }
        })
        .collect();
    // Each team is nested in its department (group index g % departments), so nesting is acyclic.
    for g in DEPARTMENTS.len()..n_groups {
        let parent = g % DEPARTMENTS.len();
        let child_id = groups[g].id.clone().unwrap_or_default();
        groups[parent].members.push(child_id);
    }
    for u in seed_users.iter().take(users) {
        let g = rng.random_range(0..n_groups);
        let id = u.id.clone().unwrap_or_default();
        groups[g].members.push(id.clone());
        if rng.random_bool(0.2) {
            let g2 = rng.random_range(0..n_groups);
            if g2 != g {
                groups[g2].members.push(id);
            }
        }
    }

    // Every 25th user is reported by Identity Protection, at levels and states in turn (no draw
    // from the rng, so the rest of the tenant is what it was before risky users existed).
    const RISK: &[(&str, &str)] = &[
        ("high", "atRisk"),
        ("medium", "atRisk"),
        ("high", "remediated"),
        ("low", "atRisk"),
        ("high", "dismissed"),
        ("high", "confirmedCompromised"),
    ];
    let risky_users: Vec<SeedRiskyUser> = seed_users
        .iter()
        .take(users)
        .skip(7)
        .step_by(25)
        .zip(RISK.iter().cycle())
        .map(|(u, (level, state))| SeedRiskyUser {
            user: u.user_principal_name.clone(),
            risk_level: (*level).to_owned(),
            risk_state: (*state).to_owned(),
            ..SeedRiskyUser::default()
        })
        .collect();

    Seed {
        tenants: vec![SeedTenant {
            id: tenant_id,
            initial_domain: domain,
            domains: Vec::new(),
            display_name: Some(format!("Generated tenant {rng_seed}")),
            apps: vec![SeedApp {
                client_id,
                display_name: Some("pwdrift".to_owned()),
                service_principal_id: None,
                client_secrets: vec![client_secret],
                certificates: Vec::new(),
                federated_credentials: Vec::new(),
                application_permissions: vec![
                    "User-PasswordProfile.ReadWrite.All".to_owned(),
                    "User.Read.All".to_owned(),
                    "GroupMember.Read.All".to_owned(),
                    "RoleManagement.Read.Directory".to_owned(),
                    "AdministrativeUnit.Read.All".to_owned(),
                    "PrivilegedEligibilitySchedule.Read.AzureADGroup".to_owned(),
                    "PrivilegedAssignmentSchedule.Read.AzureADGroup".to_owned(),
                    "Domain.Read.All".to_owned(),
                    "IdentityRiskyUser.Read.All".to_owned(),
                ],
                directory_roles: vec![
                    "User Administrator".to_owned(),
                    "Privileged Authentication Administrator".to_owned(),
                ],
            }],
            public_clients: vec![SeedPublicClient {
                client_id: PUBLIC_CLIENT_ID.to_owned(),
                scopes: vec![
                    "UserAuthenticationMethod.ReadWrite.All".to_owned(),
                    "User.ReadWrite.All".to_owned(),
                    "User.Read.All".to_owned(),
                    "GroupMember.Read.All".to_owned(),
                    "RoleManagement.Read.Directory".to_owned(),
                    "AdministrativeUnit.Read.All".to_owned(),
                    "PrivilegedEligibilitySchedule.Read.AzureADGroup".to_owned(),
                    "PrivilegedAssignmentSchedule.Read.AzureADGroup".to_owned(),
                ],
            }],
            device_code_auto_approve: Some(admin_upn),
            users: seed_users,
            groups,
            risky_users,
            ..SeedTenant::default()
        }],
    }
}

/// `tenants` generated tenants of `users` users each (rng seeds `rng_seed`, `rng_seed + 1`, ...,
/// so distinct ids and domains `tenant{seed}.onmicrosoft.com`), in which one multi-tenant app is
/// registered with the same client id and secret (those of the first tenant), as a managed
/// service provider's app consented in each customer tenant is: one credential signs in to
/// every tenant, and each tenant is throttled on its own (Graph's limits are per app + tenant).
pub fn generate_tenants(tenants: usize, users: usize, rng_seed: u64) -> Seed {
    let mut out = Seed {
        tenants: Vec::with_capacity(tenants),
    };
    for i in 0..tenants.max(1) {
        let mut t = generate(users, rng_seed.wrapping_add(i as u64)).tenants;
        out.tenants.append(&mut t);
    }
    let app = out.tenants[0].apps[0].clone();
    for t in out.tenants.iter_mut().skip(1) {
        t.apps[0].client_id = app.client_id.clone();
        t.apps[0].client_secrets = app.client_secrets.clone();
    }
    out
}
