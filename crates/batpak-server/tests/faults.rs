//! A store whose write failed is poisoned: the server answers appends with 503
//! `poisoned` and `/readyz` with 503, and writes nothing more; a request over the time
//! limit is a 503 `timeout`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use batpak::__fault::{Fault, FaultPlan, Op};
use batpak::Store;
use batpak_server::Limits;
use serde_json::json;
use support::start;

#[test]
fn a_poisoned_store_is_503_and_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::install(dir.path());
    let store = Store::open(dir.path()).unwrap();
    let server = start(store, |b| b);
    let c = server.client();
    let acked = c.append("e", "s", "1:1", json!({"n": 1}));
    plan.fail_nth(Op::Write, 1, Fault::Enospc);
    let event = json!({"entity": "e", "scope": "s", "kind": "1:1", "payload": {"n": 2}});
    let failed = c.post("/v1/events", &event);
    assert_eq!(
        (failed.status, failed.code()),
        (503, "poisoned"),
        "{}",
        failed.body
    );
    let message = failed.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("No space left"),
        "the cause is named: {message}"
    );
    let refused = c.post("/v1/events", &event);
    assert_eq!(
        (refused.status, refused.code()),
        (503, "poisoned"),
        "{}",
        refused.body
    );
    let ready = c.get("/readyz");
    assert_eq!((ready.status, ready.code()), (503, "poisoned"));
    assert_eq!(c.get("/healthz").status, 200, "alive, not ready");
    // Reads still answer.
    assert_eq!(c.get("/v1/sequences/1").body["id"], acked["event_id"]);
    drop(server);
    plan.clear();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.stream("e").unwrap().len(),
        1,
        "nothing but the acknowledged event"
    );
}

#[test]
fn a_request_over_the_time_limit_is_a_503_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut limits = Limits::default();
    limits.request_timeout = Duration::from_millis(50);
    let server = start(store, move |b| b.limits(limits).projection::<Slow>("slow"));
    let c = server.client();
    c.append("e", "s", "1:1", json!({}));
    let a = c.get("/v1/projections/slow/e");
    assert_eq!((a.status, a.code()), (503, "timeout"), "{}", a.body);
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("50 ms"));
    // Live streams and appends are not cut off.
    let mut sse = c.stream("/v1/subscribe?from=1", None);
    assert_eq!(sse.next().unwrap().id.as_deref(), Some("1"));
    std::thread::sleep(Duration::from_millis(100));
    let receipt = c.append("e", "s", "1:1", json!({}));
    assert_eq!(receipt["sequence"], 2);
    assert_eq!(sse.next().unwrap().id.as_deref(), Some("2"));
}

#[test]
fn a_body_that_never_arrives_is_a_408_within_the_time_limit_even_for_an_append() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut limits = Limits::default();
    limits.request_timeout = Duration::from_millis(200);
    let server = start(store, move |b| b.limits(limits));
    // An append (whose answer is not timed) and a receipt check (whose answer is).
    for path in ["/v1/events", "/v1/receipts/verify"] {
        let mut tcp =
            std::net::TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // Ten bytes promised, two sent: the handler cannot start.
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 10\r\n\r\n{{\""
        );
        tcp.write_all(head.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = tcp.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(answer.contains("did not arrive within"), "{path}: {answer}");
        assert!(answer.contains("200 ms"), "{path}: {answer}");
    }
    server.stop().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.frontier().visible, 0, "nothing was written");
}

/// A projection that takes longer than the time limit.
#[derive(Clone, Default, serde::Serialize)]
struct Slow;

impl batpak::Projection for Slow {
    const NAME: &'static str = "slow";
    fn apply(&mut self, _: &batpak::EventView<'_>) -> batpak::Result<()> {
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }
}
