//! The binary's error type.

use std::path::PathBuf;

/// Everything the CLI reports as `error: <message>` (exit code 1). Usage errors clap detects
/// while parsing never get here: clap prints them and exits with code 2.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] streams_queue::Error),
    /// A SQL script that does not parse or plan (the message has line and column).
    #[error(transparent)]
    Sql(#[from] streams_sql::Error),
    /// A job failed while running, or could not stop cleanly.
    #[error("job `{job}`: {message}")]
    Job {
        /// The job (its sink table).
        job: String,
        /// What went wrong.
        message: String,
    },
    /// A combination of arguments that cannot be used (found after parsing).
    #[error("{0}")]
    Usage(String),
    /// A command that needs an existing store was pointed at a directory that does not exist.
    #[error(
        "no rstreams store in {}: the directory does not exist (`rstreams topic create` makes one; \
         choose another with --data-dir or RSTREAMS_DATA_DIR)",
        .0.display()
    )]
    NoStore(PathBuf),
    /// `group describe` or `group delete` of a group that has no offsets.
    #[error("group `{0}` does not exist")]
    GroupNotFound(String),
    /// `produce` met a line it cannot turn into a record.
    #[error(
        "line {line} of standard input: {reason}; the {appended} records from the lines before it \
         were appended to `{topic}` and stay there, nothing from line {line} on was appended"
    )]
    BadLine {
        /// 1-based line number (empty lines count).
        line: u64,
        /// What is wrong with it.
        reason: String,
        /// Records appended before it.
        appended: u64,
        /// The topic.
        topic: String,
    },
    /// `produce` failed to read its input.
    #[error(
        "reading standard input after line {line}: {source}; the {appended} records from the lines \
         before it were appended to `{topic}` and stay there"
    )]
    Stdin {
        /// Lines read successfully.
        line: u64,
        /// Records appended.
        appended: u64,
        /// The topic.
        topic: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// An append failed part way through `produce`.
    #[error(
        "appending to queue {queue} of `{topic}`: {source}; {appended} records were appended before \
         the failure and stay there"
    )]
    Append {
        /// The topic.
        topic: String,
        /// The queue.
        queue: u32,
        /// Records appended before the failure.
        appended: u64,
        /// The store's error.
        source: streams_queue::Error,
    },
    /// Writing to standard output failed (other than the reader going away).
    #[error("writing standard output: {0}")]
    Stdout(std::io::Error),
    /// The reader of standard output went away (`| head`): not an error, the command stops quietly
    /// with exit code 0.
    #[error("standard output was closed")]
    BrokenPipe,
}

impl CliError {
    /// Classifies a failed write to standard output.
    pub(crate) fn stdout(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            CliError::BrokenPipe
        } else {
            CliError::Stdout(e)
        }
    }
}

/// The binary's result type.
pub(crate) type Result<T, E = CliError> = std::result::Result<T, E>;
