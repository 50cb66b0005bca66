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

/// An endpoint's idle connections, and the URL (credentials masked) its errors
/// name: what a response needs to give its connection back.
pub(crate) struct Pool {
    idle: std::sync::Mutex<Vec<Conn>>,
    max_idle: usize,
    display: String,
}

impl Pool {
    pub(crate) fn new(display: String, max_idle: usize) -> Pool {
        Pool {
            idle: std::sync::Mutex::new(Vec::new()),
            max_idle,
            display,
        }
    }

    /// The URL with credentials masked.
    pub(crate) fn display(&self) -> &str {
        &self.display
    }

    /// An idle connection that is still open.
    pub(crate) fn checkout(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if c.is_open() {
                return Some(c);
            }
        }
        None
    }

    pub(crate) fn checkin(&self, mut c: Conn) {
        // An idle connection keeps no read buffer (thousands may wait idle).
        c.buf = Vec::new();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(c);
        }
    }
}

/// Opens a CONNECT tunnel through an HTTP proxy to `host:port` on `tcp`, a
/// connection to the proxy: the TLS handshake with the target follows on it.
pub(crate) async fn tunnel(
    tcp: &mut TcpStream,
    host: &str,
    port: u16,
    proxy: &crate::proxy::Proxy,
) -> Result<(), Error> {
    let authority = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(a) = &proxy.authorization {
        req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    let shown = proxy.shown();
    let fail = |what: String| Error::Connect(format!("proxy {shown}: {what}"));
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|e| fail(format!("sending CONNECT {authority}: {e}")))?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 1024];
        let n = tcp
            .read(&mut chunk)
            .await
            .map_err(|e| fail(format!("reading the answer to CONNECT {authority}: {e}")))?;
        if n == 0 {
            return Err(fail(format!(
                "closed the connection after CONNECT {authority}"
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let code = resp.code.unwrap_or(0);
                if !(200..300).contains(&code) {
                    return Err(fail(format!(
                        "CONNECT {authority} answered HTTP {code} {}",
                        resp.reason.unwrap_or("")
                    )));
                }
                return Ok(());
            }
            Ok(httparse::Status::Partial) if buf.len() < 16 * 1024 => {}
            _ => return Err(fail(format!("no valid answer to CONNECT {authority}"))),
        }
    }
}

/// A TCP connection to `host:port`, from the next of `sources` (round-robin on
/// `next`) when given. One source address reaches one server from at most the
/// ephemeral port range (about 28k ports); each address adds as many.
pub(crate) async fn open_tcp(
    host: &str,
    port: u16,
    sources: &[std::net::IpAddr],
    next: &std::sync::atomic::AtomicUsize,
) -> std::io::Result<TcpStream> {
    if sources.is_empty() {
        return TcpStream::connect((host, port)).await;
    }
    let src = sources[next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % sources.len()];
    let target = tokio::net::lookup_host((host, port))
        .await?
        .find(|a| a.is_ipv4() == src.is_ipv4())
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "no {} address for the host to connect to from --source-addrs {src}",
                if src.is_ipv4() { "IPv4" } else { "IPv6" }
            ))
        })?;
    let sock = if src.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    bind_no_port(&sock);
    sock.bind(std::net::SocketAddr::new(src, 0))
        .map_err(|e| std::io::Error::new(e.kind(), format!("bind --source-addrs {src}: {e}")))?;
    sock.connect(target).await
}

/// Linux: choose the source port at connect time, knowing the destination, rather
/// than at bind time (IP_BIND_ADDRESS_NO_PORT): ports are then shared between
/// destinations instead of each bind holding one for good.
#[cfg(target_os = "linux")]
fn bind_no_port(sock: &tokio::net::TcpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option of its size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn bind_no_port(_: &tokio::net::TcpSocket) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_take_the_source_addresses_in_turn() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let sources: Vec<std::net::IpAddr> =
            vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()];
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut seen = Vec::new();
        let mut keep = Vec::new();
        for _ in 0..4 {
            let c = open_tcp("127.0.0.1", port, &sources, &next).await.unwrap();
            let (_, peer) = l.accept().await.unwrap();
            seen.push(peer.ip().to_string());
            keep.push(c);
        }
        assert_eq!(seen, ["127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3"]);
        // An IPv6 source cannot reach an IPv4-only host: a clear error.
        let v6: Vec<std::net::IpAddr> = vec!["::1".parse().unwrap()];
        let e = open_tcp("127.0.0.1", port, &v6, &next).await.unwrap_err();
        assert!(e.to_string().contains("no IPv6 address"), "{e}");
    }
}
