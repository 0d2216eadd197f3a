//! Event metadata: a small map of text keys to text values carried by an event beside
//! its payload (who, from where, which trace). Stored in the record, covered by the
//! event hash and so by signed receipts, returned on every read.
//!
//! Metadata is not payload: redaction erases the payload and keeps the metadata (it is
//! hashed as stored, not through a salted digest), so personal data belongs in the
//! payload. Keys beginning with `batpak.` are written by the store's own tools
//! (`batpak.source_store`, `batpak.source_id` on imported events); any other key is the
//! caller's.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// An event's metadata: text keys to text values, kept in key order (so its encoding,
/// and with it the event hash, does not depend on the order of insertion). Empty by
/// default, and then it costs nothing in the record.
///
/// Serde: a JSON object of strings.
///
/// ```
/// use batpak::Metadata;
/// let meta = Metadata::new().with("user", "ada").with("trace", "4bf92f35");
/// assert_eq!(meta.get("user"), Some("ada"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    /// Most entries one event's metadata may hold.
    pub const MAX_ENTRIES: usize = 64;
    /// Longest key, in bytes of UTF-8.
    pub const MAX_KEY_LEN: usize = 128;
    /// Longest value, in bytes of UTF-8.
    pub const MAX_VALUE_LEN: usize = 2048;
    /// Most bytes the encoded metadata of one event may take in its record.
    pub const MAX_ENCODED_LEN: usize = 8192;

    /// No entries.
    pub fn new() -> Self {
        Metadata(BTreeMap::new())
    }

    /// This map with `key` set to `value` (replacing an earlier value). Limits are
    /// checked when the event is appended.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(key, value);
        self
    }

    /// Sets `key` to `value`, returning the value it replaces.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Option<String> {
        self.0.insert(key.into(), value.into())
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks the limits: at most [`Self::MAX_ENTRIES`] entries, keys of 1 to
    /// [`Self::MAX_KEY_LEN`] bytes and values of at most [`Self::MAX_VALUE_LEN`] bytes, neither
    /// holding control characters, and at most [`Self::MAX_ENCODED_LEN`] bytes encoded.
    /// The error names the key and the limit.
    pub fn validate(&self) -> Result<()> {
        let refuse = |key: &str, rule: String| Error::InvalidMetadata {
            key: key.to_string(),
            rule,
        };
        if self.0.len() > Self::MAX_ENTRIES {
            let last = self
                .0
                .keys()
                .nth(Self::MAX_ENTRIES)
                .map_or("", String::as_str);
            return Err(refuse(
                last,
                format!(
                    "{} entries, at most {} are allowed",
                    self.0.len(),
                    Self::MAX_ENTRIES
                ),
            ));
        }
        for (key, value) in &self.0 {
            if key.is_empty() {
                return Err(refuse(key, "the key is empty".into()));
            }
            for (what, text, limit) in [
                ("key", key, Self::MAX_KEY_LEN),
                ("value", value, Self::MAX_VALUE_LEN),
            ] {
                if text.len() > limit {
                    return Err(refuse(
                        key,
                        format!("the {what} is {} bytes, at most {limit}", text.len()),
                    ));
                }
                if let Some((at, _)) = text.char_indices().find(|(_, c)| c.is_control()) {
                    return Err(refuse(
                        key,
                        format!("the {what} holds a control character at byte {at}"),
                    ));
                }
            }
        }
        let encoded = self.encoded_len();
        if encoded > Self::MAX_ENCODED_LEN {
            return Err(refuse(
                "",
                format!(
                    "encoded it takes {encoded} bytes, at most {}",
                    Self::MAX_ENCODED_LEN
                ),
            ));
        }
        Ok(())
    }
}

impl Metadata {
    /// Bytes of the entries as a record stores them (`format/record.rs`): per entry a
    /// one-byte key length, the key, a two-byte value length, the value.
    pub(crate) fn encoded_len(&self) -> usize {
        self.iter().map(|(k, v)| 1 + k.len() + 2 + v.len()).sum()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Metadata(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl<'a> IntoIterator for &'a Metadata {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(meta: &Metadata) -> (String, String) {
        match meta.validate() {
            Err(Error::InvalidMetadata { key, rule }) => (key, rule),
            other => panic!("expected a metadata refusal, got {other:?}"),
        }
    }

    #[test]
    fn keys_stay_sorted_whatever_the_insertion_order() {
        let a = Metadata::new().with("b", "2").with("a", "1");
        let b: Metadata = [("a", "1"), ("b", "2")].into_iter().collect();
        assert_eq!(a, b);
        assert_eq!(a.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["a", "b"]);
        assert!(a.validate().is_ok());
        assert!(Metadata::new().validate().is_ok());
    }

    #[test]
    fn every_limit_is_refused_naming_the_key() {
        let (key, r) = rule(&Metadata::new().with("", "x"));
        assert_eq!(key, "");
        assert!(r.contains("empty"), "{r}");
        let long = "k".repeat(Metadata::MAX_KEY_LEN + 1);
        let (key, r) = rule(&Metadata::new().with(long.clone(), "x"));
        assert_eq!(key, long);
        assert!(r.contains("129 bytes"), "{r}");
        let (key, r) = rule(&Metadata::new().with("user", "v".repeat(Metadata::MAX_VALUE_LEN + 1)));
        assert_eq!(key, "user");
        assert!(r.contains("2049 bytes"), "{r}");
        let (key, r) = rule(&Metadata::new().with("user", "a\nb"));
        assert_eq!(key, "user");
        assert!(r.contains("control character at byte 1"), "{r}");
        let many: Metadata = (0..=Metadata::MAX_ENTRIES)
            .map(|i| (format!("k{i:03}"), "v"))
            .collect();
        let (_, r) = rule(&many);
        assert!(r.contains("65 entries"), "{r}");
        let big: Metadata = (0..8)
            .map(|i| (format!("k{i}"), "v".repeat(Metadata::MAX_VALUE_LEN)))
            .collect();
        let (_, r) = rule(&big);
        assert!(r.contains("at most 8192"), "{r}");
    }

    #[test]
    fn serde_is_a_plain_object_of_strings() {
        let meta = Metadata::new().with("user", "ada").with("ip", "10.0.0.7");
        let json = serde_json::to_string(&meta).unwrap();
        assert_eq!(json, r#"{"ip":"10.0.0.7","user":"ada"}"#);
        assert_eq!(serde_json::from_str::<Metadata>(&json).unwrap(), meta);
        assert!(serde_json::from_str::<Metadata>(r#"{"a":1}"#).is_err());
    }
}
