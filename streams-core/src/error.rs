//! The engine's one error type.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

/// What went wrong while planning or running a job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The plan or pipeline asks for something the engine cannot do; the message says what and
    /// where (node, column, option).
    #[error("plan error: {0}")]
    Plan(String),
    /// A user-visible problem while running: bad data the job is configured to fail on, a
    /// source or sink that failed outside.
    #[error("{context}: {message}")]
    Execution {
        /// The operator, source or sink that failed, e.g. `window aggregate [3] subtask 1`.
        context: String,
        /// What failed.
        message: String,
    },
    /// DataFusion rejected an expression or aggregate.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// Arrow failed on a batch (a cast, a kernel).
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    /// A checkpoint or savepoint holds state this job cannot read: another query wrote it, or
    /// it is damaged. The message says which state and what differs.
    #[error("incompatible state: {0}")]
    IncompatibleState(String),
    /// Checkpoint storage failed (disk, RocksDB).
    #[error("checkpoint storage: {0}")]
    Storage(String),
    /// The job was cancelled before it finished.
    #[error("job cancelled")]
    Cancelled,
    /// A bug in rstreams: an invariant did not hold. Please report it.
    #[error("internal error (a bug in rstreams): {0}")]
    Internal(String),
}

impl Error {
    /// A plan error with a message.
    pub fn plan(message: impl Into<String>) -> Self {
        Error::Plan(message.into())
    }

    /// Adds where an error happened, unless it already says.
    pub fn context(self, context: impl Into<String>) -> Self {
        match self {
            Error::Execution { .. }
            | Error::Cancelled
            | Error::Plan(_)
            | Error::IncompatibleState(_) => self,
            other => Error::Execution {
                context: context.into(),
                message: other.to_string(),
            },
        }
    }
}

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
