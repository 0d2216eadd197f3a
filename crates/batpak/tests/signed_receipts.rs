//! Signed receipts: every field is covered by the signature, the wire and JSON forms
//! verify like the original, keys rotate, and unsigned receipts are checked by facts.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::str::FromStr as _;

use batpak::{AppendOptions, AppendReceipt, Batch, Coordinate, EventKind, Hash, RawPayload, Store};

use batpak::proof::{KeyId, ReceiptCheck, ReceiptField, Signature, Signed, SigningKey};

fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "tenant:a").unwrap()
}

fn append(store: &Store, entity: &str, byte: u8) -> AppendReceipt {
    store
        .append_raw(
            &coord(entity),
            EventKind::custom(1, 1),
            RawPayload::opaque(&[byte; 40]),
            AppendOptions::default(),
        )
        .unwrap()
}

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

/// Every way to change one field of a receipt, named.
fn tamperings(r: &AppendReceipt) -> Vec<(&'static str, AppendReceipt)> {
    let flip = |h: Hash| {
        let mut b = *h.as_bytes();
        b[31] ^= 1;
        Hash::from_bytes(b)
    };
    let mut out = vec![
        ("event_id", {
            let mut t = *r;
            let mut id = t.event_id.to_bytes();
            id[0] ^= 0x80;
            t.event_id = batpak::EventId::from_bytes(id);
            t
        }),
        (
            "sequence",
            AppendReceipt {
                sequence: r.sequence + 1,
                ..*r
            },
        ),
        (
            "version",
            AppendReceipt {
                version: r.version + 1,
                ..*r
            },
        ),
        (
            "timestamp",
            AppendReceipt {
                timestamp_ns: r.timestamp_ns + 1,
                ..*r
            },
        ),
        (
            "kind",
            AppendReceipt {
                kind: EventKind::custom(1, 2),
                ..*r
            },
        ),
        (
            "coordinate",
            AppendReceipt {
                coordinate_digest: flip(r.coordinate_digest),
                ..*r
            },
        ),
        (
            "event_hash",
            AppendReceipt {
                event_hash: flip(r.event_hash),
                ..*r
            },
        ),
        (
            "prev_hash",
            AppendReceipt {
                prev_hash: flip(r.prev_hash),
                ..*r
            },
        ),
    ];
    if let Some(s) = r.signature {
        let mut sig = s.signature.to_bytes();
        sig[0] ^= 1;
        out.push((
            "signature",
            AppendReceipt {
                signature: Some(Signed {
                    signature: Signature::from_bytes(sig),
                    ..s
                }),
                ..*r
            },
        ));
        let mut id = s.key_id.to_bytes();
        id[0] ^= 1;
        out.push((
            "key_id",
            AppendReceipt {
                signature: Some(Signed {
                    key_id: KeyId::from_bytes(id),
                    ..s
                }),
                ..*r
            },
        ));
    }
    out
}

#[test]
fn signed_receipts_verify_and_every_field_is_covered() {
    let dir = tempfile::tempdir().unwrap();
    let signer = key(1);
    let store = Store::builder(dir.path())
        .signing_key(signer.clone())
        .open()
        .unwrap();
    append(&store, "order:1", 1);
    let r = append(&store, "order:1", 2);
    let signed = r.signature.expect("a store with a key signs");
    assert_eq!(signed.key_id, signer.key_id());
    assert_ne!(r.prev_hash, Hash::ZERO);
    assert_eq!(r.coordinate_digest, coord("order:1").digest());
    let valid = ReceiptCheck::Signed {
        key_id: signer.key_id(),
    };
    assert_eq!(store.verify_receipt(&r).unwrap(), valid);
    // A client holding only the public key checks the signature alone.
    assert_eq!(r.check_signature(&[signer.verifying_key()]), valid);
    assert_eq!(
        r.check_signature(&[]),
        ReceiptCheck::UnknownKey {
            key_id: signer.key_id()
        }
    );

    for (field, t) in tamperings(&r) {
        let check = store.verify_receipt(&t).unwrap();
        let expected = if field == "key_id" {
            ReceiptCheck::UnknownKey {
                key_id: t.signature.unwrap().key_id,
            }
        } else {
            ReceiptCheck::BadSignature {
                key_id: signer.key_id(),
            }
        };
        assert_eq!(check, expected, "tampered {field}");
        assert!(!check.is_valid());
        assert_eq!(
            t.check_signature(&[signer.verifying_key()]),
            expected,
            "offline {field}"
        );
    }
}

