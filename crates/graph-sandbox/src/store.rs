//! The sandbox's in-memory directory: tenants, apps, users, groups, directory roles, pending
//! resetPassword operations and device codes, with the indexes that make a 100,000-user tenant
//! cheap to serve (by id, by lower-cased UPN, by SID; paging is a slice of the user vector).
//!
//! Directory roles: every tenant has the built-in role definitions of [`ROLES`] and its custom
//! ones ([`RoleDef`]); active assignments and PIM eligibilities ([`Assignment`]) name a user, a
//! role-assignable group or an app's service principal, tenant-wide or on an administrative unit.
//! A user's or app's `directoryRoles` are tenant-wide active assignments of built-in roles.
//! [`Tenant::is_privileged`] is the sandbox's notion of an admin target. `--read-lag` keeps the
//! previous version of recently written users ([`Tenant::user_view`]).
//!
//! Built from a validated [`Seed`](super::seed::Seed) ([`Store::from_seed`]) and written back as
//! one ([`Store::to_seed`]) for `--state` files: a saved state is a seed, with password hashes
//! instead of passwords. Users and groups are never created or deleted by the sandbox, so the
//! indexes (positions in the vectors) stay valid for the life of the store.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::DecodingKey;
use sha1::Digest as _;

use super::seed::{
    derived_guid, password_hash, Seed, SeedAdministrativeUnit, SeedApp, SeedError,
    SeedFederatedCredential, SeedGroup, SeedGroupSchedule, SeedPasswordProfile, SeedPublicClient,
    SeedRoleAssignment, SeedRoleDefinition, SeedTenant, SeedUser,
};

/// Directory roles the sandbox knows: display name and the role template id (the same in every
/// tenant; these are Microsoft's built-in role template ids).
pub const ROLES: &[(&str, &str)] = &[
    (
        "Global Administrator",
        "62e90394-69f5-4237-9190-012177145e10",
    ),
    ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1"),
    (
        "Privileged Authentication Administrator",
        "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
    ),
    (
        "Authentication Administrator",
        "c4e39bd9-1100-46d3-8c65-fb160da0071f",
    ),
    (
        "Helpdesk Administrator",
        "729827e3-9c14-49f7-bb1b-9608f156bbb8",
    ),
    (
        "Password Administrator",
        "966707d0-3269-4727-9be2-8c3a10f19b9d",
    ),
    (
        "Privileged Role Administrator",
        "e8611ab8-c189-46e8-94e1-60213ab1f814",
    ),
    (
        "Security Administrator",
        "194ae4cb-b126-40b2-bd5b-6091b380977d",
    ),
    ("Global Reader", "f2ef992c-3afb-46b9-b7cf-a126ee74c451"),
    ("Directory Readers", "88d8e3e3-8f55-4a1e-953a-9b9898b8876b"),
];

/// A directory role, as an index into [`ROLES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Role(pub u8);

impl Role {
    pub const GLOBAL_ADMINISTRATOR: Role = Role(0);
    pub const USER_ADMINISTRATOR: Role = Role(1);
    pub const PRIVILEGED_AUTHENTICATION_ADMINISTRATOR: Role = Role(2);
    pub const AUTHENTICATION_ADMINISTRATOR: Role = Role(3);
    pub const HELPDESK_ADMINISTRATOR: Role = Role(4);
    pub const PASSWORD_ADMINISTRATOR: Role = Role(5);

    pub fn by_name(name: &str) -> Option<Role> {
        ROLES
            .iter()
            .position(|(n, t)| n.eq_ignore_ascii_case(name.trim()) || t.eq_ignore_ascii_case(name))
            .map(|i| Role(i as u8))
    }
    pub fn name(self) -> &'static str {
        ROLES[self.0 as usize].0
    }
    pub fn template_id(self) -> &'static str {
        ROLES[self.0 as usize].1
    }
    /// The role object's id in a tenant (derived, stable).
    pub fn object_id(self, tenant_id: &str) -> String {
        derived_guid(&format!("role:{tenant_id}"), self.template_id())
    }
}

/// A registered certificate of an app.
#[derive(Clone)]
pub struct Certificate {
    pub pem: String,
    /// SHA-1 of the DER (what `x5t` carries, base64url).
    pub sha1: Vec<u8>,
    /// SHA-256 of the DER (what `x5t#S256` carries, base64url).
    pub sha256: Vec<u8>,
    pub key: Arc<DecodingKey>,
}

#[derive(Clone)]
pub struct FederatedCredential {
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
    pub pem: String,
    pub key: Arc<DecodingKey>,
}

/// A confidential client app with its service principal in one tenant.
#[derive(Clone)]
pub struct App {
    pub client_id: String,
    pub display_name: String,
    pub service_principal_id: String,
    pub secrets: Vec<String>,
    pub certificates: Vec<Certificate>,
    pub federated: Vec<FederatedCredential>,
    pub permissions: Vec<String>,
    pub roles: Vec<Role>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("client_id", &self.client_id)
            .field("secrets", &"(sensitive)")
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
pub struct PublicClient {
    pub client_id: String,
    pub scopes: Vec<String>,
}

/// A user.
#[derive(Clone)]
pub struct User {
    pub id: String,
    pub upn: String,
    pub display_name: String,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub mail: Option<String>,
    pub job_title: Option<String>,
    pub account_enabled: bool,
    pub force_change: bool,
    pub force_change_mfa: bool,
    pub password_policies: Option<String>,
    pub last_password_change: DateTime<Utc>,
    pub created: DateTime<Utc>,
    pub on_premises_sync_enabled: Option<bool>,
    pub on_premises_sid: Option<String>,
    pub roles: Vec<Role>,
    pub password_sha256: Option<String>,
    pub reset_fails: bool,
    /// `Member` or `Guest`.
    pub user_type: Option<String>,
    pub creation_type: Option<String>,
    pub external_user_state: Option<String>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("upn", &self.upn)
            .finish_non_exhaustive()
    }
}

