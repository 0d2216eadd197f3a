//! The kind registry: every `#[derive(EventPayload)]` type in the program (whichever
//! crate it lives in) registers its kind at link time, so open can refuse a program
//! where two types claim the same kind.

use crate::kind::EventKind;

/// One derived payload type's claim on a kind. Emitted by the derive; not for callers.
#[doc(hidden)]
#[derive(Debug)]
pub struct KindRegistration {
    pub kind: EventKind,
    pub type_name: &'static str,
    /// The kind's name (`EventPayload::NAME`).
    pub name: &'static str,
}

inventory::collect!(KindRegistration);

/// Two payload types bound to the same kind.
///
/// Serde: `{"kind": "C:T", "types": [...]}`. The type names are this program's own
/// (`&'static str`), so deserialising looks each one up among the payload types this
/// program registered, and a name it does not know is an error.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KindCollision {
    /// The contested kind.
    pub kind: EventKind,
    /// The types that claim it, sorted.
    #[serde(deserialize_with = "registered_type_names")]
    pub types: Vec<&'static str>,
}

/// Type names, each replaced by the registry's own copy of it.
fn registered_type_names<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<&'static str>, D::Error> {
    let names: Vec<String> = serde::Deserialize::deserialize(deserializer)?;
    names
        .iter()
        .map(|name| {
            inventory::iter::<KindRegistration>
                .into_iter()
                .map(|r| r.type_name)
                .find(|known| *known == name)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "{name:?} is not a payload type registered in this program"
                    ))
                })
        })
        .collect()
}

/// Every kind claimed by more than one type, sorted by kind.
pub(crate) fn collisions() -> Vec<KindCollision> {
    let mut claims: Vec<(EventKind, &'static str)> = inventory::iter::<KindRegistration>
        .into_iter()
        .map(|r| (r.kind, r.type_name))
        .collect();
    claims.sort_unstable();
    claims.dedup();
    let mut out: Vec<KindCollision> = Vec::new();
    for (kind, name) in claims {
        match out.last_mut() {
            Some(c) if c.kind == kind => c.types.push(name),
            _ => out.push(KindCollision {
                kind,
                types: vec![name],
            }),
        }
    }
    out.retain(|c| c.types.len() > 1);
    out
}

/// A kind whose name in this program differs from the name the store recorded for it
/// (the store keeps the recorded one).
///
/// Serde: `{"kind": "C:T", "recorded": ..., "program": ...}`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KindRename {
    /// The kind.
    pub kind: EventKind,
    /// The name the store recorded when the kind was first appended.
    pub recorded: String,
    /// The name a payload type of this program gives it.
    pub program: String,
}

/// Every registered kind's name in this program, sorted by kind.
pub(crate) fn registered_names() -> Vec<(EventKind, &'static str)> {
    let mut names: Vec<(EventKind, &'static str)> = inventory::iter::<KindRegistration>
        .into_iter()
        .filter(|r| !r.name.is_empty())
        .map(|r| (r.kind, r.name))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}
