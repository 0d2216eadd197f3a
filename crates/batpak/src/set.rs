//! A set of stores that partitions scopes: each scope is routed, by its longest
//! matching prefix, to one store of the set (a directory under the set's root, with
//! its own writer, and its own replicators downstream). Order is total within each
//! store and there is none across stores; an event caused by an event of another
//! store names that store ([`AppendOptions::caused_by_in`]), and the set resolves
//! such causes by id.
//!
//! The routing is recorded in `ROOT/batpak-set.json` when the set is first opened
//! and must be the same at every later open: a scope whose events went to one store
//! never goes on in another.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::coordinate::Coordinate;
use crate::error::{io_err, Error, Result};
use crate::event::StoredEvent;
use crate::event::{EventPayload, RawPayload};
use crate::id::EventId;
use crate::kind::EventKind;
use crate::options::{AppendOptions, SyncPolicy, CAUSE_STORE_KEY};
use crate::receipt::AppendReceipt;
use crate::store::Store;

/// The file under a set's root recording its routing.
pub const SET_LAYOUT_FILE: &str = "batpak-set.json";

/// A scope prefix and the store its scopes go to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Scopes starting with this go to `store` (the longest matching prefix wins).
    pub prefix: String,
    /// The store's name.
    pub store: String,
}

/// How a set routes scopes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetLayout {
    /// The routes, longest prefix first.
    pub routes: Vec<Route>,
    /// Where a scope no route matches goes.
    pub default: String,
}

impl SetLayout {
    /// The names of the set's stores, sorted, each once.
    pub fn stores(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .routes
            .iter()
            .map(|r| r.store.clone())
            .chain(std::iter::once(self.default.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The store `scope` goes to.
    pub fn store_of(&self, scope: &str) -> &str {
        self.routes
            .iter()
            .find(|r| scope.starts_with(&r.prefix))
            .map_or(self.default.as_str(), |r| r.store.as_str())
    }
}

/// A store's name in a set: lower-case ASCII letters, digits and `_`, starting with a
/// letter, at most 48 bytes (so it is also a directory name and a NATS subject token
/// as it is, and a PostgreSQL schema unless it is one of SQL's reserved words, such
/// as `order` or `user`, which the PostgreSQL sink refuses).
fn check_store_name(name: &str) -> Result<()> {
    let ok = name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            reason: format!(
                "store name {name:?}: lower-case ASCII letters, digits and _, starting with a letter, at most 48 bytes"
            ),
        })
    }
}

/// Builds a [`StoreSet`].
#[derive(Debug)]
pub struct StoreSetBuilder {
    root: PathBuf,
    routes: Vec<Route>,
    default: Option<String>,
    sync_policy: Option<SyncPolicy>,
}

impl StoreSetBuilder {
    /// Routes scopes starting with `prefix` to the store `store`.
    #[must_use]
    pub fn route(mut self, prefix: impl Into<String>, store: impl Into<String>) -> Self {
        self.routes.push(Route {
            prefix: prefix.into(),
            store: store.into(),
        });
        self
    }

    /// Where scopes no route matches go (required).
    #[must_use]
    pub fn default_store(mut self, store: impl Into<String>) -> Self {
        self.default = Some(store.into());
        self
    }

    /// The sync policy of every store of the set (default: the store's default).
    #[must_use]
    pub fn sync_policy(mut self, policy: SyncPolicy) -> Self {
        self.sync_policy = Some(policy);
        self
    }

    /// Opens (creating where missing) every store of the set under the root, after
    /// checking the routing against the one recorded there.
    pub fn open(self) -> Result<StoreSet> {
        let default = self.default.ok_or_else(|| Error::InvalidConfig {
            reason: "a store set needs a default store (StoreSetBuilder::default_store)".into(),
        })?;
        let mut routes = self.routes;
        for (i, r) in routes.iter().enumerate() {
            check_store_name(&r.store)?;
            if routes[..i].iter().any(|earlier| earlier.prefix == r.prefix) {
                return Err(Error::InvalidConfig {
                    reason: format!("the scope prefix {:?} is routed twice", r.prefix),
                });
            }
        }
        check_store_name(&default)?;
        // Longest prefix first; equal lengths in name order, so the file is canonical.
        routes.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then_with(|| a.prefix.cmp(&b.prefix))
        });
        let layout = SetLayout { routes, default };
        std::fs::create_dir_all(&self.root).map_err(io_err("create directory", &self.root))?;
        let file = self.root.join(SET_LAYOUT_FILE);
        match std::fs::read(&file) {
            Ok(bytes) => {
                let recorded: SetLayout =
                    serde_json::from_slice(&bytes).map_err(|e| Error::Malformed {
                        what: "store set layout",
                        detail: format!("{}: {e}", file.display()),
                    })?;
                if recorded != layout {
                    return Err(Error::InvalidConfig {
                        reason: format!(
                            "{} routes scopes as {}, not as asked ({}): a scope's events must stay in one store",
                            file.display(),
                            describe(&recorded),
                            describe(&layout)
                        ),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_layout(&self.root, &layout)?;
            }
            Err(e) => return Err(io_err("read", &file)(e)),
        }
        let mut stores = Vec::new();
        for name in layout.stores() {
            let mut builder = Store::builder(self.root.join(&name));
            if let Some(policy) = self.sync_policy {
                builder = builder.sync_policy(policy);
            }
            stores.push((name, builder.open()?));
        }
        let index = |name: &str| stores.iter().position(|(n, _)| n == name).unwrap_or(0);
        let routes = layout
            .routes
            .iter()
            .map(|r| (r.prefix.clone(), index(&r.store)))
            .collect();
        let default = index(&layout.default);
        Ok(StoreSet {
            root: self.root,
            layout,
            stores,
            routes,
            default,
        })
    }
}

fn describe(layout: &SetLayout) -> String {
    let mut parts: Vec<String> = layout
        .routes
        .iter()
        .map(|r| format!("{:?} -> {}", r.prefix, r.store))
        .collect();
    parts.push(format!("else -> {}", layout.default));
    parts.join(", ")
}

/// Writes the layout file whole: a temporary file, synced, renamed, the root synced.
fn write_layout(root: &Path, layout: &SetLayout) -> Result<()> {
    use std::io::Write as _;
    let file = root.join(SET_LAYOUT_FILE);
    let tmp = root.join(format!("{SET_LAYOUT_FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(layout).map_err(|e| Error::Malformed {
        what: "store set layout",
        detail: e.to_string(),
    })?;
    let mut f = std::fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_all(&bytes).map_err(io_err("write", &tmp))?;
    f.sync_all().map_err(io_err("sync", &tmp))?;
    std::fs::rename(&tmp, &file).map_err(io_err("rename", &file))?;
    std::fs::File::open(root)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync directory", root))
}

/// A receipt from a set: the store that took the event, and its receipt there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetReceipt {
    /// The store's name.
    pub store: String,
    /// The store's receipt.
    pub receipt: AppendReceipt,
}

