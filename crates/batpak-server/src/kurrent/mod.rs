//! The KurrentDB (formerly EventStoreDB) client protocol, over gRPC on a listener
//! of its own (`--kurrentdb-addr`), so existing clients of that store read and
//! write a batpak store unmodified.
//!
//! The mapping (docs/DESIGN.md "KurrentDB protocol"): a stream is an entity
//! ([`names`]), appended in one scope (`kurrentdb` unless configured); `$all` is
//! every user event of the store in sequence order; a position is the event's
//! sequence (commit and prepare alike, never 0); a revision is the entity version.
//! The event type, content type, client event id and custom metadata are kept in
//! the event's metadata, and the type also names the event's kind ([`events`]).
//! Every event still gets its receipt, chain link and hash: the HTTP API, the
//! console and the CLI show the proof of what a KurrentDB client wrote.

// tonic's `Status` is the protocol's error and every handler returns it; boxing it
// in the helpers would only unbox it again at each call.
#![allow(clippy::result_large_err)]

pub(crate) mod proto;

mod conn;
mod events;
mod metadata;
mod names;
mod read;
mod streams;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use crate::api::App;
use crate::auth::Caller;
use crate::error::ApiError;

use proto::event_store::client::persistent_subscriptions as persistent;
use proto::event_store::client::server_features as features;
use proto::event_store::client::streams::streams_server::StreamsServer;

/// The version the listener reports: clients enable features by it (caught-up
/// messages from 23.10, batch appends and read positions from 22.x), and batpak
/// implements the protocol of that release.
pub(crate) const SERVER_VERSION: &str = "24.10.0";

/// The service handlers' shared state.
pub(crate) struct Kurrent {
    app: Arc<App>,
    /// The scope KurrentDB appends go to.
    scope: String,
    kinds: Arc<events::Kinds>,
    recent: std::sync::Mutex<streams::RecentAppends>,
}

impl std::fmt::Debug for Kurrent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kurrent")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Kurrent {
    /// The caller named by the request's credentials: `Authorization: Basic` with a
    /// token as the password (and its principal, or anything, as the user name), or
    /// `Bearer <token>`. A server without tokens lets everyone in.
    fn caller(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        let Some(tokens) = &self.app.tokens else {
            return Ok(Caller::Open);
        };
        let header = metadata
            .get("authorization")
            .map(|v| {
                v.to_str()
                    .map_err(|_| unauthenticated("the authorization header is not text"))
            })
            .transpose()?;
        let Some(header) = header else {
            return Err(unauthenticated(
                "this server needs credentials: a user name and a token as the password",
            ));
        };
        let bearer = match header
            .strip_prefix("Basic ")
            .or_else(|| header.strip_prefix("basic "))
        {
            Some(encoded) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| unauthenticated("the basic credentials are not base64 text"))?;
                let (user, token) = decoded.split_once(':').ok_or_else(|| {
                    unauthenticated("the basic credentials are not user:password")
                })?;
                let caller = tokens
                    .authenticate(Some(&format!("Bearer {token}")))
                    .map_err(|_| {
                        unauthenticated("the password is not a token this server knows")
                    })?;
                if caller.principal().is_some_and(|p| p != user) && !user.is_empty() {
                    return Err(unauthenticated(&format!(
                        "the token belongs to {:?}, not to user {user:?}",
                        caller.principal().unwrap_or_default()
                    )));
                }
                return Ok(caller);
            }
            None => header,
        };
        tokens
            .authenticate(Some(bearer))
            .map_err(|e| unauthenticated(&e.message))
    }
}

fn unauthenticated(why: &str) -> Status {
    Status::unauthenticated(why.to_string())
}

/// A status with the `exception` trailer clients look for, and more trailers.
pub(crate) fn status_with(
    code: Code,
    message: String,
    trailers: &[(&'static str, String)],
) -> Status {
    let mut status = Status::new(code, message);
    for (key, value) in trailers {
        if let Ok(value) = value.parse() {
            status.metadata_mut().insert(*key, value);
        }
    }
    status
}

/// An API error as a gRPC status: the code clients map it by, the same message.
impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let (code, exception) = match e.status.as_u16() {
            400 | 413 => (Code::InvalidArgument, "invalid-argument"),
            401 => (Code::Unauthenticated, "not-authenticated"),
            403 => (Code::PermissionDenied, "access-denied"),
            404 => (Code::NotFound, "not-found"),
            405 | 409 | 422 => (Code::FailedPrecondition, "failed-precondition"),
            503 => (Code::Unavailable, "unavailable"),
            504 => (Code::DeadlineExceeded, "timeout"),
            _ => (Code::Internal, "internal"),
        };
        status_with(code, e.message, &[("exception", exception.to_string())])
    }
}

/// A store error as a gRPC status.
pub(crate) fn store_status(e: batpak::Error) -> Status {
    if let batpak::Error::EntityDeleted { entity, .. } = &e {
        return stream_deleted(entity);
    }
    Status::from(ApiError::from(e))
}