impl User {
    /// Synced from on-premises AD.
    pub fn is_synced(&self) -> bool {
        self.on_premises_sync_enabled == Some(true)
    }
    /// Holds a directory role directly (seeded `directoryRoles`). See
    /// [`Tenant::is_privileged`] for every way of holding one.
    pub fn is_admin(&self) -> bool {
        !self.roles.is_empty()
    }
    /// `userType` `Guest`.
    pub fn is_guest(&self) -> bool {
        self.user_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("Guest"))
    }
    /// `DisableStrongPassword` in passwordPolicies.
    pub fn strong_password_required(&self) -> bool {
        !self.password_policies.as_deref().is_some_and(|p| {
            p.split(',')
                .any(|x| x.trim().eq_ignore_ascii_case("DisableStrongPassword"))
        })
    }
    /// The user changed the password (themselves, or an admin set it): the force flags clear.
    pub fn password_changed(&mut self, at: DateTime<Utc>, new_hash: Option<String>) {
        self.last_password_change = at;
        if new_hash.is_some() {
            self.password_sha256 = new_hash;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Member {
    User(usize),
    Group(usize),
}

#[derive(Clone, Debug)]
pub struct Group {
    pub id: String,
    pub display_name: String,
    pub description: Option<String>,
    pub members: Vec<Member>,
    pub assignable_to_role: bool,
}

/// A directory role definition: built-in (from [`ROLES`], id = template id) or custom.
#[derive(Clone, Debug)]
pub struct RoleDef {
    pub id: String,
    pub display_name: String,
    pub description: Option<String>,
    pub built_in: bool,
    pub enabled: bool,
    pub actions: Vec<String>,
}

/// Who holds a role assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Principal {
    User(usize),
    Group(usize),
    /// An app's service principal (index into `apps`).
    App(usize),
}

/// An active role assignment or a PIM eligibility.
#[derive(Clone, Debug)]
pub struct Assignment {
    pub id: String,
    /// Index into `role_defs`.
    pub role: usize,
    pub principal: Principal,
    /// `/` or `/administrativeUnits/{id}`.
    pub scope: String,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    /// Made from a user's or app's `directoryRoles` (not saved in `roleAssignments`).
    pub from_directory_roles: bool,
}

/// An administrative unit.
#[derive(Clone, Debug)]
pub struct AdminUnit {
    pub id: String,
    pub display_name: String,
    /// `isMemberManagementRestricted`.
    pub restricted: bool,
    /// User members (indexes into `users`).
    pub members: Vec<usize>,
}

/// A PIM for Groups schedule instance (eligible or active membership or ownership).
#[derive(Clone, Debug)]
pub struct GroupSchedule {
    pub id: String,
    /// Index into `groups`.
    pub group: usize,
    /// Index into `users`.
    pub user: usize,
    /// `member` or `owner`.
    pub access: String,
    pub eligible: bool,
}

/// State of a resetPassword long-running operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpStatus {
    NotStarted,
    Running,
    Succeeded,
    Failed,
}

impl OpStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OpStatus::NotStarted => "notStarted",
            OpStatus::Running => "running",
            OpStatus::Succeeded => "succeeded",
            OpStatus::Failed => "failed",
        }
    }
}

/// A resetPassword operation. Its status is a function of time (see [`Operation::status_at`]);
/// the password change is applied once, when it is first settled as succeeded.
#[derive(Clone)]
pub struct Operation {
    pub id: String,
    pub user: usize,
    pub created: DateTime<Utc>,
    pub duration: chrono::Duration,
    pub new_password_sha256: String,
    pub fails: bool,
    pub settled: bool,
}

impl Operation {
    /// notStarted for the first third of the duration, running until its end, then terminal.
    pub fn status_at(&self, now: DateTime<Utc>) -> OpStatus {
        let elapsed = now - self.created;
        if elapsed >= self.duration {
            if self.fails {
                OpStatus::Failed
            } else {
                OpStatus::Succeeded
            }
        } else if elapsed * 3 >= self.duration {
            OpStatus::Running
        } else {
            OpStatus::NotStarted
        }
    }
    /// When the operation last changed state (at or before `now`).
    pub fn last_action_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self.status_at(now) {
            OpStatus::NotStarted => self.created,
            OpStatus::Running => self.created + self.duration / 3,
            _ => self.created + self.duration,
        }
    }
    pub fn finished_at(&self) -> DateTime<Utc> {
        self.created + self.duration
    }
}

/// A pending device-code sign-in.
#[derive(Clone, Debug)]
pub struct DeviceCode {
    pub user_code: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub expires: DateTime<Utc>,
    pub approved_user: Option<usize>,
    pub polls: u32,
}

/// One tenant.
pub struct Tenant {
    pub id: String,
    pub initial_domain: String,
    pub domains: Vec<String>,
    pub display_name: Option<String>,
    pub apps: Vec<App>,
    pub public_clients: Vec<PublicClient>,
    pub device_code_auto_approve: Option<usize>,
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    /// Federated domains (lower case), also in `domains`.
    pub federated_domains: Vec<String>,
    pub default_domain: Option<String>,
    pub pim_license: bool,
    /// Built-in role definitions first (in [`ROLES`] order), then custom ones.
    pub role_defs: Vec<RoleDef>,
    pub admin_units: Vec<AdminUnit>,
    /// Active role assignments, the `directoryRoles` of users and apps included.
    pub assignments: Vec<Assignment>,
    /// PIM eligibilities.
    pub eligibilities: Vec<Assignment>,
    /// PIM for Groups eligibilities and active assignments.
    pub group_schedules: Vec<GroupSchedule>,
    /// The previous version of users written recently (`--read-lag`), with the time of the last
    /// write: see [`Tenant::user_view`].
    pub shadows: HashMap<usize, (User, std::time::Instant)>,
    by_id: HashMap<String, usize>,
    by_upn: HashMap<String, usize>,
    /// (lowercase UPN, user) sorted by UPN: range filters on `userPrincipalName` (`ge`/`le`,
    /// the partitions of a large listing) read their users from it instead of scanning, as a
    /// directory's index would
    upn_order: Vec<(String, usize)>,
    by_sid: HashMap<String, usize>,
    group_by_id: HashMap<String, usize>,
    pub operations: HashMap<String, Operation>,
    pub pending_operations: Vec<String>,
    /// device_code -> state
    pub device_codes: HashMap<String, DeviceCode>,
    /// Identity Protection's risky users, licence and rate limit (see `risky`).
    pub risky: super::risky::RiskyUsers,
}

