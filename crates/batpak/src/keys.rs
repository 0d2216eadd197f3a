//! The idempotency keys a store remembers: digest to sequence, bounded by an
//! `IdempotencyWindow`. Pure data. The writer holds one; verification builds
//! another from the records and compares.

use std::collections::VecDeque;

use crate::maps::FastMap;

use crate::options::IdempotencyWindow;

/// Remembered keys, oldest first, with the map for lookups. Every key in `order` is
/// in `map` with the same sequence, and the other way round.
#[derive(Debug, Default)]
pub(crate) struct Keys {
    window: IdempotencyWindow,
    map: FastMap<[u8; 16], u64>,
    /// (sequence, event id millisecond, digest), in sequence order.
    order: VecDeque<(u64, u64, [u8; 16])>,
}

impl Keys {
    pub(crate) fn new(window: IdempotencyWindow) -> Self {
        Keys {
            window,
            ..Keys::default()
        }
    }

    /// The sequence of the event recorded with this key, while it is remembered.
    pub(crate) fn get(&self, key: &[u8; 16]) -> Option<u64> {
        self.map.get(key).copied()
    }

    pub(crate) fn contains(&self, key: &[u8; 16]) -> bool {
        self.map.contains_key(key)
    }

    pub(crate) fn window(&self) -> IdempotencyWindow {
        self.window
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Records `key` for the event at `sequence` (whose id carries millisecond `ms`),
    /// then forgets what falls out of the window. Keys arrive in sequence order.
    pub(crate) fn insert(&mut self, key: [u8; 16], sequence: u64, ms: u64) {
        if let Some(old) = self.map.insert(key, sequence) {
            // A key still held is recorded again only by a preserved import of a
            // store that forgot and reused it: its older place goes.
            self.order.retain(|&(s, _, _)| s != old);
        }
        self.order.push_back((sequence, ms, key));
        let oldest_kept = self
            .window
            .age
            .map(|age| ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)));
        while let Some(&(seq, at, digest)) = self.order.front() {
            let over = self.order.len() > self.window.keys;
            let old = oldest_kept.is_some_and(|kept| at < kept);
            if !(over || old) {
                break;
            }
            self.order.pop_front();
            if self.map.get(&digest) == Some(&seq) {
                self.map.remove(&digest);
            }
        }
    }

    /// Builds the window from `(key, sequence)` pairs in any order, with each
    /// event's millisecond from `ms_of`: what a checkpoint or a scan recorded.
    pub(crate) fn from_pairs(
        window: IdempotencyWindow,
        pairs: impl IntoIterator<Item = ([u8; 16], u64)>,
        ms_of: impl Fn(u64) -> u64,
    ) -> Self {
        let mut sorted: Vec<([u8; 16], u64)> = pairs.into_iter().collect();
        sorted.sort_unstable_by_key(|&(_, seq)| seq);
        let mut keys = Keys::new(window);
        for (key, seq) in sorted {
            keys.insert(key, seq, ms_of(seq));
        }
        keys
    }

    /// Forgets the keys of events that are gone (compaction removed them).
    pub(crate) fn forget_sequences(&mut self, gone: &std::collections::HashSet<u64>) {
        self.map.retain(|_, seq| !gone.contains(seq));
        self.order.retain(|(seq, _, _)| !gone.contains(seq));
    }

    /// Every remembered key with its sequence, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = ([u8; 16], u64)> + '_ {
        self.order.iter().map(|&(seq, _, key)| (key, seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(n: u8) -> [u8; 16] {
        [n; 16]
    }

    #[test]
    fn the_newest_keys_are_kept_by_count_and_by_age() {
        let mut keys = Keys::new(IdempotencyWindow::keys(3));
        for n in 1..=5u8 {
            keys.insert(key(n), u64::from(n), 0);
        }
        assert_eq!(keys.len(), 3);
        assert_eq!(keys.get(&key(2)), None);
        assert_eq!(keys.get(&key(3)), Some(3));
        let mut aged = Keys::new(IdempotencyWindow::keys(100).max_age(Duration::from_millis(10)));
        aged.insert(key(1), 1, 1_000);
        aged.insert(key(2), 2, 1_005);
        aged.insert(key(3), 3, 1_011);
        assert_eq!(aged.get(&key(1)), None, "11 ms older than the newest");
        assert_eq!(aged.get(&key(2)), Some(2), "6 ms older");
        // A forgotten key recorded again is remembered with its new sequence.
        keys.insert(key(1), 9, 0);
        assert_eq!(keys.get(&key(1)), Some(9));
        assert_eq!(keys.iter().map(|(_, s)| s).collect::<Vec<_>>(), [4, 5, 9]);
    }

    #[test]
    fn a_window_built_from_pairs_is_the_one_built_in_order() {
        let window = IdempotencyWindow::keys(4).max_age(Duration::from_millis(50));
        let mut live = Keys::new(window);
        let events: Vec<([u8; 16], u64, u64)> = (1..=20u8)
            .map(|n| (key(n), u64::from(n) * 3, u64::from(n) * 7))
            .collect();
        for &(k, seq, ms) in &events {
            live.insert(k, seq, ms);
        }
        let ms_of = |seq: u64| seq / 3 * 7;
        let rebuilt = Keys::from_pairs(window, events.iter().rev().map(|&(k, s, _)| (k, s)), ms_of);
        assert_eq!(
            live.iter().collect::<Vec<_>>(),
            rebuilt.iter().collect::<Vec<_>>()
        );
    }
}
