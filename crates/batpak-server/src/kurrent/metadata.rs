//! Stream metadata: a `$$name` stream holds the metadata of stream `name`, one
//! `$metadata` event (a JSON object) per change, the newest in force (events of
//! other types in a `$$` stream are kept and ignored). Its
//! `$maxCount`, `$maxAge` (seconds) and `$tb` (truncate before: the first revision
//! kept) become a batpak retention policy on that one entity
//! (`RetentionSelector::Entity`, a combined rule when several are set), so what
//! they expire is hidden from every read and compaction removes it. Other keys
//! (`$acl`, `$cacheControl`, custom ones) are kept in the event and not enforced:
//! tokens and their grants decide who may do what.
//!
//! The policy follows the newest metadata event: after every append to a `$$`
//! stream, and for every `$$` stream when the listener starts (so a crash between
//! the event and its policy, or a metadata event another writer appended, is put
//! right).

use std::time::Duration;

use batpak::{RetentionLimits, RetentionRule, RetentionSelector, Store};
use serde_json::Value;

use super::events::{self, Draft};
use super::names;

/// The event type of a metadata event.
pub(crate) const METADATA_TYPE: &str = "$metadata";

/// The entity whose metadata `entity` holds, when `entity` is a `$$` stream.
pub(crate) fn described(entity: &str) -> Option<String> {
    // The escaping leaves `$` alone, so a `$$` stream's entity starts with it too;
    // every other append is answered here without unescaping its name.
    if !entity.starts_with("$$") {
        return None;
    }
    let name = names::name_of(entity);
    let target = name.strip_prefix(b"$$")?;
    names::entity_of(target).ok()
}

/// The retention `data` (a metadata event's JSON) asks for: `None` when it sets no
/// limit. An error names the key and what is wrong with it.
pub(crate) fn rule_of(data: &[u8]) -> Result<Option<RetentionRule>, String> {
    let value: Value = serde_json::from_slice(data)
        .map_err(|e| format!("stream metadata must be a JSON object: {e}"))?;
    let Value::Object(map) = value else {
        return Err("stream metadata must be a JSON object".into());
    };
    let number = |key: &str, least: u64| -> Result<Option<u64>, String> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n >= least => Ok(Some(n)),
                _ => Err(format!(
                    "stream metadata {key} must be a whole number of at least {least}, not {v}"
                )),
            },
        }
    };
    let mut limits = RetentionLimits::new();
    limits.max_count = number("$maxCount", 1)?;
    limits.max_age = number("$maxAge", 1)?.map(Duration::from_secs);
    // Truncating before revision 0 keeps everything.
    limits.before_version = number("$tb", 0)?.filter(|&v| v > 0);
    Ok(limits.rule())
}

/// Checks what an append to `entity` would write: every `$metadata` event of a
/// `$$` stream must be metadata `rule_of` reads. `true` when the append holds one.
pub(crate) fn check(entity: &str, drafts: &[Draft]) -> Result<bool, String> {
    if described(entity).is_none() {
        return Ok(false);
    }
    let mut any = false;
    for (i, d) in drafts.iter().enumerate() {
        if d.event_type == METADATA_TYPE {
            rule_of(&d.data).map_err(|e| format!("event {i}: {e}"))?;
            any = true;
        }
    }
    Ok(any)
}

/// Brings the policy of the entity `meta_entity` describes in line with the newest
/// `$metadata` event of `meta_entity` (a `$$` stream): sets it, or clears it when
/// there is none, it sets no limit, or it is not metadata batpak can read (another
/// writer's). Nothing is recorded when the policy in force already matches.
pub(crate) fn reconcile(store: &Store, meta_entity: &str) -> batpak::Result<()> {
    let Some(target) = described(meta_entity) else {
        return Ok(());
    };
    // Newest first, a page at a time: the newest event is nearly always the one.
    let region = batpak::Region::all().entity(meta_entity);
    let mut before = u64::MAX;
    let newest = loop {
        let page = store.query_reverse(&region, before, 16)?;
        let Some(oldest) = page.last() else {
            break None;
        };
        before = oldest.sequence;
        if let Some(found) = page
            .into_iter()
            .find(|e| events::type_of(store, e) == METADATA_TYPE)
        {
            break Some(found);
        }
    };
    let rule = newest.and_then(|e| rule_of(&e.payload).ok().flatten());
    let selector = RetentionSelector::Entity(target);
    match rule {
        Some(rule) => {
            store.set_retention(selector, rule)?;
        }
        None => {
            store.clear_retention(&selector)?;
        }
    }
    Ok(())
}

