//! Command-line interface: the clap definitions. clap lives only here and in the command layer
//! ([`crate::commands`], which parses, dispatches and turns the flags into the settings of
//! [`crate::engine`]); nothing below it imports this module. Exit codes are documented in
//! `docs/commands.md` ("Exit codes") and [`ExitStatus`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit codes that CI can rely on.
///
/// A closed stdout (`pwdrift plan ... | head -1`) is not an error: the command stops writing and
/// exits quietly (nothing on stderr) with `Success` (0), as ripgrep does; see
/// [`crate::printer`]. `apply` is the exception: it goes on applying without its output, and its
/// exit code still says whether every change was applied and verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// success; with `--detailed-exitcode`: success and no changes
    Success = 0,
    /// an error: invalid input, Graph failure, a change that did not apply or verify
    Failure = 1,
    /// with `--detailed-exitcode`: success, and the plan has changes
    Changes = 2,
    /// `apply` stopped by SIGINT (Ctrl-C): no new write started after the signal, the writes in
    /// flight finished (up to 10 s) and every outcome was recorded (128 + 2, as shells report)
    Interrupted = 130,
    /// `apply` stopped by SIGTERM, as for `Interrupted` (128 + 15)
    Terminated = 143,
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> ExitCode {
        ExitCode::from(s as u8)
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "pwdrift",
    version,
    long_version = LONG_VERSION,
    about = "Reconcile Microsoft Entra ID users' password state from YAML desired state",
    long_about = "pwdrift reads desired password state (YAML), reads live state from Microsoft Graph, \
                  shows the plan (the diff), applies it and verifies the result by reading back.",
    after_help = EXAMPLES_MAIN
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace). Secrets are never logged.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// No informational messages on stderr (progress, "Saved the plan to ..."). Errors, warnings
    /// and the requested output on stdout are always written.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// `pwdrift --version`: the version, the commit and the build date (UTC), from `build.rs`
/// (`unknown` when the build could not tell). `-V` and the man pages show the version alone.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PWDRIFT_BUILD_COMMIT"),
    ", built ",
    env!("PWDRIFT_BUILD_DATE"),
    ")"
);

const EXAMPLES_MAIN: &str = "\
Examples:
  pwdrift validate examples/desired
  pwdrift plan --sandbox examples/sandbox/contoso.seed.yaml examples/desired
  pwdrift plan desired/ --out plan.json && pwdrift apply plan.json
  pwdrift completions bash > ~/.local/share/bash-completion/completions/pwdrift";

const EXAMPLES_VALIDATE: &str = "\
Examples:
  pwdrift validate                        # every *.yaml below the current directory
  pwdrift validate examples/desired
  pwdrift validate desired/ --format json
  pwdrift validate desired/ --format github   # annotations on the pull request's diff";

const EXAMPLES_SCHEMA: &str = "\
Examples:
  pwdrift schema --list
  pwdrift schema config > pwdrift-config.schema.json
  pwdrift schema --write schemas/";

const EXAMPLES_PLAN: &str = "\
Examples:
  pwdrift plan --sandbox examples/sandbox/contoso.seed.yaml examples/desired
  pwdrift plan desired/ --out plan.json --detailed-exitcode
  pwdrift plan desired/ --format markdown > plan.md     # for a pull-request comment
  pwdrift plan desired/ --format github                 # workflow-command annotations
  pwdrift plan desired/ --tenant contoso.onmicrosoft.com --target bob@contoso.com
  pwdrift plan desired/ --shard 2/4                     # the tenants of CI job 2 of 4";

const EXAMPLES_APPLY: &str = "\
Examples:
  pwdrift apply plan.json --auto-approve                # a saved plan, run where plan ran:
                                                        # refused unless its desired-state files
                                                        # and live state give the same plan again
  pwdrift apply --sandbox examples/sandbox/contoso.seed.yaml examples/desired
  pwdrift apply desired/ --auto-approve --secrets-out secrets.jsonl --report report.json
  pwdrift apply desired/ --auto-approve --secrets-out secrets.jsonl --secrets-append  # resume
  pwdrift apply desired/ --secrets-out s.jsonl --secrets-recipient age1...  # encrypted passwords
  pwdrift apply plan.json --auto-approve --max-changes 50";