#[test]
fn wire_and_json_forms_verify_like_the_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let signer = key(2);
    let store = Store::builder(dir.path())
        .signing_key(signer.clone())
        .open()
        .unwrap();
    let r = append(&store, "payment:9", 3);
    let wire = r.to_bytes();
    assert_eq!(wire.len(), batpak::AppendReceipt::SIGNED_LEN);
    let back = AppendReceipt::from_bytes(&wire).unwrap();
    assert_eq!(back, r);
    assert!(store.verify_receipt(&back).unwrap().is_valid());
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains(&r.event_id.to_string()), "{json}");
    let back: AppendReceipt = serde_json::from_str(&json).unwrap();
    assert_eq!(
        store.verify_receipt(&back).unwrap(),
        ReceiptCheck::Signed {
            key_id: signer.key_id()
        }
    );
    // Flipping any byte of the wire form is caught: either it no longer decodes, or
    // the signature (or the key lookup) fails.
    for at in 0..wire.len() {
        let mut bad = wire.clone();
        bad[at] ^= 0x40;
        if let Ok(t) = AppendReceipt::from_bytes(&bad) {
            assert!(!store.verify_receipt(&t).unwrap().is_valid(), "byte {at}");
        }
    }
}

#[test]
fn unsigned_receipts_are_checked_by_their_facts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append(&store, "order:1", 1);
    let r = append(&store, "order:1", 2);
    assert_eq!(r.signature, None);
    assert_eq!(store.verify_receipt(&r).unwrap(), ReceiptCheck::Unsigned);
    let wire = r.to_bytes();
    assert_eq!(wire.len(), batpak::AppendReceipt::MESSAGE_LEN);
    assert_eq!(
        store
            .verify_receipt(&AppendReceipt::from_bytes(&wire).unwrap())
            .unwrap(),
        ReceiptCheck::Unsigned
    );
    let fields = [
        ("sequence", ReceiptField::Sequence),
        ("version", ReceiptField::Version),
        ("timestamp", ReceiptField::Timestamp),
        ("kind", ReceiptField::Kind),
        ("coordinate", ReceiptField::Coordinate),
        ("event_hash", ReceiptField::EventHash),
        ("prev_hash", ReceiptField::PrevHash),
    ];
    for (name, t) in tamperings(&r) {
        let check = store.verify_receipt(&t).unwrap();
        if name == "event_id" {
            assert_eq!(
                check,
                ReceiptCheck::NoSuchEvent {
                    event_id: t.event_id
                }
            );
            continue;
        }
        let field = fields.iter().find(|(n, _)| *n == name).unwrap().1;
        match check {
            ReceiptCheck::Mismatch {
                field: f,
                receipt,
                stored,
            } => {
                assert_eq!(f, field, "{name}");
                assert_ne!(receipt, stored);
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn keys_rotate_old_receipts_still_verify_with_the_old_key_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (key(3), key(4));
    let store = Store::builder(dir.path())
        .signing_key(old.clone())
        .open()
        .unwrap();
    let before = append(&store, "order:1", 1);
    store.close().unwrap();

    let store = Store::builder(dir.path())
        .signing_key(new.clone())
        .trust_key(old.verifying_key())
        .open()
        .unwrap();
    let after = append(&store, "order:1", 2);
    assert_eq!(after.signature.unwrap().key_id, new.key_id());
    assert_eq!(
        store.verify_receipt(&before).unwrap(),
        ReceiptCheck::Signed {
            key_id: old.key_id()
        }
    );
    assert_eq!(
        store.verify_receipt(&after).unwrap(),
        ReceiptCheck::Signed {
            key_id: new.key_id()
        }
    );
    store.close().unwrap();

    // Without the old key, its receipts name an unknown key.
    let store = Store::builder(dir.path())
        .signing_key(new.clone())
        .open()
        .unwrap();
    assert_eq!(
        store.verify_receipt(&before).unwrap(),
        ReceiptCheck::UnknownKey {
            key_id: old.key_id()
        }
    );
    store.close().unwrap();

    // A reader holding only public keys verifies both.
    let reader = Store::builder(dir.path())
        .trust_key(old.verifying_key())
        .trust_key(new.verifying_key())
        .open_read_only()
        .unwrap();
    assert!(reader.verify_receipt(&before).unwrap().is_valid());
    assert!(reader.verify_receipt(&after).unwrap().is_valid());
}

#[test]
fn a_forged_receipt_signed_by_another_key_is_not_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .signing_key(key(5))
        .open()
        .unwrap();
    let r = append(&store, "order:1", 1);
    let attacker = key(6);
    let mut forged = AppendReceipt { version: 7, ..r };
    forged.signature = Some(Signed {
        key_id: attacker.key_id(),
        signature: attacker.sign(&forged.signed_message(Some(attacker.key_id()))),
    });
    assert_eq!(
        store.verify_receipt(&forged).unwrap(),
        ReceiptCheck::UnknownKey {
            key_id: attacker.key_id()
        }
    );
    // Claiming the store's key id does not help.
    let claimed = key(5).key_id();
    forged.signature = Some(Signed {
        key_id: claimed,
        signature: attacker.sign(&forged.signed_message(Some(claimed))),
    });
    assert_eq!(
        store.verify_receipt(&forged).unwrap(),
        ReceiptCheck::BadSignature { key_id: claimed }
    );
    // A validly signed receipt whose facts the store does not hold is still refused.
    let store_key = key(5);
    let mut fabricated = AppendReceipt { version: 7, ..r };
    fabricated.signature = Some(Signed {
        key_id: store_key.key_id(),
        signature: store_key.sign(&fabricated.signed_message(Some(store_key.key_id()))),
    });
    assert!(matches!(
        store.verify_receipt(&fabricated).unwrap(),
        ReceiptCheck::Mismatch {
            field: ReceiptField::Version,
            ..
        }
    ));
}

#[test]
fn batches_and_idempotent_retries_return_signed_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let signer = key(7);
    let store = Store::builder(dir.path())
        .signing_key(signer.clone())
        .open()
        .unwrap();
    let mut batch = Batch::new();
    for i in 0..3u8 {
        batch.push_raw(
            &coord("order:2"),
            EventKind::custom(1, 1),
            RawPayload::opaque(&[i]),
            AppendOptions::default(),
        );
    }
    for r in store.append_batch(&batch).unwrap() {
        assert_eq!(
            store.verify_receipt(&r).unwrap(),
            ReceiptCheck::Signed {
                key_id: signer.key_id()
            }
        );
    }
    let options = AppendOptions::default().idempotency_key("k1");
    let append = || {
        store
            .append_raw(
                &coord("order:3"),
                EventKind::custom(1, 1),
                RawPayload::opaque(b"x"),
                options.clone(),
            )
            .unwrap()
    };
    let first = append();
    let retry = append();
    assert_eq!(
        first, retry,
        "Ed25519 is deterministic: the retry's receipt is identical"
    );
    assert!(retry.signature.is_some());
}

