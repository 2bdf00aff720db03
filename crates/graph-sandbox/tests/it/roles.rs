//! Privileged detection as Graph documents it, against the sandbox over loopback HTTP: the
//! role-management API (built-in and custom role definitions; active assignments to users,
//! role-assignable groups and service principals, tenant-wide or on an administrative unit;
//! PIM eligibility, its permission and its licence), paged with `@odata.nextLink`; and
//! `/directoryRoles?$expand=members`, which lists only activated built-in roles, groups as
//! groups, and at most 20 members with no next link.

use crate::util::*;
use graph_sandbox::seed::{SeedRoleAssignment, SeedUser};
use serde_json::Value;

const GA: &str = "62e90394-69f5-4237-9190-012177145e10";

fn find<'a>(items: &'a [Value], key: &str, value: &str) -> Vec<&'a Value> {
    items.iter().filter(|v| v[key] == value).collect()
}

async fn user_id(s: &Sbx, t: &str, upn: &str) -> String {
    let path = format!("/v1.0/users('{upn}')?$select=id");
    let r = s.get(&path, t).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["id"].as_str().unwrap().to_owned()
}

async fn group_id(s: &Sbx, t: &str, name: &str) -> String {
    let r = s
        .get(
            &format!("/v1.0/groups?$filter=displayName%20eq%20'{name}'&$select=id"),
            t,
        )
        .await
        .json();
    r["value"][0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn role_definitions_are_built_in_and_custom_and_paged() {
    let s = start_with(privileged_seed(), |_| {}).await;
    let t = s.app_token().await;
    let (defs, pages) = s
        .get_all("/v1.0/roleManagement/directory/roleDefinitions", &t)
        .await;
    assert!(pages >= 3, "the default page is small: {pages} pages");
    let ga = find(&defs, "id", GA);
    assert_eq!(ga.len(), 1);
    assert_eq!(ga[0]["isBuiltIn"], true);
    assert_eq!(ga[0]["displayName"], "Global Administrator");
    assert_eq!(ga[0]["templateId"], GA);
    let custom = find(&defs, "displayName", "Password Resetter");
    assert_eq!(custom.len(), 1);
    assert_eq!(custom[0]["isBuiltIn"], false);
    assert_eq!(
        custom[0]["rolePermissions"][0]["allowedResourceActions"][0],
        "microsoft.directory/users/password/update"
    );
    // $top is honoured: one page
    let v = s
        .get(
            "/v1.0/roleManagement/directory/roleDefinitions?$top=999&$filter=isBuiltIn%20eq%20false",
            &t,
        )
        .await
        .json();
    assert_eq!(v["value"].as_array().unwrap().len(), 1);
    assert!(v.get("@odata.nextLink").is_none());
}

#[tokio::test]
async fn role_assignments_cover_custom_roles_au_scopes_groups_and_apps() {
    let s = start_with(privileged_seed(), |_| {}).await;
    let t = s.app_token().await;
    let (all, pages) = s
        .get_all("/v1.0/roleManagement/directory/roleAssignments", &t)
        .await;
    assert!(pages >= 2, "{pages}");
    // admin (PAA), app (UA + PAA), ben (custom), chloe (AU), Helpdesk Admins (group)
    assert_eq!(all.len(), 6, "{all:#?}");
    let ben = user_id(&s, &t, "ben@northwind.com").await;
    let b = find(&all, "principalId", &ben);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0]["directoryScopeId"], "/");
    let defs = s
        .get(
            "/v1.0/roleManagement/directory/roleDefinitions?$filter=displayName%20eq%20'Password%20Resetter'",
            &t,
        )
        .await
        .json();
    assert_eq!(b[0]["roleDefinitionId"], defs["value"][0]["id"]);

    let chloe = user_id(&s, &t, "chloe@northwind.com").await;
    let c = find(&all, "principalId", &chloe);
    assert!(c[0]["directoryScopeId"]
        .as_str()
        .unwrap()
        .starts_with("/administrativeUnits/"));

    // a role held through a group lists the group, not its member
    let dmitri = user_id(&s, &t, "dmitri@northwind.com").await;
    assert!(find(&all, "principalId", &dmitri).is_empty());
    let helpdesk = group_id(&s, &t, "Helpdesk Admins").await;
    assert_eq!(find(&all, "principalId", &helpdesk).len(), 1);

    // $filter on principalId, $expand=principal
    let v = s
        .get(
            &format!(
                "/v1.0/roleManagement/directory/roleAssignments?$filter=principalId%20eq%20'{helpdesk}'&$expand=principal"
            ),
            &t,
        )
        .await
        .json();
    let items = v["value"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0]["principal"]["@odata.type"],
        "#microsoft.graph.group"
    );
    assert_eq!(items[0]["principal"]["isAssignableToRole"], true);
    assert!(v["@odata.context"]
        .as_str()
        .unwrap()
        .ends_with("roleAssignments(principal())"));
    // $filter on roleDefinitionId, $top
    let v = s
        .get(
            "/v1.0/roleManagement/directory/roleAssignments?$filter=roleDefinitionId%20eq%20'7be44c8a-adaf-4e2a-84d6-ab2649e08a13'&$expand=principal",
            &t,
        )
        .await
        .json();
    let types: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["principal"]["@odata.type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"#microsoft.graph.user"), "{types:?}");
    assert!(
        types.contains(&"#microsoft.graph.servicePrincipal"),
        "{types:?}"
    );
}

