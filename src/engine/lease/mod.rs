//! One apply per tenant at a time across machines: an optional lease on a blob per tenant in an
//! Azure Blob Storage container (`--lock-blob`), as Terraform's azurerm backend locks its state.
//!
//! It is taken after the machine-wide lock ([`super::lock`]), for the same tenants in the same
//! sorted order, before anything is resolved or written. Per tenant the blob `<tenant id>.lock`
//! is created when missing (Put Blob with `If-None-Match: *`: an existing one is fine), then
//! leased for 60 s with a proposed lease id (Lease Blob, `acquire`:
//! <https://learn.microsoft.com/rest/api/storageservices/lease-blob>), and the holder's
//! description (the flock file's text) written into its `holder` metadata (Set Blob Metadata,
//! percent-encoded: a metadata value is an HTTP header). A background task renews the leases
//! every 20 s while the apply runs; the end of the apply (also after an error or a signal)
//! clears the metadata and releases them, and a guard dropped without that releases them too. A
//! process killed outright leaves its lease to expire within 60 s.
//!
//! A lease held by another run (409 `LeaseAlreadyPresent`) is named by its holder (Get Blob
//! Properties: `x-ms-meta-holder`), and waited for (polling every 5 s) up to `--lock-timeout`,
//! or refused at once, as the flock is.
//!
//! The requests go through a reqwest client of their own (no Graph token, no shared headers, no
//! redirect followed), authorized by Shared Key ([`shared_key`]) or the URL's SAS token
//! ([`container`]); neither is ever logged or shown.

pub mod container;
pub mod shared_key;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, StatusCode};
use url::Url;

use crate::graph::redact;
use container::Container;

use super::lock::{held_advice, shown, HOLDER_UNKNOWN};
use super::EngineError;

/// The Blob service version the requests are made (and signed) for.
const VERSION: &str = "2021-12-02";
/// How long a lease lasts unless renewed.
const LEASE_SECONDS: u32 = 60;
/// How often the leases are renewed.
const RENEW: Duration = Duration::from_secs(20);
/// How often a waiting run tries a held lease again.
const POLL: Duration = Duration::from_secs(5);
/// The deadline of one request to the storage account.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long releasing may take at the end of a run.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// What a metadata value keeps as it is: letters, digits and `-._/:`.
const META: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'/')
    .remove(b':');

/// Why a lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("tenant {tenant} is being applied by another pwdrift run ({holder}); lease on blob {blob}; {advice}")]
    Held {
        tenant: String,
        holder: String,
        blob: String,
        advice: String,
    },
    #[error("{0}")]
    Config(String),
    #[error("lease on blob {blob}: {what} answered {status}{code}; {advice}; nothing was written")]
    Storage {
        blob: String,
        what: &'static str,
        status: u16,
        code: String,
        advice: String,
    },
    #[error("lease on blob {blob}: {what} failed: {reason}; nothing was written")]
    Transport {
        blob: String,
        what: &'static str,
        reason: String,
    },
}

impl From<LeaseError> for EngineError {
    fn from(e: LeaseError) -> Self {
        EngineError::Refused(redact::redacted(&e.to_string()))
    }
}

/// The leases of one apply. [`Leases::release`] releases them; dropped without that, they are
/// released on a thread of its own before the drop returns.
#[derive(Debug, Default)]
pub struct Leases {
    held: Option<Arc<Held>>,
    renewer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug)]
struct Held {
    container: Container,
    /// (blob URL, lease id), in the order taken
    leases: Mutex<Vec<(Url, String)>>,
}

impl Leases {
    /// No lease (`--lock-blob` not given, or the embedded sandbox).
    pub fn none() -> Self {
        Leases::default()
    }

    /// The blobs leased, as they may be shown.
    pub fn blobs(&self) -> Vec<String> {
        self.held
            .as_ref()
            .map(|h| lock(&h.leases).iter().map(|(u, _)| u.to_string()).collect())
            .unwrap_or_default()
    }

