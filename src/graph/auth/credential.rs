//! [`Credential`]: how pwdrift authenticates, picked from the environment in the Azure SDK
//! conventions (app-only: client secret, certificate, workload identity federation, GitHub
//! Actions OIDC, a pre-acquired token; delegated: device code, username/password), and the
//! material some of them send: the certificate's PS256 client assertion, the federated token
//! file. `Debug` redacts every secret.
//!
//! # The certificate assertion
//!
//! As the current "Microsoft identity platform certificate credentials" page
//! (<https://learn.microsoft.com/entra/identity-platform/certificate-credentials>) describes it:
//! header `alg` `PS256` (RSASSA-PSS with SHA-256, MGF1 with SHA-256, salt as long as the digest,
//! 32 bytes: jsonwebtoken's `rsa::pss` signer, as MSAL's PSS padding), `typ` `JWT`, `x5t#S256`
//! the base64url SHA-256 thumbprint of the certificate's DER; claims `aud` (the token endpoint),
//! `iss` = `sub` (the client id), `jti` (a fresh GUID), `nbf`, `iat` (now) and `exp` (10 minutes
//! later). Older versions of that page describe `RS256` with a SHA-1 `x5t`; pwdrift sends the
//! current form only.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;
use sha2::Digest as _;

use super::cloud::strip_query;
use super::AuthError;

/// How pwdrift authenticates. `Debug` redacts every secret.
#[derive(Clone)]
pub enum Credential {
    /// App-only, client secret (`AZURE_CLIENT_SECRET`).
    ClientSecret {
        tenant: String,
        client_id: String,
        secret: SecretString,
    },
    /// App-only, certificate (`AZURE_CLIENT_CERTIFICATE_PATH`): a PEM file with the RSA private key
    /// and the certificate; each token request carries a fresh PS256 client assertion.
    Certificate {
        tenant: String,
        client_id: String,
        pem_path: PathBuf,
    },
    /// App-only, workload identity federation (`AZURE_FEDERATED_TOKEN_FILE`). The file is re-read
    /// for every token request: it rotates.
    WorkloadIdentity {
        tenant: String,
        client_id: String,
        token_file: PathBuf,
    },
    /// App-only, GitHub Actions OIDC (`ACTIONS_ID_TOKEN_REQUEST_URL` / `..._TOKEN`).
    GitHubOidc {
        tenant: String,
        client_id: String,
        request_url: String,
        request_token: SecretString,
    },
    /// A pre-acquired access token (`PWDRIFT_ACCESS_TOKEN`), used as is and never refreshed.
    AccessToken { token: SecretString },
    /// Delegated sign-in with the device-code flow; the verification message is handed to the
    /// client's notifier as a [`crate::graph::notice::Notice::DeviceCode`].
    DeviceCode { tenant: String, client_id: String },
    /// Delegated, resource owner password credentials (used with the sandbox's seeded admin).
    UsernamePassword {
        tenant: String,
        client_id: String,
        username: String,
        password: SecretString,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const R: &str = "(sensitive)";
        match self {
            Credential::ClientSecret {
                tenant, client_id, ..
            } => f
                .debug_struct("ClientSecret")
                .field("tenant", tenant)
                .field("client_id", client_id)
                .field("secret", &R)
                .finish(),
            Credential::Certificate {
                tenant,
                client_id,
                pem_path,
            } => f
                .debug_struct("Certificate")
                .field("tenant", tenant)
                .field("client_id", client_id)
                .field("pem_path", pem_path)
                .finish(),
            Credential::WorkloadIdentity {
                tenant,
                client_id,
                token_file,
            } => f
                .debug_struct("WorkloadIdentity")
                .field("tenant", tenant)
                .field("client_id", client_id)
                .field("token_file", token_file)
                .finish(),
            Credential::GitHubOidc {
                tenant,
                client_id,
                request_url,
                ..
            } => f
                .debug_struct("GitHubOidc")
                .field("tenant", tenant)
                .field("client_id", client_id)
                .field("request_url", &strip_query(request_url))
                .field("request_token", &R)
                .finish(),
            Credential::AccessToken { .. } => {
                f.debug_struct("AccessToken").field("token", &R).finish()
            }
            Credential::DeviceCode { tenant, client_id } => f
                .debug_struct("DeviceCode")
                .field("tenant", tenant)
                .field("client_id", client_id)
                .finish(),
            Credential::UsernamePassword {
                tenant,
                client_id,
                username,
                ..
            } => f
                .debug_struct("UsernamePassword")
                .field("tenant", tenant)
                .field("client_id", client_id)
                .field("username", username)
                .field("password", &R)
                .finish(),
        }
    }
}

