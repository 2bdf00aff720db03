//! What desired state may reach on the machine that runs pwdrift: desired state is reviewed text,
//! and it must not become a way to pull the runner's own secrets into a password, a log or a
//! diagnostic.
//!
//! - A password `env:` source may not name a variable that holds pwdrift's own credentials or a
//!   CI platform's identity tokens ([`is_credential_var`]): `AZURE_*` (the Azure SDK's
//!   environment credential), `PWDRIFT_*`, GitHub Actions' OIDC request token and URL and
//!   `ACTIONS_RUNTIME_TOKEN`, `GITHUB_TOKEN`, Azure Pipelines' `SYSTEM_ACCESSTOKEN` and
//!   `SYSTEM_OIDCREQUESTURI`, GitLab's `CI_JOB_JWT*`, `CI_JOB_TOKEN` and `*_ID_TOKEN` id tokens,
//!   `AWS_*`, `ARM_*` (Terraform's azurerm provider) and the managed-identity endpoints
//!   (`IDENTITY_*`, `MSI_*`). Names are compared case-insensitively (Windows environments are).
//! - A password `file:` source must be a regular file (checked on an open descriptor, as
//!   [`super::read`] does: no FIFO, device or socket) whose path, resolved with every symlink
//!   followed, lies inside the desired-state root (the directory argument the declaring file was
//!   found under, or the directory of a file argument) or inside a directory the user allowed
//!   (`--allow-password-dir`): [`Reach`].
//! - A desired-state file found by walking a directory may be a symlink only to a file inside that
//!   directory ([`leaves`]); the loader refuses the others.

use std::path::{Component, Path, PathBuf};

use super::read::{self, ReadError};

/// Prefixes of credential variables (compared upper-case).
const CREDENTIAL_PREFIXES: &[&str] = &[
    "AZURE_",
    "PWDRIFT_",
    "CI_JOB_JWT",
    "AWS_",
    "ARM_",
    "IDENTITY_",
    "MSI_",
];

/// Credential variables named in full (compared upper-case).
const CREDENTIAL_NAMES: &[&str] = &[
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_RUNTIME_TOKEN",
    "GITHUB_TOKEN",
    "SYSTEM_ACCESSTOKEN",
    "SYSTEM_OIDCREQUESTURI",
    "CI_JOB_TOKEN",
];

/// Whether `name` is a variable pwdrift itself, its credential or its CI platform reads secrets
/// from, which a password source may therefore not name (see the module comment).
pub fn is_credential_var(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    CREDENTIAL_PREFIXES.iter().any(|p| upper.starts_with(p))
        || CREDENTIAL_NAMES.contains(&upper.as_str())
        || upper.ends_with("_ID_TOKEN")
}

/// Why a password file is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// not a regular file: what it is (`a FIFO`, `a character device`, ...)
    NotRegular(String),
    /// outside every allowed directory: where it resolves to
    Outside(PathBuf),
}

/// The directories a password file may lie in: the desired-state root of the declaring file and
/// the directories allowed by `--allow-password-dir`, each canonical.
#[derive(Clone, Debug, Default)]
pub struct Reach {
    dirs: Vec<PathBuf>,
}

impl Reach {
    /// `root` (the desired-state root) and `allowed`, canonicalised; a directory that does not
    /// exist allows nothing.
    pub fn new(root: &Path, allowed: &[PathBuf]) -> Reach {
        let dirs = std::iter::once(root)
            .chain(allowed.iter().map(PathBuf::as_path))
            .filter_map(|d| std::fs::canonicalize(dir_or_dot(d)).ok())
            .collect();
        Reach { dirs }
    }

    /// Checks a password file (already resolved against the declaring file's directory): a
    /// regular file when it exists (opened without blocking, checked with `fstat`; nothing is
    /// read), inside an allowed directory once every symlink is followed. A file that does not
    /// exist yet is judged by where it would be (apply reports it missing).
    pub fn check(&self, path: &Path) -> Result<(), Refusal> {
        if let Err(e @ ReadError::NotRegular { .. }) = read::open_regular(path, u64::MAX) {
            return Err(Refusal::NotRegular(e.to_string()));
        }
        let resolved = resolve(path);
        if self.dirs.iter().any(|d| resolved.starts_with(d)) {
            Ok(())
        } else {
            Err(Refusal::Outside(resolved))
        }
    }
}

