//! A real server on a loopback port, in a runtime of its own, and a real HTTP client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use batpak::Store;
use batpak_server::{ServeError, Server, ServerBuilder};
use serde_json::Value;

pub struct Running {
    pub base: String,
    pub dir: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServeError>>>,
}

/// Serves `store` on 127.0.0.1 (a free port) until `stop`.
pub fn start(
    store: Store,
    configure: impl FnOnce(ServerBuilder) -> ServerBuilder + Send + 'static,
) -> Running {
    start_as("http", store, configure)
}

/// The same, with the scheme the base URL should use.
pub fn start_as(
    scheme: &str,
    store: Store,
    configure: impl FnOnce(ServerBuilder) -> ServerBuilder + Send + 'static,
) -> Running {
    let dir = store.dir().to_path_buf();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let server = configure(Server::builder(store))
                .bind("127.0.0.1:0".parse().unwrap())
                .await?;
            addr_tx.send(server.local_addr().unwrap()).unwrap();
            server
                .serve_until(async move {
                    let _ = stop_rx.await;
                })
                .await
        })
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server did not start");
    Running {
        base: format!("{scheme}://{addr}"),
        dir,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

impl Running {
    pub fn client(&self) -> Client {
        Client::new(&self.base, None)
    }

    pub fn client_with(&self, token: &str) -> Client {
        Client::new(&self.base, Some(token.to_string()))
    }

    /// Shuts down gracefully and returns how the server ended.
    pub fn stop(mut self) -> Result<(), ServeError> {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    pub base: String,
    token: Option<String>,
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub content_type: String,
}

impl Answer {
    /// The error code of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn field(&self) -> &str {
        self.body["error"]["details"]["field"]
            .as_str()
            .unwrap_or("")
    }
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Client {
        Client::with_agent(
            base,
            token,
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build()
                .into(),
        )
    }

    pub fn with_agent(base: &str, token: Option<String>, agent: ureq::Agent) -> Client {
        Client {
            agent,
            base: base.to_string(),
            token,
        }
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => req.header("Authorization", &format!("Bearer {t}")),
            None => req,
        }
    }

    fn answer(mut response: ureq::http::Response<ureq::Body>) -> Answer {
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap();
        let body = if content_type.starts_with("application/json") {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        } else {
            Value::String(text)
        };
        Answer {
            status,
            body,
            content_type,
        }
    }

    pub fn get(&self, path: &str) -> Answer {
        let req = self.auth(self.agent.get(format!("{}{path}", self.base)));
        Self::answer(req.call().unwrap())
    }

    pub fn get_with_header(&self, path: &str, name: &str, value: &str) -> Answer {
        let req = self
            .auth(self.agent.get(format!("{}{path}", self.base)))
            .header(name, value);
        let response = req.call().unwrap();
        if response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
        {
            // A stream that opened: report it without reading it to the end.
            let status = response.status().as_u16();
            drop(response);
            return Answer {
                status,
                body: Value::Null,
                content_type: "text/event-stream".into(),
            };
        }
        Self::answer(response)
    }

    pub fn post(&self, path: &str, body: &Value) -> Answer {
        self.post_text(path, &body.to_string())
    }

    pub fn post_text(&self, path: &str, body: &str) -> Answer {
        let req = self
            .auth(self.agent.post(format!("{}{path}", self.base)))
            .header("content-type", "application/json");
        Self::answer(req.send(body).unwrap())
    }

    pub fn post_empty(&self, path: &str) -> Answer {
        let req = self.auth(self.agent.post(format!("{}{path}", self.base)));
        Self::answer(req.send_empty().unwrap())
    }

    pub fn method(&self, method: &str, path: &str) -> Answer {
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        let req = match &self.token {
            Some(t) => req.header("Authorization", format!("Bearer {t}")),
            None => req,
        };
        Self::answer(self.agent.run(req.body(()).unwrap()).unwrap())
    }

    /// Opens a live stream.
    pub fn stream(&self, path: &str, last_event_id: Option<u64>) -> Sse {
        let mut req = self.auth(self.agent.get(format!("{}{path}", self.base)));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", &id.to_string());
        }
        let response = req.call().unwrap();
        let status = response.status().as_u16();
        assert_eq!(status, 200, "the stream did not open");
        let reader = response.into_body().into_reader();
        Sse {
            lines: BufReader::new(Box::new(reader)),
        }
    }

    /// Appends one JSON event; returns the receipt.
    pub fn append(&self, entity: &str, scope: &str, kind: &str, payload: Value) -> Value {
        let a = self.post(
            "/v1/events",
            &serde_json::json!({"entity": entity, "scope": scope, "kind": kind, "payload": payload}),
        );
        assert_eq!(a.status, 201, "append failed: {}", a.body);
        a.body["receipt"].clone()
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
    /// Comment lines (heartbeats) seen before it.
    pub comments: Vec<String>,
}

pub struct Sse {
    lines: BufReader<Box<dyn Read + Send>>,
}

impl Sse {
    /// The next event, or `None` when the stream ended.
    pub fn next(&mut self) -> Option<SseEvent> {
        let mut event = SseEvent {
            event: "message".into(),
            id: None,
            data: String::new(),
            comments: Vec::new(),
        };
        let mut any = false;
        loop {
            let mut line = String::new();
            if self.lines.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if any {
                    return Some(event);
                }
                continue;
            }
            if let Some(c) = line.strip_prefix(':') {
                event.comments.push(c.trim().to_string());
                continue;
            }
            any = true;
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event.event = value.to_string(),
                "id" => event.id = Some(value.to_string()),
                "data" => {
                    if !event.data.is_empty() {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                }
                _ => {}
            }
        }
    }

    pub fn next_json(&mut self) -> Option<(SseEvent, Value)> {
        let e = self.next()?;
        let v = serde_json::from_str(&e.data).unwrap_or(Value::Null);
        Some((e, v))
    }
}

/// A fresh store in a temporary directory.
pub fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}
