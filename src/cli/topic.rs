//! `rstreams topic ...`: create, list, describe, add queues, delete, move a queue, verify.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use streams_queue::{Durability, Retention, TimestampType, TopicConfig, TopicDescription};

use super::output::{Align, Table, human_size, print};
use super::{Format, Result, close_store, create_store, open_store};

#[derive(Debug, Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic (and the store, if the data directory does not exist yet)
    Create(CreateArgs),
    /// List topics, one name per line
    List,
    /// Show a topic's configuration, its queues' offsets and their segments
    Describe {
        /// Topic name
        name: String,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Add queues to a topic; existing queues keep their offsets and records
    ///
    /// Records produced with a key may go to a different queue afterwards (the queue is the
    /// key's hash modulo the queue count).
    AddQueues {
        /// Topic name
        name: String,
        /// Number of queues to add
        count: u32,
    },
    /// Delete a topic, its segments in every directory, and groups' offsets in it
    Delete {
        /// Topic name
        name: String,
    },
    /// Write a queue's new segments to another directory (another disk, say)
    ///
    /// Offsets do not change. Older segments stay where they are and stay readable until
    /// retention deletes them.
    MoveQueue {
        /// Topic name
        name: String,
        /// Queue index
        queue: u32,
        /// Storage directory for the queue's new segments
        dir: PathBuf,
    },
    /// Read and check every record of a topic; fails on corruption
    Verify {
        /// Topic name
        name: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Topic name (ASCII letters, digits, `.`, `_`, `-`)
    name: String,
    /// Number of logical queues (1 to 4096)
    #[arg(long, value_name = "N")]
    queues: u32,
    /// When appends reach the disk: `always` (fsync before an append returns), `interval:MS`
    /// (fsync in the background within MS milliseconds) or `os` (left to the kernel)
    /// [default: os]
    #[arg(long, value_name = "POLICY", value_parser = parse_durability)]
    durability: Option<Durability>,
    /// Retention limits: ages such as `7d` or `12h`, sizes per queue such as `10GB` or
    /// `512MiB`; comma-separated lists; repeatable [default: keep forever]
    #[arg(long, value_name = "SPEC", value_parser = parse_retention)]
    retention: Vec<Retention>,
    /// Size at which a segment is sealed and a new one started, e.g. `64MiB`, `1GB`
    /// [default: 64MiB]
    #[arg(long, value_name = "SIZE", value_parser = parse_segment_size)]
    segment_size: Option<u64>,
    /// Which timestamp records keep: the producer's (`create`, append time if none) or the
    /// append time (`append`)
    #[arg(long, value_enum, default_value_t = TimestampArg::Create)]
    timestamp: TimestampArg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TimestampArg {
    Create,
    Append,
}

fn parse_durability(s: &str) -> std::result::Result<Durability, String> {
    s.parse().map_err(|e| match e {
        streams_queue::Error::InvalidConfig(msg) => msg,
        other => other.to_string(),
    })
}

fn parse_retention(s: &str) -> std::result::Result<Retention, String> {
    Retention::parse(s).map_err(|e| match e {
        streams_queue::Error::InvalidConfig(msg) => msg,
        other => other.to_string(),
    })
}

fn parse_segment_size(s: &str) -> std::result::Result<u64, String> {
    streams_queue::parse_size(s)
        .ok_or_else(|| format!("`{s}` is not a size such as `64MiB`, `1GB` or `1048576`"))
}

pub(crate) fn run(dir: &Path, cmd: TopicCommand) -> Result<()> {
    match cmd {
        TopicCommand::Create(args) => create(dir, args),
        TopicCommand::List => {
            let store = open_store(dir)?;
            let mut text = String::new();
            for name in store.list_topics()? {
                text.push_str(&name);
                text.push('\n');
            }
            print(&text)
        }
        TopicCommand::Describe { name, format } => {
            let d = open_store(dir)?.describe_topic(&name)?;
            match format {
                Format::Table => print(&describe_table(&d)),
                Format::Json => print(&format!("{:#}\n", describe_json(&d))),
            }
        }
        TopicCommand::AddQueues { name, count } => {
            let store = open_store(dir)?;
            let total = store.add_queues(&name, count)?;
            close_store(store)?;
            print(&format!("topic {name} now has {total} queues\n"))
        }
        TopicCommand::Delete { name } => {
            let store = open_store(dir)?;
            store.delete_topic(&name)?;
            close_store(store)?;
            print(&format!("deleted topic {name}\n"))
        }
        TopicCommand::MoveQueue {
            name,
            queue,
            dir: to,
        } => {
            let store = open_store(dir)?;
            let (_, from) = store.offsets(&name, queue)?;
            store.move_queue(&name, queue, &to)?;
            close_store(store)?;
            print(&format!(
                "queue {queue} of topic {name} writes new segments to {} from offset {from}\n",
                to.display()
            ))
        }
        TopicCommand::Verify { name } => {
            let n = open_store(dir)?.verify_topic(&name)?;
            print(&format!(
                "checked {n} records of topic {name}: no corruption\n"
            ))
        }
    }
}

fn create(dir: &Path, args: CreateArgs) -> Result<()> {
    let defaults = TopicConfig::default();
    let retention = args
        .retention
        .iter()
        .fold(Retention::default(), |acc, r| Retention {
            max_age_ms: r.max_age_ms.or(acc.max_age_ms),
            max_bytes: r.max_bytes.or(acc.max_bytes),
        });
    let config = TopicConfig {
        queues: args.queues,
        durability: args.durability.unwrap_or(defaults.durability),
        retention,
        segment_bytes: args.segment_size.unwrap_or(defaults.segment_bytes),
        timestamp_type: match args.timestamp {
            TimestampArg::Create => TimestampType::Create,
            TimestampArg::Append => TimestampType::Append,
        },
    };
    // Only `topic create` may make a new store.
    let store = create_store(dir)?;
    store.create_topic(&args.name, config)?;
    close_store(store)?;
    print(&format!(
        "created topic {} with {} queues\n",
        args.name, args.queues
    ))
}

fn retention_text(r: &Retention) -> String {
    let mut parts = Vec::new();
    if let Some(ms) = r.max_age_ms {
        parts.push(format!(
            "older than {}",
            humantime::format_duration(std::time::Duration::from_millis(ms))
        ));
    }
    if let Some(b) = r.max_bytes {
        parts.push(format!("{} ({b} bytes) per queue", human_size(b)));
    }
    if parts.is_empty() {
        "keep forever".to_string()
    } else {
        parts.join(", ")
    }
}

fn timestamp_text(t: TimestampType) -> &'static str {
    match t {
        TimestampType::Create => "create",
        TimestampType::Append => "append",
    }
}

fn describe_table(d: &TopicDescription) -> String {
    let c = &d.config;
    let mut s = String::new();
    let fields = [
        ("topic", d.name.clone()),
        ("queues", c.queues.to_string()),
        ("durability", c.durability.to_string()),
        ("retention", retention_text(&c.retention)),
        (
            "segment size",
            format!(
                "{} ({} bytes)",
                human_size(c.segment_bytes),
                c.segment_bytes
            ),
        ),
        ("timestamps", timestamp_text(c.timestamp_type).to_string()),
    ];
    for (k, v) in fields {
        let _ = writeln!(s, "{:<13} {v}", format!("{k}:"));
    }

    let mut queues = Table::new(&[
        ("QUEUE", Align::Right),
        ("START", Align::Right),
        ("END", Align::Right),
        ("RECORDS", Align::Right),
        ("BYTES", Align::Right),
        ("SEGMENTS", Align::Right),
    ]);
    let mut segments = Table::new(&[
        ("QUEUE", Align::Right),
        ("BASE", Align::Right),
        ("END", Align::Right),
        ("BYTES", Align::Right),
        ("STATE", Align::Left),
        ("PATH", Align::Left),
    ]);
    let (mut records, mut bytes) = (0u64, 0u64);
    for q in &d.queues {
        let n = q.end_offset.saturating_sub(q.start_offset);
        records += n;
        bytes += q.bytes;
        queues.row(vec![
            q.queue.to_string(),
            q.start_offset.to_string(),
            q.end_offset.to_string(),
            n.to_string(),
            human_size(q.bytes),
            q.segments.len().to_string(),
        ]);
        for seg in &q.segments {
            segments.row(vec![
                q.queue.to_string(),
                seg.base_offset.to_string(),
                seg.end_offset.to_string(),
                human_size(seg.bytes),
                if seg.sealed { "sealed" } else { "active" }.to_string(),
                seg.path.display().to_string(),
            ]);
        }
    }
    queues.row(vec![
        "all".into(),
        String::new(),
        String::new(),
        records.to_string(),
        human_size(bytes),
        d.queues
            .iter()
            .map(|q| q.segments.len())
            .sum::<usize>()
            .to_string(),
    ]);
    s.push('\n');
    s.push_str(&queues.render());
    s.push('\n');
    s.push_str(&segments.render());
    s
}

fn describe_json(d: &TopicDescription) -> serde_json::Value {
    let c = &d.config;
    let queues: Vec<serde_json::Value> = d
        .queues
        .iter()
        .map(|q| {
            json!({
                "queue": q.queue,
                "start_offset": q.start_offset,
                "end_offset": q.end_offset,
                "records": q.end_offset.saturating_sub(q.start_offset),
                "bytes": q.bytes,
                "segments": q.segments.iter().map(|s| json!({
                    "path": s.path.display().to_string(),
                    "base_offset": s.base_offset,
                    "end_offset": s.end_offset,
                    "bytes": s.bytes,
                    "sealed": s.sealed,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "name": d.name,
        "config": {
            "queues": c.queues,
            "durability": c.durability.to_string(),
            "retention": {
                "max_age_ms": c.retention.max_age_ms,
                "max_bytes": c.retention.max_bytes,
            },
            "segment_bytes": c.segment_bytes,
            "timestamp_type": timestamp_text(c.timestamp_type),
        },
        "queues": queues,
    })
}