impl Tenant {
    /// A user by object id or UPN (case-insensitive), as Graph resolves `/users/{id | upn}`.
    pub fn user_index(&self, key: &str) -> Option<usize> {
        let k = key.to_lowercase();
        self.by_id.get(&k).or_else(|| self.by_upn.get(&k)).copied()
    }
    pub fn user_by_id(&self, id: &str) -> Option<usize> {
        self.by_id.get(&id.to_lowercase()).copied()
    }
    pub fn user_by_upn(&self, upn: &str) -> Option<usize> {
        self.by_upn.get(&upn.to_lowercase()).copied()
    }
    /// Users whose lowercase UPN lies within `lo`..`hi` (bounds compared lowercase, like the
    /// filter's string comparison), in directory order.
    pub fn users_by_upn_range(
        &self,
        lo: std::ops::Bound<&str>,
        hi: std::ops::Bound<&str>,
    ) -> Vec<usize> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let o = &self.upn_order;
        let start = match lo {
            Included(v) => o.partition_point(|(u, _)| u.as_str() < v),
            Excluded(v) => o.partition_point(|(u, _)| u.as_str() <= v),
            Unbounded => 0,
        };
        let end = match hi {
            Included(v) => o.partition_point(|(u, _)| u.as_str() <= v),
            Excluded(v) => o.partition_point(|(u, _)| u.as_str() < v),
            Unbounded => o.len(),
        };
        let mut out: Vec<usize> = o[start..end.max(start)].iter().map(|(_, i)| *i).collect();
        out.sort_unstable();
        out
    }
    pub fn user_by_sid(&self, sid: &str) -> Option<usize> {
        self.by_sid.get(&sid.to_uppercase()).copied()
    }
    pub fn group_index(&self, id: &str) -> Option<usize> {
        self.group_by_id.get(&id.to_lowercase()).copied()
    }
    pub fn app(&self, client_id: &str) -> Option<&App> {
        self.apps
            .iter()
            .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
    }
    /// The tenant answers to its id and every domain.
    pub fn answers_to(&self, key: &str) -> bool {
        self.id.eq_ignore_ascii_case(key)
            || self.initial_domain.eq_ignore_ascii_case(key)
            || self.domains.iter().any(|d| d.eq_ignore_ascii_case(key))
    }

    /// The user as a read served `lag` after `now`'s writes sees it: the version before the
    /// last burst of writes while `now` is within `lag` of the last write to that user.
    pub fn user_view(&self, i: usize, now: std::time::Instant, lag: std::time::Duration) -> &User {
        if !lag.is_zero() {
            if let Some((old, at)) = self.shadows.get(&i) {
                if now.duration_since(*at) < lag {
                    return old;
                }
            }
        }
        &self.users[i]
    }

    /// Call before writing user `i` (with `--read-lag`): keeps the pre-write version for
    /// [`Tenant::user_view`]. A write within `lag` of the previous one keeps the older version
    /// (reads lag the whole burst) and moves the time of the last write.
    pub fn before_write(&mut self, i: usize, now: std::time::Instant, lag: std::time::Duration) {
        if lag.is_zero() {
            return;
        }
        match self.shadows.get_mut(&i) {
            Some((_, at)) if now.duration_since(*at) < lag => *at = now,
            _ => {
                let old = self.users[i].clone();
                self.shadows.insert(i, (old, now));
            }
        }
    }

    /// The domain part of a UPN is a federated domain.
    pub fn in_federated_domain(&self, upn: &str) -> bool {
        upn.rsplit_once('@').is_some_and(|(_, d)| {
            self.federated_domains
                .iter()
                .any(|f| f.eq_ignore_ascii_case(d))
        })
    }

    /// A user Entra protects as an administrator: holds a role (active, directly or through a
    /// role-assignable group, at any scope, or PIM-eligible), or is a member of a
    /// role-assignable group (documented: changing such members' credentials needs Privileged
    /// Authentication Administrator).
    pub fn is_privileged(&self, user: usize) -> bool {
        if self.users[user].is_admin() {
            return true;
        }
        let holds = |p: &Principal| match *p {
            Principal::User(u) => u == user,
            Principal::Group(g) => self.groups[g].members.contains(&Member::User(user)),
            Principal::App(_) => false,
        };
        let holds_role = |g: usize| {
            self.assignments
                .iter()
                .chain(&self.eligibilities)
                .any(|a| a.principal == Principal::Group(g))
        };
        self.assignments
            .iter()
            .chain(&self.eligibilities)
            .any(|a| holds(&a.principal))
            || self
                .group_schedules
                .iter()
                .any(|s| s.user == user && holds_role(s.group))
            || self
                .groups
                .iter()
                .any(|g| g.assignable_to_role && g.members.contains(&Member::User(user)))
    }

    /// The object id of a principal.
    pub fn principal_id(&self, p: Principal) -> &str {
        match p {
            Principal::User(u) => &self.users[u].id,
            Principal::Group(g) => &self.groups[g].id,
            Principal::App(a) => &self.apps[a].service_principal_id,
        }
    }

    /// Users reachable from a group through nested groups, each once, in discovery order
    /// (breadth-first; cycles are cut by the visited set).
    pub fn transitive_users(&self, group: usize) -> Vec<usize> {
        let mut seen_groups = HashSet::from([group]);
        let mut seen_users = HashSet::new();
        let mut out = Vec::new();
        let mut queue = std::collections::VecDeque::from([group]);
        while let Some(g) = queue.pop_front() {
            for m in &self.groups[g].members {
                match *m {
                    Member::User(u) => {
                        if seen_users.insert(u) {
                            out.push(u);
                        }
                    }
                    Member::Group(n) => {
                        if seen_groups.insert(n) {
                            queue.push_back(n);
                        }
                    }
                }
            }
        }
        out
    }

    /// Groups nested (transitively) in a group, each once, breadth-first.
    pub fn transitive_groups(&self, group: usize) -> Vec<usize> {
        let mut seen = HashSet::from([group]);
        let mut out = Vec::new();
        let mut queue = std::collections::VecDeque::from([group]);
        while let Some(g) = queue.pop_front() {
            for m in &self.groups[g].members {
                if let Member::Group(n) = *m {
                    if seen.insert(n) {
                        out.push(n);
                        queue.push_back(n);
                    }
                }
            }
        }
        out
    }

    /// Applies operations whose time has come; returns whether anything changed. `lag` is
    /// `--read-lag` (the settled password change is a write).
    pub fn settle_operations(&mut self, now: DateTime<Utc>, lag: std::time::Duration) -> bool {
        if self.pending_operations.is_empty() {
            return false;
        }
        let mut changed = false;
        let pending = std::mem::take(&mut self.pending_operations);
        for id in pending {
            let Some(op) = self.operations.get_mut(&id) else {
                continue;
            };
            match op.status_at(now) {
                OpStatus::Succeeded => {
                    op.settled = true;
                    let at = op.finished_at();
                    let hash = op.new_password_sha256.clone();
                    let ui = op.user;
                    self.before_write(ui, std::time::Instant::now(), lag);
                    let user = &mut self.users[ui];
                    user.password_changed(at, Some(hash));
                    // "authenticationMethod: resetPassword": "The user is prompted to change their
                    // password on their next sign in."
                    user.force_change = true;
                    changed = true;
                }
                OpStatus::Failed => op.settled = true,
                _ => self.pending_operations.push(id),
            }
        }
        changed
    }
}

