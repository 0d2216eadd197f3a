//! The console is served at `/` and at every page's own URL, with its script and
//! style, a content security policy, and validators for revalidation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{start, store};

#[test]
fn every_page_url_answers_with_the_console_and_its_assets_revalidate() {
    let (_dir, store) = store();
    let server = start(store, |b| b);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let fetch = |path: &str, etag: Option<&str>| {
        let mut req = agent.get(format!("{}{path}", server.base));
        if let Some(tag) = etag {
            req = req.header("If-None-Match", tag);
        }
        let mut r = req.call().unwrap();
        let header = |name: &str| {
            r.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        let (ctype, tag, csp) = (
            header("content-type"),
            header("etag"),
            header("content-security-policy"),
        );
        let status = r.status().as_u16();
        let body = r.body_mut().read_to_string().unwrap();
        (status, ctype, tag, csp, body)
    };
    let (status, ctype, tag, csp, index) = fetch("/", None);
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/html"));
    assert!(index.contains("/assets/console.js") && index.contains("/assets/console.css"));
    assert!(
        csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    for page in [
        "/streams",
        "/streams/order:1",
        "/streams/a%2Fb",
        "/events/01a23be4-b66c-71a5-a41f-16de4834d2e0",
        "/graph/01a23be4-b66c-71a5-a41f-16de4834d2e0",
        "/proof",
        "/tail",
    ] {
        let (status, _, _, _, body) = fetch(page, None);
        assert_eq!((status, body == index), (200, true), "{page}");
    }
    let (status, ctype, js_tag, _, js) = fetch("/assets/console.js", None);
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/javascript"));
    assert!(js.len() > 10_000, "the bundle, cytoscape included");
    let (status, ctype, _, _, _) = fetch("/assets/console.css", None);
    assert_eq!((status, ctype.starts_with("text/css")), (200, true));
    assert_eq!(fetch("/assets/console.js", Some(&js_tag)).0, 304);
    assert_eq!(fetch("/", Some(&tag)).0, 304);
    assert_eq!(fetch("/", Some("\"other\"")).0, 200);
    // Anything else is the API's 404.
    let (status, ctype, _, _, _) = fetch("/nope", None);
    assert_eq!((status, ctype.starts_with("application/json")), (404, true));
}