impl Credential {
    /// Picks the credential from the environment, in the Azure SDK conventions. Order:
    /// `PWDRIFT_ACCESS_TOKEN`; then, with `AZURE_TENANT_ID` (or `tenant_override`) and
    /// `AZURE_CLIENT_ID`: `AZURE_CLIENT_SECRET`, `AZURE_CLIENT_CERTIFICATE_PATH`,
    /// `AZURE_FEDERATED_TOKEN_FILE`, `ACTIONS_ID_TOKEN_REQUEST_URL` + `ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
    /// The error lists what is missing.
    pub fn from_env(tenant_override: Option<&str>) -> Result<Credential, AuthError> {
        Self::from_lookup(tenant_override, |k| std::env::var(k).ok())
    }

    /// [`Credential::from_env`] over any variable lookup (tests pass a map).
    pub fn from_lookup(
        tenant_override: Option<&str>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Credential, AuthError> {
        let get = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        if let Some(token) = get("PWDRIFT_ACCESS_TOKEN") {
            // a token pasted with its line break is meant without it; one with a space or a
            // control character inside is no token, and is said so before it reaches a header
            let token = token.trim();
            if token.len() > 7 && token[..7].eq_ignore_ascii_case("bearer ") {
                return Err(AuthError::NotConfigured(
                    "PWDRIFT_ACCESS_TOKEN starts with `Bearer `: set it to the token alone".into(),
                ));
            }
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(AuthError::NotConfigured(
                    "PWDRIFT_ACCESS_TOKEN holds white space or a control character inside: it is \
                     not an access token (a JWT has none); was more than the token copied?"
                        .into(),
                ));
            }
            crate::graph::redact::remember(token);
            return Ok(Credential::AccessToken {
                token: SecretString::from(token.to_owned()),
            });
        }
        // set, but to nothing: the step that should have acquired the token did not (say so,
        // rather than only listing the AZURE_* variables as missing)
        let empty_token = var("PWDRIFT_ACCESS_TOKEN").is_some();
        let tenant = tenant_override
            .map(str::to_owned)
            .or_else(|| get("AZURE_TENANT_ID"));
        let client_id = get("AZURE_CLIENT_ID");
        let secret = get("AZURE_CLIENT_SECRET");
        let cert = get("AZURE_CLIENT_CERTIFICATE_PATH");
        let fed = get("AZURE_FEDERATED_TOKEN_FILE");
        let gh_url = get("ACTIONS_ID_TOKEN_REQUEST_URL");
        let gh_token = get("ACTIONS_ID_TOKEN_REQUEST_TOKEN");

        let mut missing = Vec::new();
        if tenant.is_none() {
            missing.push("AZURE_TENANT_ID (or --tenant)");
        }
        if client_id.is_none() {
            missing.push("AZURE_CLIENT_ID");
        }
        let has_secret_kind = secret.is_some()
            || cert.is_some()
            || fed.is_some()
            || (gh_url.is_some() && gh_token.is_some());
        if !has_secret_kind {
            missing.push(
                "one of AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH, AZURE_FEDERATED_TOKEN_FILE, \
                 ACTIONS_ID_TOKEN_REQUEST_URL + ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            );
        }
        if !missing.is_empty() {
            let partial_gh = match (&gh_url, &gh_token) {
                (Some(_), None) => " (ACTIONS_ID_TOKEN_REQUEST_URL is set but ACTIONS_ID_TOKEN_REQUEST_TOKEN is not: does the job have `permissions: id-token: write`?)",
                _ => "",
            };
            if empty_token {
                return Err(AuthError::NotConfigured(format!(
                    "PWDRIFT_ACCESS_TOKEN is set but empty (or only white space): the step that \
                     should acquire the token gave nothing (e.g. `az account get-access-token \
                     --resource-type ms-graph --query accessToken -o tsv`); or unset it and set {}",
                    missing.join(", ")
                )));
            }
            return Err(AuthError::NotConfigured(format!(
                "missing {}{partial_gh}; or set PWDRIFT_ACCESS_TOKEN to a pre-acquired Graph token, or use --sandbox SEED",
                missing.join(", ")
            )));
        }
        let (tenant, client_id) = (tenant.unwrap_or_default(), client_id.unwrap_or_default());
        Ok(if let Some(secret) = secret {
            crate::graph::redact::remember(&secret);
            Credential::ClientSecret {
                tenant,
                client_id,
                secret: SecretString::from(secret),
            }
        } else if let Some(path) = cert {
            Credential::Certificate {
                tenant,
                client_id,
                pem_path: PathBuf::from(path),
            }
        } else if let Some(path) = fed {
            Credential::WorkloadIdentity {
                tenant,
                client_id,
                token_file: PathBuf::from(path),
            }
        } else {
            Credential::GitHubOidc {
                tenant,
                client_id,
                request_url: gh_url.unwrap_or_default(),
                request_token: SecretString::from(gh_token.unwrap_or_default()),
            }
        })
    }

    /// The delegated device-code credential for `--delegated`, from `AZURE_TENANT_ID` (or the
    /// override) and `AZURE_CLIENT_ID`.
    pub fn delegated_from_env(tenant_override: Option<&str>) -> Result<Credential, AuthError> {
        Self::delegated_from_lookup(tenant_override, |k| std::env::var(k).ok())
    }

    /// [`Credential::delegated_from_env`] over any variable lookup.
    pub fn delegated_from_lookup(
        tenant_override: Option<&str>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Credential, AuthError> {
        let get = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let tenant = tenant_override
            .map(str::to_owned)
            .or_else(|| get("AZURE_TENANT_ID"));
        // The delegated sign-in usually goes through a public client registration, distinct from
        // the confidential app in AZURE_CLIENT_ID: PWDRIFT_DELEGATED_CLIENT_ID names it.
        let client_id = get("PWDRIFT_DELEGATED_CLIENT_ID").or_else(|| get("AZURE_CLIENT_ID"));
        match (tenant, client_id) {
            // Azure SDK convention: AZURE_USERNAME + AZURE_PASSWORD select username/password.
            (Some(tenant), Some(client_id)) => match (get("AZURE_USERNAME"), var("AZURE_PASSWORD"))
            {
                (Some(username), Some(password)) => Ok(Credential::UsernamePassword {
                    tenant,
                    client_id,
                    username,
                    password: {
                        crate::graph::redact::remember(&password);
                        SecretString::from(password)
                    },
                }),
                _ => Ok(Credential::DeviceCode { tenant, client_id }),
            },
            (t, c) => {
                let mut missing = Vec::new();
                if t.is_none() {
                    missing.push("AZURE_TENANT_ID (or --tenant)");
                }
                if c.is_none() {
                    missing.push(
                        "PWDRIFT_DELEGATED_CLIENT_ID or AZURE_CLIENT_ID (a public client app registration)",
                    );
                }
                Err(AuthError::NotConfigured(format!(
                    "delegated sign-in needs {}",
                    missing.join(" and ")
                )))
            }
        }
    }

    /// Short name of the kind, used in the cache key and in logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::ClientSecret { .. } => "client-secret",
            Credential::Certificate { .. } => "certificate",
            Credential::WorkloadIdentity { .. } => "workload-identity",
            Credential::GitHubOidc { .. } => "github-oidc",
            Credential::AccessToken { .. } => "access-token",
            Credential::DeviceCode { .. } => "device-code",
            Credential::UsernamePassword { .. } => "username-password",
        }
    }

