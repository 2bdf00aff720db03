//! Issue 19, point 7: desired state cannot reach for secrets. A desired-state file found in a
//! directory may not be a symlink leading out of it; a password file must be a regular file
//! inside the desired-state directory (or a directory allowed by `--allow-password-dir`); a
//! password `env:` source may not name a credential variable; and a file that is not pwdrift
//! desired state gets positions and messages, never its lines.

use std::path::Path;
use std::process::Command;

use crate::common::{run, Run, BIN};

const HEAD: &str = "version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n";

fn validate(dir: &Path, args: &[&str]) -> Run {
    run(Command::new(BIN)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .arg("validate")
        .args(args))
}

/// A desired-state file resetting alice's password from `source`.
fn with_source(source: &str) -> String {
    format!(
        "{HEAD}  - user: alice@contoso.com\n    resetPassword:\n      notBefore: 2026-11-20T00:00:00Z\n      password: {source}\n"
    )
}

fn bob() -> String {
    format!("{HEAD}  - user: bob@contoso.com\n    forceChangePasswordNextSignIn: false\n")
}

#[test]
fn symlink_leaving_the_directory_is_refused_inside_is_fine() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("creds.yaml");
    std::fs::write(&secret, "client_secret: TopSecret-123\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let desired = dir.path().join("desired");
    std::fs::create_dir(&desired).unwrap();
    std::fs::write(desired.join("a.yaml"), bob()).unwrap();
    std::os::unix::fs::symlink(desired.join("a.yaml"), desired.join("same.yaml")).unwrap();
    let ok = validate(dir.path(), &["desired"]);
    assert_eq!(ok.code, 0, "a symlink inside the directory is fine: {ok:?}");

    std::os::unix::fs::symlink(&secret, desired.join("b.yaml")).unwrap();
    let r = validate(dir.path(), &["desired"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("desired/b.yaml is a symlink to a file outside desired"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("TopSecret-123"), "{}", r.stderr);
    assert!(!r.stdout.contains("TopSecret-123"), "{}", r.stdout);
}

#[test]
fn password_file_outside_the_directory_needs_the_flag() {
    let outside = tempfile::tempdir().unwrap();
    let pw = outside.path().join("pw.txt");
    std::fs::write(&pw, "Correct-Horse-9\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = format!("{{ file: {} }}", pw.display());
    std::fs::write(dir.path().join("d.yaml"), with_source(&file)).unwrap();
    let r = validate(dir.path(), &["d.yaml"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("is outside the desired-state directory"),
        "{}",
        r.stderr
    );
    // file, line and column of the source
    assert!(r.stderr.contains("--> d.yaml:7:25"), "{}", r.stderr);
    let allowed = validate(
        dir.path(),
        &[
            "d.yaml",
            "--allow-password-dir",
            outside.path().to_str().unwrap(),
        ],
    );
    assert_eq!(allowed.code, 0, "{allowed:?}");

    // `../` out of the directory, and a symlink inside it to a file outside, are outside too
    std::fs::write(
        dir.path().join("d.yaml"),
        with_source("{ file: ../pw.txt }"),
    )
    .unwrap();
    let up = validate(dir.path(), &["d.yaml"]);
    assert_eq!(up.code, 1, "{up:?}");
    std::os::unix::fs::symlink(&pw, dir.path().join("link")).unwrap();
    std::fs::write(dir.path().join("d.yaml"), with_source("{ file: link }")).unwrap();
    let link = validate(dir.path(), &["d.yaml"]);
    assert_eq!(link.code, 1, "{link:?}");
    assert!(link.stderr.contains("resolves to"), "{}", link.stderr);
    // a regular file inside: fine
    std::fs::write(dir.path().join("pw"), "Correct-Horse-9\n").unwrap();
    std::fs::write(dir.path().join("d.yaml"), with_source("{ file: pw }")).unwrap();
    assert_eq!(validate(dir.path(), &["d.yaml"]).code, 0);
}

#[test]
fn fifo_and_device_password_files_are_refused_at_validate() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pw");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    std::fs::write(dir.path().join("d.yaml"), with_source("{ file: pw }")).unwrap();
    let r = validate(dir.path(), &["d.yaml"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("not a regular file (a FIFO)"),
        "{}",
        r.stderr
    );
    // /dev/zero: a device, even in an allowed directory
    std::fs::write(
        dir.path().join("d.yaml"),
        with_source("{ file: /dev/zero }"),
    )
    .unwrap();
    let r = validate(dir.path(), &["d.yaml", "--allow-password-dir", "/dev"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("character device"), "{}", r.stderr);
}

#[test]
fn credential_variables_are_refused_as_password_sources() {
    let dir = tempfile::tempdir().unwrap();
    for var in [
        "AZURE_CLIENT_SECRET",
        "PWDRIFT_X",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "azure_client_secret",
    ] {
        std::fs::write(
            dir.path().join("d.yaml"),
            with_source(&format!("{{ env: {var} }}")),
        )
        .unwrap();
        let r = validate(dir.path(), &["d.yaml"]);
        assert_eq!(r.code, 1, "{var}: {r:?}");
        assert!(
            r.stderr
                .contains("holds credentials pwdrift or the CI platform reads"),
            "{var}: {}",
            r.stderr
        );
        assert!(r.stderr.contains("--> d.yaml:7:24"), "{var}: {}", r.stderr);
    }
}

/// Files that are not pwdrift desired state (another tool's YAML with a secret, a `.env` file, a
/// credentials file that is not UTF-8): positions and messages only, never their text.
#[test]
fn files_that_are_not_desired_state_are_never_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8]); 4] = [
        (
            "other.yaml",
            b"tenant: contoso\nclient_id: abc\nclient_secret: Sup3r-Secret-Value\n",
        ),
        (
            "dotenv.yaml",
            b"AZURE_CLIENT_ID=abc\nAZURE_CLIENT_SECRET=Sup3r-Secret-Value\n",
        ),
        (
            "ini.yml",
            b"[default]\nclient_secret = Sup3r-Secret-Value\n",
        ),
        (
            "binary.yaml",
            b"token: Sup3r-Secret-Value\n\xff\xfe tail Sup3r-Secret-Value\n",
        ),
    ];
    for (name, bytes) in cases {
        std::fs::write(dir.path().join(name), bytes).unwrap();
        for format in ["text", "json", "github"] {
            let r = validate(dir.path(), &[name, "--format", format]);
            assert_eq!(r.code, 1, "{name}: {r:?}");
            for out in [&r.stdout, &r.stderr] {
                assert!(!out.contains("Sup3r-Secret"), "{name} ({format}): {out}");
                assert!(!out.contains("client_id: abc"), "{name} ({format}): {out}");
                assert!(
                    !out.contains("AZURE_CLIENT_ID=abc"),
                    "{name} ({format}): {out}"
                );
            }
            if format == "text" {
                assert!(r.stderr.contains(&format!("--> {name}:")), "{}", r.stderr);
            }
        }
    }
    // desired state (it has `version`) still shows its lines, masked
    std::fs::write(
        dir.path().join("mine.yaml"),
        format!("{HEAD}  - user: not a user\n"),
    )
    .unwrap();
    let r = validate(dir.path(), &["mine.yaml"]);
    assert!(
        r.stderr.contains("4 |   - user: not a user"),
        "{}",
        r.stderr
    );
}