#[tokio::test]
async fn eligibility_is_separate_needs_its_permission_and_a_licence() {
    let s = start_with(privileged_seed(), |_| {}).await;
    let t = s.app_token().await;
    let (elig, _) = s
        .get_all(
            "/v1.0/roleManagement/directory/roleEligibilityScheduleInstances",
            &t,
        )
        .await;
    assert_eq!(elig.len(), 2, "{elig:#?}");
    let elena = user_id(&s, &t, "elena@northwind.com").await;
    let e = find(&elig, "principalId", &elena);
    assert_eq!(e[0]["roleDefinitionId"], GA);
    assert_eq!(e[0]["memberType"], "Direct");
    assert!(e[0]["id"].as_str().unwrap().ends_with("-1-e"));
    assert!(e[0]["startDateTime"].is_string());
    let tier0 = group_id(&s, &t, "Tier0 Candidates").await;
    let g = find(&elig, "principalId", &tier0);
    assert_eq!(g[0]["endDateTime"], "2027-06-30T00:00:00.000Z");
    // eligibility is not activation
    let (active, _) = s
        .get_all("/v1.0/roleManagement/directory/roleAssignments", &t)
        .await;
    assert!(find(&active, "principalId", &elena).is_empty());

    // Directory.Read.All reads assignments but not eligibility: 403
    let mut seed = privileged_seed();
    seed.tenants[0].apps[0].application_permissions =
        vec!["User.Read.All".into(), "Directory.Read.All".into()];
    let s2 = start_with(seed, |_| {}).await;
    let t2 = s2.app_token().await;
    assert_eq!(
        s2.get("/v1.0/roleManagement/directory/roleAssignments", &t2)
            .await
            .status,
        200
    );
    s2.get(
        "/v1.0/roleManagement/directory/roleEligibilityScheduleInstances",
        &t2,
    )
    .await
    .graph_error(403, "Authorization_RequestDenied");

    // no PIM licence: the documented-by-reports 400, and no eligibility can be seeded
    let mut seed = privileged_seed();
    seed.tenants[0].role_eligibilities.clear();
    let s3 = start_with(seed, |c| c.realism.no_pim_license = true).await;
    let t3 = s3.app_token().await;
    let m = s3
        .get(
            "/v1.0/roleManagement/directory/roleEligibilityScheduleInstances",
            &t3,
        )
        .await
        .graph_error(400, "AadPremiumLicenseRequired");
    assert!(m.contains("Premium 2"), "{m}");
    let mut cfg = graph_sandbox::SandboxConfig::new(graph_sandbox::SeedSource::Seed(Box::new(
        privileged_seed(),
    )));
    cfg.realism.no_pim_license = true;
    let err = graph_sandbox::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .err()
        .expect("eligibilities without a licence are refused");
    assert!(err.to_string().contains("eligible"), "{err}");
}

/// A seed with `n` more Global Administrators than Contoso's.
fn many_global_admins(n: usize) -> graph_sandbox::seed::Seed {
    let mut seed = contoso_seed();
    for i in 0..n {
        seed.tenants[0].users.push(SeedUser {
            user_principal_name: format!("ga{i:02}@contoso.com"),
            directory_roles: vec!["Global Administrator".into()],
            ..SeedUser::default()
        });
    }
    seed
}

