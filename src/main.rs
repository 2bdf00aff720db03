//! The `pwdrift` binary: a thin shell around [`pwdrift::cli::run`].

fn main() -> std::process::ExitCode {
    pwdrift::cli::run()
}