/// All tenants.
pub struct Store {
    pub tenants: Vec<Tenant>,
}

impl Store {
    /// The tenant answering to an id or domain.
    pub fn tenant_index(&self, key: &str) -> Option<usize> {
        self.tenants.iter().position(|t| t.answers_to(key))
    }

    /// Validates a seed into a store. `name` (the file) is used in error messages.
    pub fn from_seed(seed: &Seed, name: &str) -> Result<Store, SeedError> {
        let err = |at: String, message: String| SeedError::Invalid {
            path: name.to_owned(),
            at,
            message,
        };
        if seed.tenants.is_empty() {
            return Err(err(
                "tenants".into(),
                "at least one tenant is needed".into(),
            ));
        }
        let mut tenants = Vec::with_capacity(seed.tenants.len());
        let mut tenant_keys = HashSet::new();
        for (ti, st) in seed.tenants.iter().enumerate() {
            let at = format!("tenants[{ti}]");
            let t = build_tenant(st, &at, &err)?;
            for key in std::iter::once(&t.id)
                .chain(std::iter::once(&t.initial_domain))
                .chain(t.domains.iter())
            {
                if !tenant_keys.insert(key.to_lowercase()) {
                    return Err(err(
                        at.clone(),
                        format!("tenant id or domain '{key}' is used by two tenants"),
                    ));
                }
            }
            tenants.push(t);
        }
        Ok(Store { tenants })
    }

    /// The store as a seed (for `--state`): passwords as hashes.
    pub fn to_seed(&self) -> Seed {
        Seed {
            tenants: self.tenants.iter().map(tenant_to_seed).collect(),
        }
    }
}

fn is_guid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

type ErrFn<'a> = dyn Fn(String, String) -> SeedError + 'a;

