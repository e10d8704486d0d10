//! A queue's durability and background work: group commit, sealing, `interval` fsyncs,
//! spare segments and prefaulting, and the sticky failure state after a failed fsync.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::open::dir_for;
use super::{PREFAULT_WINDOW, Queue};
use crate::config::Durability;
use crate::error::{Error, Result};
use crate::segment::Segment;
use crate::spare::Spare;

impl Queue {
    /// Faults in the pages the writer is about to fill (background work, off the append path).
    pub(crate) fn prefault(&self) -> Result<()> {
        let active = self.segments.read()?.last().cloned();
        match active {
            Some(active) => active.prefault_ahead(PREFAULT_WINDOW),
            None => Ok(()),
        }
    }

    /// Prepares the next segment once the active one is half full, so the roll finds it ready
    /// (see [`crate::spare`]). Slow: background work.
    pub(crate) fn prepare_spare(&self) -> Result<()> {
        let _one = self.maintain_lock.lock()?;
        // Not from the writer's lock: a background thread preempted while holding it would stall
        // appends.
        let Some(active) = self.segments.read()?.last().cloned() else {
            return Ok(());
        };
        let dir = dir_for(&self.placements.lock()?, active.written().1);
        if self.spare.lock()?.is_some() {
            return Ok(());
        }
        if active.written().0.saturating_mul(2) < active.capacity() {
            return Ok(());
        }
        let spare = Spare::prepare(&dir, self.settings.segment_bytes, PREFAULT_WINDOW)?;
        let mut slot = self.spare.lock()?;
        if slot.is_none() {
            *slot = Some(spare);
        } else {
            spare.discard();
        }
        Ok(())
    }

    /// Stops background work on this queue (sealing, spares) while the guard lives.
    pub(crate) fn lock_maintenance(&self) -> Result<std::sync::MutexGuard<'_, ()>> {
        Ok(self.maintain_lock.lock()?)
    }

    /// Deletes the spare segment, if any (when the store closes).
    pub(crate) fn discard_spare(&self) -> Result<()> {
        if let Some(s) = self.spare.lock()?.take() {
            s.discard();
        }
        Ok(())
    }

    /// Makes everything appended up to `target` durable, sharing one fsync among the appenders
    /// that wait at the same time (group commit). Under `always`, it also publishes.
    pub(crate) fn sync_until(&self, target: u64) -> Result<()> {
        if self.durable_end.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        // One leader syncs everything written so far while the others wait on the condvar;
        // whoever is still short afterwards leads the next round. Followers do not queue on a
        // lock, so one round covers every append that came before it.
        let mut leading = self.sync_state.lock()?;
        loop {
            self.check_healthy()?;
            if self.durable_end.load(Ordering::Acquire) >= target {
                return Ok(());
            }
            if !*leading {
                break;
            }
            leading = self.sync_done.wait(leading)?;
        }
        *leading = true;
        drop(leading);
        let synced = self.sync_written();
        if let Err(e) = &synced {
            // After a failed fsync the kernel may drop the dirty pages and report success
            // next time: nothing appended so far can be called durable again.
            self.fail(e);
        }
        *self.sync_state.lock()? = false;
        self.sync_done.notify_all();
        synced?;
        if self.durable_end.load(Ordering::Acquire) < target {
            return Err(Error::Internal(format!(
                "sync of {}/{} made no progress towards offset {target}",
                self.settings.topic, self.settings.id
            )));
        }
        Ok(())
    }

    pub(super) fn fail(&self, e: &Error) {
        self.health.fail(e);
    }

    pub(super) fn check_healthy(&self) -> Result<()> {
        self.health.check()
    }

    /// fsyncs every segment with unsynced bytes, oldest first, and publishes what is durable.
    fn sync_written(&self) -> Result<()> {
        // One snapshot of the list: a roll between two looks could hide a sealed segment whose
        // tail is not yet on disk. Segments are synced in order, so the unsynced ones (and the
        // active one) are a suffix.
        let segs: Vec<Arc<Segment>> = {
            let all = self.segments.read()?;
            let keep = all
                .iter()
                .rev()
                .take_while(|s| !(s.is_sealed() && s.is_synced()))
                .count()
                .max(1);
            all[all.len().saturating_sub(keep)..].to_vec()
        };
        for seg in &segs {
            let (len, end) = seg.written();
            seg.sync_to(len)?;
            seg.publish(len, end);
            self.published_end.fetch_max(end, Ordering::AcqRel);
            self.durable_end.fetch_max(end, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Background work: finish sealed segments, and fsync per the `interval` policy.
    pub(crate) fn maintain(&self, now_ms: u64, closing: bool) -> Result<()> {
        self.finish_seals()?;
        self.flush(now_ms, closing)
    }

    /// Runs background work unless the queue failed; a failure marks it failed.
    fn guarded(&self, work: impl FnOnce() -> Result<()>) -> Result<()> {
        self.check_healthy()?;
        work().inspect_err(|e| self.fail(e))
    }

    /// Finishes sealed segments: fsync, watermark, index file, truncation. Slow.
    pub(crate) fn finish_seals(&self) -> Result<()> {
        self.guarded(|| self.finish_seals_inner())
    }

    fn finish_seals_inner(&self) -> Result<()> {
        let _one = self.maintain_lock.lock()?;
        let pending: Vec<Arc<Segment>> = self.pending.lock()?.clone();
        for seg in &pending {
            seg.finish_seal()?;
            let (_, end) = seg.written();
            self.published_end.fetch_max(end, Ordering::AcqRel);
        }
        if !pending.is_empty() {
            self.pending
                .lock()?
                .retain(|s| !pending.iter().any(|p| Arc::ptr_eq(p, s)));
        }
        Ok(())
    }

    /// fsyncs what the `interval` policy says is due (everything, when closing).
    pub(crate) fn flush(&self, now_ms: u64, closing: bool) -> Result<()> {
        self.guarded(|| self.flush_inner(now_ms, closing))
    }

    fn flush_inner(&self, now_ms: u64, closing: bool) -> Result<()> {
        let due = match self.settings.durability {
            Durability::Interval(ms) => {
                closing || now_ms.saturating_sub(self.last_sync_ms.load(Ordering::Relaxed)) >= ms
            }
            Durability::Always => false,
            Durability::Os => closing,
        };
        let written = self.written_end.load(Ordering::Acquire);
        if due && self.durable_end.load(Ordering::Acquire) < written {
            self.sync_until(written)?;
            self.last_sync_ms.store(now_ms, Ordering::Relaxed);
        }
        if closing {
            // A clean close leaves a watermark covering everything, for the next recovery.
            let active = self.segments.read()?.last().cloned();
            if let Some(active) = active {
                active.sync_watermark()?;
            }
        }
        Ok(())
    }
}
