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
}

inventory::collect!(KindRegistration);

/// Two payload types bound to the same kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindCollision {
    /// The contested kind.
    pub kind: EventKind,
    /// The types that claim it, sorted.
    pub types: Vec<&'static str>,
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
