//! Synchronisation helpers: the one lock policy of the crate, and `Signal`, which
//! wakes threads waiting for the store to move (an event written, made durable or
//! visible) at the cost of one fence and one load per change while nobody waits.
//!
//! Lock policy: a lock whose holder panicked is used as it is. Every guarded value
//! here is kept consistent between statements (no holder leaves it half-updated
//! across a call that can panic), and a store that refused all work after one
//! panicking projection or gate in another thread would be worse than useless.

use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

/// Locks `m` (see the lock policy above).
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Read-locks `l` (see the lock policy above).
pub(crate) fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// Write-locks `l` (see the lock policy above).
pub(crate) fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Default)]
pub(crate) struct Signal {
    waiters: AtomicUsize,
    /// Bumped under the lock by every notification a waiter could miss otherwise.
    generation: Mutex<u64>,
    changed: Condvar,
}

impl Signal {
    /// Wakes every waiter. Call after the change is published (for example after the
    /// index lock that made events visible was released).
    pub(crate) fn notify(&self) {
        // Pairs with the waiter's SeqCst increment: either the waiter sees the change
        // in its check, or this load sees the waiter and takes the lock to wake it.
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) == 0 {
            return;
        }
        *self.generation.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.changed.notify_all();
    }

    /// Blocks until `ready()` holds or `deadline` passes (`None`: no deadline). Returns
    /// whether it holds. `ready` is checked under the signal's lock, before each wait.
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let mut generation = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        let result = loop {
            if ready() {
                break true;
            }
            match deadline {
                None => {
                    generation = self
                        .changed
                        .wait(generation)
                        .unwrap_or_else(|p| p.into_inner());
                }
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break false;
                    }
                    generation = self
                        .changed
                        .wait_timeout(generation, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        };
        drop(generation);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_waiter_sees_every_change_and_times_out_otherwise() {
        let signal = Arc::new(Signal::default());
        let value = Arc::new(AtomicU64::new(0));
        let waiter = {
            let (signal, value) = (Arc::clone(&signal), Arc::clone(&value));
            std::thread::spawn(move || {
                (1..=200).all(|want| {
                    signal.wait_until(Some(Instant::now() + Duration::from_secs(10)), || {
                        value.load(Ordering::SeqCst) >= want
                    })
                })
            })
        };
        for _ in 0..200 {
            value.fetch_add(1, Ordering::SeqCst);
            signal.notify();
        }
        assert!(waiter.join().unwrap_or(false), "a notification was lost");
        let started = Instant::now();
        assert!(!signal.wait_until(Some(started + Duration::from_millis(30)), || false));
        assert!(started.elapsed() >= Duration::from_millis(30));
    }
}
