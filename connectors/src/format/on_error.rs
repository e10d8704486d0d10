//! What a source does with a record it cannot read (`'format.on-error'`): fail the job naming
//! the record, skip it (counted in the source's metrics and logged), or send it to a
//! dead-letter topic of the embedded store with its raw bytes and the error.
//!
//! Dead letters are written when the record is read, so a job replaying its input after a
//! crash writes them again (at least once, as Kafka Connect's dead-letter queue); each carries
//! where it came from (`rstreams.source`), which tells copies apart from repeats.

use std::sync::Arc;

use bytes::Bytes;
use streams_core::connector::{OptionSpec, Options};
use streams_core::metrics::OperatorMetrics;
use streams_core::{Error, Result};
use streams_queue::{Record, Store, TopicConfig};

use crate::store::StoreHandle;

/// Header holding why a dead letter could not be read.
pub const ERROR_HEADER: &str = "rstreams.error";
/// Header naming the table and the record's place in its input.
pub const SOURCE_HEADER: &str = "rstreams.source";

/// The options of the policy, for connectors' option tables.
pub const ON_ERROR_OPTIONS: [OptionSpec; 2] = [
    OptionSpec {
        name: "format.on-error",
        required: false,
        doc: "a record that cannot be read: fail (default), skip (counted in the metrics and \
              logged) or dead-letter (appended to 'format.dead-letter.topic' with the error)",
    },
    OptionSpec {
        name: "format.dead-letter.topic",
        required: false,
        doc: "with 'format.on-error' = 'dead-letter': the topic of the embedded store that gets \
              unreadable records (created with one queue if missing)",
    },
];

/// The policy a table chose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Fail the job, naming the record.
    Fail,
    /// Skip it, counted and logged.
    Skip,
    /// Append it to this topic, counted.
    DeadLetter(String),
}

impl OnError {
    /// The policy in `options`; `dead-letter` needs a topic and a store.
    pub fn from_options(
        table: &str,
        options: &Options,
        store: Option<&StoreHandle>,
    ) -> Result<Self> {
        let topic = options.get("format.dead-letter.topic");
        let policy = match options.get("format.on-error").unwrap_or("fail") {
            "fail" => OnError::Fail,
            "skip" => OnError::Skip,
            "dead-letter" => {
                let Some(topic) = topic else {
                    return Err(Error::plan(format!(
                        "table `{table}`: 'format.on-error' = 'dead-letter' needs \
                         'format.dead-letter.topic'"
                    )));
                };
                if store.is_none() {
                    return Err(Error::plan(format!(
                        "table `{table}`: 'format.on-error' = 'dead-letter' needs the embedded \
                         store, which this program did not open"
                    )));
                }
                OnError::DeadLetter(topic.to_string())
            }
            v => {
                return Err(Error::plan(format!(
                    "table `{table}`: option 'format.on-error' = '{v}' is not valid; expected \
                     fail, skip or dead-letter"
                )));
            }
        };
        if topic.is_some() && !matches!(policy, OnError::DeadLetter(_)) {
            return Err(Error::plan(format!(
                "table `{table}`: 'format.dead-letter.topic' is set but 'format.on-error' is not \
                 'dead-letter'"
            )));
        }
        Ok(policy)
    }
}

/// A source subtask's handling of unreadable records.
#[derive(Clone, Debug)]
pub struct BadRecords {
    table: String,
    policy: OnError,
    store: Option<StoreHandle>,
    dead_letters: Option<Arc<Store>>,
    metrics: Option<Arc<OperatorMetrics>>,
    count: u64,
    /// Dead letters not yet appended (see [`BadRecords::flush`]).
    letters: Vec<Record>,
}

impl BadRecords {
    /// The policy of table `table`; `store` is needed for dead letters.
    pub fn new(table: &str, policy: OnError, store: Option<StoreHandle>) -> Self {
        BadRecords {
            table: table.to_string(),
            policy,
            store,
            dead_letters: None,
            metrics: None,
            count: 0,
            letters: Vec::new(),
        }
    }

    /// The subtask started: counts go to `metrics`; the dead-letter topic is opened (and
    /// created if missing) now rather than at the first bad record.
    pub fn start(&mut self, metrics: Arc<OperatorMetrics>) -> Result<()> {
        self.metrics = Some(metrics);
        if let (OnError::DeadLetter(topic), Some(store)) = (&self.policy, &self.store) {
            let store = store.get()?;
            if store.queue_count(topic).is_err() {
                match store.create_topic(topic, TopicConfig::default()) {
                    Ok(()) | Err(streams_queue::Error::TopicExists(_)) => {}
                    Err(e) => {
                        return Err(Error::Execution {
                            context: format!("table `{}`", self.table),
                            message: format!("cannot create dead-letter topic '{topic}': {e}"),
                        });
                    }
                }
            }
            self.dead_letters = Some(store);
        }
        Ok(())
    }

    /// The policy.
    pub fn policy(&self) -> &OnError {
        &self.policy
    }

    /// Records given up on so far by this subtask.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Record `raw`, at `place` (e.g. `topic 'bids', queue 2, offset 17`), could not be read
    /// because of `problem`. Errors when the policy is to fail. A dead letter is written by
    /// the next [`BadRecords::flush`].
    pub fn handle(&mut self, place: &str, raw: &[u8], problem: &str) -> Result<()> {
        match &self.policy {
            OnError::Fail => {
                return Err(Error::Execution {
                    context: format!("table `{}`", self.table),
                    message: format!(
                        "the record at {place} cannot be read: {problem} (set \
                         'format.on-error' = 'skip' or 'dead-letter' to go on past such records)"
                    ),
                });
            }
            OnError::Skip => {
                // The first few, then one line per power of ten: the metrics have the count.
                let n = self.count + 1;
                if n <= 5 || n.is_power_of_two() && n >= 1024 {
                    tracing::warn!(
                        table = %self.table,
                        "skipping the record at {place}: {problem} ({n} skipped so far)"
                    );
                }
            }
            OnError::DeadLetter(_) => {
                self.letters.push(
                    Record::new(Bytes::copy_from_slice(raw))
                        .with_header(ERROR_HEADER, problem.to_string())
                        .with_header(SOURCE_HEADER, format!("table `{}`, {place}", self.table)),
                );
            }
        }
        self.count += 1;
        if let Some(m) = &self.metrics {
            m.bad_records(1);
        }
        Ok(())
    }

    /// Appends the dead letters handled since the last call, in one write.
    pub fn flush(&mut self) -> Result<()> {
        let OnError::DeadLetter(topic) = &self.policy else {
            return Ok(());
        };
        if self.letters.is_empty() {
            return Ok(());
        }
        let store = self.dead_letters.as_ref().ok_or_else(|| {
            Error::Internal("dead-letter topic used before the source started".into())
        })?;
        store
            .append(topic, 0, &self.letters)
            .map_err(|e| Error::Execution {
                context: format!("table `{}`", self.table),
                message: format!("cannot write to dead-letter topic '{topic}': {e}"),
            })?;
        self.letters.clear();
        Ok(())
    }
}