const EXAMPLES_SHOW: &str = "\
Examples:
  pwdrift plan desired/ --out plan.json && pwdrift show plan.json
  pwdrift show plan.json --format markdown > plan.md     # the reviewed plan as a comment
  pwdrift show plan.json --format json | jq .tenants";

const EXAMPLES_SECRETS: &str = "\
Examples:
  pwdrift secrets --secrets secrets.jsonl
  pwdrift secrets --secrets secrets.jsonl --user alice@contoso.com --since 2026-01-31
  pwdrift secrets --secrets secrets.jsonl --identity key.txt --format csv > merge.csv
  pwdrift secrets --secrets secrets.jsonl --resolve     # read back what is unknown";

const EXAMPLES_IMPORT: &str = "\
Examples:
  pwdrift import --tenant contoso.onmicrosoft.com --out desired/
  pwdrift import --sandbox examples/sandbox/contoso.seed.yaml --tenant contoso.com --out imported/
  pwdrift import --tenant contoso.com --out desired/ --group Finance --group Sales
  pwdrift import --tenant contoso.com --out desired/ --group Finance --split-by-group
  pwdrift import --tenant contoso.com --out desired/ --filter \"startsWith(userPrincipalName,'svc-')\"
  pwdrift import --tenant contoso.com --out desired/ --users-from users.txt --force";

#[cfg(feature = "sandbox")]
const EXAMPLES_SANDBOX: &str = "\
Examples:
  pwdrift sandbox --seed examples/sandbox/contoso.seed.yaml
  pwdrift sandbox --generate 10000 --listen 127.0.0.1:8080 --throttle scaled:10
  pwdrift sandbox --seed examples/sandbox/contoso.seed.yaml --faults 429=0.05,503=0.01";

const EXAMPLES_COMPLETIONS: &str = "\
Examples:
  pwdrift completions bash > ~/.local/share/bash-completion/completions/pwdrift
  pwdrift completions zsh > ~/.zfunc/_pwdrift
  pwdrift completions fish > ~/.config/fish/completions/pwdrift.fish
  pwdrift completions powershell >> $PROFILE";

