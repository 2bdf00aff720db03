//! The pipeline's steps below the engine, for the tests and tools that drive one step on its own
//! (the property tests of the diff, the apply and journal tests against the sandbox, the fuzz
//! harness). Everything else of those modules stays inside the crate.

/// Step 2: live state, and the pure resolution of desired-state references against it.
pub mod live {
    pub use crate::live::{
        resolve, Caller, Fetched, FetchedGroup, FetchedUsers, LiveTenant, LiveUser,
        PrivilegedRoles, RoleGrant,
    };
}

/// Step 3: the pure diff.
pub use crate::diff::diff;

/// Step 5: applying one tenant's plan, and resolving what an interrupted run left pending.
pub mod apply {
    pub use crate::apply::{
        apply_tenant, resolve_pending, Cancel, Ledger, ResolvedPasswords, Shared, SharedSecrets,
        Status, TenantClients,
    };
}

/// Step 6: whether a password change Graph reports is the one a write made.
pub use crate::verify::password_change_since;

/// Which tenants belong to `--shard I/N`.
pub use crate::shard::Shard;