/// [`reconcile`] for every `$$` stream of the store.
pub(crate) fn reconcile_all(store: &Store) -> batpak::Result<()> {
    let mut after = "$$".to_string();
    loop {
        let page = store.entities("", Some(&after), 256);
        let Some(last) = page.last() else {
            return Ok(());
        };
        let last = last.entity.clone();
        for info in &page {
            if !info.entity.starts_with("$$") {
                return Ok(());
            }
            reconcile(store, &info.entity)?;
        }
        after = last;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn each_limit_maps_to_its_rule_and_several_combine() {
        let rule = |json: &str| rule_of(json.as_bytes()).unwrap();
        assert_eq!(rule("{}"), None);
        assert_eq!(rule(r#"{"$maxCount": null, "$acl": {"$r": "x"}}"#), None);
        assert_eq!(rule(r#"{"$tb": 0}"#), None);
        assert_eq!(
            rule(r#"{"$maxCount": 3}"#),
            Some(RetentionRule::MaxCount(3))
        );
        assert_eq!(
            rule(r#"{"$maxAge": 60, "custom": 1}"#),
            Some(RetentionRule::MaxAge(Duration::from_secs(60)))
        );
        assert_eq!(rule(r#"{"$tb": 7}"#), Some(RetentionRule::BeforeVersion(7)));
        assert_eq!(
            rule(r#"{"$maxCount": 3, "$maxAge": 60, "$tb": 2}"#),
            Some(RetentionRule::Combined(
                RetentionLimits::new()
                    .max_count(3)
                    .max_age(Duration::from_secs(60))
                    .before_version(2)
            ))
        );
    }

    #[test]
    fn bad_metadata_is_refused_by_key() {
        for (json, says) in [
            ("[1]", "must be a JSON object"),
            ("not json", "must be a JSON object"),
            (
                r#"{"$maxCount": 0}"#,
                "$maxCount must be a whole number of at least 1, not 0",
            ),
            (r#"{"$maxCount": -2}"#, "$maxCount must be"),
            (r#"{"$maxAge": 1.5}"#, "$maxAge must be"),
            (r#"{"$tb": "3"}"#, "$tb must be"),
        ] {
            let err = rule_of(json.as_bytes()).unwrap_err();
            assert!(err.contains(says), "{json}: {err}");
        }
    }

    fn append(store: &Store, entity: &str, event_type: &str, data: &str) {
        let mut metadata = batpak::Metadata::new();
        metadata.insert(events::TYPE_KEY, event_type);
        store
            .append_raw(
                &batpak::Coordinate::new(entity, "kurrentdb").unwrap(),
                batpak::EventKind::custom(15, 0),
                batpak::RawPayload::json(data.as_bytes()),
                batpak::AppendOptions::default().metadata(metadata),
            )
            .unwrap();
    }

    fn policy(store: &Store) -> Vec<(RetentionSelector, RetentionRule)> {
        store
            .retention()
            .into_iter()
            .map(|p| (p.selector, p.rule))
            .collect()
    }

    #[test]
    fn the_policy_follows_the_newest_metadata_event_of_each_stream() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for n in 0..5 {
            append(&store, "trim", "order", &format!("{{\"n\": {n}}}"));
        }
        append(&store, "trim:lines", "order", "{}");
        append(&store, "$$trim", METADATA_TYPE, r#"{"$maxCount": 2}"#);
        append(&store, "$$other", METADATA_TYPE, r#"{"$tb": 1}"#);
        reconcile_all(&store).unwrap();
        let trim = RetentionSelector::Entity("trim".into());
        assert_eq!(
            policy(&store),
            [
                (
                    RetentionSelector::Entity("other".into()),
                    RetentionRule::BeforeVersion(1)
                ),
                (trim.clone(), RetentionRule::MaxCount(2)),
            ]
        );
        assert_eq!(store.stream("trim").unwrap().len(), 2);
        assert_eq!(store.stream("trim:lines").unwrap().len(), 1);
        // Again with nothing new records nothing.
        let records = store.retention()[1].set_by;
        reconcile_all(&store).unwrap();
        assert_eq!(store.retention()[1].set_by, records);
        // Newer metadata replaces the policy; metadata without limits clears it;
        // an event batpak cannot read as metadata counts as none.
        append(
            &store,
            "$$trim",
            METADATA_TYPE,
            r#"{"$maxCount": 4, "$maxAge": 3600}"#,
        );
        reconcile(&store, "$$trim").unwrap();
        assert_eq!(
            policy(&store)[1],
            (
                trim.clone(),
                RetentionRule::Combined(
                    RetentionLimits::new()
                        .max_count(4)
                        .max_age(Duration::from_secs(3600))
                )
            )
        );
        append(&store, "$$trim", METADATA_TYPE, r#"{"$acl": {}}"#);
        reconcile(&store, "$$trim").unwrap();
        assert_eq!(policy(&store).len(), 1);
        assert_eq!(store.stream("trim").unwrap().len(), 5);
        // Other events in a metadata stream are ignored; metadata it cannot read
        // (another writer's) counts as none.
        for _ in 0..40 {
            append(&store, "$$other", "not-metadata", "{}");
        }
        reconcile(&store, "$$other").unwrap();
        assert_eq!(policy(&store).len(), 1, "found past pages of other events");
        append(&store, "$$other", METADATA_TYPE, r#"{"$tb": "soon"}"#);
        reconcile(&store, "$$other").unwrap();
        assert!(policy(&store).is_empty());
    }

    #[test]
    fn only_dollar_dollar_streams_describe_another() {
        assert_eq!(described("$$order-1").as_deref(), Some("order-1"));
        assert_eq!(described("$$50%25").as_deref(), Some("50%25"));
        assert_eq!(described("$$%62atpak:x").as_deref(), Some("%62atpak:x"));
        assert_eq!(described("$order-1"), None);
        assert_eq!(described("$$"), None);
        assert_eq!(described("order-1"), None);
    }
}
