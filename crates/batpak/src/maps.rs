//! Hash maps for the hot paths: keyed by entity names, scopes, ids and idempotency
//! digests. std's SipHash costs more than the lookups it guards there; foldhash is
//! several times cheaper and still seeded per process at random, so names an
//! attacker chooses cannot be precomputed to collide.

use std::collections::{HashMap, HashSet};

/// The hasher builder of [`FastMap`] and [`FastSet`]: random per process.
pub(crate) type FastState = foldhash::fast::RandomState;

/// A `HashMap` with the fast keyed hasher.
pub(crate) type FastMap<K, V> = HashMap<K, V, FastState>;

/// A `HashSet` with the fast keyed hasher.
pub(crate) type FastSet<K> = HashSet<K, FastState>;
