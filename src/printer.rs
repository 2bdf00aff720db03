//! The one place user-facing output goes through: stdout, stderr, colour and quietness.
//!
//! Commands never call `print!`/`eprintln!`; they hold a [`Printer`] and say what kind of output
//! they produce:
//!
//! - [`Printer::out`]: the output the user asked for (a plan, a schema, a summary line), on
//!   stdout. Never suppressed. When stdout is closed early (`pwdrift plan | head -1`), it returns
//!   [`OutputError::Closed`]; [`crate::commands::run`] turns that into a quiet exit 0, as ripgrep does.
//! - [`Printer::info`]: informational messages on stderr ("Saved the plan to ..."); suppressed
//!   by `--quiet`.
//! - [`Printer::diagnostics`] and [`Printer::error`]: warnings and errors on stderr; never
//!   suppressed.
//! - [`Printer::progress`] (a progress bar, only on a terminal and not with `--quiet`) and
//!   [`Printer::confirm`] (a question on stderr, answered on stdin).
//!
//! Colour is decided once per stream, as anstream decides it: on for a terminal unless `NO_COLOR`
//! is set or `CLICOLOR=0`; `CLICOLOR_FORCE` forces it on (even through a pipe). Renderers are pure
//! and take the decision as a `bool` ([`Printer::color_out`], [`Printer::color_err`]).

use std::io::{BufRead, IsTerminal, Write};

/// Writing the requested output failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// stdout was closed by its reader (a broken pipe): not an error for the user.
    #[error("stdout was closed")]
    Closed,
    #[error("cannot write to stdout: {0}")]
    Io(std::io::Error),
}

/// Owns the process's stdout and stderr for user-facing output.
#[derive(Clone, Debug)]
pub struct Printer {
    quiet: bool,
    color_out: bool,
    color_err: bool,
}

/// Whether anstream would colour this stream (TTY, `NO_COLOR`, `CLICOLOR`, `CLICOLOR_FORCE`).
fn wants_color(stream: &impl anstream::stream::RawStream) -> bool {
    !matches!(
        anstream::AutoStream::choice(stream),
        anstream::ColorChoice::Never
    )
}

impl Printer {
    /// The printer of this process: colour decided from the environment and the terminals.
    pub fn new(quiet: bool) -> Printer {
        Printer {
            quiet,
            color_out: wants_color(&std::io::stdout()),
            color_err: wants_color(&std::io::stderr()),
        }
    }

    /// Whether output written with [`Printer::out`] may carry ANSI colours.
    pub fn color_out(&self) -> bool {
        self.color_out
    }

