//! The CLI's own output to stdout and its error messages on stderr.
//!
//! `println!` panics when stdout is a pipe that was closed
//! (`sniwalk resolve --json x | head -1`); everything here writes through
//! [`out`] instead, which turns a closed pipe into [`StdoutClosed`], and
//! `main` ends quietly on that, with 141 (128 + SIGPIPE). Errors are printed with one line per cause,
//! never the same cause twice ([`describe`]).

use std::fmt;
use std::io::Write as _;

/// The reader of our stdout went away (EPIPE): stop printing and exit
/// 141 without a message, as `cat` and `grep` do when SIGPIPE ends them.
#[derive(Debug)]
pub(crate) struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes `text` to stdout and flushes it (a progress line of `renew` must
/// show at once). A closed pipe is [`StdoutClosed`]; any other failure
/// (a full disk behind a redirect) is reported as it is.
pub(crate) fn out(text: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
    }
}

/// Prints a formatted line to stdout through [`out`]; `?` passes a closed
/// pipe on.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::out(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// An error and its causes as one message: `outer: cause: root`, leaving
/// out a cause whose text the message already holds (a typed error that
/// prints its source, wrapped by one that prints it again, would otherwise
/// read "No such file or directory (os error 2): No such file or directory
/// (os error 2)").
pub(crate) fn describe(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

/// Prints `sniwalk: <error>` to stderr (see [`describe`]); a write failure
/// there has nowhere left to be reported.
pub(crate) fn print_error(error: &anyhow::Error) {
    let _ = writeln!(std::io::stderr().lock(), "sniwalk: {}", describe(error));
}

/// The command ran and found a problem (README, "Command line": exit 1):
/// prints it like any error, and exits 1 rather than 2.
pub(crate) fn found_problem(error: anyhow::Error) -> anyhow::Result<std::process::ExitCode> {
    print_error(&error);
    Ok(std::process::ExitCode::from(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_left_out() {
        let root = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let typed = anyhow::anyhow!("reading proxy.yaml: {root}");
        let error = anyhow::Error::new(root).context(typed.to_string());
        assert_eq!(describe(&error), "reading proxy.yaml: No such file");
    }

    #[test]
    fn distinct_causes_are_all_kept_in_order() {
        let error = anyhow::anyhow!("root cause")
            .context("middle")
            .context("outer");
        assert_eq!(describe(&error), "outer: middle: root cause");
    }
}