const EXAMPLES_MAN: &str = "\
Examples:
  pwdrift man | man -l -
  pwdrift man --dir doc/man          # pwdrift.1 and one page per command";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check desired-state files: syntax, types, identifiers, contradictions. Offline.
    #[command(after_help = EXAMPLES_VALIDATE)]
    Validate(ValidateArgs),
    /// Print or write the JSON Schemas pwdrift publishes.
    #[command(after_help = EXAMPLES_SCHEMA)]
    Schema(SchemaArgs),
    /// Show what would change: desired state vs live state.
    #[command(after_help = EXAMPLES_PLAN)]
    Plan(PlanArgs),
    /// Apply a saved plan, or plan and apply after confirmation; then verify by reading back.
    #[command(after_help = EXAMPLES_APPLY)]
    Apply(ApplyArgs),
    /// Render a saved plan (from `plan --out`) as `plan` rendered it, after the integrity check
    /// `apply` makes. Offline: no credentials, no connection.
    #[command(after_help = EXAMPLES_SHOW)]
    Show(ShowArgs),
    /// The helpdesk's view of a secrets file: per user the last password pwdrift set and its
    /// outcome (shown because you ask for it by name); --resolve reads unknown outcomes back.
    #[command(after_help = EXAMPLES_SECRETS)]
    Secrets(SecretsArgs),
    /// Write desired state from a live tenant: the users' current flags, which the next plan
    /// finds already met. Never a password or a reset.
    #[command(after_help = EXAMPLES_IMPORT)]
    Import(ImportArgs),
    /// Run the Graph sandbox: a local HTTP server that behaves like Microsoft Graph.
    #[cfg(feature = "sandbox")]
    #[command(after_help = EXAMPLES_SANDBOX)]
    Sandbox(SandboxArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish) on stdout.
    #[command(after_help = EXAMPLES_COMPLETIONS)]
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout, or write every page into a directory.
    #[command(after_help = EXAMPLES_MAN)]
    Man(ManArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ValidateFormat {
    /// diagnostics on stderr as rustc shows them, one summary line on stdout
    Text,
    /// one JSON document on stdout: every diagnostic (file, line, column, severity, message) and
    /// a summary
    Json,
    /// GitHub Actions workflow commands (`::error file=…,line=…,col=…::`) on stdout
    Github,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files or directories (all *.yaml / *.yml below them). Default: current directory.
    pub paths: Vec<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
    pub format: ValidateFormat,

    /// Also allow password files (`password: { file: PATH }`) under this directory; by default
    /// they must lie inside the desired-state directory (symlinks followed). Repeatable.
    #[arg(long = "allow-password-dir", value_name = "DIR")]
    pub allow_password_dirs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write pwdrift.1 and one page per command (pwdrift-plan.1, ...) into this directory instead
    /// of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which schema to print (see --list).
    pub name: Option<String>,
    /// List the schema names.
    #[arg(long, conflicts_with_all = ["name", "write"])]
    pub list: bool,
    /// Write every schema into this directory (as NAME.schema.json files).
    #[arg(long, value_name = "DIR", conflicts_with = "name")]
    pub write: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Cloud {
    Global,
    Usgov,
    UsgovDod,
    China,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// terraform-style text (colour on a terminal)
    Text,
    /// the plan document (as saved by --out)
    Json,
    /// GitHub-flavoured Markdown for a pull-request comment, under 65,536 characters
    Markdown,
    /// GitHub Actions workflow commands: a notice with the summary, a warning per blocked user
    Github,
}

/// How to reach Graph and the identity authority (shared by every command that connects).
#[derive(Debug, Args, Clone)]
pub struct ConnectionArgs {
    /// National cloud.
    #[arg(long, value_enum, default_value_t = Cloud::Global, env = "PWDRIFT_CLOUD")]
    pub cloud: Cloud,

    /// Override the Graph endpoint (e.g. a sandbox URL). Plain http:// only to loopback.
    #[arg(long, value_name = "URL", env = "PWDRIFT_GRAPH_URL")]
    pub graph_url: Option<String>,

    /// Override the identity authority (AZURE_AUTHORITY_HOST is also honoured).
    #[arg(long, value_name = "URL", env = "AZURE_AUTHORITY_HOST")]
    pub authority_host: Option<String>,

    /// Do not verify TLS certificates. Dangerous; prints a warning on every run.
    #[arg(long)]
    pub insecure_skip_tls_verify: bool,
}

/// `N/SECONDS`: at most N requests in any SECONDS (`--reset-rate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub requests: u32,
    pub seconds: u32,
}

fn parse_rate(s: &str) -> Result<Rate, String> {
    let bad = || {
        format!(
            "expected N/SECONDS with whole numbers of at least 1, e.g. 5/10; got '{}'",
            crate::escape::Shown(s)
        )
    };
    let (n, secs) = s.trim().split_once('/').ok_or_else(bad)?;
    let requests: u32 = n.trim().parse().map_err(|_| bad())?;
    let seconds: u32 = secs.trim().parse().map_err(|_| bad())?;
    if requests == 0 || seconds == 0 || seconds > 86_400 {
        return Err(bad());
    }
    Ok(Rate { requests, seconds })
}

/// Where and how to reach Graph, and which part of the desired state to act on.
#[derive(Debug, Args, Clone)]
pub struct TargetArgs {
    /// Desired-state files or directories. Default: current directory.
    pub paths: Vec<PathBuf>,

    /// Run against an embedded Graph sandbox seeded from this file (state kept in
    /// .pwdrift-sandbox/ beside it), instead of Microsoft Graph. No credentials needed.
    #[arg(long, value_name = "SEED")]
    pub sandbox: Option<PathBuf>,

    /// Only these tenants (domain or id, as written in desired state). Repeatable.
    #[arg(long = "tenant", value_name = "TENANT")]
    pub tenants: Vec<String>,

    /// Only these users (UPN, object id or SID, as written in desired state). Repeatable.
    #[arg(long = "target", value_name = "USER")]
    pub targets: Vec<String>,

    /// Only the tenants of shard I of N (1 <= I <= N), for N parallel CI jobs: each tenant is in
    /// exactly one shard (a stable hash of its tenant id, learnt by signing in, so that every
    /// name of one tenant lands in the same shard), and adding tenants moves no other.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<crate::shard::Shard>,

    /// resetPassword requests and operation polls per tenant: N per SECONDS (Graph's identity
    /// and access reports limit, which names authenticationMethod, is 5 per 10 s).
    #[arg(long, value_name = "N/SECONDS", default_value = "5/10", env = "PWDRIFT_RESET_RATE",
          value_parser = parse_rate)]
    pub reset_rate: Rate,

    /// The application's quotas across tenants (150,000 resource units per 20 s, 70,000 writes
    /// per 5 min, 130,000 requests per 10 s) are divided by this: the number of processes
    /// applying with the same application at once. Default: N of --shard I/N, else 1.
    #[arg(long, value_name = "N", env = "PWDRIFT_APP_QUOTA_SHARES",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub app_quota_shares: Option<u32>,

    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Sign in as an admin with the device-code flow, for the delegated-only resetPassword
    /// (synced users).
    #[arg(long)]
    pub delegated: bool,

    /// When Graph refuses to list PIM role eligibilities (the application lacks
    /// RoleEligibilitySchedule.Read.Directory), proceed as if no one were eligible for a role
    /// instead of stopping. Eligible administrators are then treated as ordinary users; the plan
    /// says so.
    #[arg(long)]
    pub assume_no_eligible_admins: bool,

    /// The tenant accepts flag-only passwordProfile changes of users synced from on-premises
    /// (Graph is reported to refuse them; by default they are planned as blocked). After the
    /// first refusal during apply, the other synced users' flag changes are not attempted.
    #[arg(long)]
    pub synced_flags_writable: bool,

    /// A restricted management administrative unit (display name or id) the credential is
    /// scoped to: its members are planned like any user instead of blocked. Repeatable.
    #[arg(long = "admin-unit", value_name = "UNIT")]
    pub admin_units: Vec<String>,
    /// Overall deadline of one Graph request in seconds, retries and their waits included
    /// (each attempt also times out after 100 s, a connection after 10 s).
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub request_timeout: u64,

    /// Also allow password files (`password: { file: PATH }`) under this directory; by default
    /// they must lie inside the desired-state directory (symlinks followed). Repeatable.
    #[arg(long = "allow-password-dir", value_name = "DIR")]
    pub allow_password_dirs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,

    /// Save the plan (no secrets) for `pwdrift apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// `PATH ...` are desired-state files/directories, as for `plan`; a single argument that is a
    /// saved plan (from `plan --out`) is applied as saved, after deriving it again from the
    /// desired-state files it records (unchanged) and live state, and finding the same plan.
    #[command(flatten)]
    pub target: TargetArgs,

    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,

    /// Allow a change set touching more than --change-threshold of the managed users.
    #[arg(long)]
    pub force: bool,

    /// Percentage of managed users (when there are at least 10) a run may change without --force.
    #[arg(long, value_name = "PERCENT", default_value_t = 30)]
    pub change_threshold: u8,

    /// Refuse to run when the plan has more than N changes.
    #[arg(long, value_name = "N")]
    pub max_changes: Option<usize>,

    /// After writing, keep re-reading changed users (with backoff) for up to this many seconds
    /// until every change shows: Entra serves reads from replicas that may lag behind writes.
    /// A change is reported failed only when it has not shown by then.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub verify_timeout: u64,

    /// Write-ahead journal of every password set (created new, 0600; an existing file or
    /// symlink is refused): each password is recorded before the request that sets it is sent.
    #[arg(long, value_name = "FILE")]
    pub secrets_out: Option<PathBuf>,

    /// Continue an existing --secrets-out file (yours, 0600, not linked): first resolve what an
    /// interrupted run left pending in it, then append.
    #[arg(long, requires = "secrets_out")]
    pub secrets_append: bool,

    /// Encrypt the passwords in --secrets-out to this age recipient (age1...; repeatable), or to
    /// every recipient listed in a file (one per line, # comments). The rest of each record
    /// stays readable, so pwdrift can still resume from the file.
    #[arg(long, value_name = "AGE1...|FILE", requires = "secrets_out")]
    pub secrets_recipient: Vec<String>,

    /// Write a per-user JSON result here.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Requests in flight per tenant ($batch envelopes or single writes; resetPassword
    /// operations are polled in a pool of the same size of their own); password resets run side
    /// by side, 8 in progress per request (a resetPassword operation mostly waits for its
    /// `Retry-After`). Writes stay paced to Graph's write quotas.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub concurrency: usize,

    /// Another apply of the same tenant on this machine holds its lock: wait up to this long
    /// for it (e.g. 30s, 10m, 1h; a bare number is seconds), then fail naming the holder. 0, the
    /// default, fails at once. The lock is per tenant and machine-wide ($PWDRIFT_LOCK_DIR, else
    /// $XDG_RUNTIME_DIR/pwdrift/locks, else /tmp/pwdrift-locks-UID).
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
    pub lock_timeout: std::time::Duration,

    /// Also lease the tenant in this Azure Blob Storage container, for applies on different
    /// machines (https://ACCOUNT.blob.core.windows.net/CONTAINER; Azurite's
    /// http://127.0.0.1:10000/devstoreaccount1/CONTAINER): the blob <tenant id>.lock, leased
    /// after the machine lock and held (renewed) until the apply ends; --lock-timeout applies.
    /// Signed with the account key in AZURE_STORAGE_KEY, or a SAS token as the URL's query.
    #[arg(
        long,
        value_name = "URL",
        env = "PWDRIFT_LOCK_BLOB",
        hide_env_values = true
    )]
    pub lock_blob: Option<String>,
}

