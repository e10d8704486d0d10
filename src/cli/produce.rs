//! `rstreams produce TOPIC`: one record per line of standard input, appended in batches.

use std::io::{BufRead, BufReader};

use bytes::Bytes;
use clap::Args;
use streams_queue::{Producer, Record, Store};

use super::json_fields::Fields;
use super::{CliError, Result, close_store};

/// Most payload bytes buffered across queues before everything buffered is appended, so that
/// memory stays bounded whatever the queue count and batch size.
const MAX_BUFFERED_BYTES: usize = 64 << 20;

#[derive(Debug, Args)]
#[command(after_long_help = "\
Each line of standard input becomes one record whose payload is the line without its line \
ending (`\\n` or `\\r\\n`); empty lines are skipped. Records go to the --queue given, else to \
the queue their key picks, else round robin: a batch to each queue in turn. On a line that \
cannot be used, everything before it has been appended and nothing from it on.")]
pub(crate) struct ProduceArgs {
    /// Topic to append to
    topic: String,
    /// Read each line as a JSON object and use this field as the record's key, which picks the
    /// queue (CRC32C of the key modulo the queue count). A string value is the key as is,
    /// another value its JSON text
    #[arg(long, value_name = "FIELD")]
    key_field: Option<String>,
    /// Append every record to this queue
    #[arg(long, value_name = "N")]
    queue: Option<u32>,
    /// Tag every record with T (repeatable)
    #[arg(long = "tag", value_name = "T")]
    tags: Vec<String>,
    /// Add the header K=V to every record (repeatable)
    #[arg(long = "header", value_name = "K=V", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Read each line as a JSON object and take the record's timestamp from this field: epoch
    /// milliseconds (a number) or an RFC 3339 string
    #[arg(long, value_name = "FIELD")]
    timestamp_field: Option<String>,
    /// Records per append, per queue
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
}

fn parse_header(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not a header of the form NAME=VALUE")),
    }
}

pub(crate) fn run(store: &Store, args: ProduceArgs) -> Result<()> {
    let producer = store.producer(&args.topic)?;
    let queues = producer.queue_count()?;
    if let Some(q) = args.queue {
        // Fails with a message naming the topic's queues if `q` is not one of them.
        store.offsets(&args.topic, q)?;
    }
    // Round robin starts at the queue that has received the fewest records.
    let mut rr = 0;
    let mut fewest = u64::MAX;
    for q in 0..queues {
        let end = store.offsets(&args.topic, q)?.1;
        if end < fewest {
            (rr, fewest) = (q, end);
        }
    }
    let mut batcher = Batcher {
        producer: &producer,
        topic: &args.topic,
        buffers: (0..queues).map(|_| Vec::new()).collect(),
        batch: args.batch as usize,
        buffered_bytes: 0,
        appended: 0,
    };
    let template = Record {
        tags: args.tags.clone(),
        headers: args
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Bytes::copy_from_slice(v.as_bytes())))
            .collect(),
        ..Record::default()
    };
    let fields = Fields {
        key: args.key_field.as_deref(),
        timestamp: args.timestamp_field.as_deref(),
    };
    let json = fields.key.is_some() || fields.timestamp.is_some();

    let mut input = BufReader::with_capacity(1 << 20, std::io::stdin().lock());
    let mut line = Vec::with_capacity(4096);
    let mut line_no: u64 = 0;
    let failure: Option<Failure> = loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break None,
            Ok(_) => {}
            Err(e) => break Some(Failure::Read(e)),
        }
        line_no += 1;
        let text = strip_line_ending(&line);
        if text.is_empty() {
            continue;
        }
        let mut record = Record {
            key: None,
            tags: template.tags.clone(),
            headers: template.headers.clone(),
            timestamp: None,
            payload: Bytes::copy_from_slice(text),
        };
        if json {
            match fields.extract(text) {
                Ok((key, timestamp)) => {
                    record.key = key;
                    record.timestamp = timestamp;
                }
                Err(reason) => break Some(Failure::Line(reason)),
            }
        }
        let queue = match (args.queue, &record.key) {
            (Some(q), _) => q,
            (None, Some(key)) => producer.queue_for_key(key)?,
            (None, None) => rr,
        };
        if batcher.push(queue, record)? && args.queue.is_none() && fields.key.is_none() {
            rr = (rr + 1) % queues;
        }
    };
    // Everything before the failing line goes in, nothing from it on.
    batcher.flush_all()?;
    let appended = batcher.appended;
    let topic = args.topic.clone();
    match failure {
        None => {}
        Some(Failure::Line(reason)) => {
            return Err(CliError::BadLine {
                line: line_no,
                reason,
                appended,
                topic,
            });
        }
        Some(Failure::Read(source)) => {
            return Err(CliError::Stdin {
                line: line_no,
                appended,
                topic,
                source,
            });
        }
    }
    close_store(store.clone())?;
    tracing::info!(records = appended, lines = line_no, "produce done");
    eprintln_quiet(&format!("produced {appended} records to {}", args.topic));
    Ok(())
}

/// Writes a line to stderr, ignoring failure (there is nowhere else to report it).
fn eprintln_quiet(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

enum Failure {
    Line(String),
    Read(std::io::Error),
}

fn strip_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Per-queue buffers of records, appended a batch at a time.
struct Batcher<'a> {
    producer: &'a Producer,
    topic: &'a str,
    buffers: Vec<Vec<Record>>,
    batch: usize,
    buffered_bytes: usize,
    appended: u64,
}

impl Batcher<'_> {
    /// Buffers `record` for `queue` (a valid queue index); appends the queue's buffer when it is
    /// full. Returns whether it appended.
    fn push(&mut self, queue: u32, record: Record) -> Result<bool> {
        self.buffered_bytes += record.payload.len();
        let Some(buf) = self.buffers.get_mut(queue as usize) else {
            return Err(CliError::Store(streams_queue::Error::QueueNotFound {
                topic: self.topic.to_string(),
                queue,
                queues: self.buffers.len() as u32,
            }));
        };
        if buf.capacity() == 0 {
            buf.reserve_exact(self.batch.min(1 << 16));
        }
        buf.push(record);
        if buf.len() >= self.batch {
            self.flush(queue)?;
            return Ok(true);
        }
        if self.buffered_bytes > MAX_BUFFERED_BYTES {
            self.flush_all()?;
        }
        Ok(false)
    }

    fn flush(&mut self, queue: u32) -> Result<()> {
        let Some(buf) = self.buffers.get_mut(queue as usize) else {
            return Ok(());
        };
        if buf.is_empty() {
            return Ok(());
        }
        self.producer
            .append(queue, buf)
            .map_err(|source| CliError::Append {
                topic: self.topic.to_string(),
                queue,
                appended: self.appended,
                source,
            })?;
        self.appended += buf.len() as u64;
        self.buffered_bytes -= buf.iter().map(|r| r.payload.len()).sum::<usize>();
        buf.clear();
        Ok(())
    }

    fn flush_all(&mut self) -> Result<()> {
        for q in 0..self.buffers.len() as u32 {
            self.flush(q)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_are_stripped() {
        assert_eq!(strip_line_ending(b"a\r\n"), b"a");
        assert_eq!(strip_line_ending(b"a\n"), b"a");
        assert_eq!(strip_line_ending(b"a"), b"a");
    }

    #[test]
    fn headers_parse() {
        assert_eq!(parse_header("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_header("novalue").is_err());
    }
}
