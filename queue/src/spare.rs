//! Spare segments, prepared before a queue needs them.
//!
//! A spare is reserved (`fallocate`), mapped and, for `os` and `interval` topics, written with
//! zeros in the background, so a roll is a rename instead of file creation on the append path.
//! Zeroing puts the pages in the page cache ahead of the writer, and the kernel converts the
//! reserved extents while writing them back, off the append path: on ext4 here that took the
//! open-loop p99 at 500K appends/s from milliseconds to about 0.2 ms. (fsyncing the zeros as well
//! made it worse, and `always` topics skip zeroing: see `queue::zeroed`.) RocketMQ warms its
//! mapped files for the same reason.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::queue::PREFAULT_WINDOW;

/// Whether a file name is a spare's; such files found on open are leftovers of a crash.
pub(crate) fn is_spare_name(name: &str) -> bool {
    name.starts_with("spare-") && name.ends_with(".seg.tmp")
}

/// A zeroed, mapped file waiting to become the next segment of a queue.
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
    /// Makes a spare of `capacity` bytes in `dir`, written with zeros if `zeroed`. Slow when
    /// zeroed (it writes the whole file): call it off the append path.
    pub(crate) fn prepare(dir: &Path, capacity: u64, zeroed: bool) -> Result<Spare> {
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
        fsutil::allocate(&file, &path, capacity)?;
        let zeros = vec![0u8; if zeroed { 1 << 20 } else { 0 }];
        let mut at = if zeroed { 0 } else { capacity };
        while at < capacity {
            let n = (capacity - at).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], at)
                .map_err(|e| io("zero spare segment", e))?;
            at += n as u64;
            // Spread out: a burst of zeroing competes with the writers for memory bandwidth.
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        let len =
            usize::try_from(capacity).map_err(|_| Error::Internal("segment too large".into()))?;
        let map = MmapOptions::new()
            .len(len)
            .map_raw(&file)
            .map_err(|e| io("map spare segment", e))?;
        // The writer starts at the front: fault that in now, not after the roll.
        let prefaulted = capacity.min(PREFAULT_WINDOW) / 4096 * 4096;
        let prefaulted =
            match map.advise_range(memmap2::Advice::PopulateWrite, 0, prefaulted as usize) {
                Ok(()) => prefaulted,
                Err(_) => 0,
            };
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