/// A duration: a number with an optional unit, `ms`, `s`, `m` or `h` (`30s`, `10m`, `1h`); a bare
/// number is seconds. At most a day.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        format!("{text:?} is not a duration: a number and a unit (ms, s, m, h), e.g. 10m")
    })?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" | "min" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?}; use ms, s, m or h (e.g. 10m)"
            ))
        }
    };
    match ms {
        Some(ms) if ms <= 86_400_000 => Ok(std::time::Duration::from_millis(ms)),
        _ => Err(format!("{text:?} is longer than a day")),
    }
}

/// `pwdrift show PLANFILE`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A saved plan (`pwdrift plan --out FILE`).
    #[arg(value_name = "PLANFILE")]
    pub plan: PathBuf,

    /// Output format (as for `plan`).
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SecretsFormat {
    /// aligned columns, values escaped for the terminal
    Table,
    /// a header row, then one row per user (RFC 4180; a field starting with =, +, -, @, tab or
    /// CR gets a leading ' against formula injection)
    Csv,
    /// one JSON document, exact values
    Json,
}

/// `pwdrift secrets`.
#[derive(Debug, Args)]
pub struct SecretsArgs {
    /// The secrets file (`apply --secrets-out FILE`).
    #[arg(long = "secrets", value_name = "FILE")]
    pub secrets: PathBuf,