fn build_tenant(st: &SeedTenant, at: &str, err: &ErrFn) -> Result<Tenant, SeedError> {
    if !is_guid(&st.id) {
        return Err(err(
            format!("{at}.id"),
            format!("'{}' is not a GUID", st.id),
        ));
    }
    if !st.initial_domain.contains('.') {
        return Err(err(
            format!("{at}.initialDomain"),
            format!("'{}' is not a domain name", st.initial_domain),
        ));
    }
    let mut apps = Vec::new();
    for (ai, sa) in st.apps.iter().enumerate() {
        let at = format!("{at}.apps[{ai}]");
        if apps
            .iter()
            .any(|a: &App| a.client_id.eq_ignore_ascii_case(&sa.client_id))
        {
            return Err(err(
                format!("{at}.clientId"),
                format!("app '{}' is registered twice", sa.client_id),
            ));
        }
        apps.push(build_app(st, sa, &at, err)?);
    }
    let public_clients = st
        .public_clients
        .iter()
        .enumerate()
        .map(|(pi, p)| {
            if is_guid(&p.client_id) {
                Ok(PublicClient {
                    client_id: p.client_id.to_lowercase(),
                    scopes: p.scopes.clone(),
                })
            } else {
                Err(err(
                    format!("{at}.publicClients[{pi}].clientId"),
                    format!("'{}' is not a GUID", p.client_id),
                ))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;

    let domains: Vec<String> = std::iter::once(st.initial_domain.to_lowercase())
        .chain(st.domains.iter().map(|d| d.to_lowercase()))
        .chain(st.federated_domains.iter().map(|d| d.to_lowercase()))
        .collect();
    if let Some(d) = &st.default_domain {
        if !domains.iter().any(|x| x.eq_ignore_ascii_case(d)) {
            return Err(err(
                format!("{at}.defaultDomain"),
                format!("'{d}' is not one of the tenant's domains"),
            ));
        }
    }
    let mut users = Vec::with_capacity(st.users.len());
    let mut by_id = HashMap::with_capacity(st.users.len());
    let mut by_upn = HashMap::with_capacity(st.users.len());
    let mut by_sid = HashMap::new();
    for (ui, su) in st.users.iter().enumerate() {
        let at = format!("{at}.users[{ui}]");
        let u = build_user(su, &domains, &at, err)?;
        if by_id.insert(u.id.to_lowercase(), ui).is_some() {
            return Err(err(format!("{at}.id"), format!("duplicate id '{}'", u.id)));
        }
        if by_upn.insert(u.upn.to_lowercase(), ui).is_some() {
            return Err(err(
                format!("{at}.userPrincipalName"),
                format!("duplicate userPrincipalName '{}'", u.upn),
            ));
        }
        if let Some(sid) = &u.on_premises_sid {
            if by_sid.insert(sid.to_uppercase(), ui).is_some() {
                return Err(err(
                    format!("{at}.onPremisesSecurityIdentifier"),
                    format!("duplicate SID '{sid}'"),
                ));
            }
        }
        users.push(u);
    }

    // Groups: ids first, then members (which may name groups defined later).
    let mut groups = Vec::with_capacity(st.groups.len());
    let mut group_by_id = HashMap::with_capacity(st.groups.len());
    let mut group_by_name: HashMap<String, usize> = HashMap::new();
    for (gi, sg) in st.groups.iter().enumerate() {
        let at = format!("{at}.groups[{gi}]");
        let id = match &sg.id {
            Some(id) if is_guid(id) => id.to_lowercase(),
            Some(id) => return Err(err(format!("{at}.id"), format!("'{id}' is not a GUID"))),
            None => derived_guid(&format!("group:{}", st.id), &sg.display_name),
        };
        if sg.display_name.trim().is_empty() {
            return Err(err(
                format!("{at}.displayName"),
                "a group needs a display name".into(),
            ));
        }
        if group_by_id.insert(id.clone(), gi).is_some() || by_id.contains_key(&id) {
            return Err(err(format!("{at}.id"), format!("duplicate id '{id}'")));
        }
        if group_by_name
            .insert(sg.display_name.to_lowercase(), gi)
            .is_some()
        {
            return Err(err(
                format!("{at}.displayName"),
                format!("duplicate group name '{}'", sg.display_name),
            ));
        }
        groups.push(Group {
            id,
            display_name: sg.display_name.clone(),
            description: sg.description.clone(),
            members: Vec::new(),
            assignable_to_role: sg.is_assignable_to_role,
        });
    }
    for (gi, sg) in st.groups.iter().enumerate() {
        let mut members = Vec::with_capacity(sg.members.len());
        let mut seen = HashSet::new();
        for (mi, m) in sg.members.iter().enumerate() {
            let key = m.trim().to_lowercase();
            let member = if let Some(&u) = by_upn.get(&key).or_else(|| by_id.get(&key)) {
                Member::User(u)
            } else if let Some(&g) = group_by_id.get(&key).or_else(|| group_by_name.get(&key)) {
                Member::Group(g)
            } else {
                return Err(err(
                    format!("{at}.groups[{gi}].members[{mi}]"),
                    format!("'{m}' is neither a user (UPN or id) nor a group (name or id) of this tenant"),
                ));
            };
            if member == Member::Group(gi) {
                return Err(err(
                    format!("{at}.groups[{gi}].members[{mi}]"),
                    "a group cannot be a member of itself".into(),
                ));
            }
            if sg.is_assignable_to_role && matches!(member, Member::Group(_)) {
                return Err(err(
                    format!("{at}.groups[{gi}].members[{mi}]"),
                    "a role-assignable group cannot have groups as members (Entra: \"Group nesting isn't supported\")".into(),
                ));
            }
            if seen.insert(member) {
                members.push(member);
            }
        }
        groups[gi].members = members;
    }

    let device_code_auto_approve = match &st.device_code_auto_approve {
        None => None,
        Some(key) => {
            let k = key.to_lowercase();
            match by_upn.get(&k).or_else(|| by_id.get(&k)) {
                Some(&u) => Some(u),
                None => {
                    return Err(err(
                        format!("{at}.deviceCodeAutoApprove"),
                        format!("'{key}' is not a user of this tenant"),
                    ))
                }
            }
        }
    };

    let (role_defs, admin_units) = build_roles(st, at, err)?;
    let mut t = Tenant {
        id: st.id.to_lowercase(),
        initial_domain: st.initial_domain.to_lowercase(),
        domains: st
            .domains
            .iter()
            .chain(&st.federated_domains)
            .map(|d| d.to_lowercase())
            .collect(),
        federated_domains: st
            .federated_domains
            .iter()
            .map(|d| d.to_lowercase())
            .collect(),
        default_domain: st.default_domain.as_ref().map(|d| d.to_lowercase()),
        pim_license: st.pim_license.unwrap_or(true),
        role_defs,
        admin_units,
        assignments: Vec::new(),
        eligibilities: Vec::new(),
        group_schedules: Vec::new(),
        shadows: HashMap::new(),
        display_name: st.display_name.clone(),
        apps,
        public_clients,
        device_code_auto_approve,
        users,
        groups,
        by_id,
        upn_order: {
            let mut o: Vec<(String, usize)> = by_upn.iter().map(|(k, v)| (k.clone(), *v)).collect();
            o.sort_unstable();
            o
        },
        by_upn,
        by_sid,
        group_by_id,
        operations: HashMap::new(),
        pending_operations: Vec::new(),
        device_codes: HashMap::new(),
        risky: Default::default(),
    };
    build_assignments(&mut t, st, at, err)?;
    t.risky = super::risky::RiskyUsers::from_seed(&t, st, at, err)?;
    Ok(t)
}

fn build_roles(
    st: &SeedTenant,
    at: &str,
    err: &ErrFn,
) -> Result<(Vec<RoleDef>, Vec<AdminUnit>), SeedError> {
    let mut defs: Vec<RoleDef> = ROLES
        .iter()
        .map(|(name, template)| RoleDef {
            id: (*template).to_owned(),
            display_name: (*name).to_owned(),
            description: Some(format!("{name}.")),
            built_in: true,
            enabled: true,
            actions: Vec::new(),
        })
        .collect();
    for (ri, r) in st.role_definitions.iter().enumerate() {
        let at = format!("{at}.roleDefinitions[{ri}]");
        let id = match &r.id {
            Some(id) if is_guid(id) => id.to_lowercase(),
            Some(id) => return Err(err(format!("{at}.id"), format!("'{id}' is not a GUID"))),
            None => derived_guid(&format!("roledef:{}", st.id), &r.display_name),
        };
        if r.display_name.trim().is_empty()
            || defs
                .iter()
                .any(|d| d.display_name.eq_ignore_ascii_case(&r.display_name) || d.id == id)
        {
            return Err(err(
                format!("{at}.displayName"),
                format!(
                    "'{}' is empty or already a role of the tenant (built-in roles included)",
                    r.display_name
                ),
            ));
        }
        defs.push(RoleDef {
            id,
            display_name: r.display_name.clone(),
            description: r.description.clone(),
            built_in: false,
            enabled: r.is_enabled.unwrap_or(true),
            actions: r.allowed_resource_actions.clone(),
        });
    }
    let mut units: Vec<AdminUnit> = Vec::new();
    for (ui, u) in st.administrative_units.iter().enumerate() {
        let at = format!("{at}.administrativeUnits[{ui}]");
        let id = match &u.id {
            Some(id) if is_guid(id) => id.to_lowercase(),
            Some(id) => return Err(err(format!("{at}.id"), format!("'{id}' is not a GUID"))),
            None => derived_guid(&format!("au:{}", st.id), &u.display_name),
        };
        if units
            .iter()
            .any(|x| x.id == id || x.display_name.eq_ignore_ascii_case(&u.display_name))
        {
            return Err(err(
                format!("{at}.displayName"),
                format!("duplicate administrative unit '{}'", u.display_name),
            ));
        }
        units.push(AdminUnit {
            id,
            display_name: u.display_name.clone(),
            restricted: u.is_member_management_restricted,
            members: Vec::new(),
        });
    }
    Ok((defs, units))
}

/// Graph-like ids of role assignments (`...-1`) and eligibility instances (`...-1-e`).
fn assignment_id(tenant: &str, what: &str, role: &str, principal: &str, scope: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(format!("{tenant}:{what}:{role}:{principal}:{scope}"));
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d[..24]);
    if what == "eligible" {
        format!("{b}-1-e")
    } else {
        format!("{b}-1")
    }
}

fn build_assignments(
    t: &mut Tenant,
    st: &SeedTenant,
    at: &str,
    err: &ErrFn,
) -> Result<(), SeedError> {
    // The directoryRoles of users and apps: tenant-wide active assignments of built-in roles.
    let mut direct = Vec::new();
    for (ui, u) in t.users.iter().enumerate() {
        for r in &u.roles {
            direct.push((r.0 as usize, Principal::User(ui)));
        }
    }
    for (ai, a) in t.apps.iter().enumerate() {
        for r in &a.roles {
            direct.push((r.0 as usize, Principal::App(ai)));
        }
    }
    for (role, p) in direct {
        let pid = t.principal_id(p).to_owned();
        t.assignments.push(Assignment {
            id: assignment_id(&t.id, "active", &t.role_defs[role].id, &pid, "/"),
            role,
            principal: p,
            scope: "/".into(),
            start: None,
            end: None,
            from_directory_roles: true,
        });
    }
    for (list, eligible, name) in [
        (&st.role_assignments, false, "roleAssignments"),
        (&st.role_eligibilities, true, "roleEligibilities"),
    ] {
        for (i, sa) in list.iter().enumerate() {
            let at = format!("{at}.{name}[{i}]");
            let a = build_assignment(t, sa, eligible, &at, err)?;
            if eligible {
                t.eligibilities.push(a);
            } else {
                t.assignments.push(a);
            }
        }
    }
    for (ui, su) in st.administrative_units.iter().enumerate() {
        for (mi, m) in su.members.iter().enumerate() {
            let Some(u) = t.user_index(m) else {
                return Err(err(
                    format!("{at}.administrativeUnits[{ui}].members[{mi}]"),
                    format!("'{m}' is not a user of this tenant"),
                ));
            };
            t.admin_units[ui].members.push(u);
        }
    }
    for (list, eligible, name) in [
        (&st.group_eligibilities, true, "groupEligibilities"),
        (&st.group_assignments, false, "groupAssignments"),
    ] {
        for (i, gs) in list.iter().enumerate() {
            let at = format!("{at}.{name}[{i}]");
            let group = t
                .group_index(&gs.group)
                .or_else(|| {
                    t.groups
                        .iter()
                        .position(|g| g.display_name.eq_ignore_ascii_case(&gs.group))
                })
                .ok_or_else(|| {
                    err(
                        format!("{at}.group"),
                        format!("'{}' is not a group of this tenant", gs.group),
                    )
                })?;
            let user = t.user_index(&gs.principal).ok_or_else(|| {
                err(
                    format!("{at}.principal"),
                    format!("'{}' is not a user of this tenant", gs.principal),
                )
            })?;
            let access = gs.access_id.clone().unwrap_or_else(|| "member".into());
            if access != "member" && access != "owner" {
                return Err(err(
                    format!("{at}.accessId"),
                    format!("'{access}' is neither member nor owner"),
                ));
            }
            t.group_schedules.push(GroupSchedule {
                id: assignment_id(
                    &t.id,
                    if eligible { "eligible" } else { "active" },
                    &access,
                    &t.users[user].id,
                    &t.groups[group].id,
                ),
                group,
                user,
                access,
                eligible,
            });
        }
    }
    if !t.pim_license && !t.eligibilities.is_empty() {
        return Err(err(
            format!("{at}.roleEligibilities"),
            "a tenant without a PIM licence (pimLicense: false) cannot have eligible assignments"
                .into(),
        ));
    }
    Ok(())
}

fn build_assignment(
    t: &Tenant,
    sa: &SeedRoleAssignment,
    eligible: bool,
    at: &str,
    err: &ErrFn,
) -> Result<Assignment, SeedError> {
    let key = sa.role.trim();
    let role = t
        .role_defs
        .iter()
        .position(|d| d.id.eq_ignore_ascii_case(key) || d.display_name.eq_ignore_ascii_case(key))
        .ok_or_else(|| {
            err(
                format!("{at}.role"),
                format!("'{key}' is neither a built-in role nor a custom role of the tenant"),
            )
        })?;
    let pk = sa.principal.trim().to_lowercase();
    let principal = if let Some(u) = t.user_index(&pk) {
        Principal::User(u)
    } else if let Some(g) = t.group_index(&pk).or_else(|| {
        t.groups
            .iter()
            .position(|g| g.display_name.to_lowercase() == pk)
    }) {
        if !t.groups[g].assignable_to_role {
            return Err(err(
                format!("{at}.principal"),
                format!(
                    "group '{}' is not role-assignable (isAssignableToRole: true is needed)",
                    t.groups[g].display_name
                ),
            ));
        }
        Principal::Group(g)
    } else if let Some(a) = t
        .apps
        .iter()
        .position(|a| a.client_id == pk || a.service_principal_id == pk)
    {
        Principal::App(a)
    } else {
        return Err(err(
            format!("{at}.principal"),
            format!(
                "'{}' is not a user, group or app of this tenant",
                sa.principal
            ),
        ));
    };
    let scope = match sa.scope.as_deref().map(str::trim) {
        None | Some("/") | Some("") => "/".to_owned(),
        Some(s) => {
            let k = s.trim_start_matches("/administrativeUnits/").to_lowercase();
            let u = t
                .admin_units
                .iter()
                .find(|u| u.id == k || u.display_name.to_lowercase() == k)
                .ok_or_else(|| {
                    err(
                        format!("{at}.scope"),
                        format!("'{s}' is neither '/' nor an administrative unit of this tenant"),
                    )
                })?;
            format!("/administrativeUnits/{}", u.id)
        }
    };
    let pid = t.principal_id(principal).to_owned();
    let what = if eligible { "eligible" } else { "active" };
    Ok(Assignment {
        id: sa
            .id
            .clone()
            .unwrap_or_else(|| assignment_id(&t.id, what, &t.role_defs[role].id, &pid, &scope)),
        role,
        principal,
        scope,
        start: if eligible {
            Some(sa.start_date_time.unwrap_or_else(default_created))
        } else {
            None
        },
        end: sa.end_date_time,
        from_directory_roles: false,
    })
}

fn roles(names: &[String], at: &str, err: &ErrFn) -> Result<Vec<Role>, SeedError> {
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        match Role::by_name(n) {
            Some(r) if !out.contains(&r) => out.push(r),
            Some(_) => {}
            None => {
                let known: Vec<_> = ROLES.iter().map(|(n, _)| *n).collect();
                return Err(err(
                    format!("{at}[{i}]"),
                    format!("unknown directory role '{n}'; known: {}", known.join(", ")),
                ));
            }
        }
    }
    Ok(out)
}

fn build_app(st: &SeedTenant, sa: &SeedApp, at: &str, err: &ErrFn) -> Result<App, SeedError> {
    if !is_guid(&sa.client_id) {
        return Err(err(
            format!("{at}.clientId"),
            format!("'{}' is not a GUID", sa.client_id),
        ));
    }
    let mut certificates = Vec::new();
    for (ci, pem_text) in sa.certificates.iter().enumerate() {
        let at = format!("{at}.certificates[{ci}]");
        let parsed = pem::parse(pem_text.as_bytes())
            .map_err(|e| err(at.clone(), format!("not a PEM certificate: {e}")))?;
        if parsed.tag() != "CERTIFICATE" {
            return Err(err(
                at,
                format!("expected a CERTIFICATE PEM block, found {}", parsed.tag()),
            ));
        }
        let der = parsed.contents();
        let key = DecodingKey::from_rsa_pem(pem_text.as_bytes()).map_err(|e| {
            err(
                at.clone(),
                format!("no RSA public key in the certificate: {e}"),
            )
        })?;
        certificates.push(Certificate {
            pem: pem_text.clone(),
            sha1: sha1::Sha1::digest(der).to_vec(),
            sha256: sha2::Sha256::digest(der).to_vec(),
            key: Arc::new(key),
        });
    }
    let mut federated = Vec::new();
    for (fi, f) in sa.federated_credentials.iter().enumerate() {
        let at = format!("{at}.federatedCredentials[{fi}]");
        let key = DecodingKey::from_rsa_pem(f.issuer_public_key_pem.as_bytes()).map_err(|e| {
            err(
                format!("{at}.issuerPublicKeyPem"),
                format!("not an RSA public key: {e}"),
            )
        })?;
        if f.issuer.is_empty() || f.subject.is_empty() {
            return Err(err(at, "issuer and subject are required".into()));
        }
        federated.push(FederatedCredential {
            issuer: f.issuer.clone(),
            subject: f.subject.clone(),
            audiences: if f.audiences.is_empty() {
                vec![super::auth::FEDERATED_AUDIENCE.to_owned()]
            } else {
                f.audiences.clone()
            },
            pem: f.issuer_public_key_pem.clone(),
            key: Arc::new(key),
        });
    }
    Ok(App {
        client_id: sa.client_id.to_lowercase(),
        display_name: sa
            .display_name
            .clone()
            .unwrap_or_else(|| "pwdrift".to_owned()),
        service_principal_id: match &sa.service_principal_id {
            Some(id) if is_guid(id) => id.to_lowercase(),
            Some(id) => {
                return Err(err(
                    format!("{at}.servicePrincipalId"),
                    format!("'{id}' is not a GUID"),
                ))
            }
            None => derived_guid(&format!("sp:{}", st.id), &sa.client_id),
        },
        secrets: sa.client_secrets.clone(),
        certificates,
        federated,
        permissions: sa.application_permissions.clone(),
        roles: roles(&sa.directory_roles, &format!("{at}.directoryRoles"), err)?,
    })
}

fn default_created() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

fn build_user(su: &SeedUser, domains: &[String], at: &str, err: &ErrFn) -> Result<User, SeedError> {
    let upn = su.user_principal_name.trim();
    let Some((local, domain)) = upn.rsplit_once('@') else {
        return Err(err(
            format!("{at}.userPrincipalName"),
            format!("'{upn}' is not a user principal name (local@domain)"),
        ));
    };
    if local.is_empty() || !domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
        return Err(err(
            format!("{at}.userPrincipalName"),
            format!(
                "the domain of '{upn}' is not one of the tenant's ({})",
                domains.join(", ")
            ),
        ));
    }
    let id = match &su.id {
        Some(id) if is_guid(id) => id.to_lowercase(),
        Some(id) => return Err(err(format!("{at}.id"), format!("'{id}' is not a GUID"))),
        None => derived_guid("user", upn),
    };
    if let Some(sid) = &su.on_premises_security_identifier {
        if !sid.to_uppercase().starts_with("S-1-") {
            return Err(err(
                format!("{at}.onPremisesSecurityIdentifier"),
                format!("'{sid}' is not a SID (S-1-...)"),
            ));
        }
    }
    if su.password.is_some() && su.password_sha256.is_some() {
        return Err(err(
            format!("{at}.password"),
            "give password or passwordSha256, not both".into(),
        ));
    }
    let created = su.created_date_time.unwrap_or_else(default_created);
    let profile = su.password_profile.unwrap_or_default();
    Ok(User {
        id,
        upn: upn.to_owned(),
        display_name: su.display_name.clone().unwrap_or_else(|| local.to_owned()),
        given_name: su.given_name.clone(),
        surname: su.surname.clone(),
        mail: su.mail.clone(),
        job_title: su.job_title.clone(),
        account_enabled: su.account_enabled.unwrap_or(true),
        force_change: profile.force_change_password_next_sign_in,
        force_change_mfa: profile.force_change_password_next_sign_in_with_mfa,
        password_policies: su.password_policies.clone(),
        last_password_change: su.last_password_change_date_time.unwrap_or(created),
        created,
        on_premises_sync_enabled: su.on_premises_sync_enabled,
        on_premises_sid: su.on_premises_security_identifier.clone(),
        roles: roles(&su.directory_roles, &format!("{at}.directoryRoles"), err)?,
        password_sha256: su
            .password
            .as_deref()
            .map(password_hash)
            .or_else(|| su.password_sha256.clone()),
        reset_fails: su.reset_fails,
        user_type: su.user_type.clone(),
        creation_type: su.creation_type.clone(),
        external_user_state: su.external_user_state.clone(),
    })
}

