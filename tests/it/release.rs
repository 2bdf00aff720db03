//! The release pipeline and the install paths agree with one another, and the install script
//! does what it promises:
//!
//! - `pwdrift --version` names the version, the commit and the build date (`build.rs`).
//! - The release workflow (`.github/workflows/release.yml`) builds the five targets; its
//!   packaging script (`.github/scripts/package.sh`) names each archive as the
//!   `[package.metadata.binstall]` of Cargo.toml expects (pkg-url, bin-dir, pkg-fmt), with a
//!   `.sha256` that `sha256sum -c` accepts.
//! - The release notes script (`.github/scripts/changelog-section.sh`) takes one section of
//!   CHANGELOG.md, and refuses a version without one.
//! - `action/install.sh` (the GitHub Action's installer), run with bash against a release
//!   directory served from loopback: a right checksum installs and reports the directory (and
//!   appends it to `GITHUB_PATH`); a wrong one installs nothing; a platform without an archive
//!   builds from source (`cargo install`), or fails clearly with the fallback off; a failing
//!   attestation installs nothing.
//!
//! The scripts need `bash` and `tar` (and `curl` or `wget`); without them these tests say so and
//! pass.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::common::{repo, run, BIN};

/// The targets the release workflow builds, as the task of issue 22 lists them.
const TARGETS: [&str; 5] = [
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
    "x86_64-pc-windows-msvc",
];

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Whether the tools the scripts need are here; if not, says so (the test then passes).
fn tools_present() -> bool {
    let has = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let missing: Vec<&str> = ["bash", "tar"].into_iter().filter(|t| !has(t)).collect();
    if !missing.is_empty() || !(has("curl") || has("wget")) {
        eprintln!("skipped: {missing:?} (or curl/wget) not installed");
        return false;
    }
    true
}

#[test]
fn version_names_the_version_the_commit_and_the_build_date() {
    let out = run(Command::new(BIN).arg("--version"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let line = out.stdout.trim_end();
    let rest = line
        .strip_prefix(&format!("pwdrift {VERSION} (commit "))
        .unwrap_or_else(|| panic!("{line:?}"));
    let (commit, rest) = rest
        .split_once(", built ")
        .unwrap_or_else(|| panic!("{line:?}"));
    let date = rest.strip_suffix(')').unwrap_or_else(|| panic!("{line:?}"));
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "commit {commit:?} in {line:?}"
    );
    let d = date.as_bytes();
    assert!(
        date == "unknown"
            || (d.len() == 10
                && d[4] == b'-'
                && d[7] == b'-'
                && date.replace('-', "").bytes().all(|b| b.is_ascii_digit())),
        "date {date:?} in {line:?}"
    );
    // what build.rs handed the build is what the binary says
    assert_eq!(commit, env!("PWDRIFT_BUILD_COMMIT"));
    assert_eq!(date, env!("PWDRIFT_BUILD_DATE"));
    // built from this checkout (no override): the commit is its HEAD
    if std::env::var_os("PWDRIFT_BUILD_COMMIT").is_none() {
        if let Ok(head) = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(repo())
            .output()
        {
            if head.status.success() && commit != "unknown" {
                let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
                assert!(
                    head.starts_with(commit) || commit.starts_with(&head),
                    "--version names {commit}, HEAD is {head}"
                );
            }
        }
    }
    // -V, and so the man pages, the version alone
    let short = run(Command::new(BIN).arg("-V"));
    assert_eq!(short.stdout.trim_end(), format!("pwdrift {VERSION}"));
}

/// The `[package.metadata.binstall]` table of Cargo.toml (and its overrides) as `(section, key,
/// value)`, read line by line (the table is flat).
fn binstall_metadata() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
        } else if section.starts_with("package.metadata.binstall") {
            if let Some((k, v)) = line.split_once('=') {
                out.push((
                    section.clone(),
                    k.trim().to_owned(),
                    v.trim().trim_matches('"').to_owned(),
                ));
            }
        }
    }
    out
}

fn binstall(section: &str, key: &str) -> Option<String> {
    binstall_metadata()
        .into_iter()
        .find(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v)
}

/// binstall's pkg-fmt for a target, overrides applied.
fn pkg_fmt(target: &str) -> String {
    binstall(
        &format!("package.metadata.binstall.overrides.{target}"),
        "pkg-fmt",
    )
    .or_else(|| binstall("package.metadata.binstall", "pkg-fmt"))
    .expect("pkg-fmt")
}

