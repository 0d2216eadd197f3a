//! Tokens: 401 without a known token, 403 outside a grant (and nothing written), the
//! principal recorded with every append, reads filtered to what a grant covers, the
//! loopback rule for a server without tokens, and a tokens file that keeps hashes only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use batpak_server::{Grant, Permission, Server, TokensFile, PRINCIPAL_KEY};
use serde_json::json;
use support::{start, store};

fn grant(scope: &str, prefix: &str, permissions: &[Permission]) -> Grant {
    Grant {
        scope: scope.into(),
        prefix: prefix.into(),
        permissions: permissions.to_vec(),
    }
}

struct Tokens {
    file: TokensFile,
    alice: String,
    reader: String,
    admin: String,
}

fn tokens() -> Tokens {
    let mut file = TokensFile::default();
    let alice = file
        .add(
            "alice",
            vec![grant("orders", "", &[Permission::Read, Permission::Append])],
        )
        .unwrap();
    let reader = file
        .add("reader", vec![grant("*", "tenant:a", &[Permission::Read])])
        .unwrap();
    let admin = file
        .add("root", vec![grant("*", "", &[Permission::Admin])])
        .unwrap();
    Tokens {
        file,
        alice,
        reader,
        admin,
    }
}

#[test]
fn requests_without_a_known_token_are_401_as_json() {
    let (_dir, server, t) = start_with_tokens();
    let anonymous = server.client();
    let a = anonymous.get("/v1/stats");
    assert_eq!((a.status, a.code()), (401, "unauthorized"), "{}", a.body);
    let a = server.client_with("bpk_not-a-token").get("/v1/stats");
    assert_eq!((a.status, a.code()), (401, "unauthorized"));
    let a = anonymous.get_with_header("/v1/stats", "Authorization", "Basic YTpi");
    assert_eq!(a.status, 401);
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Bearer"));
    let a = anonymous.post(
        "/v1/events",
        &json!({"entity": "order:1", "scope": "orders", "kind": "1:1", "payload": {}}),
    );
    assert_eq!(a.status, 401);
    assert_eq!(anonymous.get("/metrics").status, 401);
    // Health and readiness need no token.
    assert_eq!(anonymous.get("/healthz").status, 200);
    assert_eq!(anonymous.get("/readyz").status, 200);
    let root = server.client_with(&t.admin);
    assert_eq!(
        root.get("/v1/stats").body["events"],
        0,
        "nothing was written"
    );
}

fn start_with_tokens() -> (tempfile::TempDir, support::Running, Tokens) {
    let (dir, store) = store();
    let t = tokens();
    let file = t.file.clone();
    let server = start(store, move |b| b.tokens(file));
    (dir, server, t)
}

#[test]
fn appends_outside_a_grant_are_403_and_write_nothing_and_the_principal_is_recorded() {
    let (_dir, server, t) = start_with_tokens();
    let alice = server.client_with(&t.alice);
    let receipt = alice.append("order:1", "orders", "1:1", json!({"n": 1}));
    let id = receipt["event_id"].as_str().unwrap();
    let event = alice.get(&format!("/v1/events/{id}"));
    assert_eq!(
        event.body["metadata"][PRINCIPAL_KEY], "alice",
        "{}",
        event.body
    );

    let a = alice.post(
        "/v1/events",
        &json!({"entity": "payment:1", "scope": "payments", "kind": "1:1", "payload": {}}),
    );
    assert_eq!((a.status, a.code()), (403, "forbidden"), "{}", a.body);
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("alice"));
    // A batch with one item outside the grant writes none of it.
    let a = alice.post(
        "/v1/batches",
        &json!({"events": [
            {"entity": "order:2", "scope": "orders", "kind": "1:1", "payload": {}},
            {"entity": "payment:2", "scope": "payments", "kind": "1:1", "payload": {}},
        ]}),
    );
    assert_eq!(a.status, 403);
    let reader = server.client_with(&t.reader);
    let a = reader.post(
        "/v1/events",
        &json!({"entity": "tenant:a", "scope": "orders", "kind": "1:1", "payload": {}}),
    );
    assert_eq!(a.status, 403, "read does not allow appends");
    let root = server.client_with(&t.admin);
    assert_eq!(root.get("/v1/stats").body["events"], 1);
    // Store-wide operations need admin over every scope.
    for path in ["/v1/anchors", "/v1/verify"] {
        let a = alice.post_empty(path);
        assert_eq!((a.status, a.code()), (403, "forbidden"), "{path}");
    }
    assert_eq!(alice.get("/metrics").status, 403);
    assert_eq!(root.post_empty("/v1/anchors").status, 201);
    assert_eq!(root.get("/metrics").status, 200);
    let logged = root.append("anything", "anywhere", "1:1", json!({}));
    let by_root = root.get(&format!(
        "/v1/events/{}",
        logged["event_id"].as_str().unwrap()
    ));
    assert_eq!(by_root.body["metadata"][PRINCIPAL_KEY], "root");
}