/// What clients take as "the stream is deleted" (hard): the `stream-deleted`
/// exception and the stream's name.
pub(crate) fn stream_deleted(entity: &str) -> Status {
    let name = String::from_utf8_lossy(&names::name_of(entity)).into_owned();
    status_with(
        Code::FailedPrecondition,
        format!("Event stream '{name}' is deleted."),
        &[
            ("exception", "stream-deleted".to_string()),
            ("stream-name", name),
        ],
    )
}

/// `ServerFeatures`: the methods implemented (service and method names lower-case,
/// as clients compare them) and the version.
#[derive(Debug)]
struct Features;

#[tonic::async_trait]
impl features::server_features_server::ServerFeatures for Features {
    async fn get_supported_methods(
        &self,
        _request: tonic::Request<proto::event_store::client::Empty>,
    ) -> Result<tonic::Response<features::SupportedMethods>, Status> {
        let method = |service: &str, name: &str, features: &[&str]| features::SupportedMethod {
            method_name: name.to_string(),
            service_name: service.to_string(),
            features: features.iter().map(|f| (*f).to_string()).collect(),
        };
        let streams = "event_store.client.streams.streams";
        Ok(tonic::Response::new(features::SupportedMethods {
            methods: vec![
                method(streams, "read", &["position", "events", "all"]),
                method(streams, "append", &[]),
                method(streams, "batchappend", &[]),
                method(streams, "delete", &[]),
                method(streams, "tombstone", &[]),
                method(
                    "event_store.client.server_features.serverfeatures",
                    "getsupportedmethods",
                    &[],
                ),
            ],
            event_store_server_version: SERVER_VERSION.to_string(),
        }))
    }
}

/// Persistent subscriptions are not served. Listing answers "not found" (what
/// clients take as "there are none"); every other method of the service answers
/// "unimplemented", which is how tonic answers a method it does not route.
#[derive(Debug)]
struct Persistent;

#[tonic::async_trait]
impl persistent::persistent_subscriptions_server::PersistentSubscriptions for Persistent {
    async fn list(
        &self,
        _request: tonic::Request<persistent::ListReq>,
    ) -> Result<tonic::Response<persistent::ListResp>, Status> {
        Err(status_with(
            Code::NotFound,
            "persistent subscriptions are not served by batpak; there are none".to_string(),
            &[(
                "exception",
                "persistent-subscription-does-not-exist".to_string(),
            )],
        ))
    }
}

/// The listener: binds `addr`, serves until `stop` resolves.
pub(crate) struct Listener {
    pub(crate) tcp: tokio::net::TcpListener,
    pub(crate) scope: String,
}

impl Listener {
    pub(crate) async fn bind(addr: SocketAddr, scope: String) -> std::io::Result<Listener> {
        let tcp = tokio::net::TcpListener::bind(addr).await?;
        Ok(Listener { tcp, scope })
    }

    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Serves the protocol until `stop`: calls in flight finish, subscriptions end
    /// (they watch the server's shutdown flag).
    pub(crate) async fn serve(
        self,
        app: Arc<App>,
        tls: Option<crate::tls::TlsConfig>,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let kinds = Arc::new(events::Kinds::load(app.store.store()));
        let recent = app
            .store
            .run(streams::RecentAppends::load)
            .await
            .map_err(|e| std::io::Error::other(format!("recent client ids: {e}")))?;
        if !app.read_only {
            // Metadata written while no listener ran (or cut off by a crash before
            // its policy) takes effect now.
            app.store
                .run(metadata::reconcile_all)
                .await
                .map_err(|e| std::io::Error::other(format!("stream metadata: {e}")))?;
        }
        let state = Arc::new(Kurrent {
            app,
            scope: self.scope,
            kinds,
            recent: std::sync::Mutex::new(recent),
        });
        let max = state.app.limits.max_body_bytes.max(4 << 20);
        let streams = StreamsServer::new(streams::Service(Arc::clone(&state)))
            .max_decoding_message_size(max)
            .max_encoding_message_size(usize::MAX);
        let router = tonic::transport::Server::builder()
            .add_service(streams)
            .add_service(features::server_features_server::ServerFeaturesServer::new(
                Features,
            ))
            .add_service(
                persistent::persistent_subscriptions_server::PersistentSubscriptionsServer::new(
                    Persistent,
                ),
            );
        let served = match tls {
            None => {
                use futures_util::StreamExt as _;
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(self.tcp)
                    .map(|conn| conn.map(conn::QuickAck::new));
                router.serve_with_incoming_shutdown(incoming, stop).await
            }
            Some(tls) => {
                let incoming = conn::tls_incoming(self.tcp, &tls)?;
                router.serve_with_incoming_shutdown(incoming, stop).await
            }
        };
        served.map_err(std::io::Error::other)
    }
}