    /// Stops renewing and releases every lease (at most [`RELEASE_TIMEOUT`]); a second call does
    /// nothing.
    pub async fn release(&self) {
        if let Some(r) = lock(&self.renewer).take() {
            r.abort();
        }
        let Some(held) = &self.held else { return };
        let taken: Vec<(Url, String)> = std::mem::take(&mut *lock(&held.leases));
        if taken.is_empty() {
            return;
        }
        let Ok(client) = http_client() else { return };
        let all = release_all(&client, &held.container, taken);
        if tokio::time::timeout(RELEASE_TIMEOUT, all).await.is_err() {
            tracing::warn!(
                "releasing the leases took too long; they expire within {LEASE_SECONDS} s"
            );
        }
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        if let Some(r) = lock(&self.renewer).take() {
            r.abort();
        }
        let Some(held) = self.held.take() else { return };
        let taken: Vec<(Url, String)> = std::mem::take(&mut *lock(&held.leases));
        if taken.is_empty() {
            return;
        }
        // not released by the run (an error path, a panic): release on a runtime of its own
        let thread = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(client) = http_client() else { return };
                let all = release_all(&client, &held.container, taken);
                let _ = tokio::time::timeout(RELEASE_TIMEOUT, all).await;
            });
        });
        let _ = thread.join();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The client of the storage requests: its own, no redirect followed.
fn http_client() -> Result<reqwest::Client, LeaseError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| LeaseError::Config(format!("--lock-blob: cannot build the HTTP client: {e}")))
}

/// Parses `--lock-blob` with the account key from `AZURE_STORAGE_KEY`.
pub fn container(raw: &str) -> Result<Container, LeaseError> {
    let key = std::env::var("AZURE_STORAGE_KEY").ok();
    Container::parse(raw, key.as_deref()).map_err(LeaseError::Config)
}

/// One request to the storage account: `x-ms-date` and `x-ms-version` added, then signed (Shared
/// Key) or the SAS token appended.
async fn send(
    client: &reqwest::Client,
    c: &Container,
    method: Method,
    url: &Url,
    query: &[(&str, &str)],
    headers: &[(&str, String)],
    what: &'static str,
) -> Result<reqwest::Response, LeaseError> {
    let mut headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.clone()))
        .collect();
    headers.push((
        "x-ms-date".into(),
        chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string(),
    ));
    headers.push(("x-ms-version".into(), VERSION.into()));
    let has_body = method == Method::PUT;
    if has_body {
        headers.push(("Content-Length".into(), "0".into()));
    }
    let mut full = url.clone();
    {
        let mut q = full.query_pairs_mut();
        for (n, v) in query {
            q.append_pair(n, v);
        }
    }
    if let Some(sas) = c.sas() {
        let joined = match full.query() {
            Some(q) if !q.is_empty() => format!("{q}&{sas}"),
            _ => sas.to_owned(),
        };
        full.set_query(Some(&joined));
    } else if full.query() == Some("") {
        full.set_query(None);
    }
    if let Some(key) = c.key() {
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        let s = shared_key::string_to_sign(&shared_key::Signed {
            verb: method.as_str(),
            headers: &headers,
            account: &c.account,
            path: url.path(),
            query: &query,
        });
        headers.push((
            "Authorization".into(),
            shared_key::authorization(&c.account, &key, &s),
        ));
    }
    let mut req = client.request(method, full);
    for (n, v) in &headers {
        req = req.header(n.as_str(), v.as_str());
    }
    if has_body {
        req = req.body(Vec::new());
    }
    req.send().await.map_err(|e| LeaseError::Transport {
        blob: url.to_string(),
        what,
        reason: redact::redacted(&e.without_url().to_string()),
    })
}

/// The storage service's error code of an answer (`x-ms-error-code`).
fn error_code(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
        .map(|c| c.chars().filter(|c| c.is_ascii_alphanumeric()).collect())
        .unwrap_or_default()
}

/// An answer that is not one of those expected, as an error with advice.
fn unexpected(url: &Url, what: &'static str, r: &reqwest::Response) -> LeaseError {
    let code = error_code(r);
    let advice = match (r.status(), code.as_str()) {
        (StatusCode::FORBIDDEN, _) => "the storage account refused the credential: check AZURE_STORAGE_KEY (the key of the account named in --lock-blob) or the SAS token (not expired, with read, write and create permissions)".to_owned(),
        (StatusCode::NOT_FOUND, "ContainerNotFound") => "create the container first (e.g. `az storage container create`)".to_owned(),
        _ => "check --lock-blob".to_owned(),
    };
    LeaseError::Storage {
        blob: url.to_string(),
        what,
        status: r.status().as_u16(),
        code: if code.is_empty() {
            String::new()
        } else {
            format!(" {code}")
        },
        advice,
    }
}