impl SetReceipt {
    /// Options naming this event as the cause, from whichever store the effect goes to.
    pub fn as_cause(&self) -> AppendOptions {
        AppendOptions::default().caused_by_in(self.store.clone(), self.receipt.event_id)
    }
}

/// Several stores, scopes partitioned among them. See the module documentation.
#[derive(Debug)]
pub struct StoreSet {
    root: PathBuf,
    layout: SetLayout,
    /// By name, sorted.
    stores: Vec<(String, Store)>,
    /// Each route's prefix and store (an index into `stores`), longest first.
    routes: Vec<(String, usize)>,
    /// The default store's index.
    default: usize,
}

impl StoreSet {
    /// A builder of the set under `root`.
    pub fn builder(root: impl AsRef<Path>) -> StoreSetBuilder {
        StoreSetBuilder {
            root: root.as_ref().to_path_buf(),
            routes: Vec::new(),
            default: None,
            sync_policy: None,
        }
    }

    /// The set's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How it routes scopes.
    pub fn layout(&self) -> &SetLayout {
        &self.layout
    }

    /// The store named `name`.
    pub fn store(&self, name: &str) -> Option<&Store> {
        self.stores
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| &self.stores[i].1)
    }

    /// Every store, by name.
    pub fn stores(&self) -> impl Iterator<Item = (&str, &Store)> {
        self.stores.iter().map(|(n, s)| (n.as_str(), s))
    }

    /// The store `scope` goes to, and its name.
    pub fn store_for(&self, scope: &str) -> (&str, &Store) {
        let i = self
            .routes
            .iter()
            .find(|(prefix, _)| scope.starts_with(prefix.as_str()))
            .map_or(self.default, |(_, i)| *i);
        let (name, store) = &self.stores[i];
        (name, store)
    }

    /// Appends a typed payload to the store its scope goes to.
    pub fn append_with<P: EventPayload>(
        &self,
        coord: &Coordinate,
        payload: &P,
        options: AppendOptions,
    ) -> Result<SetReceipt> {
        let (name, store) = self.store_for(coord.scope());
        let receipt = store.append_with(coord, payload, self.local(name, options))?;
        Ok(SetReceipt {
            store: name.to_string(),
            receipt,
        })
    }

    /// Appends encoded bytes to the store its scope goes to.
    pub fn append_raw(
        &self,
        coord: &Coordinate,
        kind: EventKind,
        payload: RawPayload<'_>,
        options: AppendOptions,
    ) -> Result<SetReceipt> {
        let (name, store) = self.store_for(coord.scope());
        let receipt = store.append_raw(coord, kind, payload, self.local(name, options))?;
        Ok(SetReceipt {
            store: name.to_string(),
            receipt,
        })
    }

    /// A cause named in the effect's own store is an ordinary, checked cause.
    fn local(&self, name: &str, mut options: AppendOptions) -> AppendOptions {
        if options.metadata.get(CAUSE_STORE_KEY) == Some(name) {
            let mut kept = crate::metadata::Metadata::default();
            for (k, v) in options
                .metadata
                .iter()
                .filter(|(k, _)| *k != CAUSE_STORE_KEY)
            {
                kept.insert(k, v);
            }
            options.metadata = kept;
        }
        options
    }

    /// The event `id`, in whichever store holds it.
    pub fn get(&self, id: EventId) -> Result<Option<(&str, StoredEvent)>> {
        for (name, store) in &self.stores {
            if let Some(event) = store.get(id)? {
                return Ok(Some((name.as_str(), event)));
            }
        }
        Ok(None)
    }

    /// The cause of `event` (held by the store named `store`): in the store its
    /// metadata names, or its own. `None` when it has none or it cannot be found.
    pub fn cause_of(
        &self,
        store: &str,
        event: &StoredEvent,
    ) -> Result<Option<(&str, StoredEvent)>> {
        let Some(cause) = event.causation else {
            return Ok(None);
        };
        let holder = event.metadata.get(CAUSE_STORE_KEY).unwrap_or(store);
        match self.stores.iter().find(|(n, _)| n == holder) {
            Some((name, s)) => Ok(s.get(cause)?.map(|e| (name.as_str(), e))),
            None => Ok(None),
        }
    }

    /// Closes every store (each with its checkpoint); the first failure is returned
    /// after all were tried.
    pub fn close(self) -> Result<()> {
        let mut first = None;
        for (_, store) in self.stores {
            if let Err(e) = store.close() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
