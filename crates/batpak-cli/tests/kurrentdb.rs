//! `batpak serve --kurrentdb-addr` as a real process, written by the official
//! KurrentDB client: a kill -9 while four writers append loses no acknowledged
//! append, and a restarted server hands the same events (ids, revisions,
//! positions) back to the client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running `batpak serve`, killed when dropped, so a failing test leaves no server
/// behind holding the test run's output open.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the server; the port of its KurrentDB listener.
fn serve(dir: &Path) -> (Served, u16) {
    let child = Command::new(env!("CARGO_BIN_EXE_batpak"))
        .arg("--dir")
        .arg(dir)
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--kurrentdb-addr",
            "127.0.0.1:0",
            "--quiet",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut served = Served(child);
    let mut out = BufReader::new(served.0.stdout.take().unwrap());
    let mut port = None;
    for _ in 0..2 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        if let Some(rest) = line.split("kurrentdb://").nth(1) {
            let addr = rest.split('?').next().unwrap();
            port = Some(addr.rsplit(':').next().unwrap().parse().unwrap());
            assert!(line.contains("tls=false"), "{line}");
        }
    }
    let port = port.expect("the server names its KurrentDB address");
    (served, port)
}

fn client(port: u16) -> kurrentdb::Client {
    let settings = format!("esdb://127.0.0.1:{port}?tls=false&defaultDeadline=10000");
    kurrentdb::Client::new(settings.parse().unwrap()).unwrap()
}

#[test]
fn a_kill_9_loses_no_append_a_kurrentdb_client_saw_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut served, port) = serve(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // (stream, revision, id, position) of every acknowledged append.
    let acked = Arc::new(Mutex::new(Vec::<(String, u64, uuid::Uuid, u64)>::new()));
    runtime.block_on(async {
        let c = client(port);
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (c, acked) = (c.clone(), Arc::clone(&acked));
                tokio::spawn(async move {
                    let stream = format!("crash-{w}");
                    loop {
                        let id = uuid::Uuid::new_v4();
                        let event =
                            kurrentdb::EventData::json("tick", &serde_json::json!({"w": w}))
                                .unwrap()
                                .id(id);
                        match c
                            .append_to_stream(stream.as_str(), &Default::default(), vec![event])
                            .await
                        {
                            Ok(r) => acked.lock().unwrap().push((
                                stream.clone(),
                                r.next_expected_version,
                                id,
                                r.position.commit,
                            )),
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        while acked.lock().unwrap().len() < 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        served.0.kill().unwrap();
        served.0.wait().unwrap();
        for w in writers {
            let _ = tokio::time::timeout(Duration::from_secs(30), w).await;
        }
    });
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 200);

    // Every acknowledged append is in the store, as the client saw it.
    {
        let store = batpak::Store::open(dir.path()).unwrap();
        for (stream, revision, id, position) in &acked {
            let events = store.stream(stream).unwrap();
            let e = events
                .iter()
                .find(|e| e.version == *revision)
                .unwrap_or_else(|| panic!("{stream}@{revision} lost"));
            assert_eq!(e.sequence, *position);
            assert_eq!(
                e.metadata.get("kurrentdb.id"),
                Some(id.hyphenated().to_string().as_str())
            );
        }
        store.close().unwrap();
    }

    // A restarted server hands them back.
    let (mut served, port) = serve(dir.path());
    runtime.block_on(async {
        let c = client(port);
        for w in 0..4 {
            let stream = format!("crash-{w}");
            let mut read = c
                .read_stream(stream.as_str(), &Default::default())
                .await
                .unwrap();
            let mut ids = std::collections::HashMap::new();
            while let Some(e) = read.next().await.unwrap() {
                let e = e.get_original_event();
                ids.insert(e.revision, e.id);
            }
            for (s, revision, id, _) in acked.iter().filter(|a| a.0 == stream) {
                assert_eq!(ids.get(revision), Some(id), "{s}@{revision}");
            }
        }
    });
    served.0.kill().unwrap();
    served.0.wait().unwrap();
}
