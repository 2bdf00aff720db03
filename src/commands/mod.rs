//! Command implementations: one module per subcommand. anyhow lives at this edge; the library
//! modules below use typed errors.

pub mod apply;
pub mod completions;
pub mod plan;
pub mod sandbox;
pub mod schema;
pub mod session;
pub mod validate;

use crate::cli::{Cli, Command, ExitStatus};

/// Runs the parsed command.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitStatus> {
    match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Plan(args) => plan::run(args, cli.verbose),
        Command::Apply(args) => apply::run(args),
        Command::Sandbox(args) => sandbox::run(args),
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => completions::man(args),
    }
}

/// Logs go to stderr through `tracing`; `-v` raises the level, `RUST_LOG` overrides it.
pub fn init_logging(verbose: u8) {
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
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Prints an error and its whole chain on stderr.
pub fn report_error(err: &anyhow::Error) {
    let mut out = anstream::stderr();
    use std::io::Write;
    let red = anstyle::AnsiColor::Red.on_default().bold();
    let _ = write!(out, "{red}error{red:#}: {err}");
    for cause in err.chain().skip(1) {
        let _ = write!(out, "\n  caused by: {cause}");
    }
    let _ = writeln!(out);
}
