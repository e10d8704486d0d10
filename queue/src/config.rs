//! Topic and store configuration.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// When appended records reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync before an append returns; appenders that overlap share one fsync (group commit).
    /// Readers see a record only once it is on disk.
    Always,
    /// fsync in the background at most this many milliseconds after an append.
    Interval(u64),
    /// Leave write-back to the operating system. Records survive a crash of the process, not of
    /// the machine.
    #[default]
    Os,
}

impl FromStr for Durability {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "always" => Ok(Durability::Always),
            "os" => Ok(Durability::Os),
            _ => match s.strip_prefix("interval:") {
                Some(ms) => match ms.parse::<u64>() {
                    Ok(ms) if ms > 0 => Ok(Durability::Interval(ms)),
                    _ => Err(Error::InvalidConfig(format!(
                        "durability `{s}`: the interval must be a positive number of milliseconds"
                    ))),
                },
                None => Err(Error::InvalidConfig(format!(
                    "durability `{s}`: expected `always`, `interval:MS` or `os`"
                ))),
            },
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::Always => f.write_str("always"),
            Durability::Interval(ms) => write!(f, "interval:{ms}"),
            Durability::Os => f.write_str("os"),
        }
    }
}

impl Serialize for Durability {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Durability {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which timestamp a record keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimestampType {
    /// The producer's timestamp, or the append time when the producer gives none.
    #[default]
    Create,
    /// Always the append time.
    Append,
}

/// How long records are kept. Whole sealed segments are deleted, oldest first, so a queue may
/// briefly hold more than the limits; the segment being written is never deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Retention {
    /// Delete a segment once its newest record is older than this many milliseconds.
    /// Default: none (keep forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_ms: Option<u64>,
    /// Delete the oldest segments of a queue while the queue holds more than this many bytes
    /// (a limit per queue, like Kafka's `retention.bytes` per partition). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

impl Retention {
    /// Parses a comma-separated list of limits: ages such as `7d`, `12h`, `30min`, and sizes
    /// such as `10GB`, `512MiB`, `1000000` (bytes).
    pub fn parse(spec: &str) -> Result<Self> {
        let mut r = Retention::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some(bytes) = parse_size(part) {
                r.max_bytes = Some(bytes);
            } else if let Ok(d) = humantime::parse_duration(part) {
                r.max_age_ms = Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            } else {
                return Err(Error::InvalidConfig(format!(
                    "retention `{part}`: expected an age such as `7d` or a size such as `10GB`"
                )));
            }
        }
        Ok(r)
    }
}

/// Parses `10GB`, `512MiB`, `64kb`, `100` (bytes). Decimal units are powers of 1000 and binary
/// ones powers of 1024, as their names say.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        // No bare `m`: `30m` is thirty minutes (see `Retention::parse`).
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return None,
    };
    let v = num * mult as f64;
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

/// A topic's configuration, fixed at creation except for the queue count, which only grows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Number of logical queues. Default 1.
    pub queues: u32,
    /// Default `os`.
    pub durability: Durability,
    /// Default: keep forever.
    #[serde(default)]
    pub retention: Retention,
    /// Size at which the segment being written is sealed and a new one started, in bytes.
    /// Default 64 MiB. Disk space for a whole segment is reserved when it is created.
    pub segment_bytes: u64,
    /// Default `create`.
    #[serde(default)]
    pub timestamp_type: TimestampType,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            queues: 1,
            durability: Durability::Os,
            retention: Retention::default(),
            segment_bytes: 64 << 20,
            timestamp_type: TimestampType::Create,
        }
    }
}

impl TopicConfig {
    /// Smallest allowed segment size.
    pub const MIN_SEGMENT_BYTES: u64 = 4096;

    /// A default configuration with `queues` queues.
    pub fn with_queues(queues: u32) -> Self {
        TopicConfig {
            queues,
            ..TopicConfig::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.queues == 0 || self.queues > MAX_QUEUES {
            return Err(Error::InvalidConfig(format!(
                "a topic needs between 1 and {MAX_QUEUES} queues, not {}",
                self.queues
            )));
        }
        if self.segment_bytes < Self::MIN_SEGMENT_BYTES || self.segment_bytes > 1 << 40 {
            return Err(Error::InvalidConfig(format!(
                "segment size {} is outside {}..=1TiB",
                self.segment_bytes,
                Self::MIN_SEGMENT_BYTES
            )));
        }
        Ok(())
    }
}

/// Most queues a topic may have.
pub const MAX_QUEUES: u32 = 4096;

/// How a store runs. Every field has a default; `StoreOptions::new(dir)` takes them all.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoreOptions {
    /// Directory holding metadata and, by default, segments. Created if missing.
    pub data_dir: PathBuf,
    /// How often the background thread wakes to seal segments and run `interval` fsyncs.
    /// Default 5 ms.
    #[serde(with = "humantime_serde_ms")]
    pub flush_tick: Duration,
    /// How often retention runs in the background; it also runs when the store opens.
    /// Default 60 s.
    #[serde(with = "humantime_serde_ms")]
    pub retention_check: Duration,
}

impl StoreOptions {
    /// Default options for a store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreOptions {
            data_dir: dir.into(),
            flush_tick: Duration::from_millis(5),
            retention_check: Duration::from_secs(60),
        }
    }
}

mod humantime_serde_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_parses_and_prints() {
        for s in ["always", "os", "interval:250"] {
            assert_eq!(s.parse::<Durability>().unwrap().to_string(), s);
        }
        assert!("interval:0".parse::<Durability>().is_err());
        assert!("sometimes".parse::<Durability>().is_err());
    }

    #[test]
    fn retention_parses_ages_and_sizes() {
        let r = Retention::parse("7d,10GB").unwrap();
        assert_eq!(r.max_age_ms, Some(7 * 24 * 3600 * 1000));
        assert_eq!(r.max_bytes, Some(10_000_000_000));
        assert_eq!(
            Retention::parse("512MiB").unwrap().max_bytes,
            Some(512 << 20)
        );
        assert_eq!(
            Retention::parse("30min").unwrap().max_age_ms,
            Some(1_800_000)
        );
        // `m` is minutes, never megabytes.
        assert_eq!(Retention::parse("30m").unwrap().max_age_ms, Some(1_800_000));
        assert_eq!(Retention::parse("30m").unwrap().max_bytes, None);
        assert!(Retention::parse("forever").is_err());
    }
}
