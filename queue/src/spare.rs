//! Spare segments, prepared before a queue needs them.
//!
//! A spare is reserved (`fallocate`), mapped, and its first pages faulted in writable, in the
//! background, so that a roll is a rename instead of file creation on the append path, and the
//! writer's first stores to the new segment do not run the file system's page-fault handler
//! (which updates the file's mtime in a journal transaction and can wait for a commit).
//! RocketMQ prepares its next mapped file ahead for the same reason. (Writing the spare with
//! zeros as well, as RocketMQ's warm-up does, was measured here and made appends slower.)

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::fsutil;

/// Whether a file name is a spare's; such files found on open are leftovers of a crash.
pub(crate) fn is_spare_name(name: &str) -> bool {
    name.starts_with("spare-") && name.ends_with(".seg.tmp")
}

/// A reserved, mapped file waiting to become the next segment of a queue.
#[derive(Debug)]
pub(crate) struct Spare {
    pub(crate) path: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) file: File,
    pub(crate) map: MmapRaw,
    pub(crate) capacity: u64,
    /// Bytes from the start already faulted in writable.
    pub(crate) prefaulted: u64,
}

impl Spare {
    /// Makes a spare of `capacity` bytes in `dir` with its first `prefault` bytes faulted in.
    /// Prefaulting takes milliseconds: on the append path, pass 0.
    pub(crate) fn prepare(dir: &Path, capacity: u64, prefault: u64) -> Result<Spare> {
        let mut path = PathBuf::new();
        Self::prepare_at(dir, capacity, prefault, &mut path).inspect_err(|_| {
            // Whatever was made is useless; a retry makes a new file.
            if !path.as_os_str().is_empty() {
                let _ = std::fs::remove_file(&path);
            }
        })
    }

    fn prepare_at(dir: &Path, capacity: u64, prefault: u64, made: &mut PathBuf) -> Result<Spare> {
        // Unique names: a spare being prepared never clobbers another one's file.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("spare-{}-{n}.seg.tmp", std::process::id()));
        let io = |op, e| Error::io(op, &path, e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io("create spare segment", e))?;
        made.clone_from(&path);
        fsutil::allocate(&file, &path, capacity)?;
        let len =
            usize::try_from(capacity).map_err(|_| Error::Internal("segment too large".into()))?;
        let map = MmapOptions::new()
            .len(len)
            .map_raw(&file)
            .map_err(|e| io("map spare segment", e))?;
        // The writer starts at the front: fault that in now, not after the roll; in steps, as
        // `Segment::prefault_ahead` does.
        let window = capacity.min(prefault) / 4096 * 4096;
        let mut prefaulted = 0;
        while prefaulted < window {
            let step = (window - prefaulted).min(1 << 20);
            if map
                .advise_range(
                    memmap2::Advice::PopulateWrite,
                    prefaulted as usize,
                    step as usize,
                )
                .is_err()
            {
                break;
            }
            prefaulted += step;
        }
        Ok(Spare {
            path,
            dir: dir.to_path_buf(),
            file,
            map,
            capacity,
            prefaulted,
        })
    }

    /// Deletes the spare's file.
    pub(crate) fn discard(self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), "cannot remove spare segment: {e}");
        }
    }
}
