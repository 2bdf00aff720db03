//! `pwdrift sandbox`, the binary: it prints one JSON line of connection info, serves until
//! killed, saves `--state` on SIGTERM and refuses non-loopback addresses.

use std::path::PathBuf;

use serde_json::Value;

use crate::common::SandboxProcess;

fn contoso_path() -> PathBuf {
    crate::common::repo().join(crate::common::CONTOSO_SEED)
}

/// The real binary: one JSON line first, then it serves until killed.
#[test]
fn binary_prints_info_and_serves() {
    let mut sandbox = SandboxProcess::start([
        "--seed".as_ref(),
        contoso_path().as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ]);
    let line = sandbox.line.clone();
    let info: Value = serde_json::from_str(&line).expect("first line is JSON");
    for k in [
        "graph_url",
        "authority_host",
        "tenant_id",
        "client_id",
        "client_secret",
    ] {
        assert!(info[k].is_string(), "{k} in {line}");
    }
    assert!(info["graph_url"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let tok: Value = http
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                info["authority_host"].as_str().unwrap(),
                info["tenant_id"].as_str().unwrap()
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", info["client_id"].as_str().unwrap()),
                ("client_secret", info["client_secret"].as_str().unwrap()),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        http.get(format!(
            "{}/v1.0/users/alice@contoso.com",
            info["graph_url"].as_str().unwrap()
        ))
        .bearer_auth(tok["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .status()
    });
    assert_eq!(status, 200);
    sandbox.child.kill().unwrap();
    sandbox.child.wait().unwrap();

    // SIGTERM stops it cleanly and saves --state
    #[cfg(unix)]
    {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        let mut sandbox = SandboxProcess::start([
            "--generate".as_ref(),
            "50".as_ref(),
            "--state".as_ref(),
            state.as_os_str(),
        ]);
        assert!(sandbox.line.starts_with('{'));
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &sandbox.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let exit = sandbox.child.wait().unwrap();
        assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        assert_eq!(saved["tenants"][0]["users"].as_array().unwrap().len(), 51);
    }

    // non-loopback listen addresses are refused
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pwdrift"))
        .args(["sandbox", "--seed"])
        .arg(contoso_path())
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    assert!(out.stdout.is_empty());
}

/// The switches are `pwdrift sandbox` flags; a licence-less tenant cannot hold eligibilities.
#[test]
fn switches_are_cli_flags() {
    let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/sandbox/privileged.seed.yaml");
    let mut args = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--seed".into(),
        seed.clone().into_os_string(),
    ];
    args.extend(
        [
            "--read-lag",
            "250",
            "--expand-cap",
            "0",
            "--role-page-size",
            "2",
            "--transitive-members",
            "cast-ignored",
            "--reset-no-location",
            "--reset-location-query",
            "--reset-fail",
            "--faults",
            "lost=0.05,429=0.01",
        ]
        .map(std::ffi::OsString::from),
    );
    let line = SandboxProcess::start(args).line.clone();
    assert!(line.contains("northwind.onmicrosoft.com"), "{line}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pwdrift"))
        .args([
            "sandbox",
            "--listen",
            "127.0.0.1:0",
            "--no-pim-licence",
            "--seed",
        ])
        .arg(&seed)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("eligible"), "{err}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pwdrift"))
        .args([
            "sandbox",
            "--listen",
            "127.0.0.1:0",
            "--transitive-members",
            "sometimes",
            "--seed",
        ])
        .arg(&seed)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--transitive-members"));
}
