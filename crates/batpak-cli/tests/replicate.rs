//! `batpak replicate` as a real process into a real PostgreSQL: killed with SIGKILL
//! at moments spread through a run of appends, it resumes without a gap or a
//! duplicate; SIGTERM stops it cleanly; `verify-replica` names a tampered row.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../batpak-replicate/tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use batpak::{AppendOptions, Coordinate, EventKind, RawPayload, Store};
use support::{Nats, Postgres};

fn append(store: &Store, n: u64, from: u64) {
    for i in from..from + n {
        let coord = Coordinate::new(format!("order:{}", i % 13), "shop").unwrap();
        store
            .append_raw(
                &coord,
                EventKind::custom(1, 1),
                RawPayload::json(format!("{{\"i\":{i}}}").as_bytes()),
                AppendOptions::default(),
            )
            .unwrap();
    }
}

/// `batpak serve --read-only` of `dir` on a free port: the process and its base URL.
fn served(dir: &std::path::Path) -> (std::process::Child, String) {
    use std::io::BufRead as _;
    let mut child = batpak(dir)
        .args(["serve", "--read-only", "--quiet", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (child, format!("http://{addr}"))
}

/// The body of a GET that must answer 200.
fn http_get(url: &str) -> String {
    let mut r = ureq::get(url).call().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{url}");
    r.body_mut().read_to_string().unwrap()
}

fn batpak(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_batpak"));
    c.arg("--dir").arg(dir);
    c
}

/// Replicates `store` (in `dir`) into the copy `name` at `url` with `batpak replicate`
/// killed with SIGKILL at moments spread over startup, shipping and idling while
/// appends go on, then once more to the end; returns the store's visible sequence.
fn replicate_through_kills(dir: &std::path::Path, store: &Store, url: &str, name: &str) -> u64 {
    append(store, 200, 0);
    let mut written = 200;
    for (round, pause_ms) in [15u64, 60, 5, 140, 35, 250, 90].into_iter().enumerate() {
        let mut child = batpak(dir)
            .args(["replicate", "--to", url, "--name", name, "--batch", "97"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        append(store, 150 + round as u64 * 40, written);
        written += 150 + round as u64 * 40;
        std::thread::sleep(Duration::from_millis(pause_ms));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let o = batpak(dir)
        .args([
            "replicate",
            "--to",
            url,
            "--name",
            name,
            "--until-caught-up",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    store.frontier().visible
}

#[test]
fn a_replicator_killed_at_any_moment_resumes_without_a_gap_or_a_duplicate() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let visible = replicate_through_kills(dir.path(), &store, &pg.url(), "k");
    assert_eq!(pg.sql("SELECT count(*) FROM k.events"), visible.to_string());
    assert_eq!(
        pg.sql("SELECT min(sequence) = 1 AND max(sequence) = count(*) FROM k.events"),
        "t",
        "dense: no gap (and the primary key allows no duplicate)"
    );
    let o = batpak(dir.path())
        .args(["verify-replica", &pg.url(), "--schema", "k"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("{visible} rows")));
    let o = batpak(dir.path())
        .args(["--json", "stats", "--sink", &pg.url(), "--schema", "k"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(stats["sinks"][0]["position"], visible);
    assert_eq!(stats["sinks"][0]["behind_events"], 0);
    assert!(
        !stats["sinks"][0]["url"]
            .as_str()
            .unwrap()
            .contains("postgres@"),
        "no user name shown"
    );

    // A tampered row is named, with its sequence and id, and the exit code says so.
    pg.sql("UPDATE k.events SET entity = 'order:999' WHERE sequence = 321");
    let o = batpak(dir.path())
        .args(["verify-replica", &pg.url(), "--schema", "k"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    let id = store.get_sequence(321).unwrap().unwrap().id.to_string();
    assert!(
        stderr.contains("sequence 321") && stderr.contains(&id),
        "{stderr}"
    );
}

#[test]
fn sigterm_stops_a_following_replicator_cleanly() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append(&store, 50, 0);
    let child = batpak(dir.path())
        .args(["replicate", "--to", &pg.url(), "--schema", "t"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It follows: events appended after it started arrive too.
    std::thread::sleep(Duration::from_millis(300));
    append(&store, 25, 50);
    let goal = store.frontier().visible.to_string();
    let mut arrived = false;
    for _ in 0..300 {
        if pg.sql("SELECT coalesce(max(sequence), 0) FROM t.events") == goal {
            arrived = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !arrived {
        let mut child = child;
        child.kill().unwrap();
        let o = child.wait_with_output().unwrap();
        panic!(
            "a live append did not reach the sink: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "exit 0 on SIGTERM: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("through sequence {goal}")));
    // A sink that is not PostgreSQL is refused up front.
    let o = batpak(dir.path())
        .args(["replicate", "--to", "mysql://x"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("postgres://"));
}

#[test]
fn follow_builds_a_replica_from_the_sink_that_verifies_and_reads_the_same() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let replica = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        append(&store, 400, 0);
    }
    let o = batpak(dir.path())
        .args([
            "replicate",
            "--to",
            &pg.url(),
            "--schema",
            "f",
            "--until-caught-up",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = batpak(replica.path())
        .args([
            "follow",
            "--from",
            &pg.url(),
            "--schema",
            "f",
            "--until-caught-up",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("through sequence 400"));
    let o = batpak(replica.path()).args(["verify"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let source = batpak(dir.path())
        .args(["--json", "stream", "order:3"])
        .output()
        .unwrap();
    let copy = batpak(replica.path())
        .args(["--json", "stream", "order:3"])
        .output()
        .unwrap();
    assert_eq!(
        source.stdout, copy.stdout,
        "the same events, ids and hashes"
    );
}

#[test]
fn promotion_is_refused_while_the_source_is_ahead_and_then_the_replica_takes_appends() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let replica = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append(&store, 100, 0);
    drop(store);
    let ok = |c: &mut Command| {
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    };
    ok(batpak(dir.path()).args([
        "replicate",
        "--to",
        &pg.url(),
        "--schema",
        "pr",
        "--until-caught-up",
    ]));
    ok(batpak(replica.path()).args([
        "follow",
        "--from",
        &pg.url(),
        "--schema",
        "pr",
        "--until-caught-up",
    ]));
    // The primary goes on; the sink gets ahead of the replica.
    let store = Store::open(dir.path()).unwrap();
    append(&store, 30, 100);
    drop(store);
    ok(batpak(dir.path()).args([
        "replicate",
        "--to",
        &pg.url(),
        "--schema",
        "pr",
        "--until-caught-up",
    ]));
    let o = batpak(replica.path())
        .args(["promote", "--from", &pg.url(), "--schema", "pr"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "refused while the source is ahead");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("through sequence 130")
            && stderr.contains("only through 100")
            && stderr.contains("30 events"),
        "{stderr}"
    );
    // Caught up, it promotes, and takes appends that continue its history.
    ok(batpak(replica.path()).args([
        "follow",
        "--from",
        &pg.url(),
        "--schema",
        "pr",
        "--until-caught-up",
    ]));
    let o = ok(batpak(replica.path()).args(["promote", "--from", &pg.url(), "--schema", "pr"]));
    assert!(String::from_utf8_lossy(&o.stdout)
        .contains("promoted: the replica holds through sequence 130"));
    let promoted = Store::open(replica.path()).unwrap();
    let r = promoted
        .append_raw(
            &Coordinate::new("after", "shop").unwrap(),
            EventKind::custom(1, 1),
            RawPayload::json(b"{}"),
            AppendOptions::default(),
        )
        .unwrap();
    assert_eq!(r.sequence, 131);
    drop(promoted);
    // --force gives up what the sink has beyond the replica, and says how much.
    let other = tempfile::tempdir().unwrap();
    drop(Store::open(other.path()).unwrap());
    let o = ok(batpak(other.path()).args([
        "--json",
        "promote",
        "--from",
        &pg.url(),
        "--schema",
        "pr",
        "--force",
    ]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (
            v["replica"].as_u64(),
            v["source"].as_u64(),
            v["lost"].as_u64()
        ),
        (Some(0), Some(130), Some(130))
    );
}

#[test]
fn into_jetstream_a_killed_replicator_resumes_and_the_copy_verifies_follows_and_promotes() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let replica = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let visible = replicate_through_kills(dir.path(), &store, &nats.url(), "k");
    let ok = |c: &mut Command| {
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // Dense, in order, no duplicate: verify-replica checks each of these.
    let out = ok(batpak(dir.path()).args(["verify-replica", &nats.url(), "--name", "k"]));
    assert!(out.contains(&format!("{visible} rows")), "{out}");
    // The anchor `--until-caught-up` left in the stream holds.
    assert!(out.contains("anchors held: 1"), "{out}");
    let out = ok(batpak(replica.path()).args([
        "follow",
        "--from",
        &nats.url(),
        "--name",
        "k",
        "--until-caught-up",
    ]));
    assert!(
        out.contains(&format!("through sequence {visible}")),
        "{out}"
    );
    let read = |d: &std::path::Path| ok(batpak(d).args(["--json", "stream", "order:3"]));
    assert_eq!(
        read(dir.path()),
        read(replica.path()),
        "the same events, ids and hashes"
    );
    // The source's anchor holds on the replica, and `serve --read-only` serves it with
    // the same answers as the source.
    let anchor = ok(batpak(dir.path()).args(["anchor", "--json"]));
    let anchor_file = dir.path().join("anchor.json");
    std::fs::write(&anchor_file, &anchor).unwrap();
    let o = batpak(replica.path())
        .arg("verify-anchor")
        .stdin(std::fs::File::open(&anchor_file).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let (mut source_server, source_base) = served(dir.path());
    let (mut replica_server, replica_base) = served(replica.path());
    for path in [
        "/v1/entities/order:3/events",
        "/v1/events?limit=1000",
        "/v1/frontier",
    ] {
        assert_eq!(
            http_get(&format!("{source_base}{path}")),
            http_get(&format!("{replica_base}{path}")),
            "{path}"
        );
    }
    for server in [&mut source_server, &mut replica_server] {
        server.kill().unwrap();
        server.wait().unwrap();
    }
    let stats =
        |d: &std::path::Path| ok(batpak(d).args(["stats", "--sink", &nats.url(), "--name", "k"]));
    let out = stats(dir.path());
    assert!(
        out.contains(&format!("position {visible}, caught up")),
        "{out}"
    );
    // Ahead of the replica: promotion is refused, then allowed once caught up.
    append(&store, 30, visible);
    let out = stats(dir.path());
    assert!(
        out.contains(&format!("position {visible}, 30 events behind")),
        "{out}"
    );
    ok(batpak(dir.path()).args([
        "replicate",
        "--to",
        &nats.url(),
        "--name",
        "k",
        "--until-caught-up",
    ]));
    let o = batpak(replica.path())
        .args(["promote", "--from", &nats.url(), "--name", "k"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "refused while the source is ahead");
    assert!(String::from_utf8_lossy(&o.stderr).contains("30 events"));
    ok(batpak(replica.path()).args([
        "follow",
        "--from",
        &nats.url(),
        "--name",
        "k",
        "--until-caught-up",
    ]));
    ok(batpak(replica.path()).args(["promote", "--from", &nats.url(), "--name", "k"]));
}