/// A binstall template with its variables filled in for `target` (as cargo-binstall does).
fn expand(template: &str, target: &str) -> String {
    let windows = target.contains("-windows-");
    let suffix = match pkg_fmt(target).as_str() {
        "tgz" => ".tar.gz",
        "zip" => ".zip",
        other => panic!("pkg-fmt {other} is not one the release workflow makes"),
    };
    template
        .replace("{ repo }", "https://github.com/OWNER/pwdrift")
        .replace("{ name }", "pwdrift")
        .replace("{ bin }", "pwdrift")
        .replace("{ version }", VERSION)
        .replace("{ target }", target)
        .replace("{ archive-suffix }", suffix)
        .replace("{ binary-ext }", if windows { ".exe" } else { "" })
}

/// The targets of the release workflow's build matrix, with their runner.
fn workflow_targets() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join(".github/workflows/release.yml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    doc["jobs"]["build"]["strategy"]["matrix"]["include"]
        .as_sequence()
        .expect("jobs.build.strategy.matrix.include")
        .iter()
        .map(|e| {
            (
                e["target"].as_str().unwrap().to_owned(),
                e["os"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `package.sh VERSION TARGET BINARY OUTDIR`; the archive's path.
fn package(target: &str, binary: &Path, outdir: &Path) -> PathBuf {
    let out = run(Command::new("bash")
        .arg(repo().join(".github/scripts/package.sh"))
        .args([VERSION, target])
        .arg(binary)
        .arg(outdir));
    assert_eq!(out.code, 0, "package.sh {target}: {}", out.stderr);
    PathBuf::from(out.stdout.trim_end())
}

/// A stand-in for the binary in the test archives: a small launcher of the binary under test
/// (the real one is 200 MB unoptimised; the archives' handling does not depend on the size).
fn launcher(dir: &Path) -> PathBuf {
    let path = dir.join("pwdrift-launcher");
    std::fs::write(&path, format!("#!/bin/sh\nexec '{BIN}' \"$@\"\n")).unwrap();
    make_executable(&path);
    path
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn workflow_targets_archive_names_and_binstall_metadata_agree() {
    let targets = workflow_targets();
    let names: Vec<&str> = targets.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(names, TARGETS, "the release workflow's targets");
    for (target, os) in &targets {
        let family = if target.contains("-linux-") {
            "ubuntu-"
        } else if target.contains("-apple-") {
            "macos-"
        } else {
            "windows-"
        };
        assert!(os.starts_with(family), "{target} built on {os}");
        assert_eq!(
            target.starts_with("aarch64"),
            os.contains("arm") || os == "macos-15" || os == "macos-14",
            "{target} on {os}: a native runner of its architecture"
        );
    }
    let workflow = std::fs::read_to_string(repo().join(".github/workflows/release.yml")).unwrap();
    for needed in [
        "bash .github/scripts/package.sh \"$VERSION\" \"$TARGET\"",
        "actions/attest-build-provenance@",
        "subject-path: dist/pwdrift-*",
        "bash .github/scripts/changelog-section.sh \"$VERSION\" CHANGELOG.md > notes.md",
        "--notes-file notes.md",
        "sha256sum -c ./*.sha256",
    ] {
        assert!(workflow.contains(needed), "release.yml lacks `{needed}`");
    }

    if !tools_present() {
        return;
    }
    let pkg_url = binstall("package.metadata.binstall", "pkg-url").expect("pkg-url");
    let bin_dir = binstall("package.metadata.binstall", "bin-dir").expect("bin-dir");
    let tmp = tempfile::tempdir().unwrap();
    let binary = launcher(tmp.path());
    for target in TARGETS {
        let url = expand(&pkg_url, target);
        let expected_name = url.rsplit('/').next().unwrap();
        assert_eq!(
            url,
            format!(
                "https://github.com/OWNER/pwdrift/releases/download/v{VERSION}/{expected_name}"
            ),
            "binstall's pkg-url for {target}: the release's tag is v{{version}}"
        );
        if pkg_fmt(target) == "zip" && which("unzip").is_none() {
            eprintln!("{target}: not packed here (no unzip to read the zip)");
            continue;
        }
        let archive = package(target, &binary, &tmp.path().join("dist"));
        assert_eq!(
            archive.file_name().unwrap().to_string_lossy(),
            expected_name,
            "package.sh's archive for {target} is not binstall's pkg-url"
        );
        // the checksum file is sha256sum's format, for the archive beside it
        let sum = std::fs::read_to_string(format!("{}.sha256", archive.display())).unwrap();
        assert_eq!(sum, format!("{}  {expected_name}\n", sha256(&archive)));
        // the binary is where binstall's bin-dir says
        let listing = if pkg_fmt(target) == "zip" {
            run(Command::new("unzip").arg("-Z1").arg(&archive)).stdout
        } else {
            run(Command::new("tar").arg("-tzf").arg(&archive)).stdout
        };
        let inside = expand(&bin_dir, target);
        assert!(
            listing.lines().any(|l| l == inside),
            "{expected_name} has no {inside}:\n{listing}"
        );
        assert!(
            listing.lines().any(|l| l.ends_with("/CHANGELOG.md")),
            "{listing}"
        );
    }
}

/// Whether `tool` is installed (it answers `-v`).
fn which(tool: &str) -> Option<()> {
    Command::new(tool).arg("-v").output().ok().map(|_| ())
}

/// The SHA-256 of a file, in hex.
fn sha256(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

fn changelog_section(version: &str, file: &Path) -> crate::common::Run {
    run(Command::new("bash")
        .arg(repo().join(".github/scripts/changelog-section.sh"))
        .arg(version)
        .arg(file))
}

#[test]
fn the_release_notes_are_one_section_of_the_changelog() {
    if !tools_present() {
        return;
    }
    // CHANGELOG.md itself: Keep a Changelog, with an Unreleased section that has content
    let changelog = repo().join("CHANGELOG.md");
    let text = std::fs::read_to_string(&changelog).unwrap();
    assert!(text.starts_with("# Changelog\n"), "{text}");
    assert!(text.contains("keepachangelog.com"), "{text}");
    let out = changelog_section("Unreleased", &changelog);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("### "), "{}", out.stdout);
    assert!(!out.stdout.contains("## ["), "{}", out.stdout);

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("CHANGELOG.md");
    std::fs::write(
        &file,
        "# Changelog\n\n## [Unreleased]\n\n## [0.3.0] - 2027-01-02\n\n### Fixed\n\n- the thing\n\n\
         ## [0.2.0] - 2026-12-01\n\n### Added\n\n- other\n\n[0.3.0]: https://example.test/v0.3.0\n",
    )
    .unwrap();
    for asked in ["0.3.0", "v0.3.0"] {
        let out = changelog_section(asked, &file);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.stdout, "### Fixed\n\n- the thing\n", "{asked}");
    }
    let out = changelog_section("0.2.0", &file);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("### Added\n\n- other\n"),
        "{}",
        out.stdout
    );
    // a release without notes is refused: a missing section, an empty one
    let out = changelog_section("0.4.0", &file);
    assert_eq!(out.code, 1);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(
        out.stderr.contains("no section \"## [0.4.0]\"") && out.stderr.contains("CHANGELOG.md"),
        "{}",
        out.stderr
    );
    let out = changelog_section("Unreleased", &file);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("is empty"), "{}", out.stderr);
    // 0.3 is not 0.3.0
    assert_eq!(changelog_section("0.3", &file).code, 1);
}

/// A release directory on loopback: `GET /vVERSION/FILE` answers the file, anything else 404.
/// Every path asked for is recorded.
struct Releases {
    base: String,
    asked: Arc<Mutex<Vec<String>>>,
}

impl Releases {
    fn serve(root: &Path) -> Releases {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let asked = Arc::new(Mutex::new(Vec::new()));
        let (root, log) = (root.to_path_buf(), asked.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                // the rest of the head
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                log.lock().unwrap().push(path.clone());
                let file = root.join(path.trim_start_matches('/'));
                let safe = !path.contains("..");
                let (status, body) = match std::fs::read(&file) {
                    Ok(body) if safe && file.is_file() => ("200 OK", body),
                    _ => ("404 Not Found", b"Not Found".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        Releases { base, asked }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

/// A fake release v{VERSION} for this machine's target: the archive package.sh makes of a
/// launcher of the binary under test, and its `.sha256`.
struct Fixture {
    tmp: tempfile::TempDir,
    target: String,
    archive: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let target = run(Command::new("bash")
            .arg(repo().join("action/install.sh"))
            .arg("--print-target")
            .env_remove("PWDRIFT_TARGET"))
        .stdout
        .trim()
        .to_owned();
        assert!(target.contains('-'), "--print-target: {target:?}");
        let binary = launcher(tmp.path());
        let archive = package(
            &target,
            &binary,
            &tmp.path().join(format!("releases/v{VERSION}")),
        );
        Fixture {
            tmp,
            target,
            archive,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// `bash action/install.sh` against `releases`, installing into `inst/`, with `GITHUB_PATH`
    /// at `github_path` and `bin/` (fake tools) first on PATH.
    fn install(&self, releases: &Releases, env: &[(&str, &str)]) -> crate::common::Run {
        let fake_bin = self.path("fakebin");
        std::fs::create_dir_all(&fake_bin).unwrap();
        let path = std::env::join_paths(std::iter::once(fake_bin).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )))
        .unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg(repo().join("action/install.sh"))
            .env("PATH", path)
            .env("HOME", self.tmp.path())
            .env("PWDRIFT_VERSION", format!("v{VERSION}"))
            .env("PWDRIFT_BASE_URL", &releases.base)
            .env("PWDRIFT_INSTALL_DIR", self.path("inst"))
            .env("GITHUB_PATH", self.path("github_path"))
            .env("PWDRIFT_ATTESTATION", "skip")
            .env_remove("PWDRIFT_TARGET")
            .env_remove("PWDRIFT_FALLBACK")
            .env_remove("PWDRIFT_REPO")
            .env_remove("GH_TOKEN")
            .env_remove("GITHUB_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(&mut cmd)
    }

    /// A fake tool on the install's PATH: a script that records its arguments in `NAME.args`,
    /// then runs `body`.
    fn fake_tool(&self, name: &str, body: &str) {
        let dir = self.path("fakebin");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let log = self.path(&format!("{name}.args"));
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho \"$@\" >> '{}'\n{body}\n", log.display()),
        )
        .unwrap();
        make_executable(&path);
    }

    fn installed(&self) -> PathBuf {
        self.path("inst/bin/pwdrift")
    }

    fn github_path(&self) -> String {
        std::fs::read_to_string(self.path("github_path")).unwrap_or_default()
    }
}

#[test]
fn install_script_installs_a_release_whose_checksum_is_right() {
    if !tools_present() {
        return;
    }
    let f = Fixture::new();
    let releases = Releases::serve(&f.path("releases"));
    let out = f.install(&releases, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let bin_dir = f.path("inst/bin");
    // the directory reported (last line) and added to GITHUB_PATH
    assert_eq!(out.stdout.lines().last(), Some(bin_dir.to_str().unwrap()));
    assert_eq!(f.github_path(), format!("{}\n", bin_dir.display()));
    assert!(out.stderr.contains("checksum verified"), "{}", out.stderr);
    let version = run(Command::new(f.installed()).arg("--version"));
    assert_eq!(version.code, 0);
    assert!(
        version
            .stdout
            .starts_with(&format!("pwdrift {VERSION} (commit ")),
        "{}",
        version.stdout
    );
    // it asked for the archive binstall's pkg-url names, then its checksum
    let pkg_url = binstall("package.metadata.binstall", "pkg-url").unwrap();
    let name = expand(&pkg_url, &f.target);
    let name = name.rsplit('/').next().unwrap();
    assert_eq!(
        f.archive.file_name().unwrap().to_string_lossy(),
        name,
        "package.sh and binstall"
    );
    assert_eq!(
        releases.asked(),
        [
            format!("/v{VERSION}/{name}"),
            format!("/v{VERSION}/{name}.sha256")
        ]
    );
    // again (a cache hit): nothing downloaded, the same directory reported
    let again = f.install(&releases, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("already in"), "{}", again.stderr);
    assert_eq!(again.stdout.lines().last(), Some(bin_dir.to_str().unwrap()));
    assert_eq!(releases.asked().len(), 2, "{:?}", releases.asked());
}

#[test]
fn install_script_refuses_an_archive_whose_checksum_is_wrong() {
    if !tools_present() {
        return;
    }
    let f = Fixture::new();
    let sum_file = PathBuf::from(format!("{}.sha256", f.archive.display()));
    let name = f
        .archive
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    std::fs::write(&sum_file, format!("{}  {name}\n", "ab".repeat(32))).unwrap();
    let releases = Releases::serve(&f.path("releases"));
    let out = f.install(&releases, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("checksum mismatch for {name}"))
            && out.stderr.contains(&"ab".repeat(32))
            && out.stderr.contains("nothing installed"),
        "{}",
        out.stderr
    );
    assert!(!f.installed().exists(), "installed despite the mismatch");
    assert!(!f.path("inst").exists());
    assert_eq!(f.github_path(), "");
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[test]
fn install_script_falls_back_to_cargo_install_where_no_archive_exists() {
    if !tools_present() {
        return;
    }
    let f = Fixture::new();
    let releases = Releases::serve(&f.path("releases"));
    let other = [("PWDRIFT_TARGET", "riscv64gc-unknown-linux-gnu")];

    // the fallback off: a clear error, nothing installed
    let out = f.install(&releases, &[other[0], ("PWDRIFT_FALLBACK", "none")]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "release v{VERSION} has no binary for riscv64gc-unknown-linux-gnu"
        )) && out.stderr.contains("PWDRIFT_FALLBACK=none"),
        "{}",
        out.stderr
    );
    assert!(!f.installed().exists());
    assert_eq!(f.github_path(), "");

    // the fallback on (the default): cargo install of the release's tag, into the install dir
    f.fake_tool(
        "cargo",
        &format!(
            "while [ \"$#\" -gt 0 ]; do [ \"$1\" = --root ] && root=$2; shift; done\n\
             mkdir -p \"$root/bin\"\n\
             printf '#!/bin/sh\\necho pwdrift {VERSION}\\n' > \"$root/bin/pwdrift\"\n\
             chmod 755 \"$root/bin/pwdrift\""
        ),
    );
    let out = f.install(&releases, &other);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("building it from source"),
        "{}",
        out.stderr
    );
    let args = std::fs::read_to_string(f.path("cargo.args")).unwrap();
    assert_eq!(
        args.trim_end(),
        format!(
            "install --locked --git https://github.com/OWNER/pwdrift --tag v{VERSION} --root {} pwdrift",
            f.path("inst").display()
        )
    );
    assert!(f.installed().exists());
    assert_eq!(
        f.github_path(),
        format!("{}\n", f.path("inst/bin").display())
    );
}

#[test]
fn install_script_checks_the_attestation_with_gh() {
    if !tools_present() {
        return;
    }
    let f = Fixture::new();
    let releases = Releases::serve(&f.path("releases"));
    let name = f
        .archive
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();

    // an attestation that does not verify: nothing installed
    f.fake_tool("gh", "echo 'no attestation' >&2; exit 1");
    let out = f.install(
        &releases,
        &[("PWDRIFT_ATTESTATION", "auto"), ("GH_TOKEN", "t")],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "the build-provenance attestation of {name} does not verify"
        )),
        "{}",
        out.stderr
    );
    assert!(!f.installed().exists());
    let args = std::fs::read_to_string(f.path("gh.args")).unwrap();
    assert!(
        args.starts_with("attestation verify ")
            && args.contains(&name)
            && args.trim_end().ends_with("--repo OWNER/pwdrift"),
        "{args}"
    );

    // one that does: installed
    f.fake_tool("gh", "exit 0");
    let out = f.install(&releases, &[("PWDRIFT_ATTESTATION", "require")]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("attestation verified"),
        "{}",
        out.stderr
    );
    assert!(f.installed().exists());
}

/// The Windows archive is a zip holding `pwdrift.exe`: the script unpacks it the same way (here
/// with a launcher named pwdrift.exe, so that it runs on this machine).
#[test]
fn install_script_installs_the_windows_zip() {
    if !tools_present() || which("unzip").is_none() || which("zip").is_none() {
        eprintln!("skipped: needs zip and unzip");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let target = "x86_64-pc-windows-msvc";
    let archive = package(
        target,
        &launcher(tmp.path()),
        &tmp.path().join(format!("releases/v{VERSION}")),
    );
    assert!(archive.to_string_lossy().ends_with(".zip"), "{archive:?}");
    let releases = Releases::serve(&tmp.path().join("releases"));
    let out = run(Command::new("bash")
        .arg(repo().join("action/install.sh"))
        .env("HOME", tmp.path())
        .env("PWDRIFT_VERSION", VERSION)
        .env("PWDRIFT_TARGET", target)
        .env("PWDRIFT_BASE_URL", &releases.base)
        .env("PWDRIFT_INSTALL_DIR", tmp.path().join("inst"))
        .env("PWDRIFT_ATTESTATION", "skip")
        .env_remove("GITHUB_PATH"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let exe = tmp.path().join("inst/bin/pwdrift.exe");
    let version = run(Command::new(&exe).arg("-V"));
    assert_eq!(version.stdout.trim_end(), format!("pwdrift {VERSION}"));
    assert!(
        out.stderr
            .contains(&format!("installed pwdrift {VERSION} (commit ")),
        "{}",
        out.stderr
    );
}
