//! TLS (rustls, ring provider): a certificate chain and key from PEM, and a listener
//! that completes handshakes concurrently (a slow client never holds up the others)
//! and hands finished connections to the HTTP server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes completed but not yet taken by the server.
const READY_QUEUE: usize = 64;

/// A certificate chain and its private key, for serving HTTPS.
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8,
    /// PKCS#1 or SEC1); the error names the file and what is wrong.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<TlsConfig, String> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        TlsConfig::from_pem(&read(cert)?, &read(key)?).map_err(|e| {
            format!(
                "TLS with certificate {} and key {}: {e}",
                cert.display(),
                key.display()
            )
        })
    }

    /// The same from PEM text.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<TlsConfig, String> {
        let certs = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the certificate is not PEM: {e}"))?;
        if certs.is_empty() {
            return Err("the certificate file holds no certificate".into());
        }
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| format!("the key is not a PEM private key: {e}"))?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("no TLS protocol version: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("the key does not fit the certificate: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConfig {
            config: Arc::new(config),
        })
    }
}

/// Accepts TCP connections, runs each handshake in a task of its own, and yields the
/// connections whose handshake finished.
pub(crate) struct TlsListener<S = TcpStream> {
    ready: mpsc::Receiver<(TlsStream<S>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsConfig {
    /// The same certificate offering other protocols by ALPN (`h2` for gRPC).
    pub(crate) fn with_alpn(&self, protocols: &[&[u8]]) -> TlsConfig {
        let mut config = (*self.config).clone();
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        TlsConfig {
            config: Arc::new(config),
        }
    }
}

impl TlsListener<TcpStream> {
    pub(crate) fn new(tcp: TcpListener, tls: &TlsConfig) -> std::io::Result<TlsListener> {
        TlsListener::wrapping(tcp, tls, |tcp| tcp)
    }
}

impl<S> TlsListener<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    /// Accepts on `tcp`, wraps each connection with `wrap` (after `TCP_NODELAY`),
    /// then handshakes.
    pub(crate) fn wrapping(
        tcp: TcpListener,
        tls: &TlsConfig,
        wrap: fn(TcpStream) -> S,
    ) -> std::io::Result<TlsListener<S>> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::clone(&tls.config));
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    // Out of file descriptors and the like: let a connection close.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let stream = wrap(stream);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    // A failed or slow handshake just closes that connection.
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        Ok(TlsListener {
            ready,
            local,
            accepting,
        })
    }
}

impl<S> TlsListener<S> {
    /// The next connection whose handshake finished (`None` once the accepting
    /// task is gone, which it never is on its own).
    pub(crate) async fn next(&mut self) -> Option<(TlsStream<S>, SocketAddr)> {
        self.ready.recv().await
    }
}

impl<S> Drop for TlsListener<S> {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accepting task ended (it never does on its own): accept no more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