/// `d`, or `.` for the empty path (the directory of a bare file name).
fn dir_or_dot(d: &Path) -> &Path {
    if d.as_os_str().is_empty() {
        Path::new(".")
    } else {
        d
    }
}

/// Where `path` leads: canonical when it exists; else its deepest existing ancestor canonical,
/// then the rest applied component by component (a `..` removes one), so that no `..` climbs
/// out unseen.
fn resolve(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = Vec::new();
    let mut base = abs.as_path();
    loop {
        if let Ok(mut p) = std::fs::canonicalize(base) {
            for c in rest.iter().rev() {
                match c {
                    Component::ParentDir => {
                        p.pop();
                    }
                    Component::Normal(n) => p.push(n),
                    _ => {}
                }
            }
            return p;
        }
        let (Some(last), Some(parent)) = (base.components().next_back(), base.parent()) else {
            return abs;
        };
        rest.push(last);
        base = parent;
    }
}

/// Whether `file`, found by walking `root`, resolves (symlinks followed) outside `root`: then it
/// is refused. `None` when it cannot be resolved (the read reports why).
pub fn leaves(file: &Path, root: &Path) -> Option<PathBuf> {
    let root = std::fs::canonicalize(dir_or_dot(root)).ok()?;
    let target = std::fs::canonicalize(file).ok()?;
    (!target.starts_with(&root)).then_some(target)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn credential_variables() {
        for v in [
            "AZURE_CLIENT_SECRET",
            "azure_client_secret",
            "PWDRIFT_X",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            "ACTIONS_RUNTIME_TOKEN",
            "GITHUB_TOKEN",
            "System_AccessToken",
            "SYSTEM_OIDCREQUESTURI",
            "CI_JOB_JWT",
            "CI_JOB_JWT_V2",
            "CI_JOB_TOKEN",
            "VAULT_ID_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "ARM_CLIENT_SECRET",
            "IDENTITY_ENDPOINT",
            "MSI_SECRET",
        ] {
            assert!(is_credential_var(v), "{v}");
        }
        for v in ["ALICE_PASSWORD", "PW", "AZUREISH", "MY_TOKEN", "GITHUB_SHA"] {
            assert!(!is_credential_var(v), "{v}");
        }
    }

    #[test]
    fn password_files_stay_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let inside = root.path().join("pw.txt");
        std::fs::write(&inside, "x").unwrap();
        let secret = outside.path().join("secret");
        std::fs::write(&secret, "x").unwrap();
        let reach = Reach::new(root.path(), &[]);
        assert_eq!(reach.check(&inside), Ok(()));
        // not yet written, inside: judged by where it would be
        assert_eq!(reach.check(&root.path().join("later/pw")), Ok(()));
        assert!(matches!(reach.check(&secret), Err(Refusal::Outside(_))));
        assert!(matches!(
            reach.check(&root.path().join("../x/../../etc/pw")),
            Err(Refusal::Outside(_))
        ));
        // a symlink inside the root to a file outside it
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        assert!(matches!(reach.check(&link), Err(Refusal::Outside(_))));
        // allowed explicitly
        let allowed = Reach::new(root.path(), &[outside.path().to_path_buf()]);
        assert_eq!(allowed.check(&secret), Ok(()));
        assert_eq!(allowed.check(&link), Ok(()));
        // a device is refused wherever it is
        let dev = Reach::new(root.path(), &[PathBuf::from("/dev")]);
        assert!(matches!(
            dev.check(Path::new("/dev/zero")),
            Err(Refusal::NotRegular(_))
        ));
    }

    #[test]
    fn walked_symlinks_must_stay_inside() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("t.yaml");
        std::fs::write(&target, "x").unwrap();
        std::fs::write(root.path().join("a.yaml"), "x").unwrap();
        let out_link = root.path().join("out.yaml");
        std::os::unix::fs::symlink(&target, &out_link).unwrap();
        let in_link = root.path().join("in.yaml");
        std::os::unix::fs::symlink(root.path().join("a.yaml"), &in_link).unwrap();
        assert!(leaves(&out_link, root.path()).is_some());
        assert!(leaves(&in_link, root.path()).is_none());
    }
}
