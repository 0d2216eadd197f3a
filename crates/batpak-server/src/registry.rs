//! What the embedding application registers by name: projections the API serves
//! (`GET /v1/projections/{name}/{entity}`) and gate sets appends can go through
//! (`POST /v1/gates/{name}/events`).

use std::collections::BTreeMap;
use std::sync::Arc;

use batpak::gate::GateSet;
use batpak::{Encoding, EventKind, Freshness, Projection, Store};
use serde_json::Value;

/// The proposed event a registered gate set judges.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct AppendContext {
    /// The entity appended to.
    pub entity: String,
    /// Its scope.
    pub scope: String,
    /// The kind.
    pub kind: EventKind,
    /// The kind's recorded name, when it has one.
    pub kind_name: Option<String>,
    /// How the payload is encoded.
    pub encoding: Encoding,
    /// The payload as JSON, when it is JSON or MessagePack.
    pub payload: Option<Value>,
    /// The payload's bytes.
    pub bytes: Vec<u8>,
    /// The metadata the event will carry (the principal included).
    pub metadata: BTreeMap<String, String>,
    /// Who is appending (`None` on a server without tokens).
    pub principal: Option<String>,
}

type ProjectFn = dyn Fn(&Store, &str) -> batpak::Result<Option<Value>> + Send + Sync;

/// The registered projections and gate sets, by name.
#[derive(Default)]
pub(crate) struct Registry {
    pub projections: BTreeMap<String, Arc<ProjectFn>>,
    pub gates: BTreeMap<String, Arc<GateSet<AppendContext>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("projections", &self.projections.keys().collect::<Vec<_>>())
            .field("gates", &self.gates.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    pub(crate) fn add_projection<P: Projection + serde::Serialize>(&mut self, name: &str) {
        let project = |store: &Store, entity: &str| -> batpak::Result<Option<Value>> {
            let state = store.project::<P>(entity, Freshness::Consistent)?;
            state
                .map(|s| {
                    serde_json::to_value(&s).map_err(|e| batpak::Error::Malformed {
                        what: "projection state",
                        detail: format!("{} does not serialise to JSON: {e}", P::NAME),
                    })
                })
                .transpose()
        };
        self.projections.insert(name.to_string(), Arc::new(project));
    }
}

/// The JSON view of a payload, when its encoding has one.
pub(crate) fn json_view(encoding: Encoding, bytes: &[u8]) -> Option<Value> {
    match encoding {
        Encoding::Json => serde_json::from_slice(bytes).ok(),
        Encoding::MessagePack => rmp_serde::from_slice(bytes).ok(),
        _ => None,
    }
}
