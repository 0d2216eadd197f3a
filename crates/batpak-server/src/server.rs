//! The server: built around an open store, bound to an address, served until a
//! shutdown signal, then drained (live streams end, requests in flight finish,
//! cursors are released) and the store closed cleanly.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::serve::ListenerExt as _;
use batpak::gate::GateSet;
use batpak::{Projection, Store};
use tokio::net::TcpListener;

use crate::api::{self, App};
use crate::auth::{Tokens, TokensFile};
use crate::facade::AsyncStore;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::registry::{AppendContext, Registry};
use crate::tls::{TlsConfig, TlsListener};

/// A batpak store over HTTP. See [`Server::builder`].
pub struct Server {
    listener: TcpListener,
    kurrent: Option<crate::kurrent::Listener>,
    tls: Option<TlsConfig>,
    app: Arc<App>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.listener.local_addr().ok())
            .field("app", &self.app)
            .finish()
    }
}

/// Why the server would not start or did not stop cleanly.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound, or serving failed.
    Io(std::io::Error),
    /// A non-loopback address without tokens, and without `allow_open_remote`.
    Refused(String),
    /// The store did not close cleanly.
    Store(batpak::Error),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Io(e) => write!(f, "{e}"),
            ServeError::Refused(why) => write!(f, "{why}"),
            ServeError::Store(e) => write!(f, "closing the store: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// Where the request log lines go.
pub(crate) type LogFn = Arc<dyn Fn(&str) + Send + Sync>;

/// Configures a [`Server`].
pub struct ServerBuilder {
    store: Store,
    limits: Limits,
    tokens: Option<TokensFile>,
    read_only: bool,
    open_remote: bool,
    log: Option<LogFn>,
    registry: Registry,
    tls: Option<TlsConfig>,
    kurrentdb: Option<(SocketAddr, String)>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("dir", &self.store.dir())
            .field("limits", &self.limits)
            .field("tokens", &self.tokens.as_ref().map(|t| t.tokens.len()))
            .field("read_only", &self.read_only)
            .field("open_remote", &self.open_remote)
            .field("registry", &self.registry)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Server {
    /// Starts configuring a server of `store`.
    pub fn builder(store: Store) -> ServerBuilder {
        ServerBuilder {
            store,
            limits: Limits::default(),
            tokens: None,
            read_only: false,
            open_remote: false,
            log: None,
            registry: Registry::default(),
            tls: None,
            kurrentdb: None,
        }
    }

    /// Whether the server speaks HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The address the server listens on (the port the OS chose for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address of the KurrentDB protocol listener, when there is one.
    pub fn kurrentdb_addr(&self) -> Option<SocketAddr> {
        self.kurrent.as_ref().and_then(|k| k.local_addr().ok())
    }

    /// The async store the server uses, for an application that serves its own
    /// routes or tasks beside it.
    pub fn store(&self) -> &AsyncStore {
        &self.app.store
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn serve(self) -> Result<(), ServeError> {
        self.serve_until(termination()).await
    }

    /// Serves until `signal` completes, then shuts down gracefully: live streams end,
    /// requests in flight finish, cursors are released, and the store is closed
    /// (checkpoint written, lock released).
    pub async fn serve_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Server {
            listener,
            kurrent,
            tls,
            app,
            shutdown,
        } = self;
        let router = api::router(Arc::clone(&app));
        let stopped = app.shutdown.clone();
        tokio::spawn(async move {
            signal.await;
            shutdown.send_replace(true);
        });
        let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let stop = until(stopped.clone());
        let grpc =
            kurrent.map(|k| tokio::spawn(k.serve(Arc::clone(&app), tls.clone(), until(stopped))));
        let served = match tls {
            None => {
                let listener = listener.tap_io(|tcp| {
                    // Answers go out at once, not after a delayed ACK.
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(listener, router)
                    .with_graceful_shutdown(stop)
                    .await
            }
            Some(tls) => {
                let listener = TlsListener::new(listener, &tls).map_err(ServeError::Io)?;
                axum::serve(listener, router)
                    .with_graceful_shutdown(stop)
                    .await
            }
        };
        let grpc = match grpc {
            None => Ok(()),
            Some(task) => task.await.unwrap_or_else(|e| Err(std::io::Error::other(e))),
        };
        app.cursors.close_all();
        let store = app.store.clone();
        drop(app);
        let closed = close(store).await;
        served.map_err(ServeError::Io)?;
        grpc.map_err(ServeError::Io)?;
        closed.map_err(ServeError::Store)
    }
}

/// Closes the store once the last task holding it (a verification job, a blocking
/// read) has let go, waiting at most 30 s.
async fn close(mut store: AsyncStore) -> batpak::Result<()> {
    let started = Instant::now();
    loop {
        match store.close() {
            Ok(result) => return result,
            Err(still_held) if started.elapsed() < Duration::from_secs(30) => {
                store = still_held;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(still_held) => {
                return Err(batpak::Error::Malformed {
                    what: "close",
                    detail: format!(
                        "tasks still held the store at {} after 30 s; it was not closed",
                        still_held.store().dir().display()
                    ),
                })
            }
        }
    }
}

async fn termination() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the server runs until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

impl ServerBuilder {
    /// The limits (default [`Limits::default`]).
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Requires a bearer token from this file on every `/v1` request.
    #[must_use]
    pub fn tokens(mut self, tokens: TokensFile) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Serves HTTPS with this certificate and key.
    #[must_use]
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Refuses appends with 405 `read_only` (a replica, or a store opened read-only).
    #[must_use]
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Lets a server without tokens listen on an address other than loopback
    /// (`--insecure`): anyone who reaches it may read and append.
    #[must_use]
    pub fn allow_open_remote(mut self, allow: bool) -> Self {
        self.open_remote = allow;
        self
    }

    /// Serves projection `P` as `GET /v1/projections/{name}/{entity}` (its state as
    /// JSON, reflecting every visible event of the entity).
    #[must_use]
    pub fn projection<P: Projection + serde::Serialize>(mut self, name: &str) -> Self {
        self.registry.add_projection::<P>(name);
        self
    }

    /// Lets clients append through `gates` as `POST /v1/gates/{name}/events`: the
    /// event is appended only when every gate permits; a denial is recorded and
    /// answered with 422.
    #[must_use]
    pub fn gates(mut self, name: &str, gates: GateSet<AppendContext>) -> Self {
        self.registry
            .gates
            .insert(name.to_string(), Arc::new(gates));
        self
    }

    /// Also serves the KurrentDB (EventStoreDB) client gRPC protocol on `addr`
    /// (port 0: any free port), appending into `scope`; with TLS when the server
    /// has a certificate. Tokens apply the same way (basic credentials, the token
    /// as the password).
    #[must_use]
    pub fn kurrentdb(mut self, addr: SocketAddr, scope: &str) -> Self {
        self.kurrentdb = Some((addr, scope.to_string()));
        self
    }

    /// Receives one line per request: method, route, status, latency, principal.
    #[must_use]
    pub fn request_log(mut self, log: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.log = Some(Arc::new(log));
        self
    }

    /// Binds `addr` (port 0: any free port). Without tokens, only a loopback address
    /// is allowed unless [`allow_open_remote`](Self::allow_open_remote).
    pub async fn bind(self, addr: SocketAddr) -> Result<Server, ServeError> {
        if self.tokens.is_none() && !addr.ip().is_loopback() && !self.open_remote {
            return Err(ServeError::Refused(format!(
                "refusing to listen on {addr} without a tokens file: anyone who reaches it could read and append; give tokens, listen on 127.0.0.1, or allow it explicitly (--insecure)"
            )));
        }
        let listener = TcpListener::bind(addr).await.map_err(ServeError::Io)?;
        let kurrent = match self.kurrentdb {
            None => None,
            Some((addr, scope)) => {
                if self.tokens.is_none() && !addr.ip().is_loopback() && !self.open_remote {
                    return Err(ServeError::Refused(format!(
                        "refusing to serve the KurrentDB protocol on {addr} without a tokens file; give tokens, listen on 127.0.0.1, or allow it explicitly (--insecure)"
                    )));
                }
                batpak::Coordinate::new("kurrentdb", scope.as_str()).map_err(|e| {
                    ServeError::Refused(format!(
                        "the KurrentDB scope {scope:?} is not a scope: {e}"
                    ))
                })?;
                Some(
                    crate::kurrent::Listener::bind(addr, scope)
                        .await
                        .map_err(ServeError::Io)?,
                )
            }
        };
        let (shutdown, watch) = tokio::sync::watch::channel(false);
        let app = App {
            store: AsyncStore::new(self.store),
            streams: Arc::new(tokio::sync::Semaphore::new(self.limits.max_streams)),
            limits: self.limits,
            tokens: self.tokens.map(Tokens::from_file),
            read_only: self.read_only,
            metrics: Metrics::default(),
            jobs: Mutex::default(),
            cursors: api::live::Cursors::default(),
            shutdown: watch,
            log: self.log,
            registry: self.registry,
        };
        Ok(Server {
            listener,
            kurrent,
            tls: self.tls,
            app: Arc::new(app),
            shutdown,
        })
    }
}
