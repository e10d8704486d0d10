//! `'connector' = 'nexmark'`: the Nexmark auction event generator (the `nexmark` crate) as a
//! source, with the options and the event table of Flink's Nexmark suite.
//!
//! Events are numbered; split `i` of `n` generates events `i, i + n, i + 2n, ...`, so the
//! events are the same whatever the split count, each split is in event-time order, and a
//! bounded table (`events.num`) ends when all its events are out. Event times follow the
//! configured rate from `base-time`; generation itself runs as fast as the job consumes.

mod columns;
mod udf;

use std::sync::Arc;

use async_trait::async_trait;
use nexmark::EventGenerator;
use nexmark::config::{NexmarkConfig, RateShape};
use streams_core::arrow::datatypes::SchemaRef;
use streams_core::connector::{Connector, OptionSpec, Options};
use streams_core::{Error, Result, SinkFactory, Source, SourceEvent, SourceFactory};

pub use columns::event_table_fields;
use columns::{BatchBuilder, Layout};
pub use udf::count_char;

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "events.num",
        required: false,
        doc: "how many events to generate, then end (default 0: unbounded)",
    },
    OptionSpec {
        name: "first-event.rate",
        required: false,
        doc: "events per second of event time at the start (default 10000)",
    },
    OptionSpec {
        name: "next-event.rate",
        required: false,
        doc: "events per second of event time the rate moves to (default: first-event.rate)",
    },
    OptionSpec {
        name: "rate.shape",
        required: false,
        doc: "how the rate moves between the two: sine (default) or square",
    },
    OptionSpec {
        name: "rate.period",
        required: false,
        doc: "seconds per cycle of the rate shape (default 600)",
    },
    OptionSpec {
        name: "person.proportion",
        required: false,
        doc: "share of person events (default 1)",
    },
    OptionSpec {
        name: "auction.proportion",
        required: false,
        doc: "share of auction events (default 3)",
    },
    OptionSpec {
        name: "bid.proportion",
        required: false,
        doc: "share of bid events (default 46)",
    },
    OptionSpec {
        name: "base-time",
        required: false,
        doc: "event time of the first event: 'YYYY-MM-DD HH:MM:SS[.fff]' (UTC) or epoch \
              milliseconds (default: when the job starts)",
    },
    OptionSpec {
        name: "seed",
        required: false,
        doc: "another reproducible stream of events: the generator's random fields come from \
              event ids starting at seed × 10^9 (default 0, the stream of Flink's suite)",
    },
    OptionSpec {
        name: "splits",
        required: false,
        doc: "independent generators the events are dealt to (default 4); parallelism is at \
              most this",
    },
    OptionSpec {
        name: "batch-size",
        required: false,
        doc: "events per batch (default 4096)",
    },
];

/// The `nexmark` connector (a source only).
#[derive(Debug, Default)]
pub struct Nexmark;

impl Connector for Nexmark {
    fn name(&self) -> &str {
        "nexmark"
    }

    fn options(&self) -> &[OptionSpec] {
        OPTIONS
    }

    fn source(
        &self,
        table: &str,
        schema: SchemaRef,
        options: &Options,
    ) -> Result<Arc<dyn SourceFactory>> {
        Ok(Arc::new(NexmarkSource::new(table, schema, options)?))
    }

    fn sink(&self, table: &str, _: SchemaRef, _: &Options) -> Result<Arc<dyn SinkFactory>> {
        Err(Error::plan(format!(
            "table `{table}`: the nexmark connector is a source; it cannot be written to"
        )))
    }
}

/// A planned Nexmark table: the generator settings and the declared columns.
#[derive(Clone, Debug)]
pub struct NexmarkSource {
    name: String,
    config: NexmarkConfig,
    events: u64,
    splits: usize,
    batch_size: usize,
    layout: Layout,
}

impl NexmarkSource {
    /// Checks the options and the declared columns of table `table`.
    pub fn new(table: &str, schema: SchemaRef, options: &Options) -> Result<Self> {
        let positive = |key: &str, default: usize| -> Result<usize> {
            match options.parse::<usize>(table, key)? {
                None => Ok(default),
                Some(0) => Err(Error::plan(format!(
                    "table `{table}`: option '{key}' must be positive"
                ))),
                Some(v) => Ok(v),
            }
        };
        let mut config = NexmarkConfig::default();
        // Flink's generator capitalizes these (queries compare with 'OR', 'CA', ...).
        let words = |text: &str| text.split(',').map(str::to_string).collect::<Vec<_>>();
        config.us_states = words("AZ,CA,ID,OR,WA,WY");
        config.us_cities = words(
            "Phoenix,Los Angeles,San Francisco,Boise,Portland,Bend,Redmond,Seattle,Kent,Cheyenne",
        );
        config.first_names =
            words("Peter,Paul,Luke,John,Saul,Vicky,Kate,Julie,Sarah,Deiter,Walter");
        config.last_names = words("Shultz,Abrams,Spencer,White,Bartels,Walton,Smith,Jones,Noris");
        config.first_rate = positive("first-event.rate", config.first_rate)?;
        config.next_rate = positive("next-event.rate", config.first_rate)?;
        config.rate_period = positive("rate.period", config.rate_period)?;
        config.rate_shape = match options.get("rate.shape") {
            None | Some("sine") => RateShape::Sine,
            Some("square") => RateShape::Square,
            Some(other) => {
                return Err(Error::plan(format!(
                    "table `{table}`: option 'rate.shape' = '{other}': expected sine or square"
                )));
            }
        };
        config.person_proportion = positive("person.proportion", config.person_proportion)?;
        config.auction_proportion = positive("auction.proportion", config.auction_proportion)?;
        config.bid_proportion = positive("bid.proportion", config.bid_proportion)?;
        if let Some(t) = options.get("base-time") {
            config.base_time = parse_base_time(t).ok_or_else(|| {
                Error::plan(format!(
                    "table `{table}`: option 'base-time' = '{t}': expected 'YYYY-MM-DD \
                     HH:MM:SS[.fff]' or epoch milliseconds"
                ))
            })?;
        }
        if let Some(seed) = options.parse::<u32>(table, "seed")? {
            config.first_event_id = seed as usize * 1_000_000_000;
        }
        Ok(NexmarkSource {
            name: table.to_string(),
            config,
            events: options.parse(table, "events.num")?.unwrap_or(0),
            splits: positive("splits", 4)?,
            batch_size: positive("batch-size", 4096)?,
            layout: Layout::new(table, schema)?,
        })
    }