    /// An age identity file (`AGE-SECRET-KEY-1...` lines) to decrypt passwords encrypted with
    /// `apply --secrets-recipient`. Repeatable. Without it, encrypted passwords are not shown.
    #[arg(long, value_name = "FILE")]
    pub identity: Vec<PathBuf>,

    /// Only this user (UPN, case-insensitive). Repeatable.
    #[arg(long = "user", value_name = "UPN")]
    pub users: Vec<String>,

    /// Only users whose last password was set at or after this date (2026-01-31, UTC) or time
    /// (RFC 3339).
    #[arg(long, value_name = "DATE|RFC3339")]
    pub since: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = SecretsFormat::Table)]
    pub format: SecretsFormat,

    /// First resolve the writes whose outcome is unknown: read those users back from Graph
    /// (the credentials of the environment, as for `plan`) and append the outcome to the file.
    #[arg(long)]
    pub resolve: bool,

    /// With --resolve: an embedded Graph sandbox seeded from this file, instead of Graph.
    #[arg(long, value_name = "SEED", requires = "resolve")]
    pub sandbox: Option<PathBuf>,

    /// With --resolve: also sign in as an admin (device code), to poll resetPassword operations.
    #[arg(long, requires = "resolve")]
    pub delegated: bool,

    /// With --resolve: keep re-reading a user for up to this many seconds before concluding its
    /// password did not change (reads can lag behind writes).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 30,
        requires = "resolve"
    )]
    pub verify_timeout: u64,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `pwdrift import`: which tenant and users to read, where to write, and how to reach Graph.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The tenant to read (a verified domain or the tenant id), as it will be written in the
    /// files. Repeatable: one file per tenant.
    #[arg(long = "tenant", value_name = "TENANT", required = true)]
    pub tenants: Vec<String>,

    /// Directory to write into: DIR/<tenant>.yaml (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Import the transitive user members of this group (display name or object id).
    /// Repeatable; with --filter and --users-from, the union is imported. Default: all users.
    #[arg(long = "group", value_name = "NAME|ID")]
    pub groups: Vec<String>,

    /// Import the users matching this OData filter on /users, e.g.
    /// "startsWith(userPrincipalName,'svc-')" or "passwordProfile/forceChangePasswordNextSignIn eq true".
    #[arg(long, value_name = "ODATA")]
    pub filter: Option<String>,

    /// Import the users listed in FILE: one UPN, object id or SID per line; `#` starts a comment.
    #[arg(long, value_name = "FILE")]
    pub users_from: Option<PathBuf>,

    /// One file per --group: DIR/<tenant>/<group>.yaml (a user in several groups goes in the
    /// first named), and DIR/<tenant>/ungrouped.yaml for the users selected otherwise.
    #[arg(long, requires = "groups")]
    pub split_by_group: bool,

    /// Overwrite files that exist (otherwise refused, and nothing is written).
    #[arg(long)]
    pub force: bool,

    /// Read an embedded Graph sandbox seeded from this file (state kept in .pwdrift-sandbox/
    /// beside it, shared with plan and apply), instead of Microsoft Graph.
    #[arg(long, value_name = "SEED")]
    pub sandbox: Option<PathBuf>,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args, Clone)]
