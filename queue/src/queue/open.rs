//! Opening a queue: finding its segments in each placement's directory, recovering the newest,
//! and setting aside what a crash left unusable.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, RwLock};

use super::{PREFAULT_WINDOW, Placement, Queue, QueueSettings, Writer};
use crate::error::{Error, Result};
use crate::health::Health;
use crate::segment::{self, Opened, SEGMENT_HEADER_LEN, Segment};
use crate::spare::{Spare, is_spare_name};

/// The queue's segment files, oldest first: those in each placement's directory whose base
/// offset falls in that placement's range. Files outside every range are left alone, with a
/// warning.
pub(crate) fn discover(placements: &[Placement]) -> Result<Vec<(PathBuf, u64)>> {
    let owner = |base: u64| placements.iter().rposition(|p| p.from <= base);
    let mut dirs: Vec<&Path> = placements.iter().map(|p| p.dir.as_path()).collect();
    dirs.sort();
    dirs.dedup();
    let mut found = Vec::new();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("list", dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", dir, e))?;
            let name = entry.file_name();
            if name.to_str().is_some_and(is_spare_name) {
                // A spare made before a crash or close: not part of the queue.
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            let Some(base) = name.to_str().and_then(segment::parse_file_name) else {
                continue;
            };
            match owner(base) {
                Some(i) if placements[i].dir == dir => found.push((entry.path(), base)),
                _ => tracing::warn!(
                    path = %entry.path().display(),
                    "ignoring a segment outside the queue's offset ranges"
                ),
            }
        }
    }
    found.sort_by_key(|(_, base)| *base);
    Ok(found)
}

/// The directory of the placement whose range holds `offset`.
pub(super) fn dir_for(placements: &[Placement], offset: u64) -> PathBuf {
    placements
        .iter()
        .rev()
        .find(|p| p.from <= offset)
        .or(placements.first())
        .map(|p| p.dir.clone())
        .unwrap_or_default()
}

/// Renames segment files that cannot be part of the queue to `*.damaged`, so that nothing is
/// deleted that someone may want to inspect, and says so.
fn quarantine(paths: impl Iterator<Item = PathBuf>) -> Result<()> {
    let mut dirs = Vec::new();
    for path in paths {
        let aside = path.with_extension("seg.damaged");
        match std::fs::remove_file(path.with_extension("idx")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove index of", &path, e)),
        }
        std::fs::rename(&path, &aside).map_err(|e| Error::io("set aside segment", &path, e))?;
        tracing::error!(
            path = %path.display(),
            moved_to = %aside.display(),
            "segment written after a torn one is set aside; its records were never durable"
        );
        if let Some(dir) = path.parent() {
            dirs.push(dir.to_path_buf());
        }
    }
    // Durable before anything is appended in their place.
    dirs.dedup();
    for dir in dirs {
        crate::fsutil::sync_dir(&dir)?;
    }
    Ok(())
}

impl Queue {
    /// Opens (or, with no segment yet, creates) the queue whose data the placements describe.
    pub(crate) fn open(settings: QueueSettings, placements: &[Placement]) -> Result<Queue> {
        if placements.is_empty() {
            return Err(Error::Internal(format!(
                "queue {} has no placement",
                settings.id
            )));
        }
        let found = discover(placements)?;
        let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(found.len().max(1));
        let mut found = found.into_iter().peekable();
        while let Some((path, base)) = found.next() {
            if let Some(prev) = segments.last()
                && prev.published_end() != base
            {
                return Err(Error::corrupt(
                    &path,
                    0,
                    format!(
                        "segment starts at offset {base} but the one before it ({}) ends at {}",
                        prev.path.display(),
                        prev.published_end()
                    ),
                ));
            }
            if found.peek().is_none() {
                segments.push(Segment::open_active(path, base, settings.segment_bytes)?);
                break;
            }
            match Segment::open_sealed(path.clone(), base)? {
                Opened::Sealed(seg) => segments.push(seg),
                Opened::TornTail => {
                    // Sealed, but the machine stopped before its fsync finished. Nothing written
                    // after it was acknowledged under `always` (acknowledgements wait for every
                    // older segment to be durable), so what follows is set aside, not used.
                    // Unless a later segment says some of it was durable: then an fsync did
                    // cover this one, and its damage is corruption, not a torn tail.
                    let later: Vec<PathBuf> = found.by_ref().map(|(p, _)| p).collect();
                    if let Some(durable) = later
                        .iter()
                        .find(|p| segment::watermark_of(p).is_some_and(|w| w > SEGMENT_HEADER_LEN))
                    {
                        return Err(Error::corrupt(
                            &path,
                            0,
                            format!(
                                "the segment's tail is damaged, but {} after it holds durable records",
                                durable.display()
                            ),
                        ));
                    }
                    quarantine(later.into_iter())?;
                    segments.push(Segment::open_active(path, base, settings.segment_bytes)?);
                    break;
                }
            }
        }
        // The next offset belongs to the placement whose range holds it; after a crash that
        // lost the tail of an older placement's segment, that is the older one, and appends
        // continue there until they reach the newer placement's range.
        let next = segments
            .last()
            .map_or(placements[0].from, |s| s.published_end());
        let owner = dir_for(placements, next);
        let active = match segments.last() {
            Some(s) if s.path.parent() == Some(owner.as_path()) => Arc::clone(s),
            other => {
                // No segment yet, or none in the owning placement: start one there.
                crate::fsutil::create_dir_durable(&owner)?;
                if let Some(prev) = other {
                    prev.seal();
                    prev.finish_seal()?;
                }
                let spare = Spare::prepare(&owner, settings.segment_bytes, PREFAULT_WINDOW)?;
                let s = Segment::from_spare(spare, next, false)?;
                s.sync_to(SEGMENT_HEADER_LEN)?;
                segments.push(Arc::clone(&s));
                s
            }
        };
        let (pos, end) = active.written();
        Ok(Queue {
            settings,
            segments: RwLock::new(segments),
            writer: Mutex::new(Writer {
                active,
                pos,
                next_offset: end,
                timestamps: Vec::new(),
            }),
            pending: Mutex::new(Vec::new()),
            spare: Mutex::new(None),
            placements: Mutex::new(placements.to_vec()),
            sync_state: Mutex::new(false),
            sync_done: Condvar::new(),
            maintain_lock: Mutex::new(()),
            published_end: AtomicU64::new(end),
            written_end: AtomicU64::new(end),
            durable_end: AtomicU64::new(end),
            last_sync_ms: AtomicU64::new(0),
            health: Health::default(),
        })
    }
}
