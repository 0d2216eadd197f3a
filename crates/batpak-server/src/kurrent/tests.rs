//! Bad input for each RPC, sent by a real gRPC client (tonic, over HTTP/2 on a
//! loopback port) the way no well-behaved KurrentDB client would send it: every
//! refusal names what was wrong, carries the trailers clients read, and writes
//! nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tonic::transport::Channel;
use tonic::Code;

use super::proto::event_store::client as shared;
use super::proto::event_store::client::persistent_subscriptions as persistent;
use super::proto::event_store::client::server_features as features;
use super::proto::event_store::client::streams::{
    self as s, append_req, batch_append_req, read_req, streams_client::StreamsClient,
};

struct Running {
    channel: Channel,
    store: crate::AsyncStore,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<Result<(), crate::ServeError>>,
    dir: tempfile::TempDir,
}

impl Running {
    /// Stops the server, waits until it closed the store, and hands back its
    /// directory.
    async fn finish(self) -> tempfile::TempDir {
        drop(self.store);
        let _ = self.stop.send(());
        self.serving.await.unwrap().unwrap();
        self.dir
    }
}

async fn start(configure: impl FnOnce(crate::ServerBuilder) -> crate::ServerBuilder) -> Running {
    start_in(tempfile::tempdir().unwrap(), configure).await
}

