//! The store's two background threads: a fast one (`interval` fsyncs, prefaulting ahead of
//! writers) and a slow one (finishing sealed segments, preparing spares, retention).

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Inner;
use crate::config::StoreOptions;
use crate::error::{Error, Result};
use crate::queue::now_ms;

/// What the background thread shares with its owner: a stop flag and a way to wake it.
#[derive(Debug, Default)]
struct Signal {
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Signal {
    /// Waits up to `tick`; true when the threads should stop.
    fn wait(&self, tick: Duration) -> bool {
        let Ok(stop) = self.stop.lock() else {
            return true;
        };
        if *stop {
            return true;
        }
        match self.wake.wait_timeout(stop, tick) {
            Ok((stop, _)) => *stop,
            Err(_) => true,
        }
    }
}

/// Owns the background threads. They hold only the signal and a weak reference to the store,
/// so this is always dropped by a user's thread, which can join them.
#[derive(Debug)]
pub(super) struct Background {
    signal: Arc<Signal>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    inner: Weak<Inner>,
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(mut stop) = self.signal.stop.lock() {
            *stop = true;
        }
        self.signal.wake.notify_all();
        let threads = self.threads.lock().map(|mut t| std::mem::take(&mut *t));
        for handle in threads.unwrap_or_default() {
            let _ = handle.join();
        }
        if let Some(inner) = self.inner.upgrade() {
            if let Err(e) = inner.maintain(true) {
                tracing::error!("closing the store: {e}");
            }
            for (_, q) in inner.all_queues() {
                if let Err(e) = q.discard_spare() {
                    tracing::error!("closing the store: {e}");
                }
            }
        }
    }
}

impl Background {
    /// Starts both threads for `inner`.
    pub(super) fn start(inner: &Arc<Inner>, options: &StoreOptions) -> Result<Arc<Background>> {
        let background = Arc::new(Background {
            signal: Arc::new(Signal::default()),
            threads: Mutex::new(Vec::new()),
            inner: Arc::downgrade(inner),
        });
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| Error::io("start background thread for", &inner.data_dir, e))
        };
        let (signal, weak) = (Arc::clone(&background.signal), Arc::downgrade(inner));
        let tick = options.flush_tick;
        let flush = spawn(
            "rstreams-queue-flush",
            Box::new(move || flush_loop(signal, weak, tick)),
        )?;
        background.threads.lock()?.push(flush);
        let (signal, weak) = (Arc::clone(&background.signal), Arc::downgrade(inner));
        let retention = options.retention_check;
        let slow = spawn(
            "rstreams-queue-seal",
            Box::new(move || slow_loop(signal, weak, tick * 4, retention)),
        )?;
        background.threads.lock()?.push(slow);
        Ok(background)
    }
}

/// The fast background thread: `interval` fsyncs, and faulting in pages ahead of writers.
fn flush_loop(signal: Arc<Signal>, store: Weak<Inner>, tick: Duration) {
    let mut warned = Warned::default();
    while !signal.wait(tick) {
        let Some(inner) = store.upgrade() else {
            return;
        };
        let now = u64::try_from(now_ms()).unwrap_or(0);
        for (topic, q) in inner.all_queues() {
            match q.flush(now, false) {
                Err(e) if !topic.is_deleted() => inner.fail(&e),
                _ => {}
            }
            if let Err(e) = q.prefault() {
                warned.warn("cannot fault in pages ahead of a writer", &e);
            }
        }
    }
}

/// The slow background thread: finishing sealed segments, preparing spare segments, retention.
/// A spare that cannot be made is only a warning: the roll then creates its segment itself.
fn slow_loop(signal: Arc<Signal>, store: Weak<Inner>, tick: Duration, retention_every: Duration) {
    let mut last_retention = Instant::now();
    let mut warned = Warned::default();
    while !signal.wait(tick) {
        let Some(inner) = store.upgrade() else {
            return;
        };
        for (topic, q) in inner.all_queues() {
            if topic.is_deleted() {
                continue;
            }
            match q.finish_seals() {
                Err(e) if !topic.is_deleted() => inner.fail(&e),
                _ => {}
            }
            if let Err(e) = q.prepare_spare() {
                warned.warn("cannot prepare a spare segment", &e);
            }
        }
        if last_retention.elapsed() >= retention_every {
            last_retention = Instant::now();
            if let Err(e) = inner.enforce_retention() {
                inner.fail(&e);
            }
        }
    }
}

/// Rate-limits a background warning to one a minute.
#[derive(Default)]
struct Warned(Option<Instant>);

impl Warned {
    fn warn(&mut self, what: &str, e: &Error) {
        if self
            .0
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            tracing::warn!("{what}: {e}");
            self.0 = Some(Instant::now());
        }
    }
}