fn tenant_to_seed(t: &Tenant) -> SeedTenant {
    SeedTenant {
        id: t.id.clone(),
        initial_domain: t.initial_domain.clone(),
        display_name: t.display_name.clone(),
        apps: t
            .apps
            .iter()
            .map(|a| SeedApp {
                client_id: a.client_id.clone(),
                display_name: Some(a.display_name.clone()),
                service_principal_id: Some(a.service_principal_id.clone()),
                client_secrets: a.secrets.clone(),
                certificates: a.certificates.iter().map(|c| c.pem.clone()).collect(),
                federated_credentials: a
                    .federated
                    .iter()
                    .map(|f| SeedFederatedCredential {
                        issuer: f.issuer.clone(),
                        subject: f.subject.clone(),
                        audiences: f.audiences.clone(),
                        issuer_public_key_pem: f.pem.clone(),
                    })
                    .collect(),
                application_permissions: a.permissions.clone(),
                directory_roles: a.roles.iter().map(|r| r.name().to_owned()).collect(),
            })
            .collect(),
        public_clients: t
            .public_clients
            .iter()
            .map(|p| SeedPublicClient {
                client_id: p.client_id.clone(),
                scopes: p.scopes.clone(),
            })
            .collect(),
        device_code_auto_approve: t.device_code_auto_approve.map(|u| t.users[u].upn.clone()),
        users: t
            .users
            .iter()
            .map(|u| SeedUser {
                id: Some(u.id.clone()),
                user_principal_name: u.upn.clone(),
                display_name: Some(u.display_name.clone()),
                given_name: u.given_name.clone(),
                surname: u.surname.clone(),
                mail: u.mail.clone(),
                job_title: u.job_title.clone(),
                account_enabled: Some(u.account_enabled),
                password_profile: (u.force_change || u.force_change_mfa).then_some(
                    SeedPasswordProfile {
                        force_change_password_next_sign_in: u.force_change,
                        force_change_password_next_sign_in_with_mfa: u.force_change_mfa,
                    },
                ),
                password_policies: u.password_policies.clone(),
                last_password_change_date_time: Some(u.last_password_change),
                created_date_time: Some(u.created),
                on_premises_sync_enabled: u.on_premises_sync_enabled,
                on_premises_security_identifier: u.on_premises_sid.clone(),
                directory_roles: u.roles.iter().map(|r| r.name().to_owned()).collect(),
                password: None,
                password_sha256: u.password_sha256.clone(),
                reset_fails: u.reset_fails,
                user_type: u.user_type.clone(),
                creation_type: u.creation_type.clone(),
                external_user_state: u.external_user_state.clone(),
            })
            .collect(),
        groups: t
            .groups
            .iter()
            .map(|g| SeedGroup {
                id: Some(g.id.clone()),
                display_name: g.display_name.clone(),
                description: g.description.clone(),
                members: g
                    .members
                    .iter()
                    .map(|m| match *m {
                        Member::User(u) => t.users[u].id.clone(),
                        Member::Group(g) => t.groups[g].id.clone(),
                    })
                    .collect(),
                is_assignable_to_role: g.assignable_to_role,
            })
            .collect(),
        domains: t
            .domains
            .iter()
            .filter(|d| !t.federated_domains.contains(d))
            .cloned()
            .collect(),
        federated_domains: t.federated_domains.clone(),
        default_domain: t.default_domain.clone(),
        pim_license: (!t.pim_license).then_some(false),
        role_definitions: t
            .role_defs
            .iter()
            .filter(|d| !d.built_in)
            .map(|d| SeedRoleDefinition {
                id: Some(d.id.clone()),
                display_name: d.display_name.clone(),
                description: d.description.clone(),
                is_enabled: Some(d.enabled),
                allowed_resource_actions: d.actions.clone(),
            })
            .collect(),
        administrative_units: t
            .admin_units
            .iter()
            .map(|u| SeedAdministrativeUnit {
                id: Some(u.id.clone()),
                display_name: u.display_name.clone(),
                is_member_management_restricted: u.restricted,
                members: u.members.iter().map(|&m| t.users[m].id.clone()).collect(),
            })
            .collect(),
        role_assignments: assignments_to_seed(t, &t.assignments),
        role_eligibilities: assignments_to_seed(t, &t.eligibilities),
        group_eligibilities: group_schedules_to_seed(t, true),
        group_assignments: group_schedules_to_seed(t, false),
        risky_users: t.risky.to_seed(),
        identity_protection_license: (!t.risky.licensed).then_some(false),
    }
}