#[test]
fn the_store_issues_an_events_receipt_again_signed_as_at_its_append() {
    let dir = tempfile::tempdir().unwrap();
    let signer = key(3);
    let store = Store::builder(dir.path())
        .signing_key(signer.clone())
        .open()
        .unwrap();
    let first = append(&store, "order:9", 1);
    let again = store.receipt(first.event_id).unwrap().unwrap();
    assert_eq!(again, first, "the same receipt, signature included");
    assert!(store.verify_receipt(&again).unwrap().is_valid());
    let unknown = batpak::EventId::from_str("01a23be4-b66c-71a5-a41f-16de4834d2e0").unwrap();
    assert!(store.receipt(unknown).unwrap().is_none());
    drop(store);
    let unsigned = Store::open(dir.path()).unwrap();
    let plain = unsigned.receipt(first.event_id).unwrap().unwrap();
    assert_eq!(plain.signature, None, "a store without a key does not sign");
    assert_eq!(plain.event_hash, first.event_hash);
}

#[test]
fn an_anchor_checks_outside_the_store_from_a_copy_of_its_history_and_the_public_key() {
    use batpak::proof::{AnchorCheck, RunningHash};
    let dir = tempfile::tempdir().unwrap();
    let signer = key(4);
    let store = Store::builder(dir.path())
        .signing_key(signer.clone())
        .open()
        .unwrap();
    for i in 0..20 {
        append(&store, &format!("order:{}", i % 3), i);
    }
    let anchor = store.anchor().unwrap();
    let mut running = RunningHash::default();
    for e in store
        .query(&batpak::Region::all().with_store_records(), 0, usize::MAX)
        .unwrap()
    {
        running.push(e.sequence, &e.event_hash());
    }
    assert_eq!(
        running.value(),
        anchor.running_hash,
        "the copy's running hash is the anchor's"
    );
    assert_eq!(
        anchor.check_signature(&[signer.verifying_key()]),
        AnchorCheck::Holds {
            signed_by: Some(signer.key_id())
        }
    );
    assert_eq!(
        anchor.check_signature(&[key(5).verifying_key()]),
        AnchorCheck::UnknownKey {
            key_id: signer.key_id()
        }
    );
    let mut forged = anchor;
    forged.sequence -= 1;
    assert_eq!(
        forged.check_signature(&[signer.verifying_key()]),
        AnchorCheck::BadSignature {
            key_id: signer.key_id()
        }
    );
    // A history that differs anywhere gives another running hash.
    let mut other = RunningHash::default();
    other.push(1, &Hash::ZERO);
    assert_ne!(other.value(), anchor.running_hash);
}
