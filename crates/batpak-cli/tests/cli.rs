//! The `batpak` binary run as a process against stores built here: every command's
//! output (snapshots of the human form, parsed `--json`), and bad input giving a
//! clear message and a non-zero exit code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use batpak::{AppendOptions, Batch, Coordinate, EventKind, RawPayload, Store};
use serde_json::Value;

fn batpak(dir: &Path, args: &[&str]) -> Output {
    batpak_with_input(dir, args, None)
}

fn batpak_with_input(dir: &Path, args: &[&str], input: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_batpak"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("BATPAK_DIR")
        .env_remove("BATPAK_SIGNING_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    if let Some(text) = input {
        stdin.write_all(text.as_bytes()).unwrap();
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Runs and expects success; returns stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    let o = batpak(dir, args);
    assert!(o.status.success(), "{args:?} failed: {}", stderr(&o));
    stdout(&o)
}

/// Runs and expects failure with a message containing `needle`.
fn fails(dir: &Path, args: &[&str], needle: &str) {
    let o = batpak(dir, args);
    assert!(!o.status.success(), "{args:?} should fail: {}", stdout(&o));
    let err = stderr(&o);
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err:?}"
    );
}

/// Runs and expects clap to reject a value before the command runs: exit code 2, and
/// a message naming the argument and quoting the value.
fn rejected(dir: &Path, args: &[&str], arg: &str, value: &str) {
    let o = batpak(dir, args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{args:?} should be refused: {err}"
    );
    assert!(
        err.starts_with("error: invalid value ") && err.contains(arg),
        "{args:?}: expected {arg:?} in {err:?}"
    );
    assert!(
        err.contains(&format!("'{value}'")),
        "{args:?}: expected {value:?} in {err:?}"
    );
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const ORDER: EventKind = EventKind::custom(1, 1);
const PAYMENT: EventKind = EventKind::custom(2, 1);

/// A small store: two orders (one with two events), a payment caused by the first.
/// Returns the ids: order 1 placed, order 1 changed, order 2 placed, payment.
fn build(dir: &Path) -> Vec<String> {
    let store = Store::open(dir).unwrap();
    let append = |entity: &str, scope: &str, kind, json: &str, options| {
        store
            .append_raw(
                &Coordinate::new(entity, scope).unwrap(),
                kind,
                RawPayload::json(json.as_bytes()),
                options,
            )
            .unwrap()
            .event_id
    };
    let o1 = append(
        "order:1",
        "t:a",
        ORDER,
        r#"{"sku":"tea","qty":2}"#,
        AppendOptions::default(),
    );
    let o1b = append(
        "order:1",
        "t:a",
        ORDER,
        r#"{"sku":"tea","qty":3}"#,
        AppendOptions::default().correlation(o1),
    );
    let o2 = append(
        "order:2",
        "t:b",
        ORDER,
        r#"{"sku":"mug","qty":1}"#,
        AppendOptions::default(),
    );
    let pay = append(
        "payment:1",
        "t:a",
        PAYMENT,
        r#"{"cents":1250}"#,
        AppendOptions::default().caused_by(o1b).correlation(o1),
    );
    store.close().unwrap();
    [o1, o1b, o2, pay].iter().map(|i| i.to_string()).collect()
}

/// Replaces event ids and timestamps, so human output can be compared exactly.
fn normalize(text: &str, ids: &[String]) -> String {
    let mut out = text.to_string();
    for (i, id) in ids.iter().enumerate() {
        out = out.replace(id, &format!("<id{i}>{}", " ".repeat(36 - 5)));
    }
    let mut result = String::new();
    for line in out.lines() {
        let mut l = line.to_string();
        while let Some(at) = l
            .find("T")
            .filter(|&at| at >= 10 && l[at - 10..].starts_with("20"))
        {
            let end = (at + 14).min(l.len());
            if l.get(at - 10..end).is_some_and(|t| t.ends_with('Z')) {
                l.replace_range(at - 10..end, "<time>                  ");
            } else {
                break;
            }
        }
        result.push_str(l.trim_end());
        result.push('\n');
    }
    result
}

#[test]
fn reading_commands_print_tables_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ids = build(dir);

    // Human form, exactly (ids and times normalised).
    let table = normalize(&ok(dir, &["query"]), &ids);
    let expected = "\
SEQ  ID                                    ENTITY     SCOPE  KIND  VER  TIME                      PAYLOAD
1    <id0>                                 order:1    t:a    1:1   0    <time>                    {\"qty\":2,\"sku\":\"tea\"}
2    <id1>                                 order:1    t:a    1:1   1    <time>                    {\"qty\":3,\"sku\":\"tea\"}
3    <id2>                                 order:2    t:b    1:1   0    <time>                    {\"qty\":1,\"sku\":\"mug\"}
4    <id3>                                 payment:1  t:a    2:1   0    <time>                    {\"cents\":1250}
";
    assert_eq!(table, expected);

    let get = ok(dir, &["get", &ids[3]]);
    assert!(get.contains("entity       payment:1"), "{get}");
    assert!(get.contains(&format!("causation    {}", ids[1])), "{get}");
    let json: Value = serde_json::from_str(&ok(dir, &["get", &ids[3], "--json"])).unwrap();
    assert_eq!(json["payload"]["cents"], 1250);
    assert_eq!(json["kind"], "2:1");
    assert_eq!(json["causation"], ids[1].as_str());
    assert!(json["timestamp"].as_str().unwrap().ends_with('Z'));

    // Filters.
    let count = |args: &[&str]| {
        let mut a = vec!["query", "--json"];
        a.extend_from_slice(args);
        json_lines(&ok(dir, &a)).len()
    };
    assert_eq!(count(&[]), 4);
    assert_eq!(count(&["--entity", "order:1"]), 2);
    assert_eq!(count(&["--prefix", "order"]), 3);
    assert_eq!(count(&["--scope", "t:b"]), 1);
    assert_eq!(count(&["--kind", "2:1"]), 1);
    assert_eq!(count(&["--kind", "0x2:0x1"]), 1);
    assert_eq!(count(&["--category", "1"]), 3);
    assert_eq!(count(&["--after", "2"]), 2);
    assert_eq!(count(&["--limit", "1"]), 1);
    assert_eq!(
        json_lines(&ok(dir, &["stream", "order:1", "--json"])).len(),
        2
    );
    let tail = json_lines(&ok(dir, &["tail", "--limit", "2", "--json"]));
    assert_eq!(tail[1]["sequence"], 4);
    assert_eq!(tail.len(), 2);

    // Graph and links.
    let effects = json_lines(&ok(dir, &["effects", &ids[1], "--json"]));
    assert_eq!(effects[0]["id"], ids[3].as_str());
    let causes = json_lines(&ok(dir, &["causes", &ids[3], "--json"]));
    assert_eq!(causes[0]["id"], ids[1].as_str());
    assert_eq!(
        json_lines(&ok(dir, &["correlated", &ids[0], "--json"])).len(),
        2
    );
    let walk = ok(dir, &["walk", &ids[1]]);
    assert!(
        walk.contains("intact back to the entity's first event"),
        "{walk}"
    );
    let walk: Value = serde_json::from_str(&ok(dir, &["walk", &ids[1], "--json"])).unwrap();
    assert_eq!(walk["report"]["checked"], 2);
    let dot = ok(dir, &["graph", &ids[3], "--format", "dot"]);
    assert!(
        dot.starts_with("digraph causal {") && dot.contains("n2 -> n4 [label=\"caused\"]"),
        "{dot}"
    );
    let mermaid = ok(dir, &["graph", &ids[3], "--format", "mermaid"]);
    assert!(mermaid.contains("n2 -->|caused| n4"), "{mermaid}");
    let graph: Value =
        serde_json::from_str(&ok(dir, &["graph", &ids[3], "--format", "json"])).unwrap();
    assert_eq!(graph["root"], ids[3].as_str());
    assert!(graph["edges"].as_array().unwrap().len() >= 2);
    let tree = ok(dir, &["graph", &ids[3]]);
    assert!(
        tree.contains("payment:1 v0 (2:1) seq 4  <- this event"),
        "{tree}"
    );

    let stats: Value = serde_json::from_str(&ok(dir, &["stats", "--json"])).unwrap();
    assert_eq!(stats["events"], 4);
    assert_eq!(stats["entities"], 3);
}

#[test]
fn writing_commands_append_import_export_and_redact() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ids = build(dir);
    let receipt = ok(
        dir,
        &[
            "append",
            "--entity",
            "order:1",
            "--scope",
            "t:a",
            "--kind",
            "1:1",
            "--expect",
            "1",
            "--causation",
            &ids[0],
            "--json",
            r#"{"sku":"tea","qty":4}"#,
        ],
    );
    let receipt: Value = serde_json::from_str(&receipt).unwrap();
    assert_eq!(receipt["version"], 2);
    // From stdin, with an idempotency key: the retry returns the same receipt.
    let args = [
        "append",
        "--entity",
        "note:1",
        "--scope",
        "t:a",
        "--kind",
        "3:1",
        "--idempotency-key",
        "k1",
        "--json",
    ];
    let first = stdout(&batpak_with_input(dir, &args, Some(r#"{"text":"hello"}"#)));
    let again = stdout(&batpak_with_input(dir, &args, Some(r#"{"text":"hello"}"#)));
    assert_eq!(first, again);
    fails(
        dir,
        &[
            "append", "--entity", "order:1", "--scope", "t:a", "--kind", "1:1", "--expect", "0",
            "{}",
        ],
        "expected version 0",
    );
    // Metadata: stored with the event, shown by get, carried by --json.
    let with_meta: Value = serde_json::from_str(&ok(
        dir,
        &[
            "append",
            "--entity",
            "note:2",
            "--scope",
            "t:a",
            "--kind",
            "3:1",
            "--meta",
            "user=ada",
            "--meta",
            "query=a=b",
            "--json",
            r#"{"text":"hi"}"#,
        ],
    ))
    .unwrap();
    let id = with_meta["event_id"].as_str().unwrap();
    let shown = ok(dir, &["get", id]);
    assert!(shown.contains("metadata     query=a=b user=ada"), "{shown}");
    let json: Value = serde_json::from_str(&ok(dir, &["get", id, "--json"])).unwrap();
    assert_eq!(json["metadata"]["user"], "ada");
    assert_eq!(json["metadata"]["query"], "a=b");
    rejected(
        dir,
        &[
            "append", "--entity", "e", "--scope", "s", "--kind", "1:1", "--meta", "nokey", "{}",
        ],
        "--meta",
        "nokey",
    );
    fails(
        dir,
        &[
            "append", "--entity", "e", "--scope", "s", "--kind", "1:1", "--meta", "k=a\u{7}", "{}",
        ],
        "",
    );

    // Export, then import into a new store: same events, links carried over.
    let exported = ok(dir, &["export"]);
    assert_eq!(exported.lines().count(), 7);
    let other = tempfile::tempdir().unwrap();
    let file = other.path().join("events.jsonl");
    std::fs::write(&file, &exported).unwrap();
    let target = other.path().join("store");
    let imported = ok(&target, &["import", file.to_str().unwrap()]);
    assert_eq!(imported, "imported 7 events\n");
    let copied = json_lines(&ok(&target, &["query", "--json"]));
    assert_eq!(copied.len(), 7);
    let payment = copied.iter().find(|e| e["entity"] == "payment:1").unwrap();
    let cause = copied.iter().find(|e| e["sequence"] == 2).unwrap();
    assert_eq!(
        payment["causation"], cause["id"],
        "the causation follows the new ids"
    );
    assert_eq!(payment["payload"]["cents"], 1250);

    // Snapshot: a copy that reads the same.
    let copy = other.path().join("copy");
    let out = ok(dir, &["snapshot", copy.to_str().unwrap()]);
    assert!(out.starts_with("copied 7 events"), "{out}");
    assert_eq!(ok(&copy, &["export"]), ok(dir, &["export"]));
    fails(dir, &["snapshot", copy.to_str().unwrap()], "not empty");

    // Redact.
    let out = ok(dir, &["redact", &ids[2], "--reason", "test"]);
    assert!(out.starts_with(&format!("redacted {}", ids[2])), "{out}");
    assert!(ok(dir, &["get", &ids[2]]).contains("<redacted>"));
    let json: Value = serde_json::from_str(&ok(dir, &["get", &ids[2], "--json"])).unwrap();
    assert_eq!(
        (json["redacted"].as_bool(), json["payload"].is_null()),
        (Some(true), true)
    );
    fails(
        dir,
        &["redact", &ids[2], "--reason", "again"],
        "already redacted",
    );
}

#[test]
fn proof_commands_verify_receipts_anchors_and_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build(dir);
    let key = "11".repeat(32);
    let receipt = ok(
        dir,
        &[
            "append",
            "--signing-key",
            &key,
            "--entity",
            "e",
            "--scope",
            "s",
            "--kind",
            "1:9",
            "--json",
            "{}",
        ],
    );
    // The signing key's public half is trusted when the key is given.
    let check = batpak_with_input(
        dir,
        &["verify-receipt", "--signing-key", &key],
        Some(&receipt),
    );
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(stdout(&check).contains("valid, signed by key"));
    let untrusted = batpak_with_input(dir, &["verify-receipt"], Some(&receipt));
    assert!(!untrusted.status.success());
    assert!(stderr(&untrusted).contains("not trusted"));
    let tampered = receipt.replacen("\"version\": 0", "\"version\": 1", 1);
    assert_ne!(tampered, receipt);
    let bad = batpak_with_input(
        dir,
        &["verify-receipt", "--signing-key", &key],
        Some(&tampered),
    );
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("signature does not verify"),
        "{}",
        stderr(&bad)
    );

    let anchor = ok(dir, &["anchor", "--json"]);
    let holds = batpak_with_input(dir, &["verify-anchor"], Some(&anchor));
    assert!(holds.status.success());
    assert!(stdout(&holds).starts_with("holds"));
    let mut forged: Value = serde_json::from_str(&anchor).unwrap();
    forged["running_hash"] = Value::String("00".repeat(32));
    let rewritten = batpak_with_input(dir, &["verify-anchor"], Some(&forged.to_string()));
    assert!(!rewritten.status.success());
    assert!(stderr(&rewritten).contains("rewritten"));

    assert!(ok(dir, &["verify"]).contains("clean"));
    let report: Value = serde_json::from_str(&ok(dir, &["verify", "--json"])).unwrap();
    assert_eq!(report["clean"], true);
    // A region: one entity, or a sequence range (--after, --limit).
    let one: Value =
        serde_json::from_str(&ok(dir, &["verify", "--entity", "order:1", "--json"])).unwrap();
    assert_eq!(one["report"]["events"], 2);
    assert!(one["report"]["running_hash"].is_null());
    let range: Value = serde_json::from_str(&ok(
        dir,
        &["verify", "--after", "1", "--limit", "2", "--json"],
    ))
    .unwrap();
    assert_eq!(range["report"]["events"], 2);
    // Damage a byte in the middle of the first record: exit 1, the finding named.
    let seg = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[64 + 40] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let o = batpak(dir, &["verify"]);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(
        text.contains("Record") && text.contains("0000000000000001.seg") && text.contains("64"),
        "{text}"
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_a_non_zero_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nothing-here");
    for args in [
        vec!["stats"],
        vec!["query"],
        vec!["verify"],
        vec!["get", "01a222ec-09de-70cb-9cda-3ba4e91c7fb4"],
        vec!["anchor"],
        vec![
            "redact",
            "01a222ec-09de-70cb-9cda-3ba4e91c7fb4",
            "--reason",
            "r",
        ],
    ] {
        fails(&missing, &args, "no batpak store at");
    }
    let dir = tmp.path().join("store");
    build(&dir);
    rejected(&dir, &["get", "not-a-uuid"], "[ID]", "not-a-uuid");
    fails(&dir, &["get"], "<ID>");
    fails(
        &dir,
        &["get", "01a222ec-09de-70cb-9cda-3ba4e91c7fb4"],
        "no event has id",
    );
    fails(
        &dir,
        &["walk", "01a222ec-09de-70cb-9cda-3ba4e91c7fb4"],
        "no event has id",
    );
    rejected(&dir, &["query", "--kind", "1-1"], "--kind", "1-1");
    rejected(&dir, &["query", "--kind", "16:1"], "--kind", "16:1");
    fails(&dir, &["query", "--category", "16"], "--category");
    fails(
        &dir,
        &[
            "append", "--entity", "e", "--scope", "s", "--kind", "1:1", "{bad",
        ],
        "not JSON",
    );
    fails(
        &dir,
        &[
            "append", "--entity", "e", "--scope", "s", "--kind", "0:1", "{}",
        ],
        "reserved",
    );
    fails(
        &dir,
        &[
            "append", "--entity", "", "--scope", "s", "--kind", "1:1", "{}",
        ],
        "entity",
    );
    rejected(
        &dir,
        &[
            "append", "--entity", "e", "--scope", "s", "--kind", "1:1", "--expect", "x", "{}",
        ],
        "--expect",
        "x",
    );
    rejected(
        &dir,
        &[
            "append",
            "--entity",
            "e",
            "--scope",
            "s",
            "--kind",
            "1:1",
            "--causation",
            "nope",
            "{}",
        ],
        "--causation",
        "nope",
    );
    rejected(&dir, &["--trust-key", "abc", "stats"], "--trust-key", "abc");
    fails(&dir, &["verify-receipt", "{}"], "not a receipt");
    fails(&dir, &["verify-anchor", "[]"], "not an anchor");
    // A bad secret key is refused without being echoed: a near miss is mostly the key.
    let almost = "1f".repeat(31) + "1";
    for (args, secret) in [
        (vec!["--signing-key", "xyz", "stats"], "xyz"),
        (vec!["stats", "--signing-key", &almost], almost.as_str()),
    ] {
        let o = batpak(&dir, &args);
        let err = stderr(&o);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?} should be refused: {err}"
        );
        assert!(
            err.starts_with("error: invalid value for '--signing-key <HEX>'")
                && err.contains("64 hex digits"),
            "{err}"
        );
        assert!(!err.contains(secret), "the key is echoed: {err}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_batpak"))
        .arg("--dir")
        .arg(&dir)
        .arg("stats")
        .env("BATPAK_SIGNING_KEY", &almost)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(!stderr(&o).contains(&almost), "{}", stderr(&o));
    let jsonl = tmp.path().join("bad.jsonl");
    std::fs::write(
        &jsonl,
        "{\"entity\":\"e\",\"scope\":\"s\",\"kind\":\"1:1\",\"payload\":{}}\nnot json\n",
    )
    .unwrap();
    fails(&dir, &["import", jsonl.to_str().unwrap()], "line 2");
    // clap's own errors: unknown flags and commands.
    let o = batpak(&dir, &["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn the_store_comes_from_dir_anywhere_or_the_environment_and_help_is_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    build(&dir);
    // --dir after the subcommand.
    let o = Command::new(env!("CARGO_BIN_EXE_batpak"))
        .args(["stats", "--json", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success());
    // $BATPAK_DIR.
    let o = Command::new(env!("CARGO_BIN_EXE_batpak"))
        .args(["stats", "--json"])
        .env("BATPAK_DIR", &dir)
        .output()
        .unwrap();
    let stats: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(stats["events"], 4);
    for cmd in [
        "demo",
        "get",
        "stream",
        "query",
        "tail",
        "walk",
        "causes",
        "effects",
        "correlated",
        "graph",
        "stats",
        "append",
        "import",
        "verify",
        "verify-receipt",
        "anchor",
        "verify-anchor",
        "export",
        "redact",
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_batpak"))
            .args([cmd, "--help"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{cmd} --help");
        let help = String::from_utf8(o.stdout).unwrap();
        assert!(
            help.contains("--dir") && help.contains("--json"),
            "{cmd}: {help}"
        );
    }
}

#[test]
fn a_store_held_by_a_writer_is_read_through_a_view() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build(dir);
    let writer = Store::open(dir).unwrap();
    let stats: Value = serde_json::from_str(&ok(dir, &["stats", "--json"])).unwrap();
    assert_eq!(stats["events"], 4);
    fails(
        dir,
        &[
            "append", "--entity", "e", "--scope", "s", "--kind", "1:1", "{}",
        ],
        "locked",
    );
    drop(writer);
}

#[test]
fn demo_runs_end_to_end_and_leaves_a_store_to_explore() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = ok(&dir, &["demo"]);
    for needle in [
        "gate denial (recorded)",
        "Projection of order:",
        "refused to confirm",
        "<- this event",
        "Signed { key_id",
        "payload erased from disk: true",
        "0 findings",
    ] {
        assert!(out.contains(needle), "demo output lacks {needle:?}:\n{out}");
    }
    assert!(ok(&dir, &["verify"]).contains("clean"));
    assert!(json_lines(&ok(&dir, &["query", "--kind", "3:1", "--json"])).len() >= 10);
    fails(&dir, &["demo"], "already holds a store");
}

#[test]
fn tail_follow_prints_what_another_process_appends() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build(dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_batpak"))
        .arg("--dir")
        .arg(dir)
        .args(["tail", "-f", "--json", "--kind", "2:1", "--limit", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(tmp.path().join("tail.err")).unwrap(),
        ))
        .spawn()
        .unwrap();
    // On a timeout, say what the tool said.
    let said = |what: &str| {
        let err = std::fs::read_to_string(tmp.path().join("tail.err")).unwrap_or_default();
        format!("no {what} line from `tail -f` within 10 s; its stderr: {err:?}")
    };
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait = std::time::Duration::from_secs(10);
    let first = rx
        .recv_timeout(wait)
        .unwrap_or_else(|_| panic!("{}", said("first")));
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["sequence"], 4, "the newest matching event first");
    // A writer appends while the tool follows (the tool holds no lock).
    let store = Store::open(dir).unwrap();
    for (kind, cents) in [(ORDER, 0), (PAYMENT, 77)] {
        store
            .append_raw(
                &Coordinate::new("payment:2", "t:a").unwrap(),
                kind,
                RawPayload::json(format!("{{\"cents\":{cents}}}").as_bytes()),
                AppendOptions::default(),
            )
            .unwrap();
    }
    let next = rx
        .recv_timeout(wait)
        .unwrap_or_else(|_| panic!("{}", said("followed")));
    let next: Value = serde_json::from_str(&next).unwrap();
    assert_eq!(
        next["payload"]["cents"], 77,
        "only the matching kind is followed"
    );
    child.kill().unwrap();
    let _ = child.wait();
    drop(store);
}

#[test]
fn a_reader_that_stops_early_ends_the_tool_quietly() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // About 1.5 MB of output, far more than a pipe holds (64 KiB on Linux): the tool
    // is still writing when the reader closes its end after one line.
    let store = Store::open(dir).unwrap();
    let order = Coordinate::new("order:1", "t:a").unwrap();
    for round in 0..4 {
        let mut batch = Batch::new();
        for n in 0..1000 {
            let payload = format!(
                r#"{{"n":{},"note":"{}"}}"#,
                round * 1000 + n,
                "x".repeat(100)
            );
            batch.push_raw(
                &order,
                ORDER,
                RawPayload::json(payload.as_bytes()),
                AppendOptions::default(),
            );
        }
        store.append_batch(&batch).unwrap();
    }
    store.close().unwrap();
    for args in [&["export"][..], &["query", "--json"], &["query"]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_batpak"))
            .arg("--dir")
            .arg(dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        assert!(first.len() > 10, "{args:?}: {first:?}");
        drop(reader);
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "{args:?}: {:?}, stderr {:?}",
            o.status,
            stderr(&o)
        );
    }
    // Standard output closed before the first line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_batpak"))
        .arg("--dir")
        .arg(tmp.path().join("demo"))
        .arg("demo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "demo: {:?}, stderr {:?}",
        o.status,
        stderr(&o)
    );
}

#[test]
fn every_command_that_opens_prints_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    // A crash before close: no checkpoint, and zeros after the last record where a
    // write's data never landed.
    std::fs::remove_file(dir.path().join("index.ckpt")).unwrap();
    let seg = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len + 100).unwrap();
    drop(f);
    for args in [&["stats"][..], &["verify"], &["tail"]] {
        let o = batpak(dir.path(), args);
        // verify also reports the ignored tail as a finding, so it exits 1.
        let expected = if args == ["verify"] { 1 } else { 0 };
        assert_eq!(o.status.code(), Some(expected), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("warning: torn tail ignored by this read-only open: 100 bytes")
                && err.contains(&format!("at offset {len}")),
            "{args:?}: {err}"
        );
    }
    let o = batpak(
        dir.path(),
        &[
            "append",
            "--entity",
            "order:3",
            "--scope",
            "t:a",
            "--kind",
            "1:1",
            r#"{"x":1}"#,
        ],
    );
    assert!(
        stderr(&o).contains("warning: torn tail cut by this open: 100 bytes"),
        "{}",
        stderr(&o)
    );
    let o = batpak(dir.path(), &["stats"]);
    assert!(!stderr(&o).contains("torn tail"), "{}", stderr(&o));
}

#[test]
fn repair_cuts_where_the_open_error_says_and_reindex_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let seg = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() - 2;
    bytes[at] ^= 1;
    std::fs::write(&seg, &bytes).unwrap();
    let o = batpak(dir.path(), &["stats"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let hint = err
        .split("batpak repair --cut ")
        .nth(1)
        .unwrap_or_else(|| panic!("no repair hint: {err}"));
    let cut = hint.split_whitespace().next().unwrap().to_string();
    assert!(cut.starts_with(seg.to_str().unwrap()), "{cut}");
    rejected(
        dir.path(),
        &["repair", "--cut", "zz:1", "--reason", "r"],
        "--cut",
        "zz:1",
    );
    let o = batpak(dir.path(), &["repair"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let text = ok(
        dir.path(),
        &["repair", "--cut", &cut, "--reason", "bit rot"],
    );
    assert!(text.starts_with("cut segment 1 at offset "), "{text}");
    let json: Value = serde_json::from_str(&ok(dir.path(), &["--json", "stats"])).unwrap();
    assert_eq!(json["events"], 4, "three kept, one repair record");
    ok(dir.path(), &["verify"]);
    let text = ok(dir.path(), &["repair", "--reindex"]);
    assert!(text.starts_with("index rebuilt from 4 events"), "{text}");
}

/// Export lines of `dir`, parsed.
fn exported(dir: &Path) -> Vec<Value> {
    json_lines(&ok(dir, &["export"]))
}

#[test]
fn export_import_preserve_export_of_the_demo_store_is_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = tmp.path().join("demo");
    ok(&demo, &["demo"]);
    let first = ok(&demo, &["export"]);
    let file = tmp.path().join("demo.jsonl");
    std::fs::write(&file, &first).unwrap();
    let lines = json_lines(&first);
    for kind in ["0:1", "0:3", "0:4", "0:7"] {
        assert!(lines.iter().any(|l| l["kind"] == kind), "a {kind} record");
    }
    assert!(lines.iter().any(|l| l["redacted"] == true));

    let replica = tmp.path().join("replica");
    let out = ok(&replica, &["import", "--preserve", file.to_str().unwrap()]);
    assert_eq!(
        out,
        format!(
            "imported {} events with their ids, sequences and hashes\n",
            lines.len()
        )
    );
    assert_eq!(ok(&replica, &["export"]), first, "byte-identical");
    assert!(ok(&replica, &["verify"]).contains("clean"));
    let anchor = ok(&demo, &["anchor", "--json"]);
    let held = batpak_with_input(&replica, &["verify-anchor"], Some(&anchor));
    assert!(held.status.success(), "{}", stderr(&held));
    // Only into an empty store.
    fails(
        &replica,
        &["import", "--preserve", file.to_str().unwrap()],
        "empty store only",
    );
    // Kind names are shown by the tools, from the replica's own records.
    let table = ok(&replica, &["query", "--kind", "1:1", "--limit", "1"]);
    assert!(table.contains("1:1 OrderPlaced"), "{table}");
    let json = json_lines(&ok(&replica, &["query", "--kind", "1:1", "--json"]));
    assert_eq!(json[0]["kind_name"], "OrderPlaced");
    let id = json[0]["id"].as_str().unwrap().to_string();
    assert!(ok(&replica, &["get", &id]).contains("1:1 OrderPlaced"));
}

#[test]
fn reappend_keeps_bytes_and_schema_renames_causes_and_a_rerun_appends_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = tmp.path().join("demo");
    ok(&demo, &["demo"]);
    let source = exported(&demo);
    let file = tmp.path().join("demo.jsonl");
    std::fs::write(&file, ok(&demo, &["export"])).unwrap();
    let target = tmp.path().join("target");
    let first = ok(
        &target,
        &["import", file.to_str().unwrap(), "--source", "demo"],
    );
    let user: Vec<&Value> = source
        .iter()
        .filter(|l| !l["kind"].as_str().unwrap().starts_with("0:") && l["redacted"] == false)
        .collect();
    assert!(
        first.starts_with(&format!("imported {} events", user.len())),
        "{first}"
    );
    assert!(first.contains("store records skipped"), "{first}");
    let again = ok(
        &target,
        &["import", file.to_str().unwrap(), "--source", "demo"],
    );
    assert!(
        again.starts_with(&format!(
            "imported 0 events; {} already present",
            user.len()
        )),
        "{again}"
    );
    let copied: Vec<Value> = exported(&target)
        .into_iter()
        .filter(|l| !l["kind"].as_str().unwrap().starts_with("0:"))
        .collect();
    assert_eq!(copied.len(), user.len(), "no duplicates after the rerun");
    let by_source: std::collections::HashMap<&str, &Value> = copied
        .iter()
        .map(|l| (l["metadata"]["batpak.source_id"].as_str().unwrap(), l))
        .collect();
    let new_id_of: std::collections::HashMap<&str, &str> = by_source
        .iter()
        .map(|(old, l)| (*old, l["id"].as_str().unwrap()))
        .collect();
    for old in &user {
        let new = by_source[old["id"].as_str().unwrap()];
        assert_eq!(new["metadata"]["batpak.source_store"], "demo");
        assert_ne!(new["id"], old["id"]);
        for field in [
            "entity",
            "scope",
            "kind",
            "kind_name",
            "schema_version",
            "encoding",
            "bytes",
        ] {
            assert_eq!(new[field], old[field], "{field} of {}", old["id"]);
        }
        if let Some(cause) = old["causation"].as_str() {
            if let Some(renamed) = new_id_of.get(cause) {
                assert_eq!(new["causation"].as_str(), Some(*renamed));
            }
        }
    }
}

#[test]
fn import_of_each_kind_of_bad_line_stops_at_its_line_and_says_what_was_imported() {
    let tmp = tempfile::tempdir().unwrap();
    let good = |n: usize| {
        format!(r#"{{"entity":"e:{n}","scope":"s","kind":"1:1","payload":{{"n":{n}}}}}"#)
    };
    let write = |name: &str, lines: &[String]| {
        let path = tmp.path().join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed", "{\"entity\": ".into(), "not an export line"),
        (
            "unknown kind",
            r#"{"entity":"e","scope":"s","kind":"1:x","payload":{}}"#.into(),
            "kind",
        ),
        (
            "unknown field",
            r#"{"entity":"e","scope":"s","kind":"1:1","payload":{},"metdata":{}}"#.into(),
            "metdata",
        ),
        (
            "bad coordinate",
            r#"{"entity":"","scope":"s","kind":"1:1","payload":{}}"#.into(),
            "entity",
        ),
        (
            "no payload",
            r#"{"entity":"e","scope":"s","kind":"1:1"}"#.into(),
            "neither `bytes` nor `payload`",
        ),
        (
            "bad base64",
            r#"{"entity":"e","scope":"s","kind":"1:1","encoding":"opaque","bytes":"A!=="}"#.into(),
            "not base64",
        ),
    ];
    for (i, (what, bad, needle)) in cases.iter().enumerate() {
        // 1,000 good lines commit as one batch; the bad line 1,002 fails the next.
        let mut lines: Vec<String> = (0..1001).map(good).collect();
        lines.push(bad.clone());
        let file = write(&format!("bad{i}.jsonl"), &lines);
        let store = tmp.path().join(format!("store{i}"));
        let o = batpak(&store, &["import", file.to_str().unwrap()]);
        assert!(!o.status.success(), "{what}");
        let err = stderr(&o);
        assert!(err.contains("line 1002"), "{what}: {err}");
        assert!(err.contains(needle), "{what}: {err}");
        assert!(
            err.contains("lines 1 to 1000 were imported, nothing after them"),
            "{what}: {err}"
        );
        let stats: Value = serde_json::from_str(&ok(&store, &["stats", "--json"])).unwrap();
        // Hand-written lines name no kind, so no name record joins the 1,000.
        assert_eq!(
            stats["events"], 1000,
            "{what}: the failed batch wrote nothing"
        );
    }

    // A truncated export: cut inside a line, and (preserved) inside a batch.
    let demo = tmp.path().join("demo");
    ok(&demo, &["demo"]);
    let text = ok(&demo, &["export"]);
    let cut = &text[..text.len() - 40];
    let file = tmp.path().join("cut.jsonl");
    std::fs::write(&file, cut).unwrap();
    let o = batpak(
        &tmp.path().join("cut"),
        &["import", "--preserve", file.to_str().unwrap()],
    );
    let n = cut.lines().count();
    assert!(
        stderr(&o).contains(&format!("line {n}: not an export line")),
        "{}",
        stderr(&o)
    );
    let batched = tmp.path().join("batched");
    {
        let store = Store::open(&batched).unwrap();
        let mut batch = Batch::new();
        for n in 0..3 {
            batch.push_raw(
                &Coordinate::new(format!("b:{n}"), "s").unwrap(),
                EventKind::custom(1, 1),
                RawPayload::json(b"{}"),
                AppendOptions::default(),
            );
        }
        store.append_batch(&batch).unwrap();
        store.close().unwrap();
    }
    let text = ok(&batched, &["export"]);
    let first_two: Vec<&str> = text.lines().take(2).collect();
    std::fs::write(&file, first_two.join("\n") + "\n").unwrap();
    let o = batpak(
        &tmp.path().join("cut2"),
        &["import", "--preserve", file.to_str().unwrap()],
    );
    assert!(
        stderr(&o).contains("line 2: the input ends inside a batch"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("nothing was imported"),
        "{}",
        stderr(&o)
    );

    // A filtered export whose causes lie outside it.
    let payments = ok(&demo, &["export", "--kind", "2:1"]);
    assert!(json_lines(&payments)
        .iter()
        .any(|l| !l["causation"].is_null()));
    let file = tmp.path().join("payments.jsonl");
    std::fs::write(&file, &payments).unwrap();
    fails(
        &tmp.path().join("p1"),
        &["import", file.to_str().unwrap()],
        "--drop-outside-causes",
    );
    let out = ok(
        &tmp.path().join("p2"),
        &["import", file.to_str().unwrap(), "--drop-outside-causes"],
    );
    assert!(out.contains("causes outside the import dropped"), "{out}");
}

/// The README's tool section, run line by line as one `sh -e` script on the demo
/// store (all but its first line, which installs the tool), with its placeholders
/// filled in: every line must succeed.
#[test]
fn every_line_of_the_readme_tool_section_runs_on_the_demo_store() {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("## The `batpak` tool")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the README has a tool section with a sh block");
    let lines: Vec<&str> = section.lines().collect();
    assert!(lines[0].starts_with("cargo install"), "{}", lines[0]);
    assert!(lines.len() > 10, "{section}");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shop");
    ok(&dir, &["demo"]);
    let payment = json_lines(&ok(
        &dir,
        &["query", "--kind", "2:1", "--limit", "1", "--json"],
    ));
    let id = payment[0]["id"].as_str().unwrap().to_string();
    let entity = payment[0]["entity"].as_str().unwrap().to_string();
    let backups = tmp.path().join("backups");
    let mut script = String::from("set -e\n");
    for line in &lines[1..] {
        // Placeholders as whole words (`BATPAK_DIR` stays).
        let mut line = line.replace("/backups/", &format!("{}/", backups.display()));
        for (word, with) in [
            ("DIR", dir.display().to_string()),
            ("ENTITY", entity.clone()),
            ("HEX", "42".repeat(32)),
            ("ID", id.clone()),
        ] {
            line = regex_free_replace_word(&line, word, &with);
        }
        script.push_str(&format!("echo '+ {}'\n{line}\n", line.replace('\'', "")));
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_batpak")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(tmp.path())
        .env("PATH", path)
        .env_remove("BATPAK_DIR")
        .env_remove("BATPAK_SIGNING_KEY")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "the README tool section failed:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    let printed = stdout(&o);
    assert!(printed.contains("clean"), "{printed}");
    assert!(printed.contains("holds"), "{printed}");
    assert!(tmp.path().join("backups/shop-2026-11-28").exists());
    assert_eq!(
        ok(&tmp.path().join("replica"), &["verify"]).lines().last(),
        Some("clean: every checksum, hash, chain link and index entry checks")
    );
}

/// `text` with every whole-word `word` replaced by `with`.
fn regex_free_replace_word(text: &str, word: &str, with: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let before = rest[..at].chars().last();
        let after = rest[at + word.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric() && c != '_');
        out.push_str(&rest[..at]);
        if boundary(before) && boundary(after) {
            out.push_str(with);
        } else {
            out.push_str(word);
        }
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

#[test]
fn catalogue_commands_list_entities_scopes_kinds_and_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ids = build(dir);
    assert_eq!(
        ok(dir, &["entities"]),
        concat!(
            "ENTITY     VERSION  EVENTS  FIRST  LAST  SCOPES\n",
            "order:1    1        2       1      2     t:a\n",
            "order:2    0        1       3      3     t:b\n",
            "payment:1  0        1       4      4     t:a\n",
        )
    );
    let paged = json_lines(&ok(
        dir,
        &[
            "entities", "--prefix", "order", "--after", "order:1", "--json",
        ],
    ));
    assert_eq!(paged.len(), 1);
    assert_eq!(paged[0]["entity"], "order:2");
    assert_eq!(ok(dir, &["scopes"]), "SCOPE  EVENTS\nt:a    3\nt:b    1\n");
    assert_eq!(
        ok(dir, &["kinds"]),
        "KIND  NAME  EVENTS\n1:1   -     3\n2:1   -     1\n"
    );
    assert_eq!(ok(dir, &["count"]), "4\n");
    assert_eq!(ok(dir, &["count", "--prefix", "order"]), "3\n");
    assert_eq!(ok(dir, &["count", "--after", "2"]), "2\n");
    let count: Value =
        serde_json::from_str(&ok(dir, &["count", "--kind", "2:1", "--json"])).unwrap();
    assert_eq!(count["count"], 1);

    // By sequence, newest first, and by time.
    let third: Value = serde_json::from_str(&ok(dir, &["get", "--seq", "3", "--json"])).unwrap();
    assert_eq!(third["id"].as_str(), Some(ids[2].as_str()));
    fails(dir, &["get", "--seq", "9"], "no event has sequence 9");
    let newest: Vec<u64> = json_lines(&ok(dir, &["query", "--reverse", "--json"]))
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(newest, vec![4, 3, 2, 1]);
    let page: Vec<u64> = json_lines(&ok(
        dir,
        &[
            "query",
            "--reverse",
            "--before",
            "4",
            "--limit",
            "2",
            "--json",
        ],
    ))
    .iter()
    .map(|e| e["sequence"].as_u64().unwrap())
    .collect();
    assert_eq!(page, vec![3, 2]);
    assert_eq!(
        json_lines(&ok(dir, &["query", "--since", "1h", "--json"])).len(),
        4
    );
    assert!(json_lines(&ok(dir, &["query", "--until", "1h", "--json"])).is_empty());
    assert_eq!(
        ok(dir, &["count", "--since", "2000-01-01T00:00:00Z"]),
        "4\n"
    );
    assert_eq!(
        ok(dir, &["count", "--until", "2000-01-01T00:00:00Z"]),
        "0\n"
    );
    rejected(
        dir,
        &["query", "--since", "yesterday-ish"],
        "--since",
        "yesterday-ish",
    );
    fails(
        dir,
        &["query", "--since", "1m", "--until", "1h"],
        "--until is before --since",
    );
    // Tail reads the newest from the index: the last two, oldest first.
    let tail: Vec<u64> = json_lines(&ok(dir, &["tail", "--limit", "2", "--json"]))
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(tail, vec![3, 4]);
}

#[test]
fn keygen_and_pubkey_make_and_show_keys_and_json_errors_carry_a_code() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let key = tmp.path().join("signing.key");
    let made = ok(&dir, &["keygen", key.to_str().unwrap()]);
    assert!(made.contains("(mode 0600)"), "{made}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let secret = std::fs::read_to_string(&key).unwrap().trim().to_string();
    assert_eq!(secret.len(), 64);
    fails(&dir, &["keygen", key.to_str().unwrap()], "never overwrites");
    let shown: Value =
        serde_json::from_str(&ok(&dir, &["pubkey", key.to_str().unwrap(), "--json"])).unwrap();
    let public = shown["public_key"].as_str().unwrap().to_string();
    assert!(made.contains(&public));
    let from_flag: Value =
        serde_json::from_str(&ok(&dir, &["--signing-key", &secret, "pubkey", "--json"])).unwrap();
    assert_eq!(from_flag["public_key"], shown["public_key"]);
    fails(&dir, &["pubkey"], "no key");
    std::fs::write(tmp.path().join("bad.key"), "zz").unwrap();
    let o = batpak(
        &dir,
        &["pubkey", tmp.path().join("bad.key").to_str().unwrap()],
    );
    assert!(
        !o.status.success() && !stderr(&o).contains("zz"),
        "{}",
        stderr(&o)
    );

    // A receipt signed with the key verifies with --trust-key PUBLIC elsewhere.
    let receipt = ok(
        &dir,
        &[
            "--signing-key",
            &secret,
            "append",
            "--entity",
            "e",
            "--scope",
            "s",
            "--kind",
            "1:1",
            "--json",
            "{}",
        ],
    );
    let checked = batpak_with_input(
        &dir,
        &["--trust-key", &public, "verify-receipt"],
        Some(&receipt),
    );
    let signed_by = format!("signed by key {}", shown["key_id"].as_str().unwrap());
    assert!(
        stdout(&checked).contains(&signed_by),
        "{}",
        stdout(&checked)
    );

    // --json errors: one JSON object on stderr with a stable code.
    let o = batpak(&tmp.path().join("none"), &["--json", "stats"]);
    let err: Value = serde_json::from_str(stderr(&o).trim()).unwrap();
    assert_eq!(err["error"]["code"], "no_store");
    let o = batpak(
        &dir,
        &[
            "--json", "append", "--entity", "e", "--scope", "s", "--kind", "1:1", "--expect",
            "none", "{}",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let err: Value = serde_json::from_str(stderr(&o).trim()).unwrap();
    assert_eq!(err["error"]["code"], "version_conflict");
    assert!(err["error"]["message"].as_str().unwrap().contains("entity"));
}

#[test]
fn wait_lets_a_write_take_a_store_another_process_releases() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    build(&dir);
    let held = Store::open(&dir).unwrap();
    let args = [
        "append", "--entity", "e", "--scope", "s", "--kind", "1:1", "{}",
    ];
    let mut quick = vec!["--wait", "100ms"];
    quick.extend(args);
    fails(&dir, &quick, "locked");
    let mut patient = vec!["--wait", "20s"];
    patient.extend(args);
    let child = Command::new(env!("CARGO_BIN_EXE_batpak"))
        .arg("--dir")
        .arg(&dir)
        .args(&patient)
        .env_remove("BATPAK_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    held.close().unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("appended seq 5"), "{}", stdout(&o));
    rejected(&dir, &["--wait", "soon", "stats"], "--wait", "soon");
}

#[test]
fn format_csv_prints_lists_as_csv_and_misplaced_forms_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ids = build(dir);
    assert_eq!(
        ok(dir, &["--format", "csv", "kinds"]),
        "KIND,NAME,EVENTS\n1:1,-,3\n2:1,-,1\n"
    );
    assert_eq!(
        ok(dir, &["entities", "--format", "csv", "--limit", "1"]),
        "ENTITY,VERSION,EVENTS,FIRST,LAST,SCOPES\norder:1,1,2,1,2,t:a\n"
    );
    let events = ok(dir, &["--format", "csv", "query", "--limit", "1"]);
    let mut lines = events.lines();
    assert_eq!(
        lines.next(),
        Some("SEQ,ID,ENTITY,SCOPE,KIND,VER,TIME,PAYLOAD")
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(&format!("1,{},order:1,t:a,1:1,0,", ids[0])),
        "{row}"
    );
    // The payload is quoted (it holds commas and quotes), and whole.
    assert!(row.ends_with(r#","{""qty"":2,""sku"":""tea""}""#), "{row}");
    // `--format json` is --json; graph forms are for graph only.
    assert_eq!(
        json_lines(&ok(dir, &["--format", "json", "query"])).len(),
        4
    );
    fails(dir, &["--format", "dot", "query"], "form of `graph`");
    assert!(ok(dir, &["graph", &ids[3], "--format", "dot"]).starts_with("digraph"));
    fails(dir, &["graph", &ids[3], "--format", "csv"], "no CSV form");
}

#[test]
fn verify_checks_a_store_that_cannot_open_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    build(&dir);
    assert!(ok(&dir, &["verify", "--offline"])
        .contains("clean: every checksum, hash and chain link checks (offline"));
    fails(
        &dir,
        &["verify", "--offline", "--entity", "order:1"],
        "takes no filters",
    );
    // Damage a record and drop the checkpoint: the store cannot open, verify still runs.
    std::fs::remove_file(dir.join("index.ckpt")).unwrap();
    let seg = dir.join("segments").join("0000000000000001.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&seg, bytes).unwrap();
    fails(&dir, &["stats"], "cannot open");
    let o = batpak(&dir, &["verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("checking the segment files offline"),
        "{}",
        stderr(&o)
    );
    let text = stdout(&o);
    assert!(
        text.contains("Record") && text.contains("0000000000000001.seg"),
        "{text}"
    );
    assert!(text.contains("verified 3 events"), "{text}");
}

#[test]
fn salvage_copies_what_is_readable_and_lists_the_losses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    build(&dir);
    let whole = tmp.path().join("whole");
    let out = ok(&dir, &["salvage", whole.to_str().unwrap()]);
    assert!(
        out.contains("4 events with their ids and hashes, 0 re-appended")
            && out.contains("nothing lost"),
        "{out}"
    );
    assert_eq!(ok(&whole, &["export"]), ok(&dir, &["export"]));
    // Damage the second record; the store cannot open without its checkpoint.
    std::fs::remove_file(dir.join("index.ckpt")).unwrap();
    let seg = dir.join("segments").join("0000000000000001.seg");
    let ids = json_lines(&ok(&whole, &["query", "--json"]));
    let verified: Value = serde_json::from_str(&ok(&whole, &["verify", "--json"])).unwrap();
    assert_eq!(verified["clean"], true, "the salvaged copy verifies");
    // Damage a byte in the middle of the file: one of the four records.
    let second_offset = std::fs::metadata(&seg).unwrap().len() / 2;
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[second_offset as usize] ^= 0x01;
    std::fs::write(&seg, bytes).unwrap();
    let saved = tmp.path().join("saved");
    let report: Value =
        serde_json::from_str(&ok(&dir, &["--json", "salvage", saved.to_str().unwrap()])).unwrap();
    let losses = report["losses"].as_array().unwrap();
    assert!(!losses.is_empty(), "{report}");
    assert!(
        losses[0]["why"]
            .as_str()
            .unwrap()
            .contains("cannot be read"),
        "{report}"
    );
    let carried = report["preserved"].as_u64().unwrap() + report["reappended"].as_u64().unwrap();
    assert_eq!(carried, 3, "{report}");
    assert_eq!(ids.len(), 4);
    assert!(saved.join("salvage-report.json").exists());
    assert!(ok(&saved, &["verify"]).contains("clean"));
    fails(&dir, &["salvage", saved.to_str().unwrap()], "not empty");
}

/// In a terminal the payload column takes the width the other columns leave: run
/// under `script` (util-linux), which gives the tool a terminal of a set width.
#[test]
fn tables_fit_the_terminal_width() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    ok(&dir, &["demo"]);
    let bin = env!("CARGO_BIN_EXE_batpak");
    for cols in [150usize, 190] {
        let o = Command::new("script")
            .args(["-qec"])
            .arg(format!(
                "stty cols {cols}; {bin} --dir {} query --limit 40",
                dir.display()
            ))
            .arg("/dev/null")
            .output()
            .expect("script(1) from util-linux runs the tool in a terminal");
        assert!(o.status.success(), "{}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout).replace('\r', "");
        let widest = text.lines().map(|l| l.chars().count()).max().unwrap();
        assert!(widest <= cols, "{widest} > {cols}:\n{text}");
        assert!(
            widest >= cols - 20,
            "the payload column uses the room: {widest} of {cols}"
        );
    }
}

#[test]
fn retention_and_delete_commands_hide_events_and_refuse_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build(dir);
    // order:1 has two events, order:2 one.
    let set = ok(
        dir,
        &["retention", "set", "--prefix", "order", "--max-count", "1"],
    );
    assert!(set.contains("prefix \"order\": keep the last 1"), "{set}");
    let stream: Vec<Value> = ok(dir, &["stream", "order:1", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(stream.len(), 1);
    assert_eq!(stream[0]["version"], 1);
    let list: Value = serde_json::from_str(&ok(dir, &["retention", "list", "--json"])).unwrap();
    assert_eq!(list[0]["selector"]["entity_prefix"], "order");
    assert_eq!(list[0]["rule"]["max_count"], 1);
    let human = ok(dir, &["retention", "list"]);
    assert!(human.contains("keep the last 1"), "{human}");
    let aged = ok(
        dir,
        &[
            "retention",
            "set",
            "--scope",
            "t:b",
            "--max-age",
            "10m",
            "--json",
        ],
    );
    let aged: Value = serde_json::from_str(&aged).unwrap();
    assert_eq!(aged["rule"]["max_age_ms"], 600_000);
    let cleared = ok(dir, &["retention", "clear", "--prefix", "order"]);
    assert!(cleared.contains("cleared"), "{cleared}");
    fails(
        dir,
        &["retention", "clear", "--prefix", "order"],
        "has no retention policy",
    );
    // Exactly one selector, and at least one rule; several rules are one combined
    // rule, and --entity covers one entity by its exact name.
    let o = batpak(dir, &["retention", "set", "--max-count", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = batpak(dir, &["retention", "set", "--prefix", "a"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let both: Value = serde_json::from_str(&ok(
        dir,
        &[
            "retention",
            "set",
            "--entity",
            "order:1",
            "--max-count",
            "1",
            "--before-version",
            "2",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(both["selector"]["entity"], "order:1");
    assert_eq!(both["rule"]["combined"]["max_count"], 1);
    assert_eq!(both["rule"]["combined"]["before_version"], 2);
    let human = ok(dir, &["retention", "list"]);
    assert!(
        human.contains("entity \"order:1\"  keep the last 1, and keep from version 2"),
        "{human}"
    );
    ok(dir, &["retention", "clear", "--entity", "order:1"]);
    fails(
        dir,
        &["retention", "set", "--prefix", "a", "--max-count", "0"],
        "would keep nothing",
    );
    fails(
        dir,
        &["retention", "set", "--prefix", "a", "--max-age", "soon"],
        "soon",
    );
    // Delete: soft hides, hard refuses later appends.
    let deleted = ok(dir, &["delete", "order:2"]);
    assert!(deleted.contains("deleted order:2 (soft)"), "{deleted}");
    assert!(ok(dir, &["stream", "order:2", "--json"]).trim().is_empty());
    let hard: Value =
        serde_json::from_str(&ok(dir, &["delete", "order:1", "--hard", "--json"])).unwrap();
    assert_eq!(hard["mode"], "hard");
    assert_eq!(hard["through_version"], 1);
    fails(
        dir,
        &[
            "append", "--entity", "order:1", "--scope", "t:a", "--kind", "1:1", "{}",
        ],
        "was deleted (hard",
    );
    let o = batpak(
        dir,
        &[
            "append", "--entity", "order:1", "--scope", "t:a", "--kind", "1:1", "--json", "{}",
        ],
    );
    let err: Value = serde_json::from_str(&stderr(&o)).unwrap();
    assert_eq!(err["error"]["code"], "entity_deleted");
    fails(dir, &["delete", "nobody"], "has no events");
    // A hard delete of an entity that never had an event reserves the name.
    let reserved = ok(dir, &["delete", "nobody", "--hard"]);
    assert!(
        reserved.contains("reserved nobody (hard): it had no events and takes none"),
        "{reserved}"
    );
    fails(
        dir,
        &[
            "append", "--entity", "nobody", "--scope", "t:a", "--kind", "1:1", "{}",
        ],
        "before its first event",
    );
    let stats: Value = serde_json::from_str(&ok(dir, &["stats", "--json"])).unwrap();
    assert_eq!(stats["deleted_entities"], 3);
    assert_eq!(stats["retention"].as_array().unwrap().len(), 1);
}

#[test]
fn fork_copies_the_history_up_to_a_sequence_and_refuses_bad_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("src");
    build(&dir);
    let fork_dir = tmp.path().join("fork");
    let text = ok(&dir, &["fork", fork_dir.to_str().unwrap(), "--at", "2"]);
    assert!(text.contains("forked 2 events"), "{text}");
    let stats: Value = serde_json::from_str(&ok(&fork_dir, &["stats", "--json"])).unwrap();
    assert_eq!(stats["visible_sequence"], 2);
    ok(&fork_dir, &["verify"]);
    let json: Value = serde_json::from_str(&ok(
        &dir,
        &[
            "fork",
            tmp.path().join("f2").to_str().unwrap(),
            "--at",
            "1",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(json["events"], 1);
    fails(
        &dir,
        &[
            "fork",
            tmp.path().join("f3").to_str().unwrap(),
            "--at",
            "999",
        ],
        "holds sequences 1 to",
    );
    fails(
        &dir,
        &["fork", fork_dir.to_str().unwrap(), "--at", "1"],
        "is not empty",
    );
    let o = batpak(&dir, &["fork", "x"]);
    assert_eq!(o.status.code(), Some(2), "--at is required");
}

#[test]
fn compact_removes_what_retention_hides_and_says_how_many_bytes_it_took_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build(dir);
    let nothing = ok(dir, &["compact"]);
    assert!(nothing.contains("nothing to compact"), "{nothing}");
    ok(
        dir,
        &["retention", "set", "--prefix", "order", "--max-count", "1"],
    );
    let before = ok(dir, &["export"]);
    let report: Value = serde_json::from_str(&ok(dir, &["compact", "--json"])).unwrap();
    assert_eq!(report["events_removed"], 1, "{report}");
    assert_eq!(report["generation"], 1, "{report}");
    assert!(
        report["bytes_after"].as_u64().unwrap() < report["bytes_before"].as_u64().unwrap(),
        "{report}"
    );
    let after = ok(dir, &["export"]);
    assert_eq!(
        after.lines().count(),
        before.lines().count(),
        "one hidden event gone, one compaction record added"
    );
    assert!(after.contains("batpak.Compacted"), "{after}");
    let verified = ok(dir, &["verify"]);
    assert!(!verified.contains("finding"), "{verified}");
}