    /// Events split `split` generates before it ends (`None`: unbounded).
    fn split_events(&self, split: usize) -> Option<u64> {
        (self.events > 0).then(|| {
            let (i, n) = (split as u64, self.splits as u64);
            self.events.saturating_sub(i).div_ceil(n)
        })
    }
}

fn parse_base_time(text: &str) -> Option<u64> {
    if let Ok(ms) = text.parse::<u64>() {
        return Some(ms);
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
        .and_then(|t| u64::try_from(t.and_utc().timestamp_millis()).ok())
}

impl SourceFactory for NexmarkSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn schema(&self) -> SchemaRef {
        self.layout.schema()
    }

    fn splits(&self) -> usize {
        self.splits
    }

    fn create(&self, subtask: usize, parallelism: usize) -> Result<Box<dyn Source>> {
        let splits = (0..self.splits)
            .skip(subtask)
            .step_by(parallelism.max(1))
            .map(|i| SplitGenerator {
                generator: EventGenerator::new(self.config.clone())
                    .with_offset(i as u64)
                    .with_step(self.splits as u64),
                remaining: self.split_events(i),
                ended: false,
                index: i as u64,
                emitted: 0,
            })
            .collect();
        Ok(Box::new(NexmarkSubtask {
            config: self.config.clone(),
            total_splits: self.splits as u64,
            builder: BatchBuilder::new(&self.layout, self.batch_size),
            layout: self.layout.clone(),
            batch_size: self.batch_size,
            splits,
            next: 0,
        }))
    }
}

#[derive(Debug)]
struct SplitGenerator {
    generator: EventGenerator,
    /// Events still to generate; `None` when unbounded.
    remaining: Option<u64>,
    /// Whether its end was reported, so its watermark stops holding the others back.
    ended: bool,
    /// Its index among all splits (its first event's number).
    index: u64,
    /// Events generated so far: the split's position.
    emitted: u64,
}

/// The splits one subtask generates, taken in turn a batch at a time.
#[derive(Debug)]
struct NexmarkSubtask {
    config: nexmark::config::NexmarkConfig,
    total_splits: u64,
    builder: BatchBuilder,
    layout: Layout,
    batch_size: usize,
    splits: Vec<SplitGenerator>,
    next: usize,
}

#[async_trait]
impl Source for NexmarkSubtask {
    fn splits(&self) -> usize {
        self.splits.len()
    }

    /// The events generated per split: the generator is deterministic, so a job resumes
    /// exactly where its checkpoint was.
    fn snapshot_position(
        &mut self,
        _checkpoint: streams_core::checkpoint::CheckpointId,
    ) -> Result<Vec<u8>> {
        Ok(self
            .splits
            .iter()
            .flat_map(|s| s.emitted.to_le_bytes())
            .collect())
    }

    fn restore_position(&mut self, position: &[u8]) -> Result<()> {
        if position.len() != 8 * self.splits.len() {
            return Err(streams_core::Error::IncompatibleState(format!(
                "nexmark: a position for {} splits, this subtask has {}",
                position.len() / 8,
                self.splits.len()
            )));
        }
        for (s, p) in self.splits.iter_mut().zip(position.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(p);
            let done = u64::from_le_bytes(b);
            // Event numbers index + k * step: start at the first one not yet emitted.
            s.generator = EventGenerator::new(self.config.clone())
                .with_offset(s.index + done * self.total_splits)
                .with_step(self.total_splits);
            s.remaining = s.remaining.map(|r| r.saturating_sub(done));
            s.emitted = done;
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<SourceEvent> {
        let n = self.splits.len();
        for off in 0..n {
            let i = (self.next + off) % n;
            let split = &mut self.splits[i];
            if split.ended {
                continue;
            }
            if split.remaining == Some(0) {
                split.ended = true;
                return Ok(SourceEvent::SplitEnd(i));
            }
            self.next = i + 1;
            let count = split
                .remaining
                .map_or(self.batch_size as u64, |r| r.min(self.batch_size as u64));
            for event in split.generator.by_ref().take(count as usize) {
                self.builder.append(&event);
            }
            if let Some(r) = &mut split.remaining {
                *r -= count;
            }
            split.emitted += count;
            let batch = self.builder.finish(&self.layout)?;
            return Ok(SourceEvent::Batch { split: i, batch });
        }
        // Every split has generated all its events (or there are none).
        Ok(SourceEvent::End)
    }
}

#[cfg(test)]
mod tests;