/// Creates the blob when it does not exist (an empty block blob).
async fn create_if_missing(
    client: &reqwest::Client,
    c: &Container,
    blob: &Url,
) -> Result<(), LeaseError> {
    let what = "creating the blob";
    let r = send(
        client,
        c,
        Method::PUT,
        blob,
        &[],
        &[
            ("x-ms-blob-type", "BlockBlob".into()),
            ("If-None-Match", "*".into()),
        ],
        what,
    )
    .await?;
    match r.status() {
        // created; exists already; exists and is leased (a write without the lease id)
        StatusCode::CREATED | StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED => Ok(()),
        _ => Err(unexpected(blob, what, &r)),
    }
}

/// One Lease Blob request (`PUT ?comp=lease`) with `action` (`acquire`, `renew`, `release`)
/// and its headers.
async fn lease_action(
    client: &reqwest::Client,
    c: &Container,
    blob: &Url,
    action: &str,
    headers: &[(&str, String)],
    what: &'static str,
) -> Result<reqwest::Response, LeaseError> {
    let mut all = vec![("x-ms-lease-action", action.to_owned())];
    all.extend_from_slice(headers);
    send(
        client,
        c,
        Method::PUT,
        blob,
        &[("comp", "lease")],
        &all,
        what,
    )
    .await
}

/// Tries to acquire the lease once: `Ok(false)` when another holds it.
async fn try_acquire(
    client: &reqwest::Client,
    c: &Container,
    blob: &Url,
    lease_id: &str,
) -> Result<bool, LeaseError> {
    let what = "acquiring the lease";
    let r = lease_action(
        client,
        c,
        blob,
        "acquire",
        &[
            ("x-ms-lease-duration", LEASE_SECONDS.to_string()),
            ("x-ms-proposed-lease-id", lease_id.to_owned()),
        ],
        what,
    )
    .await?;
    match r.status() {
        StatusCode::CREATED | StatusCode::OK => Ok(true),
        StatusCode::CONFLICT if error_code(&r) == "LeaseAlreadyPresent" => Ok(false),
        _ => Err(unexpected(blob, what, &r)),
    }
}

/// Writes (or, with `None`, clears) the holder metadata under the lease.
async fn set_holder(
    client: &reqwest::Client,
    c: &Container,
    blob: &Url,
    lease_id: &str,
    holder: Option<&str>,
) -> Result<(), LeaseError> {
    let what = "writing the holder";
    let mut headers = vec![("x-ms-lease-id", lease_id.to_owned())];
    if let Some(h) = holder {
        headers.push(("x-ms-meta-holder", utf8_percent_encode(h, META).to_string()));
    }
    let r = send(
        client,
        c,
        Method::PUT,
        blob,
        &[("comp", "metadata")],
        &headers,
        what,
    )
    .await?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(unexpected(blob, what, &r))
    }
}

/// The holder of a leased blob as one line, or `None` when the blob is not leased (any more).
async fn holder(
    client: &reqwest::Client,
    c: &Container,
    blob: &Url,
) -> Result<Option<String>, LeaseError> {
    let what = "reading the holder";
    let r = send(client, c, Method::HEAD, blob, &[], &[], what).await?;
    if !r.status().is_success() {
        return Err(unexpected(blob, what, &r));
    }
    let header = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    if header("x-ms-lease-state") != "leased" {
        return Ok(None);
    }
    Ok(Some(holder_line(&header("x-ms-meta-holder"))))
}

/// A holder metadata value (percent-encoded text) as one line, as the flock shows its holder
/// ([`super::lock::holder_line`]).
fn holder_line(encoded: &str) -> String {
    super::lock::holder_line(&percent_decode_str(encoded).decode_utf8_lossy())
}

async fn renew(
    client: &reqwest::Client,
    c: &Container,
    blob: &Url,
    lease_id: &str,
) -> Result<(), LeaseError> {
    let what = "renewing the lease";
    let r = lease_action(
        client,
        c,
        blob,
        "renew",
        &[("x-ms-lease-id", lease_id.to_owned())],
        what,
    )
    .await?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(unexpected(blob, what, &r))
    }
}