    /// Whether tokens from this credential act for a signed-in user (needed by resetPassword).
    /// A pre-acquired token may be either; pwdrift cannot tell, so it says `false`.
    pub fn is_delegated(&self) -> bool {
        matches!(
            self,
            Credential::DeviceCode { .. } | Credential::UsernamePassword { .. }
        )
    }

    /// The tenant the credential was configured with (`None` for a pre-acquired token).
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Credential::ClientSecret { tenant, .. }
            | Credential::Certificate { tenant, .. }
            | Credential::WorkloadIdentity { tenant, .. }
            | Credential::GitHubOidc { tenant, .. }
            | Credential::DeviceCode { tenant, .. }
            | Credential::UsernamePassword { tenant, .. } => Some(tenant),
            Credential::AccessToken { .. } => None,
        }
    }

    /// The application's client id (empty for a pre-acquired token).
    pub(crate) fn client_id(&self) -> &str {
        match self {
            Credential::ClientSecret { client_id, .. }
            | Credential::Certificate { client_id, .. }
            | Credential::WorkloadIdentity { client_id, .. }
            | Credential::GitHubOidc { client_id, .. }
            | Credential::DeviceCode { client_id, .. }
            | Credential::UsernamePassword { client_id, .. } => client_id,
            Credential::AccessToken { .. } => "",
        }
    }
}

