//! Durable metadata: the store's version stamp, one file per topic, one per consumer group.
//!
//! Each file is JSON with a `format_version`, replaced atomically (write, fsync, rename, fsync
//! the directory), so a crash leaves the old or the new content.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::fsutil;

/// The metadata format this build reads and writes.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// `store.json`: marks a directory as a store and names its format.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoreMeta {
    pub(crate) format_version: u32,
}

/// Where a queue's offsets from `from` on are stored: segments under
/// `<dir>/<topic dir>/<queue>/`. `dir` is relative to the data directory unless absolute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PlacementMeta {
    pub(crate) dir: String,
    pub(crate) from: u64,
}

/// One logical queue's placements, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueueMeta {
    pub(crate) placements: Vec<PlacementMeta>,
}

/// `meta/topics/<name>.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TopicMeta {
    pub(crate) format_version: u32,
    pub(crate) name: String,
    /// Distinguishes this topic from an earlier one of the same name, whose files may linger.
    pub(crate) id: String,
    pub(crate) config: TopicConfig,
    pub(crate) queues: Vec<QueueMeta>,
}

impl TopicMeta {
    /// Directory name of the topic's segments under a storage directory.
    pub(crate) fn dir_name(&self) -> String {
        format!("{}-{}", self.name, self.id)
    }
}

/// `meta/groups/<name>.json`: committed offsets per topic and queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GroupMeta {
    pub(crate) format_version: u32,
    pub(crate) offsets: BTreeMap<String, BTreeMap<u32, u64>>,
}

/// Reads a metadata file, checking its format version.
pub(crate) fn read<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    #[derive(Deserialize)]
    struct Versioned {
        format_version: u32,
    }
    let v: Versioned = serde_json::from_slice(&bytes).map_err(|source| Error::Metadata {
        path: path.to_path_buf(),
        source,
    })?;
    if v.format_version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: v.format_version,
            supported: FORMAT_VERSION,
        });
    }
    serde_json::from_slice(&bytes).map_err(|source| Error::Metadata {
        path: path.to_path_buf(),
        source,
    })
}

/// Replaces a metadata file atomically.
pub(crate) fn write<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::Internal(format!("serialize {}: {e}", path.display())))?;
    fsutil::write_atomic(path, &bytes)
}

/// Names of the `*.json` files in `dir`, without the extension.
pub(crate) fn list(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            out.push((stem.to_string(), path));
        }
    }
    out.sort();
    Ok(out)
}

/// Checks a topic or group name: it becomes part of file names.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| Error::InvalidName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() || name.len() > 200 {
        return Err(bad("names are 1 to 200 characters long"));
    }
    if name.starts_with('.') {
        return Err(bad("names may not start with `.`"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(bad(
            "names may use only ASCII letters, digits, `.`, `_` and `-`",
        ));
    }
    Ok(())
}