#[tokio::test]
async fn directory_roles_expand_is_capped_at_20_without_next_link() {
    let s = start_with(many_global_admins(25), |_| {}).await;
    let t = s.app_token().await;
    let v = s
        .get("/v1.0/directoryRoles?$expand=members", &t)
        .await
        .json();
    let ga = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["roleTemplateId"] == GA)
        .unwrap();
    assert_eq!(ga["members"].as_array().unwrap().len(), 20);
    assert!(ga.get("members@odata.nextLink").is_none());
    assert!(v.get("@odata.nextLink").is_none());
    // the role-management API lists all 26 (erin + 25)
    let (all, _) = s
        .get_all(
            &format!("/v1.0/roleManagement/directory/roleAssignments?$filter=roleDefinitionId%20eq%20'{GA}'"),
            &t,
        )
        .await;
    assert_eq!(all.len(), 26);

    // the cap is a switch
    let s = start_with(many_global_admins(25), |c| c.realism.expand_cap = None).await;
    let t = s.app_token().await;
    let v = s
        .get("/v1.0/directoryRoles?$expand=members", &t)
        .await
        .json();
    let ga = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["roleTemplateId"] == GA)
        .unwrap();
    assert_eq!(ga["members"].as_array().unwrap().len(), 26);
}

#[tokio::test]
async fn directory_roles_show_groups_not_their_users_and_no_custom_au_or_eligible() {
    let mut seed = privileged_seed();
    // an AU-scoped built-in role activates the role but adds no member
    seed.tenants[0].role_assignments.push(SeedRoleAssignment {
        role: "Global Reader".into(),
        principal: "ada@northwind.com".into(),
        scope: Some("Paris".into()),
        ..SeedRoleAssignment::default()
    });
    let s = start_with(seed, |_| {}).await;
    let t = s.app_token().await;
    let v = s
        .get("/v1.0/directoryRoles?$expand=members", &t)
        .await
        .json();
    let roles = v["value"].as_array().unwrap();
    let names: Vec<&str> = roles
        .iter()
        .map(|r| r["displayName"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"Password Resetter"),
        "custom roles are not directoryRoles"
    );
    let helpdesk = roles
        .iter()
        .find(|r| r["displayName"] == "Helpdesk Administrator")
        .unwrap();
    let members = helpdesk["members"].as_array().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["@odata.type"], "#microsoft.graph.group");
    assert_eq!(members[0]["displayName"], "Helpdesk Admins");
    // chloe's User Administrator is scoped to an administrative unit: not a member
    let ua = roles
        .iter()
        .find(|r| r["displayName"] == "User Administrator")
        .unwrap();
    assert!(ua["members"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["userPrincipalName"] != "chloe@northwind.com"));
    let gr = roles
        .iter()
        .find(|r| r["displayName"] == "Global Reader")
        .expect("activated by an AU-scoped assignment");
    assert!(gr["members"].as_array().unwrap().is_empty());
    // eligible-only Global Administrator: activated, no members
    let ga = roles.iter().find(|r| r["roleTemplateId"] == GA).unwrap();
    assert!(ga["members"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn privileged_holders_are_protected_like_admins() {
    // The app is User Administrator + Privileged Authentication Administrator: drop PAA and every
    // kind of role holder becomes untouchable for it.
    let mut seed = privileged_seed();
    seed.tenants[0].apps[0].directory_roles = vec!["User Administrator".into()];
    let s = start_with(seed, |_| {}).await;
    let t = s.app_token().await;
    let body = r#"{"passwordProfile":{"forceChangePasswordNextSignIn":true}}"#;
    for upn in [
        "ben@northwind.com",
        "chloe@northwind.com",
        "dmitri@northwind.com",
        "elena@northwind.com",
        "farid@northwind.com",
    ] {
        s.patch(&format!("/v1.0/users/{upn}"), &t, body)
            .await
            .graph_error(403, "Authorization_RequestDenied");
    }
    let r = s.patch("/v1.0/users/ada@northwind.com", &t, body).await;
    assert_eq!(r.status, 204, "{}", r.text);
}