pub struct SandboxArgs {
    /// Seed file (YAML or JSON; see `pwdrift schema sandbox-seed`).
    #[arg(long, value_name = "FILE", conflicts_with = "generate")]
    pub seed: Option<PathBuf>,

    /// Generate a tenant of N users instead of reading a seed.
    #[arg(long, value_name = "N")]
    pub generate: Option<usize>,

    /// With --generate: K tenants of N users each (rng seeds SEED, SEED+1, ...), with one
    /// multi-tenant app whose client id and secret work in every one of them.
    #[arg(long, value_name = "K", requires = "generate", default_value_t = 1)]
    pub generate_tenants: usize,

    /// Seed of the deterministic generator and of fault injection.
    #[arg(long, value_name = "SEED", default_value_t = 1)]
    pub rng_seed: u64,

    /// Address to listen on (port 0 picks a free port). Loopback only.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: String,

    /// Persist state to this file across restarts.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Throttling model: real (documented Entra limits), off, or scaled:K (windows and quotas / K).
    #[arg(long, value_name = "MODE", default_value = "real")]
    pub throttle: String,

    /// Hold resetPassword and its operation polls to 5 requests per 10 s per app and tenant
    /// (Graph's identity and access reports limit, which names authenticationMethod): on or off.
    #[arg(long, value_name = "on|off", default_value = "on", action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub auth_method_limit: bool,

    /// Send x-ms-throttle-scope beside x-ms-throttle-limit-percentage on successful answers too
    /// (Microsoft documents it on throttled answers only, the default).
    #[arg(long)]
    pub throttle_scope_on_success: bool,

    /// Added latency per request: MS or MS+-JITTER.
    #[arg(long, value_name = "MS[+-JITTER]")]
    pub latency: Option<String>,

    /// Added latency per object a response returns (users of a page, group members, each inner
    /// `$batch` response), fractional milliseconds, e.g. 0.4. Default 0.
    #[arg(long, value_name = "MS", default_value_t = 0.0)]
    pub latency_per_item: f64,

    /// Fault injection, e.g. `429=0.05,500=0.01,503=0.01,drop=0.01,slow=0.01`.
    #[arg(long, value_name = "SPEC")]
    pub faults: Option<String>,

    /// Shift the sandbox's clock (the `Date` header of its responses, the timestamps it writes,
    /// its tokens' lifetimes): a sign, a number and d, h, m or s, e.g. `+365d`, `-365d`.
    #[arg(long, value_name = "OFFSET", allow_hyphen_values = true)]
    pub clock_offset: Option<String>,

    /// Reproduce the disputed behaviour: a PATCH of passwordProfile flags without a password
    /// returns 204 and changes nothing.
    #[arg(long)]
    pub flag_only_patch_noop: bool,

