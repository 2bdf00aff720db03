//! The declared groups, as they are read: each found by object id or display name, then its
//! transitive user members, members of nested groups included (Microsoft Graph, "List group
//! transitive members",
//! <https://learn.microsoft.com/en-us/graph/api/group-list-transitivemembers>). A group that
//! cannot be resolved is recorded as such, for [`super::resolve()`] to report.

use crate::config::{GroupEntry, GroupRef};
use crate::graph::client::{GraphClient, GraphError};

use super::FetchedGroup;

/// Each declared group of `tenant`, one after another, in the order of desired state. Only Graph
/// failures are errors; a group that no name matches, or several, or that does not exist, is a
/// [`FetchedGroup`] variant.
pub(super) async fn read_groups(
    client: &GraphClient,
    tenant: &str,
    declared: &[GroupEntry],
) -> Result<Vec<FetchedGroup>, GraphError> {
    let mut groups = Vec::with_capacity(declared.len());
    for g in declared {
        let group_id = match &g.group {
            GroupRef::ObjectId(id) => id.clone(),
            GroupRef::DisplayName(name) => {
                let found = client.find_groups_by_name(tenant, name).await?;
                match found.as_slice() {
                    [one] => one.id.clone(),
                    [] => {
                        groups.push(FetchedGroup::NoneNamed);
                        continue;
                    }
                    many => {
                        groups.push(FetchedGroup::Ambiguous(many.len()));
                        continue;
                    }
                }
            }
        };
        groups.push(match client.group_user_members(tenant, &group_id).await {
            Ok(members) => FetchedGroup::Members(members),
            Err(GraphError::NotFound { .. }) => FetchedGroup::NotFound,
            Err(e) => return Err(e),
        });
    }
    Ok(groups)
}