    /// Whether diagnostics and errors on stderr may carry ANSI colours.
    pub fn color_err(&self) -> bool {
        self.color_err
    }

    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Writes requested output to stdout, as is, and flushes it.
    pub fn out(&self, text: &str) -> Result<(), OutputError> {
        let text = &*crate::graph::redact::redact(text);
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::BrokenPipe => OutputError::Closed,
                _ => OutputError::Io(e),
            })
    }

    /// [`Printer::out`] of output produced piece by piece by `write` (a large plan), not held in
    /// memory at once; flushed at the end.
    pub fn out_with(
        &self,
        write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<(), OutputError> {
        // stdout is line-buffered: a buffer in front, so that a line is not a write
        let mut stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        write(&mut stdout)
            .and_then(|()| stdout.flush())
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::BrokenPipe => OutputError::Closed,
                _ => OutputError::Io(e),
            })
    }

    /// [`Printer::out`] of a line.
    pub fn outln(&self, line: &str) -> Result<(), OutputError> {
        self.out(&format!("{line}\n"))
    }

    /// An informational message (one line) on stderr; nothing with `--quiet`. Control characters
    /// in it (a name echoed from Graph or a file) are shown escaped.
    pub fn info(&self, line: &str) {
        if !self.quiet {
            write_stderr(&format!("{}\n", escape_controls(line)));
        }
    }

    /// Rendered diagnostics or other text that the user must see, on stderr, as is.
    pub fn diagnostics(&self, text: &str) {
        write_stderr(text);
    }

    /// An error line on stderr, as is (the caller words it, usually `error: ...`).
    /// Control characters in it (an escape sequence echoed from input) are shown escaped.
    pub fn error(&self, line: &str) {
        write_stderr(&format!("{}\n", escape_controls(line)));
    }

    /// An error and its chain of causes: `error: ...` then `  caused by: ...` lines.
    pub fn report_error(&self, err: &anyhow::Error) {
        write_stderr(&error_report(err, self.color_err));
    }

    /// A progress bar of `len` steps on stderr: hidden unless stderr is a terminal, and with
    /// `--quiet`.
    pub fn progress(&self, len: u64) -> indicatif::ProgressBar {
        if self.quiet || !std::io::stderr().is_terminal() {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(len);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {wide_msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar
    }

    /// Whether a question can be asked: stdin is a terminal.
    pub fn can_ask(&self) -> bool {
        std::io::stdin().is_terminal()
    }

    /// Asks `question` on stderr (never suppressed: the user must see what they answer) and
    /// returns the answer line read from stdin, trimmed.
    pub fn ask(&self, question: &str) -> std::io::Result<String> {
        write_stderr(question);
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        Ok(answer.trim().to_owned())
    }
}

/// A line on stderr that the user must see even with `--quiet`, from code that holds no
/// [`Printer`]: the notices the Graph library hands back (the device-code prompt, the
/// insecure-TLS warning), which arrive on the client's tasks.
pub fn notice(line: &str) {
    write_stderr(&format!("{}\n", escape_controls(line)));
}

/// Writes to stderr, ignoring failures: there is nowhere left to report them.
fn write_stderr(text: &str) {
    // every secret of the run masked, whatever a peer's words the text carries
    let text = &*crate::graph::redact::redact(text);
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

/// `error: MESSAGE` and one `  caused by: ...` line per cause, `error` in bold red with colour.
fn error_report(err: &anyhow::Error, color: bool) -> String {
    let red = if color {
        anstyle::AnsiColor::Red.on_default().bold()
    } else {
        anstyle::Style::new()
    };
    // messages may echo input (a file name, a value, a Graph message): controls escaped
    let mut text = format!("{red}error{red:#}: {}", escape_controls(&err.to_string()));
    for cause in err.chain().skip(1) {
        text.push_str(&format!(
            "\n  caused by: {}",
            escape_controls(&cause.to_string())
        ));
    }
    text.push('\n');
    text
}

/// `s` with every character of [`crate::escape::must_escape`] but newline shown escaped
/// (`\u{1b}`), so that text echoed from input cannot drive the terminal: the last line of
/// defence behind the values escaped where they are formatted ([`crate::escape`]).
pub fn escape_controls(s: &str) -> String {
    crate::escape::lines(s).into_owned()
}

/// Whether a command's error only says that stdout was closed by its reader.
pub fn is_closed_stdout(err: &anyhow::Error) -> bool {
    matches!(err.downcast_ref::<OutputError>(), Some(OutputError::Closed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_report_lists_causes_and_colours_only_when_asked() {
        let err = anyhow::anyhow!("root cause").context("cannot read the plan");
        assert_eq!(
            error_report(&err, false),
            "error: cannot read the plan\n  caused by: root cause\n"
        );
        assert!(error_report(&err, true).contains("\u{1b}["));
    }

    #[test]
    fn only_a_closed_stdout_is_a_quiet_exit() {
        assert!(is_closed_stdout(&anyhow::Error::from(OutputError::Closed)));
        let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        // a broken pipe elsewhere (a network write) is a real error
        assert!(!is_closed_stdout(&anyhow::Error::from(io)));
        let other = OutputError::Io(std::io::Error::other("disk full"));
        assert!(!is_closed_stdout(&anyhow::Error::from(other)));
    }

    #[test]
    fn error_reports_escape_controls() {
        let err = anyhow::anyhow!("bad value \u{1b}[2J\u{7}").context("cannot read a\u{9b}b");
        let r = error_report(&err, false);
        assert!(
            !r.contains('\u{1b}') && !r.contains('\u{7}') && !r.contains('\u{9b}'),
            "{r:?}"
        );
        assert!(r.contains("\\u{1b}[2J"), "{r}");
    }

    #[test]
    fn quiet_is_kept() {
        assert!(Printer::new(true).is_quiet());
        assert!(!Printer::new(false).is_quiet());
    }
}