fn group_schedules_to_seed(t: &Tenant, eligible: bool) -> Vec<SeedGroupSchedule> {
    t.group_schedules
        .iter()
        .filter(|g| g.eligible == eligible)
        .map(|g| SeedGroupSchedule {
            group: t.groups[g.group].id.clone(),
            principal: t.users[g.user].id.clone(),
            access_id: Some(g.access.clone()),
        })
        .collect()
}

fn assignments_to_seed(t: &Tenant, list: &[Assignment]) -> Vec<SeedRoleAssignment> {
    list.iter()
        .filter(|a| !a.from_directory_roles)
        .map(|a| SeedRoleAssignment {
            id: Some(a.id.clone()),
            role: t.role_defs[a.role].id.clone(),
            principal: t.principal_id(a.principal).to_owned(),
            scope: (a.scope != "/").then(|| a.scope.clone()),
            start_date_time: a.start,
            end_date_time: a.end,
        })
        .collect()
}

#[cfg(test)]
mod role_state_tests {
    fn privileged_seed() -> crate::seed::Seed {
        crate::seed::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../examples/sandbox/privileged.seed.yaml"),
        )
        .expect("example seed loads")
    }

    /// A saved `--state` keeps roles, scopes, eligibilities, domains and guests.
    #[test]
    fn state_round_trip_keeps_roles_domains_and_guests() {
        use crate::store::Store;
        let a = Store::from_seed(&privileged_seed(), "privileged").unwrap();
        let b = Store::from_seed(&a.to_seed(), "state").unwrap();
        let (ta, tb) = (&a.tenants[0], &b.tenants[0]);
        let ids = |l: &[crate::store::Assignment]| {
            let mut v: Vec<(String, String)> =
                l.iter().map(|x| (x.id.clone(), x.scope.clone())).collect();
            v.sort();
            v
        };
        assert_eq!(ids(&ta.assignments), ids(&tb.assignments));
        assert_eq!(ids(&ta.eligibilities), ids(&tb.eligibilities));
        assert_eq!(ta.role_defs.len(), tb.role_defs.len());
        assert_eq!(tb.federated_domains, ["corp.northwind.com"]);
        assert_eq!(tb.default_domain.as_deref(), Some("northwind.com"));
        let guest = tb.users.iter().find(|u| u.is_guest()).unwrap();
        assert_eq!(guest.external_user_state.as_deref(), Some("Accepted"));
        assert!(tb.groups.iter().any(|g| g.assignable_to_role));
        // a role-assignable group cannot nest groups; a role needs a role-assignable group
        let mut seed = privileged_seed();
        seed.tenants[0].groups[0].members.push("All Staff".into());
        let e = Store::from_seed(&seed, "x").err().unwrap().to_string();
        assert!(e.contains("nesting"), "{e}");
        let mut seed = privileged_seed();
        seed.tenants[0].role_assignments[2].principal = "All Staff".into();
        let e = Store::from_seed(&seed, "x").err().unwrap().to_string();
        assert!(e.contains("not role-assignable"), "{e}");
    }
}
