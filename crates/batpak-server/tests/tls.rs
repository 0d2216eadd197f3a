//! HTTPS: a handshake with a generated certificate, trusted by the client; a client
//! that does not trust it, and plain HTTP to the TLS port, get nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use batpak_server::TlsConfig;
use serde_json::json;
use support::{start_as, store, Client};

fn agent(trust: Option<&[u8]>) -> ureq::Agent {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(der) = trust {
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&[
            ureq::tls::Certificate::from_der(der).to_owned(),
        ]));
    }
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .tls_config(tls.build())
        .build()
        .into()
}

#[test]
fn https_with_a_generated_certificate_serves_the_api() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let tls = TlsConfig::from_pem(
        cert.cert.pem().as_bytes(),
        cert.key_pair.serialize_pem().as_bytes(),
    )
    .unwrap();
    let (_dir, store) = store();
    let server = start_as("https", store, move |b| b.tls(tls));
    let base = server.base.replace("127.0.0.1", "localhost");
    let c = Client::with_agent(&base, None, agent(Some(cert.cert.der())));
    let receipt = c.append("e", "s", "1:1", json!({"over": "tls"}));
    assert_eq!(receipt["sequence"], 1);
    assert_eq!(
        c.get("/v1/sequences/1").body["payload"],
        json!({"over": "tls"})
    );

    // A client that does not trust the certificate never gets an answer.
    let untrusting = agent(None);
    assert!(untrusting.get(format!("{base}/healthz")).call().is_err());
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = agent(None);
    let http = base.replace("https://", "http://");
    assert!(plain.get(format!("{http}/healthz")).call().is_err());
    // And the server still serves TLS clients after both.
    assert_eq!(c.get("/healthz").status, 200);
}

#[test]
fn bad_certificate_and_key_files_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, "not a certificate").unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let e = TlsConfig::from_pem_files(&cert, &key).unwrap_err();
    assert!(
        e.contains("cert.pem") && e.contains("no certificate"),
        "{e}"
    );
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    let e = TlsConfig::from_pem_files(&cert, &key).unwrap_err();
    assert!(e.contains("key.pem") && e.contains("private key"), "{e}");
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(&key, other.key_pair.serialize_pem()).unwrap();
    let e = TlsConfig::from_pem_files(&cert, &key).unwrap_err();
    assert!(e.contains("does not fit"), "{e}");
    let missing = TlsConfig::from_pem_files(&dir.path().join("nope.pem"), &key).unwrap_err();
    assert!(missing.contains("nope.pem"), "{missing}");
}
