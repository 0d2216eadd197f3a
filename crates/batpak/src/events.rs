//! `Store::events`: a region's events as an iterator that reads a page at a time, so
//! a caller walks any number of events in constant memory.

use std::collections::VecDeque;

use crate::error::Result;
use crate::event::StoredEvent;
use crate::query::Region;
use crate::store::Store;

/// Events read per page.
const PAGE: usize = 1024;

/// A region's events, oldest or newest first, read from the store a page at a time.
/// See [`Store::events`]. Each item is a `Result`: a damaged record ends the walk with
/// its error (naming file and offset) after the events before it.
#[derive(Debug)]
pub struct Events<'s> {
    store: &'s Store,
    region: Region,
    /// The region with its time range turned into sequences, once the first page is read.
    resolved: Option<Region>,
    /// Oldest first: the last sequence read. Newest first: the last one read, or
    /// `u64::MAX` before the first page.
    position: u64,
    reverse: bool,
    page: VecDeque<StoredEvent>,
    done: bool,
}

impl Store {
    /// The events of `region` after sequence `after`, oldest first, read a page
    /// (1,024 events) at a time: memory stays bounded by one page however many events
    /// the region holds. The iterator goes on to the newest event visible when each
    /// page is read.
    pub fn events(&self, region: &Region, after: u64) -> Events<'_> {
        Events::new(self, region, after, false)
    }

    /// The events of `region` before sequence `before` (`u64::MAX`: from the newest),
    /// newest first, a page at a time.
    pub fn events_reverse(&self, region: &Region, before: u64) -> Events<'_> {
        Events::new(self, region, before, true)
    }
}

impl<'s> Events<'s> {
    fn new(store: &'s Store, region: &Region, position: u64, reverse: bool) -> Self {
        Events {
            store,
            region: region.clone(),
            resolved: None,
            position,
            reverse,
            page: VecDeque::new(),
            done: false,
        }
    }

    fn fill(&mut self) -> Result<()> {
        let region = match &self.resolved {
            Some(r) => r,
            None => {
                let resolved = self.store.resolve_times(&self.region)?.into_owned();
                self.resolved.insert(resolved)
            }
        };
        let page = if self.reverse {
            self.store.query_reverse(region, self.position, PAGE)?
        } else {
            self.store.query(region, self.position, PAGE)?
        };
        match page.last() {
            Some(last) => self.position = last.sequence,
            None => self.done = true,
        }
        if page.len() < PAGE {
            // A short page reached the end (oldest first: the frontier as it was read).
            self.done = true;
        }
        self.page.extend(page);
        Ok(())
    }
}

impl Iterator for Events<'_> {
    type Item = Result<StoredEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && !self.done {
            if let Err(e) = self.fill() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.page.pop_front().map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinate::Coordinate;
    use crate::event::RawPayload;
    use crate::kind::EventKind;
    use crate::options::AppendOptions;

    #[test]
    fn pages_join_into_the_whole_region_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut batch = crate::event::Batch::new();
        for i in 0..(PAGE * 2 + 7) {
            let entity = if i % 3 == 0 { "a" } else { "b" };
            let c = Coordinate::new(entity, "s").unwrap();
            let raw = RawPayload::opaque(b"x");
            batch.push_raw(&c, EventKind::custom(1, 1), raw, AppendOptions::default());
        }
        store.append_batch(&batch).unwrap();
        let region = Region::all().entity("b");
        let seqs = |events: &[StoredEvent]| events.iter().map(|e| e.sequence).collect::<Vec<_>>();
        let all = seqs(&store.query(&region, 0, usize::MAX).unwrap());
        let walked: Vec<StoredEvent> = store.events(&region, 0).map(Result::unwrap).collect();
        assert_eq!(seqs(&walked), all);
        let mut back: Vec<StoredEvent> = store
            .events_reverse(&region, u64::MAX)
            .map(Result::unwrap)
            .collect();
        back.reverse();
        assert_eq!(seqs(&back), all);
        assert_eq!(store.events(&region, all[5]).count(), all.len() - 6);
    }
}
