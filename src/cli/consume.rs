//! `rstreams consume TOPIC`: print records to standard output, optionally as a group member.

use std::io::Write;

use clap::{Args, ValueEnum};
use streams_queue::{
    Consumer, ConsumerOptions, IfTrimmed, ReadOptions, StartFrom, Store, StoredRecord,
};

use super::output::{Stdout, hex, rfc3339_millis, stdout};
use super::{CliError, Result, parse_start};

/// Records asked for per poll.
const POLL_RECORDS: usize = 1000;

#[derive(Debug, Args)]
#[command(after_long_help = "\
With --group, the group's committed offsets are where reading starts (queues without one start \
at --from) and, at exit, the positions after the records printed are committed, so the next run \
with the same group continues where this one stopped. A record whose output was cut off by a \
closed pipe (`| head`) is not committed. Reading stops at the end of the queues: the store admits \
one process at a time, so there is nothing to wait for.

--format json prints one object per line:
  {\"queue\":0,\"offset\":41,\"timestamp\":\"2024-05-01T12:00:00.000Z\",\"key\":\"k\",
   \"tags\":[\"t\"],\"headers\":[{\"name\":\"n\",\"value\":\"v\"}],\"payload\":\"...\"}
`key` is null when the record has none. Byte fields that are not valid UTF-8 are written as \
lower-case hex under a name ending in `_hex` instead: `key_hex`, `payload_hex`, and \
`value_hex` in headers.")]
pub(crate) struct ConsumeArgs {
    /// Topic to read
    topic: String,
    /// Consumer group: start at its committed offsets and commit the positions of the records
    /// printed
    #[arg(long, value_name = "G")]
    group: Option<String>,
    /// Where to start: `earliest`, `latest` or an RFC 3339 time (the first record at or after
    /// it). Given with --group, it overrides the group's committed offsets [default: the
    /// group's committed offsets, else earliest]
    #[arg(long, value_name = "WHERE", value_parser = parse_start)]
    from: Option<StartFrom>,
    /// Stop after N records
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Output format
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    /// Read only this queue
    #[arg(long, value_name = "N")]
    queue: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    /// The payload as UTF-8 (invalid bytes replaced by U+FFFD), one record per line
    Text,
    /// One JSON object per record and line (see below)
    Json,
}

/// Where records come from: every queue through a [`Consumer`], or one queue read directly.
enum Source {
    All(Consumer),
    One { queue: u32, position: u64 },
}

impl Source {
    fn poll(&mut self, store: &Store, topic: &str, max: usize) -> Result<Vec<(u32, StoredRecord)>> {
        match self {
            Source::All(consumer) => Ok(consumer.poll(max)?),
            Source::One { queue, position } => {
                let options = ReadOptions {
                    max_records: max,
                    if_trimmed: IfTrimmed::Earliest,
                    ..ReadOptions::default()
                };
                let records = store.read(topic, *queue, *position, &options)?;
                if let Some(last) = records.last() {
                    *position = last.offset + 1;
                }
                Ok(records.into_iter().map(|r| (*queue, r)).collect())
            }
        }
    }

    /// Next offset of each queue, before anything was read.
    fn initial_positions(&self) -> Vec<Option<u64>> {
        match self {
            Source::All(c) => c.positions().iter().map(|&p| Some(p)).collect(),
            Source::One { queue, position } => {
                let mut v = vec![None; *queue as usize + 1];
                v[*queue as usize] = Some(*position);
                v
            }
        }
    }
}

pub(crate) fn run(store: &Store, args: ConsumeArgs) -> Result<()> {
    let topic = args.topic.as_str();
    let start = args.from.unwrap_or(StartFrom::Earliest);
    let ignore_committed = args.from.is_some();
    let mut source = match args.queue {
        None => Source::All(store.consumer(
            topic,
            ConsumerOptions {
                group: args.group.clone(),
                start,
                ignore_committed,
                ..ConsumerOptions::default()
            },
        )?),
        Some(queue) => {
            let (first, end) = store.offsets(topic, queue)?;
            let committed = match (&args.group, ignore_committed) {
                (Some(g), false) => store.committed_offsets(g, topic)?.get(&queue).copied(),
                _ => None,
            };
            let position = match committed {
                Some(c) => c.clamp(first, end),
                None => store.resolve_start(topic, queue, start)?,
            };
            Source::One { queue, position }
        }
    };

    let mut run = Run {
        store,
        topic,
        group: args.group.as_deref(),
        printed: source.initial_positions(),
        flushed: source.initial_positions(),
        committed: None,
    };
    let outcome = run.pump(&mut source, &args);
    // Commit what reached standard output, whatever stopped the loop.
    let committed = run.commit();
    match outcome {
        Ok(()) | Err(CliError::BrokenPipe) => committed,
        Err(e) => Err(e),
    }
}

struct Run<'a> {
    store: &'a Store,
    topic: &'a str,
    group: Option<&'a str>,
    /// Next offset per queue after the records written to the output buffer.
    printed: Vec<Option<u64>>,
    /// Next offset per queue after the records flushed to standard output.
    flushed: Vec<Option<u64>>,
    /// What was last committed.
    committed: Option<Vec<Option<u64>>>,
}

