//! The web console: the bundle built from `web/` (committed in `web/dist/`, so
//! `cargo build` needs no Node.js), embedded in the binary and served at `/` and at
//! every page's own URL (`/streams/{entity}`, `/events/{id}`, `/graph/{id}`,
//! `/proof`, `/tail`): the same document, whose script routes by path. No network at
//! run time: everything it loads comes from this server.

use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../web/dist/index.html");
const SCRIPT: &str = include_str!("../web/dist/assets/console.js");
const STYLE: &str = include_str!("../web/dist/assets/console.css");

/// What a page may load: only this server (and the graph's canvas images).
const POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The paths the console answers, below the API's.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/streams", get(index))
        .route("/streams/{*entity}", get(index))
        .route("/events/{id}", get(index))
        .route("/graph/{id}", get(index))
        .route("/proof", get(index))
        .route("/tail", get(index))
        .route("/assets/console.js", get(script))
        .route("/assets/console.css", get(style))
}

const FILES: [&str; 3] = [INDEX, SCRIPT, STYLE];

/// A strong validator of `FILES[which]`, computed once.
fn etag(which: usize) -> &'static str {
    static TAGS: OnceLock<[String; 3]> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        FILES.map(|b| format!("\"{}\"", &blake3::hash(b.as_bytes()).to_hex()[..32]))
    });
    &tags[which]
}

fn file(headers: &HeaderMap, which: usize, content_type: &'static str) -> Response {
    let (tag, body) = (etag(which), FILES[which]);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_static(tag));
    // Fixed names: revalidate each time (a 304 costs a few bytes).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn index(headers: HeaderMap) -> Response {
    file(&headers, 0, "text/html; charset=utf-8")
}

async fn script(headers: HeaderMap) -> Response {
    file(&headers, 1, "text/javascript; charset=utf-8")
}

async fn style(headers: HeaderMap) -> Response {
    file(&headers, 2, "text/css; charset=utf-8")
}
