//! `batpak serve` as a real process: a kill -9 under load loses no acknowledged
//! append, a cursor is at least once across a kill -9, SIGTERM drains and closes the
//! store, and `batpak token add` makes a file the server enforces.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// A running `batpak serve`, killed when dropped, so a failing test leaves no server
/// behind holding the test run's output open.
struct Served {
    child: Child,
    base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path, extra: &[&str]) -> Served {
    let child = Command::new(env!("CARGO_BIN_EXE_batpak"))
        .arg("--dir")
        .arg(dir)
        .args(["serve", "--addr", "127.0.0.1:0", "--quiet"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut served = Served {
        child,
        base: String::new(),
    };
    let mut line = String::new();
    BufReader::new(served.child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    served.base = format!("http://{addr}");
    served
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn post(agent: &ureq::Agent, url: &str, token: Option<&str>, body: &Value) -> Option<(u16, Value)> {
    let mut req = agent.post(url).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut r = req.send(body.to_string()).ok()?;
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

fn get(agent: &ureq::Agent, url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = agent.get(url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut r = req.call().unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn a_kill_9_under_load_loses_no_acknowledged_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(dir.path(), &[]);
    let acked = Arc::new(Mutex::new(Vec::<Value>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (acked, stop, base) = (Arc::clone(&acked), Arc::clone(&stop), served.base.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let body = if i % 3 == 0 {
                        json!({"events": [
                            {"entity": format!("c{c}"), "scope": "load", "kind": "1:1", "payload": {"i": i}},
                            {"entity": format!("d{c}"), "scope": "load", "kind": "1:2", "payload": {"i": i}},
                        ]})
                    } else {
                        json!({"entity": format!("c{c}"), "scope": "load", "kind": "1:1", "payload": {"i": i}})
                    };
                    let path = if i % 3 == 0 { "/v1/batches" } else { "/v1/events" };
                    match post(&agent, &format!("{base}{path}"), None, &body) {
                        Some((201, answer)) => {
                            let mut acked = acked.lock().unwrap();
                            match answer.get("receipts") {
                                Some(list) => acked.extend(
                                    list.as_array().unwrap().iter().map(|r| r["receipt"].clone()),
                                ),
                                None => acked.push(answer["receipt"].clone()),
                            }
                        }
                        Some((status, answer)) => panic!("append refused: {status} {answer}"),
                        // The server died mid-request: not acknowledged.
                        None => break,
                    }
                    i += 1;
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 300 {
        std::thread::sleep(Duration::from_millis(10));
    }
    served.child.kill().unwrap();
    served.child.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap();
    let store = batpak::Store::open(dir.path()).unwrap();
    for receipt in acked.iter() {
        let id: batpak::EventId = receipt["event_id"].as_str().unwrap().parse().unwrap();
        let event = store
            .get(id)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged event {id} was lost"));
        assert_eq!(event.sequence, receipt["sequence"].as_u64().unwrap());
        assert_eq!(
            event.event_hash().to_string(),
            receipt["event_hash"].as_str().unwrap()
        );
    }
    assert!(store.verify().unwrap().body.findings.is_empty());
}

#[test]
fn a_cursor_is_at_least_once_across_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(dir.path(), &[]);
    let agent = agent();
    for i in 0..20 {
        let (status, _) = post(
            &agent,
            &format!("{}/v1/events", served.base),
            None,
            &json!({"entity": "e", "scope": "s", "kind": "1:1", "payload": {"i": i}}),
        )
        .unwrap();
        assert_eq!(status, 201);
    }
    let next = |base: &str| {
        let (status, body) = post(
            &agent,
            &format!("{base}/v1/cursors/c/next?entity=e&max=5"),
            None,
            &json!({}),
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
        body
    };
    let first = next(&served.base);
    let second = next(&served.base);
    assert_eq!(second["events"][0]["version"], 5);
    // Commit the first batch only, then die.
    let (status, _) = post(
        &agent,
        &format!("{}/v1/cursors/c/commit?entity=e", served.base),
        None,
        &json!({"sequence": first["passed"]}),
    )
    .unwrap();
    assert_eq!(status, 200);
    served.child.kill().unwrap();
    served.child.wait().unwrap();

    let mut served = serve(dir.path(), &[]);
    let again = next(&served.base);
    assert_eq!(
        again["events"][0]["version"], 5,
        "the uncommitted batch is delivered again: {again}"
    );
    served.child.kill().unwrap();
    served.child.wait().unwrap();
}

#[test]
fn sigterm_drains_live_streams_and_closes_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(dir.path(), &[]);
    let agent = agent();
    post(
        &agent,
        &format!("{}/v1/events", served.base),
        None,
        &json!({"entity": "e", "scope": "s", "kind": "1:1", "payload": {}}),
    )
    .unwrap();
    // An open live stream must not hold the shutdown up.
    let stream = agent
        .get(format!("{}/v1/subscribe?from=1", served.base))
        .call()
        .unwrap();
    let mut reader = BufReader::new(stream.into_body().into_reader());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = served.child.wait().unwrap();
    assert!(
        exit.success(),
        "batpak serve exits 0 after SIGTERM: {exit:?}"
    );
    let store = batpak::Store::open(dir.path()).unwrap();
    assert!(
        matches!(
            store.open_report().index,
            batpak::IndexSource::Checkpoint { events: 1 }
        ),
        "closed cleanly: {:?}",
        store.open_report().index
    );
}

#[test]
fn token_add_makes_a_file_the_server_enforces() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.json");
    let store_dir = dir.path().join("store");
    let add = |principal: &str, grant: &str| -> String {
        let o = Command::new(env!("CARGO_BIN_EXE_batpak"))
            .args(["--json", "token", "add", "--tokens"])
            .arg(&tokens)
            .args(["--principal", principal, "--grant", grant])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["token"].as_str().unwrap().to_string()
    };
    let writer = add("writer", "read,append@orders");
    let admin = add("ops", "admin@*");
    let o = Command::new(env!("CARGO_BIN_EXE_batpak"))
        .args(["token", "add", "--tokens"])
        .arg(&tokens)
        .args(["--principal", "x", "--grant", "write@orders"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a permission"));
    let o = Command::new(env!("CARGO_BIN_EXE_batpak"))
        .args(["token", "list", "--tokens"])
        .arg(&tokens)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&o.stdout);
    assert!(listed.contains("writer\tread,append@orders"), "{listed}");
    assert!(!listed.contains(&writer));

    let mut served = serve(&store_dir, &["--tokens", tokens.to_str().unwrap()]);
    let agent = agent();
    let url = format!("{}/v1/events", served.base);
    let event = json!({"entity": "o", "scope": "orders", "kind": "1:1", "payload": {}});
    assert_eq!(post(&agent, &url, None, &event).unwrap().0, 401);
    let (status, body) = post(&agent, &url, Some(&writer), &event).unwrap();
    assert_eq!(status, 201, "{body}");
    let elsewhere = json!({"entity": "o", "scope": "billing", "kind": "1:1", "payload": {}});
    assert_eq!(
        post(&agent, &url, Some(&writer), &elsewhere).unwrap().0,
        403
    );
    let (status, stats) = get(&agent, &format!("{}/v1/stats", served.base), Some(&admin));
    assert_eq!((status, stats["events"].as_u64()), (200, Some(1)));
    served.child.kill().unwrap();
    served.child.wait().unwrap();

    // Without tokens, a non-loopback address is refused before the store is opened.
    let o = Command::new(env!("CARGO_BIN_EXE_batpak"))
        .arg("--dir")
        .arg(&store_dir)
        .args(["serve", "--addr", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--insecure"));
}

#[test]
fn tls_files_that_do_not_load_are_named_before_the_store_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_batpak"))
        .arg("--dir")
        .arg(dir.path().join("store"))
        .args(["serve", "--addr", "127.0.0.1:0", "--tls-cert"])
        .arg(dir.path().join("cert.pem"))
        .arg("--tls-key")
        .arg(dir.path().join("key.pem"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("cert.pem"), "{stderr}");
    assert!(!dir.path().join("store").exists(), "no store was created");
    let o = Command::new(env!("CARGO_BIN_EXE_batpak"))
        .args(["serve", "--tls-cert", "c.pem"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "--tls-cert needs --tls-key");
}

#[test]
fn a_read_only_server_follows_what_another_process_appends() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = serve(dir.path(), &[]);
    let mut reader = serve(dir.path(), &["--read-only"]);
    let agent = agent();
    let event = json!({"entity": "e", "scope": "s", "kind": "1:1", "payload": {"n": 1}});
    let (status, body) = post(&agent, &format!("{}/v1/events", writer.base), None, &event).unwrap();
    assert_eq!(status, 201, "{body}");
    let (status, body) = post(&agent, &format!("{}/v1/events", reader.base), None, &event).unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (405, Some("read_only"))
    );
    // The view sees the writer's event within its polling interval.
    let mut seen = false;
    for _ in 0..200 {
        let (status, _) = get(&agent, &format!("{}/v1/sequences/1", reader.base), None);
        if status == 200 {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(seen, "the read-only server follows the writer");
    // And a live stream on it delivers what the writer appends next.
    let stream = agent
        .get(format!("{}/v1/subscribe?from=2", reader.base))
        .call()
        .unwrap();
    let mut lines = BufReader::new(stream.into_body().into_reader());
    post(&agent, &format!("{}/v1/events", writer.base), None, &event).unwrap();
    let mut line = String::new();
    loop {
        line.clear();
        assert!(lines.read_line(&mut line).unwrap() > 0, "the stream ended");
        if line.starts_with("id: ") {
            assert_eq!(line.trim(), "id: 2");
            break;
        }
    }
    for s in [&mut writer, &mut reader] {
        s.child.kill().unwrap();
        s.child.wait().unwrap();
    }
}
