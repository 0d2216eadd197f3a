//! The kurrentdb crate's own streams tests, unchanged, against `batpak serve`'s
//! KurrentDB listener: the file `tests/api/streams.rs` of the pinned client
//! version is included from cargo's registry sources (found by build.rs), with its
//! `common.rs` helpers, and given a client connected to a server on a loopback port
//! over a fresh store. The crate's own runner starts its server in docker; this
//! one starts ours.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

// Their code, as published: our lints are not theirs.
#[allow(clippy::all, clippy::pedantic, unused)]
mod common {
    include!(concat!(env!("KURRENTDB_TESTS"), "/common.rs"));
}

#[allow(clippy::all, clippy::pedantic, unused)]
mod api {
    pub mod streams {
        include!(concat!(env!("KURRENTDB_TESTS"), "/api/streams.rs"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_kurrentdb_clients_streams_tests_pass() -> eyre::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir()?;
    let store = batpak::Store::open(dir.path())?;
    let server = batpak_server::Server::builder(store)
        .kurrentdb("127.0.0.1:0".parse()?, "kurrentdb")
        .bind("127.0.0.1:0".parse()?)
        .await?;
    let addr = server.kurrentdb_addr().expect("the listener is bound");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_until(async move {
        let _ = stopped.await;
    }));
    let settings: kurrentdb::ClientSettings = format!(
        "esdb://127.0.0.1:{}?tls=false&defaultDeadline=60000",
        addr.port()
    )
    .parse()?;
    let client = kurrentdb::Client::new(settings)?;
    let outcome = api::streams::tests(client).await;
    let _ = stop.send(());
    serving.await??;
    outcome
}
