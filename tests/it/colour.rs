//! Colour only on a terminal: logs (`-vv`) written to a pipe carry no ANSI escape, unless
//! `CLICOLOR_FORCE` asks for colour, by the same rule as the printer's.

use std::process::Command;

use crate::common::{run, Sandbox};

/// `pwdrift import -vv` against the sandbox, stderr to a pipe, colour variables removed, then
/// `tweak`ed.
fn import_logs(tweak: impl FnOnce(&mut Command)) -> String {
    let sandbox = Sandbox::contoso().start();
    let out = tempfile::tempdir().unwrap();
    let mut cmd = sandbox.pwdrift();
    cmd.env_remove("NO_COLOR")
        .env_remove("CLICOLOR")
        .env_remove("CLICOLOR_FORCE")
        .args([
            "import",
            "-vv",
            "--tenant",
            &sandbox.get("tenant_id"),
            "--out",
        ])
        .arg(out.path());
    tweak(&mut cmd);
    let r = run(&mut cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("DEBUG"),
        "debug logs expected: {}",
        r.stderr
    );
    r.stderr
}

#[test]
fn logs_to_a_pipe_are_plain() {
    let stderr = import_logs(|_| {});
    assert!(!stderr.contains('\u{1b}'), "ESC in piped logs: {stderr:?}");
}

#[test]
fn clicolor_force_colours_logs_on_a_pipe() {
    let stderr = import_logs(|cmd| {
        cmd.env("CLICOLOR_FORCE", "1");
    });
    assert!(stderr.contains('\u{1b}'), "no colour: {stderr:?}");
}