/// Clears the holder and releases each lease, the last taken first; failures are logged (the
/// lease expires on its own).
async fn release_all(client: &reqwest::Client, c: &Container, leases: Vec<(Url, String)>) {
    for (blob, id) in leases.into_iter().rev() {
        if let Err(e) = set_holder(client, c, &blob, &id, None).await {
            tracing::debug!("{}", redact::redacted(&e.to_string()));
        }
        let what = "releasing the lease";
        let r = lease_action(
            client,
            c,
            &blob,
            "release",
            &[("x-ms-lease-id", id.clone())],
            what,
        )
        .await;
        match r {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(
                "{}; it expires within {LEASE_SECONDS} s",
                redact::redacted(&unexpected(&blob, what, &r).to_string())
            ),
            Err(e) => tracing::warn!(
                "{}; it expires within {LEASE_SECONDS} s",
                redact::redacted(&e.to_string())
            ),
        }
    }
}

/// Takes the lease of every tenant in `tenant_ids` (sorted and deduplicated first) in
/// `container`, waiting for each up to `timeout` in all (zero: not at all), and writes `me` as
/// its holder; then renews them in the background until [`Leases::release`]. `waiting` is told
/// once per tenant whose lease it waits for.
pub async fn acquire(
    container: Container,
    tenant_ids: &[String],
    timeout: Duration,
    me: &str,
    waiting: &(dyn Fn(&str) + Sync),
) -> Result<Leases, LeaseError> {
    let client = http_client()?;
    let mut ids: Vec<String> = tenant_ids.iter().map(|t| t.to_ascii_lowercase()).collect();
    ids.sort();
    ids.dedup();
    let held = Arc::new(Held {
        container,
        leases: Mutex::new(Vec::new()),
    });
    // from here on, a failure drops `leases`, which releases what was taken
    let mut leases = Leases {
        held: Some(held.clone()),
        renewer: Mutex::new(None),
    };
    let c = &held.container;
    let deadline = tokio::time::Instant::now() + timeout;
    for id in ids {
        let blob = c.blob(&super::lock::file_name(&id));
        let lease_id = uuid::Uuid::new_v4().to_string();
        create_if_missing(&client, c, &blob).await?;
        let mut announced = false;
        loop {
            if try_acquire(&client, c, &blob, &lease_id).await? {
                break;
            }
            let Some(mut holder_is) = holder(&client, c, &blob).await? else {
                // released (or expired) in between: try again at once
                continue;
            };
            // a holder that has just taken the lease writes who it is right after
            for _ in 0..5 {
                if holder_is != HOLDER_UNKNOWN {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                match holder(&client, c, &blob).await? {
                    Some(h) => holder_is = h,
                    None => break,
                }
            }
            let holder = holder_is;
            if tokio::time::Instant::now() >= deadline {
                let e = LeaseError::Held {
                    tenant: id,
                    holder,
                    blob: blob.to_string(),
                    advice: held_advice(timeout, "lease"),
                };
                leases.release().await;
                return Err(e);
            }
            if !announced {
                waiting(&format!(
                    "tenant {id} is being applied by another pwdrift run ({holder}); lease on blob {blob}; waiting up to {} for it (--lock-timeout)",
                    shown(timeout)
                ));
                announced = true;
            }
            tokio::time::sleep(POLL.min(deadline - tokio::time::Instant::now())).await;
        }
        lock(&held.leases).push((blob.clone(), lease_id.clone()));
        if let Err(e) = set_holder(&client, c, &blob, &lease_id, Some(me)).await {
            leases.release().await;
            return Err(e);
        }
    }
    let renewing = held.clone();
    let renewer = tokio::spawn(async move {
        loop {
            tokio::time::sleep(RENEW).await;
            let now: Vec<(Url, String)> = lock(&renewing.leases).clone();
            for (blob, id) in now {
                if let Err(e) = renew(&client, &renewing.container, &blob, &id).await {
                    tracing::warn!("{}", redact::redacted(&e.to_string()));
                }
            }
        }
    });
    *lock(&leases.renewer) = Some(renewer);
    Ok(std::mem::take(&mut leases))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_survives_the_metadata_encoding() {
        let me = "pid 7\nhost ci-2\nstarted 2026-12-06T21:00:00Z\ncwd /home/ä b\ncommand pwdrift apply --lock-blob\n";
        let encoded = utf8_percent_encode(me, META).to_string();
        assert!(encoded.bytes().all(|b| b.is_ascii_graphic()), "{encoded}");
        assert_eq!(
            holder_line(&encoded),
            "pid 7, host ci-2, started 2026-12-06T21:00:00Z, cwd /home/ä b, command pwdrift apply --lock-blob"
        );
        assert_eq!(
            holder_line(""),
            "holder unknown: it has not written who it is yet"
        );
        assert_eq!(holder_line("a%1B%5B31m"), "a\\u{1b}[31m");
    }
}
