//! The `pwdrift` binary: a thin shell around [`pwdrift::commands::run`].

fn main() -> std::process::ExitCode {
    pwdrift::commands::run()
}
