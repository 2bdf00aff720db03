//! `--shard I/N`: split the tenants of a desired state between N CI jobs.
//!
//! Each tenant belongs to exactly one shard: the first 8 bytes of the SHA-256 of its tenant id
//! (the `tid` of the token issued for it, lower-cased; the name as written when a token carries
//! none), read as a big-endian integer, modulo N. Sharding by id, not by name, keeps every name
//! of one tenant (its domains, its GUID) in one shard, where they are joined and checked for
//! duplicates; the price is that every shard job signs in to every tenant. The
//! assignment depends only on the tenant's own identifier and N, so adding or removing a tenant
//! never moves another one; changing N may. (std's `HashMap` hasher is randomized per process and
//! must not be used here.) Shards are numbered from 1, as in a CI matrix `shard: [1, 2, 3]`.

use sha2::{Digest, Sha256};

/// One shard of N, `index` in `1..=count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The shard (1-based) a tenant identifier belongs to, among `count`.
    pub fn of(tenant: &str, count: u32) -> u32 {
        assert!(count > 0, "at least one shard");
        let digest = Sha256::digest(tenant.trim().to_lowercase().as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(first) % u64::from(count)) as u32 + 1
    }

    /// Whether `tenant` belongs to this shard.
    pub fn contains(&self, tenant: &str) -> bool {
        Shard::of(tenant, self.count) == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Why `--shard` is not `I/N` with `1 <= I <= N`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("expected I/N (e.g. 1/4), got `{0}`")]
    NotIOverN(String),
    #[error("shard index `{0}` is not a positive integer")]
    BadIndex(String),
    #[error("shard count `{0}` is not a positive integer")]
    BadCount(String),
    #[error("the shard count N must be at least 1")]
    ZeroCount,
    #[error("shard index must be between 1 and {count} (shards are numbered from 1), got {index}")]
    OutOfRange { index: u32, count: u32 },
}

impl std::str::FromStr for Shard {
    type Err = ShardError;

    /// `I/N` with `1 <= I <= N`.
    fn from_str(s: &str) -> Result<Shard, ShardError> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| ShardError::NotIOverN(s.to_owned()))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| ShardError::BadIndex(i.to_owned()))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| ShardError::BadCount(n.to_owned()))?;
        if count == 0 {
            return Err(ShardError::ZeroCount);
        }
        if index == 0 || index > count {
            return Err(ShardError::OutOfRange { index, count });
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("tenant{i:03}.onmicrosoft.com"))
            .collect()
    }

    #[test]
    fn every_tenant_is_in_exactly_one_shard() {
        let all = tenants(200);
        for count in [1u32, 2, 3, 4, 7, 16] {
            let shards: Vec<Shard> = (1..=count).map(|index| Shard { index, count }).collect();
            let mut sizes = vec![0usize; count as usize];
            for t in &all {
                let holders: Vec<&Shard> = shards.iter().filter(|s| s.contains(t)).collect();
                assert_eq!(holders.len(), 1, "{t} with N={count}: {holders:?}");
                sizes[holders[0].index as usize - 1] += 1;
            }
            // a real spread, not everything in one shard
            if count > 1 {
                assert!(
                    sizes.iter().all(|&s| s > 0),
                    "N={count}: empty shard in {sizes:?}"
                );
            }
        }
    }

    #[test]
    fn adding_tenants_does_not_move_the_others() {
        let before = tenants(50);
        let after = tenants(80);
        for count in [2u32, 3, 5, 8] {
            for t in &before {
                let was = Shard::of(t, count);
                assert!(after.contains(t));
                assert_eq!(
                    Shard::of(t, count),
                    was,
                    "{t} moved when tenants were added"
                );
            }
        }
    }

    #[test]
    fn assignment_is_stable_across_releases_and_case() {
        // Pinned values: a change here would move tenants between CI jobs.
        assert_eq!(
            Shard::of("contoso.onmicrosoft.com", 4),
            Shard::of("Contoso.OnMicrosoft.com", 4)
        );
        let pinned: Vec<u32> = ["contoso.onmicrosoft.com", "fabrikam.com", "tailspin.com"]
            .iter()
            .map(|t| Shard::of(t, 5))
            .collect();
        assert_eq!(pinned, PINNED);
    }
    const PINNED: [u32; 3] = [1, 3, 2];

    #[test]
    fn parses_i_over_n() {
        assert_eq!("2/4".parse(), Ok(Shard { index: 2, count: 4 }));
        assert_eq!("1/1".parse(), Ok(Shard { index: 1, count: 1 }));
        assert!("0/4".parse::<Shard>().is_err());
        assert!("5/4".parse::<Shard>().is_err());
        assert!("1/0".parse::<Shard>().is_err());
        assert!("a/4".parse::<Shard>().is_err());
        assert!("4".parse::<Shard>().is_err());
    }
}
