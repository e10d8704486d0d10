//! `streams-serve`: where analysts read what jobs compute. It sits after the sinks:
//!
//! - [`ViewCatalog`] and [`View`]: materialized views, each kept by the sink subtasks of a job
//!   (`CREATE MATERIALIZED VIEW`, through the [`ViewConnector`], `'connector' = 'view'`) and
//!   published at checkpoint epochs, so that readers see one epoch at a time.
//! - [`serve`]: the PostgreSQL-wire endpoint over those views (DataFusion SQL through
//!   `datafusion-postgres`), read-only, with `SHOW JOBS` and `SHOW MATERIALIZED VIEWS`.

mod auth;
mod provider;
mod server;
mod session;
mod sink;
mod view;

pub use auth::Credentials;
pub use provider::{ViewSchema, ViewTable};
pub use server::{Endpoint, JobList, ServeOptions, context, serve};
pub use session::{Access, Done, Refused, Statements};
pub use sink::{DEFAULT_RETENTION, ViewConnector, ViewSink};
pub use view::{Snapshot, View, ViewCatalog};

/// What can go wrong serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint could not start or stopped.
    #[error("PostgreSQL endpoint: {0}")]
    Serve(String),
}

/// This crate's results.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests;
