//! `pwdrift secrets`: the helpdesk's view of a secrets file (per user the last password pwdrift
//! set and its outcome) as a table, CSV or JSON ([`crate::render::secrets`]); with `--resolve`,
//! the writes whose outcome is unknown are first read back from Graph and their outcome appended
//! ([`crate::engine::secrets_view::resolve`]). The passwords reach stdout because the command
//! asks for them by name; no log line or error carries one.
//!
//! Exit 0 when the file was read (and, with `--resolve`, every unknown outcome was resolved);
//! 1 on an unreadable file, a bad `--identity`, or an outcome that could not be resolved.

use std::time::Duration;

use crate::cli::{ExitStatus, SecretsArgs, SecretsFormat};
use crate::commands::session::{self, DiagnosticStyle, Shown};
use crate::engine::secrets_view::{self, SecretsViewSettings};
use crate::engine::settings::TargetSettings;
use crate::printer::Printer;
use crate::secrets::{Filter, Standing};

pub fn run(args: SecretsArgs, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let filter = Filter {
        users: args.users.clone(),
        since: args
            .since
            .as_deref()
            .map(secrets_view::parse_since)
            .transpose()?,
    };
    // a bad identity file is an error before anything is resolved
    secrets_view::identities(&args.identity)?;
    if args.resolve {
        let target = TargetSettings {
            paths: Vec::new(),
            sandbox: args.sandbox.clone(),
            tenants: Vec::new(),
            targets: Vec::new(),
            shard: None,
            connect: super::target::connect_settings(
                &args.connection,
                Some(Duration::from_secs(300)),
            ),
            delegated: args.delegated,
            reads: crate::live::ReadOptions::default(),
            concurrency: 4,
            allow_password_dirs: Vec::new(),
        };
        let shown = Shown {
            printer,
            style: DiagnosticStyle::Text,
        };
        let rt = session::runtime()?;
        let lines = rt.block_on(secrets_view::resolve(
            &args.secrets,
            &filter,
            &target,
            Duration::from_secs(args.verify_timeout),
            &shown,
        ))?;
        if lines.is_empty() {
            printer.info("No write with an unknown outcome to resolve.");
        }
        for line in lines {
            printer.info(&format!("  {line}"));
        }
    }
    let rows = secrets_view::view(&SecretsViewSettings {
        path: args.secrets.clone(),
        identities: args.identity.clone(),
        filter,
    })?;
    let hint = format!(
        "pwdrift secrets --secrets {} --resolve",
        crate::escape::value(&args.secrets.display().to_string())
    );
    match args.format {
        SecretsFormat::Table => printer.out(&crate::render::secrets::table(&rows, &hint))?,
        SecretsFormat::Csv => printer.out(&crate::render::secrets::csv(&rows))?,
        SecretsFormat::Json => printer.out(&crate::render::secrets::json(&rows))?,
    }
    let unknown = rows
        .iter()
        .filter(|r| r.standing == Standing::Unknown)
        .count();
    if unknown > 0 && args.format != SecretsFormat::Table {
        printer.info(&format!(
            "{unknown} write(s) with an unknown outcome; resolve: {hint}"
        ));
    }
    Ok(ExitStatus::Success)
}
