//! The listener's plain TCP connections: no Nagle delay on what the server sends,
//! and no delayed ACK of what it receives.
//!
//! Clients that leave Nagle's algorithm on (the kurrentdb Rust client 1.2 does)
//! write a request's HEADERS frame, then hold its DATA frame until the server
//! acknowledges the first segment, which a Linux receiver delays by up to 40 ms: a
//! 44 ms floor under every call. Re-arming `TCP_QUICKACK` after each read makes the
//! kernel acknowledge at once (the flag is not sticky, so it is set per read; one
//! `setsockopt` per read is far below a gRPC call's cost).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

/// A TCP connection that acknowledges every read at once.
pub(crate) struct QuickAck(TcpStream);

impl QuickAck {
    pub(crate) fn new(tcp: TcpStream) -> QuickAck {
        let _ = tcp.set_nodelay(true);
        QuickAck(tcp)
    }

    fn rearm(&self) {
        #[cfg(target_os = "linux")]
        {
            let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
        }
    }
}

impl tonic::transport::server::Connected for QuickAck {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.connect_info()
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.rearm();
        }
        polled
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A TLS connection of the listener, over [`QuickAck`].
pub(crate) struct GrpcTls(TlsStream<QuickAck>);

impl tonic::transport::server::Connected for GrpcTls {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for GrpcTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for GrpcTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The TLS connections of `tcp` whose handshake finished, offering HTTP/2 by ALPN,
/// with the server's certificate.
pub(crate) fn tls_incoming(
    tcp: TcpListener,
    tls: &crate::tls::TlsConfig,
) -> io::Result<impl futures_util::Stream<Item = io::Result<GrpcTls>>> {
    let listener = crate::tls::TlsListener::wrapping(tcp, &tls.with_alpn(&[b"h2"]), QuickAck::new)?;
    Ok(futures_util::stream::unfold(
        listener,
        |mut listener| async move {
            let (conn, _) = listener.next().await?;
            Some((Ok(GrpcTls(conn)), listener))
        },
    ))
}
