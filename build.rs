//! Build script: the commit and the build date that `pwdrift --version` names.
//!
//! - commit: `PWDRIFT_BUILD_COMMIT` when set (a build from a source archive, a packager), else
//!   `git rev-parse --short=12 HEAD` when this is a git checkout and git is installed, else
//!   `unknown`.
//! - date (UTC, `YYYY-MM-DD`): `SOURCE_DATE_EPOCH` when set (reproducible builds,
//!   <https://reproducible-builds.org/specs/source-date-epoch/>; the release workflow sets it to
//!   the commit's time), else the day of the build; `unknown` if the clock is before 1970.
//!
//! No dependency: the date is computed from the epoch seconds by hand.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PWDRIFT_BUILD_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");

    let commit = match std::env::var("PWDRIFT_BUILD_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_owned(),
        _ => git_commit().unwrap_or_else(|| "unknown".to_owned()),
    };
    let date = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(date_of)
            .unwrap_or_else(|| "unknown".to_owned()),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| date_of(d.as_secs() as i64))
            .unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=PWDRIFT_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=PWDRIFT_BUILD_DATE={date}");
}

/// The short commit of HEAD, and the files whose change means another commit (HEAD, the branch's
/// ref, packed refs), so that cargo runs this script again after a commit or a checkout.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (!s.is_empty()).then_some(s)
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    if !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    Some(commit)
}

/// `YYYY-MM-DD` (UTC) of the Unix time `secs` (Howard Hinnant's days-to-civil algorithm).
fn date_of(secs: i64) -> Option<String> {
    if secs < 0 {
        return None;
    }
    let z = secs / 86_400 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Some(format!("{year:04}-{month:02}-{day:02}"))
}