/// Why a credential file could not be read (the path is added by the caller's error).
#[derive(Debug, thiserror::Error)]
enum CredentialFileError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file; refusing to read it")]
    NotRegular,
    #[error("file too large: at most {max} bytes are read")]
    TooLarge { max: u64 },
}

/// Reads a credential file: a regular file only (opened without blocking, so that a FIFO is
/// refused instead of hanging; then `fstat`), at most `max` bytes. The graph layer imports
/// nothing above it, so this is its own small copy of `config::read`.
fn read_credential_file(path: &Path, max: u64) -> Result<Vec<u8>, CredentialFileError> {
    use std::io::Read;
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let f = opts.open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(CredentialFileError::NotRegular);
    }
    let mut bytes = Vec::new();
    f.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(CredentialFileError::TooLarge { max });
    }
    Ok(bytes)
}

/// Largest federated token file or certificate PEM read.
const MAX_CREDENTIAL_FILE_BYTES: u64 = 1 << 20;

pub(super) fn read_federated_token(path: &Path) -> Result<String, AuthError> {
    let file_err = |message: String| AuthError::FederatedTokenFile {
        path: path.to_owned(),
        message,
    };
    let bytes = read_credential_file(path, MAX_CREDENTIAL_FILE_BYTES)
        .map_err(|e| file_err(e.to_string()))?;
    let raw = String::from_utf8(bytes).map_err(|_| file_err("not UTF-8".into()))?;
    let token = raw.trim();
    if token.is_empty() {
        return Err(AuthError::FederatedTokenFile {
            path: path.to_owned(),
            message: "the file is empty".into(),
        });
    }
    Ok(token.to_owned())
}

/// Claims of a client assertion (RFC 7523 / Microsoft identity platform certificate credentials).
#[derive(Debug, serde::Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct AssertionClaims {
    pub aud: String,
    pub iss: String,
    pub sub: String,
    pub jti: String,
    pub nbf: i64,
    pub iat: i64,
    pub exp: i64,
}

/// Builds the PS256 client assertion for a certificate credential from a PEM file holding the
/// RSA private key (PKCS#8 or PKCS#1) and the certificate (see "The certificate assertion" in
/// the module documentation); the assertion is valid for 10 minutes.
pub(crate) fn certificate_assertion(
    pem_path: &Path,
    client_id: &str,
    audience: &str,
) -> Result<String, AuthError> {
    let cert_err = |message: String| AuthError::Certificate {
        path: pem_path.to_owned(),
        message,
    };
    let text = read_credential_file(pem_path, MAX_CREDENTIAL_FILE_BYTES)
        .map_err(|e| cert_err(e.to_string()))?;
    let blocks = pem::parse_many(&text).map_err(|e| cert_err(format!("not PEM: {e}")))?;
    let cert = blocks
        .iter()
        .find(|b| b.tag() == "CERTIFICATE")
        .ok_or_else(|| {
            cert_err(
                "no CERTIFICATE block (the PEM must hold the certificate and its private key)"
                    .into(),
            )
        })?;
    let key = blocks
        .iter()
        .find(|b| b.tag() == "PRIVATE KEY" || b.tag() == "RSA PRIVATE KEY")
        .ok_or_else(|| {
            cert_err("no RSA private key block (PRIVATE KEY or RSA PRIVATE KEY)".into())
        })?;
    let key_pem = pem::encode(key);
    crate::graph::redact::remember(&key_pem);
    let encoding_key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes())
        .map_err(|e| cert_err(format!("the private key is not a usable RSA key: {e}")))?;
    let now = chrono::Utc::now().timestamp();
    let claims = AssertionClaims {
        aud: audience.to_owned(),
        iss: client_id.to_owned(),
        sub: client_id.to_owned(),
        jti: uuid::Uuid::new_v4().to_string(),
        nbf: now,
        iat: now,
        exp: now + 600,
    };
    let header = assertion_header(cert.contents());
    jsonwebtoken::encode(&header, &claims, &encoding_key)
        .map_err(|e| cert_err(format!("signing the client assertion failed: {e}")))
}