/// A listener on the store in `dir` (which may hold events already).
async fn start_in(
    dir: tempfile::TempDir,
    configure: impl FnOnce(crate::ServerBuilder) -> crate::ServerBuilder,
) -> Running {
    let store = batpak::Store::open(dir.path()).unwrap();
    let builder =
        crate::Server::builder(store).kurrentdb("127.0.0.1:0".parse().unwrap(), "kurrentdb");
    let server = configure(builder)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.kurrentdb_addr().unwrap();
    let store = server.store().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_until(async move {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Running {
        channel,
        store,
        stop,
        serving,
        dir,
    }
}

fn stream(name: &[u8]) -> Option<shared::StreamIdentifier> {
    Some(shared::StreamIdentifier {
        stream_name: name.to_vec(),
    })
}

fn options(name: &[u8]) -> s::AppendReq {
    s::AppendReq {
        content: Some(append_req::Content::Options(append_req::Options {
            stream_identifier: stream(name),
            expected_stream_revision: Some(append_req::options::ExpectedStreamRevision::Any(
                shared::Empty {},
            )),
        })),
    }
}

fn message(event_type: Option<&str>, id: Option<shared::uuid::Value>) -> s::AppendReq {
    let mut metadata = std::collections::HashMap::new();
    if let Some(t) = event_type {
        metadata.insert("type".to_string(), t.to_string());
    }
    metadata.insert("content-type".to_string(), "application/json".to_string());
    s::AppendReq {
        content: Some(append_req::Content::ProposedMessage(
            append_req::ProposedMessage {
                id: id.map(|value| shared::Uuid { value: Some(value) }),
                metadata,
                custom_metadata: Vec::new(),
                data: b"{}".to_vec(),
            },
        )),
    }
}

/// `message` with `json` as its data.
fn data(mut message: s::AppendReq, json: &str) -> s::AppendReq {
    if let Some(append_req::Content::ProposedMessage(m)) = &mut message.content {
        m.data = json.as_bytes().to_vec();
    }
    message
}

fn good_id() -> Option<shared::uuid::Value> {
    Some(shared::uuid::Value::String(
        "4f3a3c36-7d5e-4d2c-9a51-0d6a1c1f2b10".into(),
    ))
}

async fn append(r: &Running, messages: Vec<s::AppendReq>) -> Result<s::AppendResp, tonic::Status> {
    let mut client = StreamsClient::new(r.channel.clone());
    client
        .append(futures_util::stream::iter(messages))
        .await
        .map(tonic::Response::into_inner)
}

fn exception(status: &tonic::Status) -> Option<&str> {
    status
        .metadata()
        .get("exception")
        .and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_refuse_bad_input_and_write_nothing() {
    let r = start(|b| b).await;
    let cases: Vec<(Vec<s::AppendReq>, &str)> = vec![
        (vec![], "sent no options"),
        (
            vec![message(Some("t"), good_id())],
            "first message of an append must be its options",
        ),
        (
            vec![options(b"a"), options(b"a")],
            "message 1 of the append repeats the options",
        ),
        (
            vec![options(b"a"), message(None, good_id())],
            "event 0: the metadata has no `type`",
        ),
        (
            vec![
                options(b"a"),
                message(Some("t"), good_id()),
                message(Some("t"), Some(shared::uuid::Value::String("nope".into()))),
            ],
            "event 1: the event id \"nope\" is not a UUID",
        ),
        (
            vec![options(b""), message(Some("t"), good_id())],
            "the stream name is empty",
        ),
        (
            vec![options(&[b'%'; 400]), message(Some("t"), good_id())],
            "1200 bytes once escaped, at most 1024",
        ),
        (
            vec![options(b"a"), message(Some("tab\there"), good_id())],
            "event 0: its type, content type or custom metadata",
        ),
        (
            vec![options(b"a"), s::AppendReq { content: None }],
            "message 1 of the append is empty",
        ),
        (
            vec![
                options(b"$$a"),
                message(Some("t"), None),
                data(message(Some("$metadata"), None), r#"{"$tb": -1}"#),
            ],
            "event 1: stream metadata $tb must be a whole number of at least 0, not -1",
        ),
        (
            vec![
                options(b"$$a"),
                data(message(Some("$metadata"), None), r#"{"$maxCount": 0}"#),
            ],
            "event 0: stream metadata $maxCount must be a whole number of at least 1, not 0",
        ),
        (
            vec![
                options(b"$$a"),
                data(message(Some("$metadata"), None), "[]"),
            ],
            "event 0: stream metadata must be a JSON object",
        ),
    ];
    for (messages, says) in cases {
        let err = append(&r, messages).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains(says),
            "{:?} lacks {says:?}",
            err.message()
        );
        assert_eq!(exception(&err), Some("invalid-argument"));
    }
    assert_eq!(r.store.store().stats().unwrap().events, 0);
    let _ = r.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_over_the_limits_are_refused_with_the_limit() {
    let r = start(|b| {
        b.limits(crate::Limits {
            max_batch: 2,
            ..Default::default()
        })
    })
    .await;
    let err = append(
        &r,
        vec![
            options(b"big"),
            message(Some("t"), None),
            message(Some("t"), None),
            message(Some("t"), None),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(exception(&err), Some("maximum-append-size-exceeded"));
    assert!(err
        .message()
        .contains("3 events, over this server's limit of 2"));
    assert_eq!(r.store.store().entity_version("big"), None);
    let _ = r.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_refuse_bad_options() {
    let r = start(|b| b).await;
    let mut client = StreamsClient::new(r.channel.clone());
    let stream_options = |name: &[u8]| read_req::Options {
        stream_option: Some(read_req::options::StreamOption::Stream(
            read_req::options::StreamOptions {
                stream_identifier: stream(name),
                revision_option: None,
            },
        )),
        count_option: Some(read_req::options::CountOption::Count(10)),
        ..Default::default()
    };
    let mut filtered = stream_options(b"a");
    filtered.filter_option = Some(read_req::options::FilterOption::Filter(
        read_req::options::FilterOptions {
            filter: Some(read_req::options::filter_options::Filter::EventType(
                read_req::options::filter_options::Expression {
                    regex: "x".into(),
                    prefix: vec![],
                },
            )),
            ..Default::default()
        },
    ));
    let mut no_count = stream_options(b"a");
    no_count.count_option = None;
    let no_source = read_req::Options {
        count_option: Some(read_req::options::CountOption::Count(1)),
        ..Default::default()
    };
    let cases = [
        (None, "the read has no options"),
        (Some(no_count), "neither a count nor a subscription"),
        (Some(filtered), "a filter applies to reads of $all"),
        (Some(no_source), "neither a stream nor $all"),
        (Some(stream_options(b"")), "the stream name is empty"),
    ];
    for (options, says) in cases {
        let Err(err) = client.read(s::ReadReq { options }).await else {
            panic!("read options lacking {says:?} were taken");
        };
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains(says),
            "{:?} lacks {says:?}",
            err.message()
        );
    }
    let _ = r.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_refuse_bad_input_with_the_trailers_clients_parse() {
    let r = start(|b| b).await;
    let mut client = StreamsClient::new(r.channel.clone());
    let err = client
        .delete(s::DeleteReq { options: None })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("the delete has no options"));
    // A stream that never had an event: a tombstone expecting it to exist is
    // refused with both revisions; one expecting no stream reserves the name, so
    // the first append to it is refused, and so is a second tombstone.
    let tombstone = |name: &'static [u8], expected| {
        let mut client = StreamsClient::new(r.channel.clone());
        async move {
            client
                .tombstone(s::DeleteReq {
                    options: Some(s::append_req::Options {
                        stream_identifier: stream(name),
                        expected_stream_revision: expected,
                    }),
                })
                .await
        }
    };
    let err = tombstone(
        b"never",
        Some(s::append_req::options::ExpectedStreamRevision::StreamExists(shared::Empty {})),
    )
    .await
    .unwrap_err();
    assert_eq!(exception(&err), Some("wrong-expected-version"));
    assert_eq!(
        err.metadata()
            .get("actual-version")
            .and_then(|v| v.to_str().ok()),
        Some("-1")
    );
    let done = tombstone(
        b"never",
        Some(s::append_req::options::ExpectedStreamRevision::NoStream(
            shared::Empty {},
        )),
    )
    .await
    .unwrap()
    .into_inner();
    assert!(
        matches!(
            done.position_option,
            Some(s::delete_resp::PositionOption::Position(_))
        ),
        "{done:?}"
    );
    let err = append(&r, vec![options(b"never"), message(Some("t"), None)])
        .await
        .unwrap_err();
    assert_eq!(exception(&err), Some("stream-deleted"));
    assert_eq!(err.message(), "Event stream 'never' is deleted.");
    let err = tombstone(b"never", None).await.unwrap_err();
    assert_eq!(exception(&err), Some("stream-deleted"));
    assert_eq!(
        r.store.store().deletion("never").unwrap().through_version,
        None
    );

    append(&r, vec![options(b"one"), message(Some("t"), good_id())])
        .await
        .unwrap();
    let err = client
        .delete(s::DeleteReq {
            options: Some(s::append_req::Options {
                stream_identifier: stream(b"one"),
                expected_stream_revision: Some(
                    s::append_req::options::ExpectedStreamRevision::Revision(5),
                ),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(exception(&err), Some("wrong-expected-version"));
    let trailer = |k: &str| {
        err.metadata()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(trailer("expected-version").as_deref(), Some("5"));
    assert_eq!(trailer("actual-version").as_deref(), Some("0"));
    assert_eq!(trailer("stream-name").as_deref(), Some("one"));

    client
        .tombstone(s::DeleteReq {
            options: Some(s::append_req::Options {
                stream_identifier: stream(b"one"),
                expected_stream_revision: None,
            }),
        })
        .await
        .unwrap();
    let err = append(&r, vec![options(b"one"), message(Some("t"), None)])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(exception(&err), Some("stream-deleted"));
    assert_eq!(
        err.metadata()
            .get("stream-name")
            .and_then(|v| v.to_str().ok()),
        Some("one")
    );
    assert_eq!(err.message(), "Event stream 'one' is deleted.");
    let _ = r.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_sessions_answer_bad_requests_in_band_or_end() {
    let r = start(|b| b).await;
    let mut client = StreamsClient::new(r.channel.clone());
    let correlation = Some(shared::Uuid {
        value: Some(shared::uuid::Value::String(
            "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9".into(),
        )),
    });
    // A final request that never sent its options is answered with an error.
    let requests = vec![s::BatchAppendReq {
        correlation_id: correlation.clone(),
        options: None,
        proposed_messages: vec![],
        is_final: true,
    }];
    let mut answers = client
        .batch_append(futures_util::stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().expect("an answer");
    assert_eq!(answer.correlation_id, correlation);
    match answer.result {
        Some(s::batch_append_resp::Result::Error(e)) => {
            assert_eq!(e.code, Code::InvalidArgument as i32);
            assert!(
                e.message.contains("never sent its options"),
                "{}",
                e.message
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    // A request without a correlation id ends the session.
    let requests = vec![s::BatchAppendReq {
        correlation_id: None,
        options: Some(batch_append_req::Options {
            stream_identifier: stream(b"b"),
            expected_stream_position: None,
            deadline_option: None,
        }),
        proposed_messages: vec![],
        is_final: true,
    }];
    let mut answers = client
        .batch_append(futures_util::stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let err = answers.message().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("no correlation id"));
    let _ = r.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn features_list_what_is_served_and_persistent_listing_is_not_found() {
    let r = start(|b| b).await;
    let mut f = features::server_features_client::ServerFeaturesClient::new(r.channel.clone());
    let methods = f
        .get_supported_methods(shared::Empty {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(methods.event_store_server_version, super::SERVER_VERSION);
    let names: Vec<(String, String)> = methods
        .methods
        .iter()
        .map(|m| (m.service_name.clone(), m.method_name.clone()))
        .collect();
    for method in ["read", "append", "batchappend", "delete", "tombstone"] {
        assert!(
            names.contains(&("event_store.client.streams.streams".into(), method.into())),
            "{method} missing from {names:?}"
        );
    }
    let mut p = persistent::persistent_subscriptions_client::PersistentSubscriptionsClient::new(
        r.channel.clone(),
    );
    let err = p.list(persistent::ListReq {}).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let _ = r.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_are_honoured_and_read_only_servers_refuse_appends() {
    let r = start(|b| b).await;
    let mut client = StreamsClient::new(r.channel.clone());
    // An append whose client never finishes sending: the deadline ends it.
    let (tx, rx) = tokio::sync::mpsc::channel::<s::AppendReq>(4);
    tx.send(options(b"slow")).await.unwrap();
    let mut request = tonic::Request::new(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|m| (m, rx))
    }));
    request.set_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(10), client.append(request))
        .await
        .expect("the server ended the call")
        .unwrap_err();
    assert!(
        err.code() == Code::DeadlineExceeded
            || (err.code() == Code::Cancelled && err.message() == "Timeout expired"),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(tx);
    assert_eq!(r.store.store().entity_version("slow"), None);
    let _ = r.stop.send(());

    let r = start(|b| b.read_only(true)).await;
    let err = append(&r, vec![options(b"ro"), message(Some("t"), None)])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let _ = r.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_written_while_no_listener_ran_takes_effect_when_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = batpak::Store::open(dir.path()).unwrap();
        let coordinate = |e: &str| batpak::Coordinate::new(e, "kurrentdb").unwrap();
        for n in 0..3 {
            store
                .append_raw(
                    &coordinate("kept"),
                    batpak::EventKind::custom(15, 0),
                    batpak::RawPayload::json(format!("{{\"n\": {n}}}").as_bytes()),
                    batpak::AppendOptions::default(),
                )
                .unwrap();
        }
        let mut metadata = batpak::Metadata::new();
        metadata.insert(super::events::TYPE_KEY, "$metadata");
        store
            .append_raw(
                &coordinate("$$kept"),
                batpak::EventKind::custom(15, 0),
                batpak::RawPayload::json(br#"{"$maxCount": 1}"#),
                batpak::AppendOptions::default().metadata(metadata),
            )
            .unwrap();
        assert!(store.retention().is_empty());
        store.close().unwrap();
    }
    let r = start_in(dir, |b| b).await;
    // The listener answers only once it started, after bringing policies in line.
    append(&r, vec![options(b"probe"), message(Some("t"), None)])
        .await
        .unwrap();
    let policies = r.store.store().retention();
    assert_eq!(policies.len(), 1, "{policies:?}");
    assert_eq!(
        (&policies[0].selector, policies[0].rule),
        (
            &batpak::RetentionSelector::Entity("kept".into()),
            batpak::RetentionRule::MaxCount(1)
        )
    );
    assert_eq!(r.store.store().stream("kept").unwrap().len(), 1);
    let _ = r.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_any_after_a_restart_returns_the_original_result() {
    let ids = [
        "6f1d2c3b-4a59-4e68-8d7c-0b1a2f3e4d5c",
        "7a2e3d4c-5b6a-4f79-9e8d-1c2b3a4f5e6d",
    ];
    let request = || {
        let mut messages = vec![options(b"again")];
        for id in ids {
            messages.push(message(
                Some("t"),
                Some(shared::uuid::Value::String(id.into())),
            ));
        }
        messages
    };
    let r = start(|b| b).await;
    // Something else first, so the retried events are not at the store's start.
    append(&r, vec![options(b"before"), message(Some("t"), None)])
        .await
        .unwrap();
    let original = append(&r, request()).await.unwrap();
    let r = start_in(r.finish().await, |b| b).await;
    let retried = append(&r, request()).await.unwrap();
    assert_eq!(retried, original);
    assert_eq!(r.store.store().stream("again").unwrap().len(), 2);
    // A different set of ids under "any" is a new append.
    append(&r, vec![options(b"again"), message(Some("t"), None)])
        .await
        .unwrap();
    assert_eq!(r.store.store().stream("again").unwrap().len(), 3);
    r.finish().await;
}
