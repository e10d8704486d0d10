//! Records as producers give them and as readers get them back.

use bytes::Bytes;

/// A record to append. Build one with [`Record::new`] and the `with_*` methods.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Optional key (used by producers to pick a queue, and by the engine for keyed streams).
    pub key: Option<Bytes>,
    /// Free-form labels a consumer can filter on (RocketMQ's tags).
    pub tags: Vec<String>,
    /// Application headers, in order; names may repeat.
    pub headers: Vec<(String, Bytes)>,
    /// Event time in milliseconds since the Unix epoch; `None` takes the append time. Topics
    /// configured with append-time timestamps ignore it.
    pub timestamp: Option<i64>,
    /// The record's body.
    pub payload: Bytes,
}

impl Record {
    /// A record with this payload and nothing else.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Record {
            payload: payload.into(),
            ..Record::default()
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a tag.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the producer's timestamp (milliseconds since the Unix epoch).
    pub fn with_timestamp(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }
}

/// A record read back from a queue. Its byte fields share the store's memory map: cloning one
/// does not copy the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// The record's offset in its logical queue.
    pub offset: u64,
    /// Producer or append time, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Key, if the producer gave one.
    pub key: Option<Bytes>,
    /// Tags.
    pub tags: Vec<String>,
    /// Headers.
    pub headers: Vec<(String, Bytes)>,
    /// Body.
    pub payload: Bytes,
}

impl StoredRecord {
    /// Bytes the record occupies in memory for the purpose of read limits.
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Bytes::len)
            + self.payload.len()
            + self.tags.iter().map(String::len).sum::<usize>()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}
