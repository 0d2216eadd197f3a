//! `Coordinate`: where an event lands (entity and scope), validated on construction.

use std::cmp::Ordering;
use std::fmt;
use std::hash::Hasher;
use std::sync::{Arc, LazyLock};

use crate::error::{CoordinateRule, Error, Result};
use crate::hash::Hash;

/// The longest entity or scope, in bytes.
pub(crate) const MAX_COORDINATE_LEN: usize = 1024;

/// An `(entity, scope)` pair. The entity is the stream key (`order:507`): one hash
/// chain and one version counter per entity. The scope is an isolation label
/// (`tenant:acme`) that queries filter on.
///
/// Both components are non-empty UTF-8 of at most [`MAX_COORDINATE_LEN`] bytes with
/// no NUL or other control characters.
///
/// Cloning is cheap: both strings are shared, and coordinates read back from the store
/// share the index's interned copies. A coordinate built with [`Coordinate::new`]
/// carries its digest (every receipt holds it), so appending through it again costs
/// no hashing for it. Equality, order and hashing look at the two strings only.
#[derive(Clone)]
pub struct Coordinate {
    entity: Arc<str>,
    scope: Arc<str>,
    /// `digest_of(entity, scope)`, computed once by `new`.
    digest: Option<Hash>,
}

impl PartialEq for Coordinate {
    fn eq(&self, other: &Self) -> bool {
        self.entity == other.entity && self.scope == other.scope
    }
}

impl Eq for Coordinate {}

impl std::hash::Hash for Coordinate {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.entity.hash(state);
        self.scope.hash(state);
    }
}

impl PartialOrd for Coordinate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Coordinate {
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.entity, &self.scope).cmp(&(&other.entity, &other.scope))
    }
}

static COORDINATE_KEY: LazyLock<[u8; 32]> =
    LazyLock::new(|| blake3::derive_key("batpak 2026 coordinate digest v1", &[]));

/// The digest receipts carry in place of the coordinate: blake3, keyed by the
/// derived coordinate key, over each of entity and scope as a u16 LE length and its
/// bytes.
pub(crate) fn digest_of(entity: &str, scope: &str) -> Hash {
    let mut h = blake3::Hasher::new_keyed(&COORDINATE_KEY);
    for text in [entity, scope] {
        let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
        h.update(&len.to_le_bytes());
        h.update(text.as_bytes());
    }
    Hash::from_bytes(*h.finalize().as_bytes())
}

impl Coordinate {
    /// The longest entity or scope, in bytes.
    pub const MAX_LEN: usize = MAX_COORDINATE_LEN;

    /// Validates and builds a coordinate. The error names the component and the rule.
    pub fn new(entity: impl AsRef<str>, scope: impl AsRef<str>) -> Result<Self> {
        let entity = entity.as_ref();
        let scope = scope.as_ref();
        validate_component("entity", entity)?;
        validate_component("scope", scope)?;
        Ok(Coordinate {
            entity: entity.into(),
            scope: scope.into(),
            digest: Some(digest_of(entity, scope)),
        })
    }

    /// A coordinate from strings the index interned; they were validated on append.
    pub(crate) fn from_interned(entity: Arc<str>, scope: Arc<str>) -> Self {
        Coordinate {
            entity,
            scope,
            digest: None,
        }
    }

    /// The digest receipts carry in place of the coordinate.
    pub fn digest(&self) -> Hash {
        self.digest
            .unwrap_or_else(|| digest_of(&self.entity, &self.scope))
    }

    /// The entity (stream key).
    pub fn entity(&self) -> &str {
        &self.entity
    }

    /// The scope (isolation label).
    pub fn scope(&self) -> &str {
        &self.scope
    }
}

impl fmt::Debug for Coordinate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Coordinate({:?} @ {:?})", self.entity, self.scope)
    }
}

impl fmt::Display for Coordinate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.entity, self.scope)
    }
}

/// Serialised as `{"entity": ..., "scope": ...}`.
impl serde::Serialize for Coordinate {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut form = serializer.serialize_struct("Coordinate", 2)?;
        form.serialize_field("entity", self.entity())?;
        form.serialize_field("scope", self.scope())?;
        form.end()
    }
}

/// Built through [`Coordinate::new`]: a component that breaks a rule is an error
/// naming the component and the rule.
impl<'de> serde::Deserialize<'de> for Coordinate {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(rename = "Coordinate", deny_unknown_fields)]
        struct Form<'a> {
            #[serde(borrow)]
            entity: std::borrow::Cow<'a, str>,
            #[serde(borrow)]
            scope: std::borrow::Cow<'a, str>,
        }
        let form = Form::deserialize(deserializer)?;
        Coordinate::new(form.entity, form.scope).map_err(serde::de::Error::custom)
    }
}

