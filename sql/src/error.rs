//! The SQL frontend's one error type: every user mistake says what and where.

/// What went wrong with a statement.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text does not parse.
    #[error("line {line}, column {column}: {message}")]
    Parse {
        /// 1-based line (0 when unknown).
        line: u64,
        /// 1-based column (0 when unknown).
        column: u64,
        /// What was expected and found.
        message: String,
    },
    /// The statement parses but cannot be planned; the message names the table, column or
    /// construct.
    #[error("{0}")]
    Plan(String),
    /// The engine refused the plan.
    #[error(transparent)]
    Core(#[from] streams_core::Error),
}

/// Result with the SQL frontend's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
