//! One open connection (plain TCP or TLS) and the errors below the protocol layer.

use std::io;
use std::os::fd::AsRawFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a request failed below the protocol layer.
#[derive(Debug)]
pub enum Error {
    /// TCP connect or TLS handshake failed.
    Connect(String),
    /// `--connect-timeout` or `--read-timeout` elapsed.
    Timeout(String),
    /// The connection broke or the peer closed it.
    Io(String),
    /// The bytes received are not an HTTP/1.x response.
    Protocol(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Connect(s) | Error::Timeout(s) | Error::Io(s) | Error::Protocol(s) => {
                f.write_str(s)
            }
        }
    }
}

pub(crate) enum Io {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Io {
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Io::Tcp(s) => s,
            Io::Tls(s) => s.get_ref().0,
        }
    }
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Io::Tcp(s) => s.read(buf).await,
            Io::Tls(s) => s.read(buf).await,
        }
    }
    pub(crate) async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Io::Tcp(s) => s.write_all(buf).await,
            Io::Tls(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
        }
    }
}

/// One open connection and its read buffer.
pub(crate) struct Conn {
    pub(crate) io: Io,
    /// Bytes read from the socket and not yet consumed.
    pub(crate) buf: Vec<u8>,
    /// Requests this connection has carried.
    pub(crate) uses: u32,
}

impl Conn {
    /// Whether an idle connection is still open: a non-blocking peek. Zero bytes means
    /// the peer closed it (typically right after its last response, as llama.cpp's
    /// server does while still advertising keep-alive); pending bytes on a plain
    /// connection are a response to nothing, so that connection is unusable too.
    pub(crate) fn is_open(&self) -> bool {
        let fd = self.io.tcp().as_raw_fd();
        let mut b = [0u8; 1];
        // SAFETY: a one-byte peek into a local buffer on a socket this struct owns.
        let n = unsafe {
            libc::recv(
                fd,
                b.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n == 0 {
            return false;
        }
        if n < 0 {
            let e = io::Error::last_os_error().kind();
            return e == io::ErrorKind::WouldBlock;
        }
        // TLS: session tickets or alerts may be waiting; the TLS layer reads them.
        matches!(self.io, Io::Tls(_))
    }
}