    /// Refuse flag-only passwordProfile PATCHes of users synced from on-premises as on-premises
    /// mastered (400), as reported of real tenants (by default they are accepted).
    #[arg(long)]
    pub synced_flags_refused: bool,

    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3599)]
    pub token_lifetime: u64,

    /// How long a resetPassword operation takes (notStarted -> running -> succeeded), in ms.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub reset_operation_ms: u64,

    /// `Retry-After` of the resetPassword 202 response, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 1)]
    pub reset_retry_after: u64,

    /// Behaviours where real tenants differ (see `pwdrift sandbox --help`).
    #[command(flatten)]
    pub realism: SandboxRealismArgs,
}

/// `pwdrift sandbox` switches for behaviours where real tenants differ or the docs and public
/// reports disagree.
#[derive(Debug, Args, Clone)]
pub struct SandboxRealismArgs {
    /// Most related objects a `$expand` returns (no next link), e.g. `/directoryRoles?$expand=members`;
    /// 0 = no cap.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub expand_cap: usize,

    /// Page size of the role-management collections when no `$top` is given.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub role_page_size: usize,

    /// Reads lag writes: a GET of a user within MS of a write to it returns the previous version.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub read_lag: u64,

    /// `transitiveMembers/microsoft.graph.user`: documented (needs `ConsistencyLevel: eventual`
    /// and `$count=true`), lenient (works without), cast-ignored (groups come back too).
    #[arg(long, value_name = "MODE", default_value = "documented")]
    pub transitive_members: String,

    /// resetPassword answers 202 without a `Location` header.
    #[arg(long)]
    pub reset_no_location: bool,

    /// resetPassword's `Location` carries the query parameters real tenants send
    /// (`?aadgdc=...&aadgsu=...`).
    #[arg(long)]
    pub reset_location_query: bool,

    /// Every resetPassword operation ends `failed`.
    #[arg(long)]
    pub reset_fail: bool,

    /// No tenant has a licence that includes PIM: eligibility reads answer 400
    /// `AadPremiumLicenseRequired`.
    #[arg(long, alias = "no-pim-licence")]
    pub no_pim_license: bool,

    /// Accept certificate client assertions in the older documented form (RS256, SHA-1 `x5t`)
    /// beside the current one (PS256, `x5t#S256`).
    #[arg(long)]
    pub legacy_certificate_assertions: bool,
    /// `userPrincipalName ge/le` in a user filter: honoured (documented), rejected (400), or
    /// ignored (accepted, every user returned, as a public docs issue reports).
    #[arg(long, value_name = "MODE", default_value = "honoured")]
    pub upn_range_filter: String,

    /// Advanced queries (`ConsistencyLevel: eventual`) are served from an index that lags
    /// writes: a user written within MS shows its state from before the write.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub eventual_lag: u64,

    /// The tenants are Azure AD B2C tenants: requests with `ConsistencyLevel: eventual` answer
    /// 400 `Request_BadRequest`.
    #[arg(long)]
    pub b2c: bool,
    /// Page size of `identityProtection/riskyUsers` when no `$top` is given.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub risky_page_size: usize,

    /// No tenant has Entra ID P2: `identityProtection/riskyUsers` answers 403.
    #[arg(long, alias = "no-identity-protection-licence")]
    pub no_identity_protection_license: bool,

    /// `identityProtection/riskyUsers` is not held to 1 request per second per tenant.
    #[arg(long)]
    pub no_identity_protection_limit: bool,
}

impl Default for SandboxRealismArgs {
    fn default() -> Self {
        SandboxRealismArgs {
            expand_cap: 20,
            role_page_size: 5,
            read_lag: 0,
            transitive_members: "documented".into(),
            reset_no_location: false,
            reset_location_query: false,
            reset_fail: false,
            no_pim_license: false,
            legacy_certificate_assertions: false,
            upn_range_filter: "honoured".into(),
            eventual_lag: 0,
            b2c: false,
            risky_page_size: 20,
            no_identity_protection_license: false,
            no_identity_protection_limit: false,
        }
    }
}

#[cfg(test)]
mod lock_timeout_tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn lock_timeouts_parse_with_a_unit_or_as_seconds() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "m", "10x", "-1", "1.5m", "25h"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }
}
