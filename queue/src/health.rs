//! Sticky failure: once an fsync or background step has failed, what was appended since may not
//! be durable, so the store (or queue) refuses appends until it is reopened.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

#[derive(Debug, Default)]
pub(crate) struct Health {
    failed: AtomicBool,
    why: Mutex<Option<String>>,
}

impl Health {
    /// Records the first failure; later ones keep it.
    pub(crate) fn fail(&self, e: &Error) {
        if let Ok(mut why) = self.why.lock() {
            why.get_or_insert_with(|| e.to_string());
        }
        self.failed.store(true, Ordering::Release);
    }

    /// An error if a failure was recorded.
    pub(crate) fn check(&self) -> Result<()> {
        if self.failed.load(Ordering::Acquire) {
            let why = self.why.lock()?.clone().unwrap_or_default();
            return Err(Error::BackgroundFailed(why));
        }
        Ok(())
    }
}
