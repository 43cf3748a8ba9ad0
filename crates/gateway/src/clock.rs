//! The gateway's one source of time. Tests inject a [`ManualClock`] so that
//! expiries, windows and cycles are checked without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tollgate_core::time::UnixMillis;

/// Reads wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> UnixMillis;

    /// Now in nanoseconds since the epoch, for token buckets.
    fn now_nanos(&self) -> u64 {
        u64::try_from(self.now().0)
            .unwrap_or(0)
            .saturating_mul(1_000_000)
    }
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        UnixMillis(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }

    fn now_nanos(&self) -> u64 {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that only moves when told to. Cloning shares the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// Starts at `start`.
    pub fn new(start: UnixMillis) -> Self {
        ManualClock(Arc::new(AtomicI64::new(start.0)))
    }

    /// Jumps to `to`.
    pub fn set(&self, to: UnixMillis) {
        self.0.store(to.0, Ordering::SeqCst);
    }

    /// Moves forward by `millis`.
    pub fn advance_millis(&self, millis: i64) {
        self.0.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.0.load(Ordering::SeqCst))
    }
}
