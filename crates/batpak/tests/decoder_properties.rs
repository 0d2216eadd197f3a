//! Every decoder over the committed fuzz seed corpora (`fuzz/corpus/<target>/`) and
//! random mutations of them, through the same round-trip checks the cargo-fuzz targets
//! run (`batpak::__fuzz`), so a plain `cargo test` catches a decoder regression without
//! nightly or cargo-fuzz. Needs the `fuzzing` feature.
//!
//! The seeds are written by the ignored test at the end:
//! `cargo test -p batpak --features fuzzing --test decoder_properties -- --ignored write_seed_corpora`

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use batpak::__fuzz;
use batpak::proof::{Anchor, SigningKey};
use batpak::{
    AppendOptions, AppendReceipt, Batch, Coordinate, CursorStart, EventKind, Freshness, RawPayload,
    Region, Store,
};
use proptest::prelude::*;

/// A decoder entry point: whether the bytes decoded (it panics on a broken round trip).
type Decoder = fn(&[u8]) -> bool;

/// Each fuzz target's name (its corpus folder) and entry point.
const DECODERS: &[(&str, Decoder)] = &[
    ("record", __fuzz::record),
    ("segment_header", __fuzz::segment_header),
    ("checkpoint", __fuzz::checkpoint),
    ("cursor", __fuzz::cursor),
    ("snapshot", __fuzz::snapshot),
    ("redo", __fuzz::redo),
    ("receipt_wire", __fuzz::receipt_wire),
    ("receipt_json", __fuzz::receipt_json),
    ("anchor_wire", __fuzz::anchor_wire),
    ("anchor_json", __fuzz::anchor_json),
];

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

