//! Command implementations: one module per subcommand. anyhow lives at this edge; the library
//! modules below use typed errors.

mod apply;
mod completions;
mod import;
mod plan;
#[cfg(feature = "sandbox")]
mod sandbox;
mod schema;
mod secrets;
mod session;
mod show;
mod signals;
mod target;
pub mod validate;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ExitStatus};
use crate::printer::Printer;

/// Parses arguments, runs the command, maps the outcome to an exit code (a closed stdout is a
/// quiet success, see [`ExitStatus`]).
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let printer = Printer::new(cli.quiet);
    init_logging(cli.verbose, printer.color_err());
    match dispatch(cli, &printer) {
        Ok(status) => status.into(),
        Err(err) if crate::printer::is_closed_stdout(&err) => ExitStatus::Success.into(),
        Err(err) => {
            printer.report_error(&err);
            ExitStatus::Failure.into()
        }
    }
}

/// Runs the parsed command; all its user-facing output goes through `printer`.
pub fn dispatch(cli: Cli, printer: &Printer) -> anyhow::Result<ExitStatus> {
    match cli.command {
        Command::Validate(args) => validate::run(args, printer),
        Command::Schema(args) => schema::run(args, printer),
        Command::Plan(args) => plan::run(args, cli.verbose, printer),
        Command::Apply(args) => apply::run(args, printer),
        Command::Show(args) => show::run(args, cli.verbose, printer),
        Command::Secrets(args) => secrets::run(args, printer),
        Command::Import(args) => import::run(args, printer),
        #[cfg(feature = "sandbox")]
        Command::Sandbox(args) => sandbox::run(args, printer),
        Command::Completions(args) => completions::completions(args, printer),
        Command::Man(args) => completions::man(args, printer),
    }
}

/// Standard error for the log: each event (one write) with every secret of the run masked
/// ([`crate::graph::redact`]), whatever a peer's words it carries.
struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(crate::graph::redact::redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Logs go to stderr through `tracing`; `-v` raises the level, `RUST_LOG` overrides it. `color`:
/// whether they may carry ANSI colours, decided by the printer's rule for stderr (`NO_COLOR`,
/// `CLICOLOR`, `CLICOLOR_FORCE`, a terminal), so that a log piped to a file or a CI log is plain.
pub fn init_logging(verbose: u8, color: bool) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("pwdrift={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| RedactingStderr)
        .with_target(false)
        .with_ansi(color)
        .try_init();
}

pub(crate) use crate::engine::leak_at_exit;