/// Entities under this prefix hold the store's own records (category 0): recorded
/// denials and bypasses (`batpak:gate`), redaction records (`batpak:redactions`),
/// reactor positions (`batpak:reactor:<name>`), kind names (`batpak:kinds`) and
/// repairs (`batpak:repair`). User appends to them are refused, so a user entity's
/// version counts only the user's events.
pub(crate) const STORE_ENTITY_PREFIX: &str = "batpak:";
/// The entity of recorded denials and bypass audits.
pub(crate) const GATE_ENTITY: &str = "batpak:gate";
/// The entity of redaction records.
pub(crate) const REDACTIONS_ENTITY: &str = "batpak:redactions";

/// Checks one component against the coordinate rules.
pub(crate) fn validate_component(component: &'static str, value: &str) -> Result<()> {
    let rule = if value.is_empty() {
        Some(CoordinateRule::Empty)
    } else if value.len() > MAX_COORDINATE_LEN {
        Some(CoordinateRule::TooLong { len: value.len() })
    } else {
        value
            .char_indices()
            .find(|(_, c)| c.is_control())
            .map(|(offset, _)| CoordinateRule::ControlCharacter { offset })
    };
    match rule {
        None => Ok(()),
        Some(rule) => Err(Error::InvalidCoordinate { component, rule }),
    }
}

/// Whether `entity` falls under `prefix` on a `:` boundary.
pub(crate) fn prefix_matches(prefix: &str, entity: &str) -> bool {
    match entity.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with(':') || rest.starts_with(':'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_of(entity: &str, scope: &str) -> (&'static str, CoordinateRule) {
        match Coordinate::new(entity, scope) {
            Err(Error::InvalidCoordinate { component, rule }) => (component, rule),
            other => panic!("expected an invalid coordinate, got {other:?}"),
        }
    }

    #[test]
    fn the_carried_digest_is_the_one_computed_on_demand_and_follows_the_layout() {
        let made = Coordinate::new("order:507", "tenant:acme").unwrap();
        let interned = Coordinate::from_interned("order:507".into(), "tenant:acme".into());
        assert!(made.digest.is_some() && interned.digest.is_none());
        // The documented layout, assembled by hand: u16 LE length and bytes of each.
        let key = blake3::derive_key("batpak 2026 coordinate digest v1", &[]);
        let mut input = Vec::new();
        for text in ["order:507", "tenant:acme"] {
            input.extend_from_slice(&(text.len() as u16).to_le_bytes());
            input.extend_from_slice(text.as_bytes());
        }
        let expected = Hash::from_bytes(*blake3::keyed_hash(&key, &input).as_bytes());
        assert_eq!(made.digest(), expected);
        assert_eq!(interned.digest(), expected);
        // The carried digest takes no part in equality, order or hashing.
        assert_eq!(made, interned);
        assert_eq!(made.cmp(&interned), Ordering::Equal);
        let set: std::collections::HashSet<Coordinate> = [made, interned].into();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn accepts_ordinary_names() {
        let c = Coordinate::new("order:507", "tenant:acme").unwrap();
        assert_eq!(c.entity(), "order:507");
        assert_eq!(c.scope(), "tenant:acme");
        assert!(Coordinate::new("é", "日本").is_ok());
        assert!(Coordinate::new("a".repeat(MAX_COORDINATE_LEN), "s").is_ok());
    }

    #[test]
    fn each_rule_is_named_with_its_component() {
        assert_eq!(rule_of("", "s"), ("entity", CoordinateRule::Empty));
        assert_eq!(rule_of("e", ""), ("scope", CoordinateRule::Empty));
        assert_eq!(
            rule_of(&"a".repeat(MAX_COORDINATE_LEN + 1), "s"),
            ("entity", CoordinateRule::TooLong { len: 1025 })
        );
        assert_eq!(
            rule_of("e", "ab\0"),
            ("scope", CoordinateRule::ControlCharacter { offset: 2 })
        );
        assert_eq!(
            rule_of("a\nb", "s"),
            ("entity", CoordinateRule::ControlCharacter { offset: 1 })
        );
        assert_eq!(
            rule_of("a\u{7f}", "s"),
            ("entity", CoordinateRule::ControlCharacter { offset: 1 })
        );
    }

    #[test]
    fn error_message_names_component_and_rule() {
        let err = Coordinate::new("x", "").unwrap_err().to_string();
        assert!(err.contains("scope") && err.contains("empty"), "{err}");
    }
}