/// The JWT header of a certificate assertion for the certificate `der`: `alg` PS256, `typ` JWT,
/// `x5t#S256` (no SHA-1 `x5t`).
pub(crate) fn assertion_header(der: &[u8]) -> jsonwebtoken::Header {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
    header.typ = Some("JWT".into());
    header.x5t_s256 = Some(b64.encode(sha2::Sha256::digest(der)));
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO or a device as a credential file is refused at once (it would block or never end).
    #[cfg(unix)]
    #[test]
    fn credential_files_must_be_regular() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("token");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let started = std::time::Instant::now();
        let err = read_federated_token(&fifo).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let err = certificate_assertion(Path::new("/dev/zero"), "c", "a")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn env_selects_client_secret_over_others() {
        let c = Credential::from_lookup(
            None,
            env(&[
                ("AZURE_TENANT_ID", "t1"),
                ("AZURE_CLIENT_ID", "c1"),
                ("AZURE_CLIENT_SECRET", "Canary-Secret-9"),
                ("AZURE_FEDERATED_TOKEN_FILE", "/tmp/x"),
            ]),
        )
        .unwrap();
        assert!(
            matches!(&c, Credential::ClientSecret { tenant, client_id, .. } if tenant == "t1" && client_id == "c1")
        );
        assert!(!format!("{c:?}").contains("Canary"));
    }

    #[test]
    fn env_access_token_wins_and_is_redacted() {
        let c = Credential::from_lookup(
            None,
            env(&[
                ("PWDRIFT_ACCESS_TOKEN", "Canary-Token"),
                ("AZURE_CLIENT_SECRET", "s"),
            ]),
        )
        .unwrap();
        assert!(matches!(c, Credential::AccessToken { .. }));
        assert!(!format!("{c:?}").contains("Canary"));
    }

    #[test]
    fn env_selects_certificate_then_federated_then_github() {
        let base = [("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            Credential::from_lookup(None, env(&v)).unwrap()
        };
        assert!(matches!(
            with(&[
                ("AZURE_CLIENT_CERTIFICATE_PATH", "/c.pem"),
                ("AZURE_FEDERATED_TOKEN_FILE", "/f")
            ]),
            Credential::Certificate { .. }
        ));
        assert!(matches!(
            with(&[("AZURE_FEDERATED_TOKEN_FILE", "/f")]),
            Credential::WorkloadIdentity { token_file, .. } if token_file == Path::new("/f")
        ));
        let gh = with(&[
            ("ACTIONS_ID_TOKEN_REQUEST_URL", "https://gh.example/x?a=1"),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "Canary-GH"),
        ]);
        assert!(matches!(gh, Credential::GitHubOidc { .. }));
        assert!(!format!("{gh:?}").contains("Canary"));
    }

    #[test]
    fn env_tenant_override_replaces_azure_tenant_id() {
        let c = Credential::from_lookup(
            Some("contoso.com"),
            env(&[("AZURE_CLIENT_ID", "c"), ("AZURE_CLIENT_SECRET", "s")]),
        )
        .unwrap();
        assert_eq!(c.tenant(), Some("contoso.com"));
    }

    #[test]
    fn an_empty_or_garbled_access_token_is_named_as_the_cause() {
        for blank in ["", "  ", "\n"] {
            let err = Credential::from_lookup(None, env(&[("PWDRIFT_ACCESS_TOKEN", blank)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("PWDRIFT_ACCESS_TOKEN is set but empty"),
                "{blank:?}: {err}"
            );
        }
        // an empty token beside a complete credential: the credential is used
        let c = Credential::from_lookup(
            None,
            env(&[
                ("PWDRIFT_ACCESS_TOKEN", ""),
                ("AZURE_TENANT_ID", "t"),
                ("AZURE_CLIENT_ID", "c"),
                ("AZURE_CLIENT_SECRET", "s"),
            ]),
        )
        .unwrap();
        assert_eq!(c.kind(), "client-secret");
        let err = Credential::from_lookup(None, env(&[("PWDRIFT_ACCESS_TOKEN", "Bearer eyJ.a.b")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("starts with `Bearer `"), "{err}");
        let err = Credential::from_lookup(None, env(&[("PWDRIFT_ACCESS_TOKEN", "eyJ.a b.c")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("white space"), "{err}");
        assert!(!err.contains("eyJ"), "{err}");
        // a trailing line break is dropped
        let c =
            Credential::from_lookup(None, env(&[("PWDRIFT_ACCESS_TOKEN", "eyJ.a.b\n")])).unwrap();
        let Credential::AccessToken { token } = c else {
            panic!()
        };
        assert_eq!(secrecy::ExposeSecret::expose_secret(&token), "eyJ.a.b");
    }

    #[test]
    fn env_missing_lists_everything_missing() {
        let err = Credential::from_lookup(None, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("AZURE_TENANT_ID"), "{err}");
        assert!(err.contains("AZURE_CLIENT_ID"), "{err}");
        assert!(err.contains("AZURE_CLIENT_SECRET"), "{err}");
        let err = Credential::from_lookup(
            None,
            env(&[
                ("AZURE_TENANT_ID", "t"),
                ("AZURE_CLIENT_SECRET", "Canary-S"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("AZURE_CLIENT_ID") && !err.contains("AZURE_TENANT_ID"),
            "{err}"
        );
        assert!(!err.contains("Canary"));
        let err = Credential::from_lookup(
            None,
            env(&[
                ("AZURE_TENANT_ID", "t"),
                ("AZURE_CLIENT_ID", "c"),
                ("ACTIONS_ID_TOKEN_REQUEST_URL", "https://x"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("id-token: write"), "{err}");
    }

    #[test]
    fn delegated_from_env_needs_tenant_and_client() {
        let c = Credential::delegated_from_lookup(
            None,
            env(&[("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c")]),
        )
        .unwrap();
        assert!(matches!(c, Credential::DeviceCode { .. }));
        assert!(c.is_delegated());
        let err =
            Credential::delegated_from_lookup(None, env(&[("AZURE_TENANT_ID", "t")])).unwrap_err();
        assert!(err.to_string().contains("AZURE_CLIENT_ID"));
    }

    #[test]
    fn delegated_username_password_and_public_client() {
        let c = Credential::delegated_from_lookup(
            Some("contoso.onmicrosoft.com"),
            env(&[
                ("AZURE_CLIENT_ID", "confidential"),
                ("PWDRIFT_DELEGATED_CLIENT_ID", "public"),
                ("AZURE_USERNAME", "admin@contoso.com"),
                ("AZURE_PASSWORD", "Canary-Pw-1!"),
            ]),
        )
        .unwrap();
        match &c {
            Credential::UsernamePassword {
                tenant,
                client_id,
                username,
                ..
            } => {
                assert_eq!(tenant, "contoso.onmicrosoft.com");
                assert_eq!(client_id, "public");
                assert_eq!(username, "admin@contoso.com");
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{c:?}").contains("Canary"));
        // a username without a password falls back to the device code flow
        let c = Credential::delegated_from_lookup(
            Some("t"),
            env(&[("AZURE_CLIENT_ID", "c"), ("AZURE_USERNAME", "u")]),
        )
        .unwrap();
        assert!(matches!(c, Credential::DeviceCode { ref client_id, .. } if client_id == "c"));
    }

    #[test]
    fn certificate_assertion_with_missing_blocks_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.pem");
        std::fs::write(
            &p,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = certificate_assertion(&p, "c", "aud")
            .unwrap_err()
            .to_string();
        assert!(err.contains("private key"), "{err}");
        let err = certificate_assertion(&dir.path().join("none.pem"), "c", "aud").unwrap_err();
        assert!(matches!(err, AuthError::Certificate { .. }));
    }

    #[test]
    fn federated_token_file_is_reread_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "first\n").unwrap();
        assert_eq!(read_federated_token(&p).unwrap(), "first");
        std::fs::write(&p, "second").unwrap();
        assert_eq!(read_federated_token(&p).unwrap(), "second");
        std::fs::write(&p, " \n").unwrap();
        assert!(read_federated_token(&p).is_err());
    }

    /// A certificate credential's client assertion follows the current certificate-credentials
    /// page: header `alg` PS256, `typ` JWT, `x5t#S256` = base64url(SHA-256(DER)) and no SHA-1
    /// `x5t`; the documented claims; and an RSASSA-PSS (SHA-256, 32-byte salt) signature that
    /// verifies with the public key inside the certificate (checked here with the `rsa` crate's
    /// PSS verifier directly, not through jsonwebtoken), and not with another key.
    #[test]
    fn certificate_assertion_is_ps256_and_verifies_with_the_certificate_key() {
        use base64::Engine as _;
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        use rsa::pkcs8::{DecodePublicKey as _, EncodePrivateKey as _};
        use rsa::signature::Verifier as _;

        let mut rng = rsa::rand_core::OsRng;
        let key = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let pkcs8 = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        let key_pair = rcgen::KeyPair::from_pem(&pkcs8).unwrap();
        let params = rcgen::CertificateParams::new(vec!["pwdrift-test".to_owned()]).unwrap();
        let cert = params.self_signed(&key_pair).unwrap();
        let der = cert.der().to_vec();
        // the certificate's public key: its SubjectPublicKeyInfo, found verbatim in its DER
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key_pair);
        assert!(
            der.windows(spki.len()).any(|w| w == spki.as_slice()),
            "the certificate holds the key's SubjectPublicKeyInfo"
        );
        let cert_key = rsa::RsaPublicKey::from_public_key_der(&spki).unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;

        let dir = tempfile::tempdir().unwrap();
        let pkcs1 = key.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        for (name, key_pem) in [
            ("pkcs8.pem", pkcs8.to_string()),
            ("pkcs1.pem", pkcs1.to_string()),
        ] {
            let path = dir.path().join(name);
            // key first, certificate second: the order in the file must not matter
            std::fs::write(&path, format!("{key_pem}{}", cert.pem())).unwrap();
            let aud = "http://127.0.0.1:9/tenant-1/oauth2/v2.0/token";
            let jwt = certificate_assertion(&path, "client-1", aud).unwrap();
            let parts: Vec<&str> = jwt.split('.').collect();
            assert_eq!(parts.len(), 3, "{name}");

            let header: serde_json::Value =
                serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
            assert_eq!(header["alg"], "PS256", "{name}: {header}");
            assert_eq!(header["typ"], "JWT", "{name}: {header}");
            assert_eq!(
                header["x5t#S256"],
                b64.encode(sha2::Sha256::digest(&der)),
                "{name}: {header}"
            );
            assert!(header.get("x5t").is_none(), "no SHA-1 thumbprint: {header}");

            // RSASSA-PSS, SHA-256, salt length 32 (the digest's), over `header.payload`
            let signing_input = format!("{}.{}", parts[0], parts[1]);
            let signature =
                rsa::pss::Signature::try_from(b64.decode(parts[2]).unwrap().as_slice()).unwrap();
            let verifier = rsa::pss::VerifyingKey::<sha2::Sha256>::new(cert_key.clone());
            verifier
                .verify(signing_input.as_bytes(), &signature)
                .unwrap_or_else(|e| panic!("{name}: PSS signature does not verify: {e}"));
            // the same bytes as a PKCS#1 v1.5 (RS256) signature do not verify
            let pkcs1v15 = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(cert_key.clone());
            let as_v15 =
                rsa::pkcs1v15::Signature::try_from(b64.decode(parts[2]).unwrap().as_slice())
                    .unwrap();
            assert!(pkcs1v15.verify(signing_input.as_bytes(), &as_v15).is_err());
            // another key does not verify it
            let other = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
            let wrong = rsa::pss::VerifyingKey::<sha2::Sha256>::new(other.to_public_key());
            assert!(wrong.verify(signing_input.as_bytes(), &signature).is_err());

            let c: AssertionClaims =
                serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
            assert_eq!(
                (c.iss.as_str(), c.sub.as_str(), c.aud.as_str()),
                ("client-1", "client-1", aud)
            );
            assert_eq!(c.exp - c.nbf, 600);
            assert_eq!(c.iat, c.nbf);
            assert!((c.nbf - chrono::Utc::now().timestamp()).abs() < 60);
            assert!(uuid::Uuid::parse_str(&c.jti).is_ok());
        }
    }
}