/// The seeds of one target, sorted by file name.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_root().join(target);
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let seeds: Vec<Vec<u8>> = paths.iter().map(|p| fs::read(p).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

fn all_seeds() -> Vec<(Decoder, Vec<u8>)> {
    DECODERS
        .iter()
        .flat_map(|&(name, decode)| seeds(name).into_iter().map(move |s| (decode, s)))
        .collect()
}

/// A fresh directory for one `open_dir` case, on tmpfs when there is one (the store
/// fsyncs).
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

/// Every committed seed is a valid input: it decodes (and round-trips), or opens.
/// A format change that leaves a seed undecodable shows here; rewrite the seeds.
#[test]
fn every_seed_decodes() {
    for &(name, decode) in DECODERS {
        for (i, seed) in seeds(name).iter().enumerate() {
            assert!(decode(seed), "{name} seed {i} does not decode");
        }
    }
    for (i, seed) in seeds("open_dir").iter().enumerate() {
        let dir = scratch_dir();
        assert!(
            __fuzz::open_dir(dir.path(), seed),
            "open_dir seed {i} does not open"
        );
    }
}

/// One edit to a seed.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    /// A little-endian u32 a length field might hold.
    SetU32(usize, u32),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
    /// Copies `len` bytes from one position over another.
    Copy(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let pos = any::<usize>();
    let interesting = prop_oneof![
        Just(0u32),
        Just(1),
        Just(3),
        Just(7),
        Just(8),
        Just(95),
        Just(96),
        Just(u32::MAX),
        Just(u32::MAX / 2 + 1),
        any::<u32>(),
    ];
    prop_oneof![
        (pos, 0u8..8).prop_map(|(p, b)| Mutation::FlipBit(p, b)),
        (pos, any::<u8>()).prop_map(|(p, v)| Mutation::SetByte(p, v)),
        (pos, interesting).prop_map(|(p, v)| Mutation::SetU32(p, v)),
        (pos, proptest::collection::vec(any::<u8>(), 1..24))
            .prop_map(|(p, b)| Mutation::Insert(p, b)),
        (pos, 1usize..32).prop_map(|(p, n)| Mutation::Remove(p, n)),
        pos.prop_map(Mutation::Truncate),
        (pos, pos, 1usize..64).prop_map(|(a, b, n)| Mutation::Copy(a, b, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let at = |p: usize, len: usize| if len == 0 { 0 } else { p % len };
    let len = bytes.len();
    match *m {
        Mutation::FlipBit(p, b) if len > 0 => bytes[at(p, len)] ^= 1 << b,
        Mutation::SetByte(p, v) if len > 0 => bytes[at(p, len)] = v,
        Mutation::SetU32(p, v) if len >= 4 => {
            let p = at(p, len - 3);
            bytes[p..p + 4].copy_from_slice(&v.to_le_bytes());
        }
        Mutation::Insert(p, ref new) => {
            let p = at(p, len + 1);
            bytes.splice(p..p, new.iter().copied());
        }
        Mutation::Remove(p, n) if len > 0 => {
            let p = at(p, len);
            bytes.drain(p..(p + n).min(len));
        }
        Mutation::Truncate(p) => bytes.truncate(at(p, len + 1)),
        Mutation::Copy(from, to, n) if len > 0 => {
            let (from, to) = (at(from, len), at(to, len));
            let n = n.min(len - from).min(len - to);
            bytes.copy_within(from..from + n, to);
        }
        _ => {}
    }
}

fn mutated(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for m in mutations {
        apply(&mut bytes, m);
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Mutated seeds of every decoder: no panic, and whatever decodes round-trips.
    #[test]
    fn mutated_seeds_never_break_a_decoder(
        pick in any::<prop::sample::Index>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let seeds = all_seeds();
        let (decode, seed) = &seeds[pick.index(seeds.len())];
        decode(&mutated(seed, &mutations));
    }

    /// Bytes from nowhere: no decoder panics.
    #[test]
    fn random_bytes_never_break_a_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        for &(_, decode) in DECODERS {
            decode(&bytes);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Mutated store directories: open read-only and for writing, read everything,
    /// append; an `Err` is fine, a panic is not, and an acknowledged append survives.
    #[test]
    fn mutated_store_directories_never_break_open(
        pick in any::<prop::sample::Index>(),
        reseal in any::<bool>(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let seeds = seeds("open_dir");
        let mut input = mutated(&seeds[pick.index(seeds.len())], &mutations);
        if reseal && !input.is_empty() {
            input[0] |= __fuzz::RESEAL;
        }
        let dir = scratch_dir();
        __fuzz::open_dir(dir.path(), &input);
    }
}

// ---- the seed generator ----

const NOTE: EventKind = EventKind::custom(1, 1);

/// The frames of a segment file: (offset, bytes).
fn frames(segment: &[u8]) -> Vec<(usize, Vec<u8>)> {
    const SEGMENT_HEADER_LEN: usize = 64;
    let mut out = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    while let Some(prefix) = segment.get(at..at + 8) {
        let len = u32::from_le_bytes(prefix[4..8].try_into().unwrap()) as usize;
        if len == 0 || at + len > segment.len() {
            break;
        }
        out.push((at, segment[at..at + len].to_vec()));
        at += len;
    }
    out
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
}

/// What `fill` leaves besides the store.
struct Filled {
    key: SigningKey,
    /// Signed receipts of the first appends.
    receipts: Vec<AppendReceipt>,
    /// The first segment as it was just before the redaction.
    before_redaction: Vec<u8>,
}

/// Fills a store with one of every record shape, then redacts its first event, opens
/// a cursor, projects, and closes (writing the checkpoint and the snapshot).
fn fill(dir: &Path, segment_size: u64, extra: usize) -> Filled {
    let key = SigningKey::from_bytes(&[7; 32]);
    let store = Store::builder(dir)
        .signing_key(key.clone())
        .segment_size(segment_size)
        .open()
        .unwrap();
    let e = Coordinate::new(__fuzz::ENTITY, "s").unwrap();
    let other = Coordinate::new("order:1", "tenant:a").unwrap();
    let first = store
        .append_raw(&e, NOTE, RawPayload::opaque(b""), AppendOptions::default())
        .unwrap();
    let second = store
        .append_raw(
            &e,
            NOTE,
            RawPayload::json(br#"{"cents":500}"#),
            AppendOptions::default()
                .caused_by(first.event_id)
                .correlation(first.event_id)
                .idempotency_key("k1"),
        )
        .unwrap();
    let mut batch = Batch::new();
    batch.push_raw(
        &other,
        EventKind::custom(2, 9),
        RawPayload::msgpack(b"\x81\xa1a\x01"),
        AppendOptions::default(),
    );
    batch.push_raw(
        &other,
        NOTE,
        RawPayload::opaque(&[0x5A; 40]),
        AppendOptions::default().caused_by_item(0),
    );
    let mut receipts = vec![first, second];
    receipts.extend(store.append_batch(&batch).unwrap());
    for i in 0..extra {
        store
            .append_raw(
                &other,
                NOTE,
                RawPayload::opaque(format!("filler {i:04}").as_bytes()),
                AppendOptions::default(),
            )
            .unwrap();
    }
    let before_redaction = fs::read(&segment_files(dir)[0]).unwrap();
    store.redact(first.event_id, "seed").unwrap();
    let mut cursor = store.cursor(__fuzz::CURSOR, Region::all()).unwrap();
    cursor.next_batch(2, Duration::ZERO).unwrap();
    cursor.commit(2).unwrap();
    drop(cursor);
    store
        .project::<__fuzz::Count>(__fuzz::ENTITY, Freshness::Consistent)
        .unwrap();
    store.close().unwrap();
    Filled {
        key,
        receipts,
        before_redaction,
    }
}

/// The number in a segment file's name.
fn segment_number(path: &Path) -> u64 {
    let stem = path.file_stem().unwrap().to_str().unwrap();
    u64::from_str_radix(stem, 16).unwrap()
}

/// Writes one seed file.
fn put(target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus_root().join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

/// Rewrites `fuzz/corpus/`: a handful of valid inputs per target, taken from real
/// stores.
#[test]
#[ignore = "writes the seed corpora; run by hand after a format change"]
fn write_seed_corpora() {
    let root = corpus_root();
    if root.exists() {
        fs::remove_dir_all(&root).unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();

    // One segment, with a checkpoint, a cursor, a snapshot and a redaction.
    let one = tmp.path().join("one");
    let filled = fill(&one, 1 << 20, 0);
    let seg_path = segment_files(&one)[0].clone();
    let seg_name = seg_path.file_name().unwrap();
    let segment = fs::read(&seg_path).unwrap();
    put("segment_header", "first", &segment[..64]);
    let records = frames(&segment);
    for (i, (_, frame)) in records.iter().enumerate().take(6) {
        put("record", &format!("frame-{i}"), frame);
    }
    put(
        "checkpoint",
        "one-segment",
        &fs::read(one.join("index.ckpt")).unwrap(),
    );
    for entry in fs::read_dir(one.join("cursors")).unwrap() {
        put(
            "cursor",
            "committed-2",
            &fs::read(entry.unwrap().path()).unwrap(),
        );
    }
    for entry in fs::read_dir(one.join("projections")).unwrap() {
        for snap in fs::read_dir(entry.unwrap().path()).unwrap() {
            put(
                "snapshot",
                "count",
                &fs::read(snap.unwrap().path()).unwrap(),
            );
        }
    }
    put(
        "open_dir",
        "one-segment",
        &__fuzz::pack_store_dir(&one, 0).unwrap(),
    );
    put(
        "open_dir",
        "one-segment-resealed",
        &__fuzz::pack_store_dir(&one, __fuzz::RESEAL).unwrap(),
    );

    // A cursor committed at the last possible sequence (once an overflow).
    let late = tmp.path().join("late");
    fs::create_dir_all(late.join("segments")).unwrap();
    fs::write(late.join("segments").join(seg_name), &segment).unwrap();
    let store = Store::open(&late).unwrap();
    let cursor = store
        .cursor_from(__fuzz::CURSOR, Region::all(), CursorStart::After(u64::MAX))
        .unwrap();
    drop(cursor);
    store.close().unwrap();
    put(
        "open_dir",
        "cursor-at-u64-max",
        &__fuzz::pack_store_dir(&late, __fuzz::RESEAL).unwrap(),
    );

    // Mid-redaction: the original frame back in place, its rewrite pending.
    let (offset, redacted) = records
        .iter()
        .find(|(_, f)| u16::from_le_bytes([f[50], f[51]]) & (1 << 4) != 0)
        .cloned()
        .unwrap();
    let pending = __fuzz::pending_rewrite(segment_number(&seg_path), offset as u64, &redacted);
    put("redo", "redacted-frame", &pending);
    let mid = tmp.path().join("mid");
    fs::create_dir_all(mid.join("segments")).unwrap();
    let mut unredacted = segment.clone();
    let span = offset..offset + redacted.len();
    unredacted[span.clone()].copy_from_slice(&filled.before_redaction[span]);
    fs::write(mid.join("segments").join(seg_name), &unredacted).unwrap();
    fs::write(mid.join("redact.pending"), &pending).unwrap();
    put(
        "open_dir",
        "mid-redaction",
        &__fuzz::pack_store_dir(&mid, 0).unwrap(),
    );

    // A torn tail and no checkpoint.
    let torn = tmp.path().join("torn");
    fs::create_dir_all(torn.join("segments")).unwrap();
    let (last_at, last) = records.last().cloned().unwrap();
    fs::write(
        torn.join("segments").join(seg_name),
        &segment[..last_at + last.len() / 2],
    )
    .unwrap();
    put(
        "open_dir",
        "torn-tail",
        &__fuzz::pack_store_dir(&torn, 0).unwrap(),
    );

    // Two segments (the smallest segment size) and their checkpoint.
    let two = tmp.path().join("two");
    fill(&two, 4096, 40);
    let segments = segment_files(&two);
    assert!(segments.len() >= 2, "the filler rotates the segment");
    put(
        "segment_header",
        "second",
        &fs::read(&segments[1]).unwrap()[..64],
    );
    put(
        "checkpoint",
        "two-segments",
        &fs::read(two.join("index.ckpt")).unwrap(),
    );
    put(
        "open_dir",
        "two-segments",
        &__fuzz::pack_store_dir(&two, 0).unwrap(),
    );

    // Receipts and anchors, signed and unsigned, in both forms.
    for (i, r) in filled.receipts.iter().take(2).enumerate() {
        put("receipt_wire", &format!("signed-{i}"), &r.to_bytes());
        put(
            "receipt_json",
            &format!("signed-{i}"),
            &serde_json::to_vec(r).unwrap(),
        );
        let unsigned = AppendReceipt {
            signature: None,
            ..*r
        };
        put(
            "receipt_wire",
            &format!("unsigned-{i}"),
            &unsigned.to_bytes(),
        );
        put(
            "receipt_json",
            &format!("unsigned-{i}"),
            &serde_json::to_vec(&unsigned).unwrap(),
        );
    }
    let store = Store::builder(&one)
        .signing_key(filled.key)
        .open_read_only()
        .unwrap();
    let anchor = store.anchor().unwrap();
    let unsigned = Anchor {
        signature: None,
        ..anchor
    };
    for (name, a) in [("signed", anchor), ("unsigned", unsigned)] {
        put("anchor_wire", name, &a.to_bytes());
        put("anchor_json", name, &serde_json::to_vec(&a).unwrap());
    }
}

/// The inputs that crashed a fuzz target (`fuzz/artifacts-found/`), replayed: each
/// must now open or fail with an error, never panic.
#[test]
fn the_crashes_fuzzing_found_stay_fixed() {
    let dir = corpus_root().join("../artifacts-found");
    let mut replayed = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("open_dir-") {
            let scratch = scratch_dir();
            batpak::__fuzz::open_dir(scratch.path(), &fs::read(&path).unwrap());
            replayed += 1;
        }
    }
    assert!(
        replayed >= 2,
        "replayed {replayed} inputs from {}",
        dir.display()
    );
}