impl Run<'_> {
    fn pump(&mut self, source: &mut Source, args: &ConsumeArgs) -> Result<()> {
        let mut out = stdout();
        let mut count: u64 = 0;
        loop {
            let want = match args.limit {
                Some(limit) => limit.saturating_sub(count).min(POLL_RECORDS as u64) as usize,
                None => POLL_RECORDS,
            };
            if want == 0 {
                return Ok(());
            }
            let records = source.poll(self.store, self.topic, want)?;
            if records.is_empty() {
                return Ok(());
            }
            for (queue, record) in &records {
                write_record(&mut out, args.format, *queue, record).map_err(CliError::stdout)?;
                let slot = *queue as usize;
                if self.printed.len() <= slot {
                    self.printed.resize(slot + 1, None);
                }
                self.printed[slot] = Some(record.offset + 1);
            }
            count += records.len() as u64;
            out.flush().map_err(CliError::stdout)?;
            self.flushed.clone_from(&self.printed);
        }
    }

    /// Commits the flushed positions to the group, if there is one and they changed.
    fn commit(&mut self) -> Result<()> {
        let Some(group) = self.group else {
            return Ok(());
        };
        if self.committed.as_ref() == Some(&self.flushed) {
            return Ok(());
        }
        let offsets: Vec<(u32, u64)> = self
            .flushed
            .iter()
            .enumerate()
            .filter_map(|(q, o)| o.map(|o| (q as u32, o)))
            .collect();
        self.store.commit_offsets(group, self.topic, &offsets)?;
        self.committed = Some(self.flushed.clone());
        Ok(())
    }
}

fn write_record(
    out: &mut Stdout,
    format: OutputFormat,
    queue: u32,
    r: &StoredRecord,
) -> std::io::Result<()> {
    match format {
        OutputFormat::Text => {
            out.write_all(String::from_utf8_lossy(&r.payload).as_bytes())?;
            out.write_all(b"\n")
        }
        OutputFormat::Json => write_json(out, queue, r),
    }
}

fn write_json(out: &mut Stdout, queue: u32, r: &StoredRecord) -> std::io::Result<()> {
    write!(
        out,
        "{{\"queue\":{queue},\"offset\":{},\"timestamp\":",
        r.offset
    )?;
    match rfc3339_millis(r.timestamp) {
        Some(t) => write!(out, "\"{t}\"")?,
        None => write!(out, "{}", r.timestamp)?,
    }
    out.write_all(b",")?;
    match &r.key {
        Some(key) => write_bytes(out, "key", key)?,
        None => out.write_all(b"\"key\":null")?,
    }
    out.write_all(b",\"tags\":")?;
    serde_json::to_writer(&mut *out, &r.tags)?;
    out.write_all(b",\"headers\":[")?;
    for (i, (name, value)) in r.headers.iter().enumerate() {
        out.write_all(if i == 0 {
            b"{\"name\":"
        } else {
            b",{\"name\":"
        })?;
        serde_json::to_writer(&mut *out, name)?;
        out.write_all(b",")?;
        write_bytes(out, "value", value)?;
        out.write_all(b"}")?;
    }
    out.write_all(b"],")?;
    write_bytes(out, "payload", &r.payload)?;
    out.write_all(b"}\n")
}

/// `"name":"text"` when `bytes` are UTF-8, else `"name_hex":"0a1b..."`.
fn write_bytes(out: &mut Stdout, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            write!(out, "\"{name}\":")?;
            serde_json::to_writer(&mut *out, s)?;
            Ok(())
        }
        Err(_) => write!(out, "\"{name}_hex\":\"{}\"", hex(bytes)),
    }
}