#[test]
fn reads_show_only_what_a_grant_covers() {
    let (_dir, server, t) = start_with_tokens();
    let root = server.client_with(&t.admin);
    let own = root.append("tenant:a", "s1", "1:1", json!({}));
    root.append("tenant:a:7", "s2", "1:1", json!({}));
    let other = root.append("tenant:ab", "s1", "1:1", json!({}));
    root.append("tenant:b", "s1", "1:1", json!({}));
    let reader = server.client_with(&t.reader);
    let listed = reader.get("/v1/events");
    let entities: Vec<&str> = listed.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entity"].as_str().unwrap())
        .collect();
    assert_eq!(
        entities,
        ["tenant:a", "tenant:a:7"],
        "a prefix on a ':' boundary"
    );
    let a = reader.get(&format!("/v1/events/{}", own["event_id"].as_str().unwrap()));
    assert_eq!(a.status, 200);
    let a = reader.get(&format!(
        "/v1/events/{}",
        other["event_id"].as_str().unwrap()
    ));
    assert_eq!((a.status, a.code()), (403, "forbidden"));
    let a = reader.get("/v1/entities");
    assert_eq!(a.body["entities"].as_array().unwrap().len(), 2);
    // Paging never names an entity the token may not read.
    let a = reader.get("/v1/entities?limit=1");
    assert_eq!(a.body["entities"][0]["entity"], "tenant:a");
    assert_eq!(a.body["next_after"], "tenant:a");
    let a = reader.get("/v1/entities?limit=1&after=tenant:a");
    assert_eq!(a.body["entities"][0]["entity"], "tenant:a:7");
    assert_eq!(
        a.body["next_after"],
        serde_json::Value::Null,
        "tenant:ab and tenant:b stay unnamed"
    );
    let a = reader.get("/v1/count");
    assert_eq!(a.status, 403, "a count covers every scope");
    let mut sse = reader.stream("/v1/subscribe?from=1", None);
    root.append("tenant:b", "s1", "1:1", json!({}));
    root.append("tenant:a", "s1", "1:1", json!({"late": true}));
    let seen: Vec<String> = (0..3)
        .map(|_| {
            sse.next_json().unwrap().1["entity"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(seen, ["tenant:a", "tenant:a:7", "tenant:a"]);
}

#[test]
fn without_tokens_only_loopback_is_served_unless_allowed() {
    let (_dir, store) = store();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let refused = runtime.block_on(Server::builder(store).bind("0.0.0.0:0".parse().unwrap()));
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("without a tokens file"), "{message}");
    let (_dir, store) = support::store();
    let allowed = runtime.block_on(
        Server::builder(store)
            .allow_open_remote(true)
            .bind("0.0.0.0:0".parse().unwrap()),
    );
    assert!(allowed.is_ok());
    let (_dir, store) = support::store();
    let with_tokens = runtime.block_on(
        Server::builder(store)
            .tokens(tokens().file)
            .bind("0.0.0.0:0".parse().unwrap()),
    );
    assert!(with_tokens.is_ok());
}

#[test]
fn the_tokens_file_keeps_hashes_only_and_is_checked_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let t = tokens();
    t.file.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    for token in [&t.alice, &t.reader, &t.admin] {
        assert!(token.starts_with("bpk_") && token.len() == 68);
        assert!(!text.contains(token.as_str()), "a token is never stored");
        assert!(text.contains(&batpak_server::token_hash(token)));
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(TokensFile::load(&path).unwrap(), t.file);

    let mut again = t.file.clone();
    assert!(again.add("alice", vec![]).unwrap_err().contains("already"));
    for (bad, needle) in [
        ("{", "not valid"),
        (
            r#"{"tokens": [{"principal": "x", "hash": "md5:00", "grants": []}]}"#,
            "tokens[0].hash",
        ),
        (
            r#"{"tokens": [{"principal": "", "hash": "blake3:0000000000000000000000000000000000000000000000000000000000000000", "grants": []}]}"#,
            "tokens[0].principal",
        ),
        (
            r#"{"tokens": [{"principal": "x", "hash": "blake3:0000000000000000000000000000000000000000000000000000000000000000", "grants": [{"scope": "", "permissions": ["read"]}]}]}"#,
            "grants[0]",
        ),
        (
            r#"{"tokens": [{"principal": "x", "hash": "blake3:0000000000000000000000000000000000000000000000000000000000000000", "grants": [{"scope": "a", "permissions": ["write"]}]}]}"#,
            "not valid",
        ),
    ] {
        std::fs::write(&path, bad).unwrap();
        let e = TokensFile::load(&path).unwrap_err();
        assert!(
            e.contains(needle) && e.contains("tokens.json"),
            "{bad}: {e}"
        );
    }
}
