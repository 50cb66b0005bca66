//! The load client's HTTP/1.1 connection handling: one request per connection at a
//! time, written and read by the task that owns the request.
//!
//! Why not a general HTTP client: a pooled client drives each connection from a task
//! of its own and hands body chunks over through channels, so every read adds a
//! runtime hop between the socket and the timestamp; at hundreds of streams on two
//! cores those hops are where TTFT drifts from the wire. Here the request task writes
//! the request and reads the socket itself, and takes the timestamp when the read
//! returns. Owning the connection also tells exactly what a pooled client cannot:
//! whether a connection was reused and whether any response byte arrived, which is
//! what decides a resend (see [`Endpoint::send`]).
//!
//! Scope: `POST` with a fixed-length body, responses framed by `Content-Length`,
//! chunked transfer coding or connection close; `http://` and `https://` (rustls,
//! the platform's trust store); redirects followed as aiohttp does
//! ([`Endpoint::follow`]). No HTTP/2 (vLLM, SGLang, llama.cpp and TGI serve HTTP/1.1).

use std::sync::Arc;
use std::time::Duration;

pub use super::conn::Error;
use super::conn::{Conn, Io, Pool};

pub use super::response::Response;
use super::response::{parse_head, read_more, MAX_HEAD};

/// Settings of an endpoint's connections.
#[derive(Clone, Debug)]
pub struct Settings {
    pub connect_timeout: Option<Duration>,
    pub read_timeout: Option<Duration>,
    /// Idle connections kept for reuse.
    pub max_idle: usize,
    /// Largest SSE line or non-stream body accepted (`--max-response-mib`).
    pub max_response: usize,
    /// `--source-addrs`: local addresses new connections bind to, round-robin
    /// (empty: the system chooses).
    pub source_addrs: Vec<std::net::IpAddr>,
    /// Whom `https://` trusts (`--ca-cert`, `--insecure`).
    pub tls: super::tls::TlsTrust,
}

impl Default for Settings {
    /// No connect or read timeout, 64 idle connections, the 16 MiB response cap.
    fn default() -> Self {
        Settings {
            connect_timeout: None,
            read_timeout: None,
            max_idle: 64,
            max_response: 16 << 20,
            source_addrs: Vec::new(),
            tls: Default::default(),
        }
    }
}

/// The request target of a run: where to connect, the request head prefix, and the
/// idle connections.
pub struct Endpoint {
    host: String,
    port: u16,
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
    /// `POST <path?query> HTTP/1.1` and every fixed header, each line CRLF-terminated.
    head: Vec<u8>,
    settings: Settings,
    pool: Pool,
    /// The URL with credentials masked, for error messages.
    display: String,
    /// The next source address to bind (an index into `settings.source_addrs`).
    next_source: std::sync::atomic::AtomicUsize,
    /// What `new` was built from, to build the endpoints a redirect leads to.
    url: reqwest::Url,
    headers: Vec<(String, String)>,
    /// Endpoints that redirects from this one led to, each built once (the
    /// Location's URL and whether the method was kept); at most MAX_TARGETS.
    targets: [std::sync::OnceLock<Box<(String, Endpoint)>>; MAX_TARGETS],
    /// The log of the run that built the endpoint: request tasks carry none.
    log: tracing::Dispatch,
    /// The proxy from the environment (`http_proxy`, `https_proxy`, `no_proxy`; see
    /// `crate::proxy`): plain HTTP goes to it in absolute form, HTTPS through a
    /// CONNECT tunnel.
    proxy: Option<crate::proxy::Proxy>,
}

/// Redirects followed for one request, at most (aiohttp's `max_redirects`).
pub const MAX_REDIRECTS: u32 = 10;
/// Distinct redirect targets one endpoint keeps connections to.
const MAX_TARGETS: usize = 4;

/// Headers that carry credentials: not sent to another origin after a redirect.
fn is_credential(name: &str) -> bool {
    [
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "x-auth-token",
        "cookie",
    ]
    .iter()
    .any(|c| name.eq_ignore_ascii_case(c))
}

/// `name: value` pairs whose names match case-insensitively.
fn has_header(headers: &[(String, String)], name: &str) -> bool {
    headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
}

impl Endpoint {
    /// `headers` are the user's (`--headers`, `--api-key`); they replace the defaults
    /// of the same name. Credentials in the URL become a Basic `Authorization` header
    /// unless one is given.
    pub fn new(
        url: &reqwest::Url,
        headers: &[(String, String)],
        settings: Settings,
    ) -> anyhow::Result<Endpoint> {
        Endpoint::with_method(url, headers, settings, "POST")
    }

    fn with_method(
        url: &reqwest::Url,
        headers: &[(String, String)],
        settings: Settings,
        method: &str,
    ) -> anyhow::Result<Endpoint> {
        let display = crate::redact::redact_url(url.as_str());
        let https = match url.scheme() {
            "http" => false,
            "https" => true,
            s => anyhow::bail!("--url: scheme `{s}` is not supported; use http:// or https://"),
        };
        let host = url
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("--url: `{display}` has no host"))?
            .to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let tls = if https {
            let cfg = super::tls::client_config(&settings.tls)
                .map_err(|e| anyhow::anyhow!("{display}: {e}"))?;
            let bare = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let name = rustls::pki_types::ServerName::try_from(bare)
                .map_err(|_| anyhow::anyhow!("--url: `{host}` is not a valid TLS server name"))?;
            Some((Arc::new(cfg), name))
        } else {
            None
        };
        let proxy = crate::proxy::ProxyEnv::from_env()
            .for_url(url.as_str())
            .map_err(|e| anyhow::anyhow!("{e}; fix it, or name the host in NO_PROXY"))?;
        let mut target = url.path().to_string();
        if target.is_empty() {
            target.push('/');
        }
        if let Some(q) = url.query() {
            target.push('?');
            target.push_str(q);
        }
        let default_port = if https { 443 } else { 80 };
        let host_value = match url.port() {
            Some(p) if p != default_port => format!("{host}:{p}"),
            _ => host.clone(),
        };
        if proxy.is_some() && !https {
            // A plain-HTTP proxy takes the absolute URL (RFC 9112 §3.2.2).
            target = format!("http://{host_value}{target}");
        }
        let mut head = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
        let mut line = |k: &str, v: &str| {
            head.extend_from_slice(k.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(v.as_bytes());
            head.extend_from_slice(b"\r\n");
        };
        if let Some(a) = proxy
            .as_ref()
            .filter(|_| !https)
            .and_then(|p| p.authorization.as_ref())
        {
            line("Proxy-Authorization", a);
        }
        for (k, v) in [
            ("Host", host_value.as_str()),
            ("User-Agent", "perfscope"),
            ("Content-Type", "application/json"),
            ("Accept", "*/*"),
        ] {
            if !has_header(headers, k) {
                line(k, v);
            }
        }
        if !url.username().is_empty() && !has_header(headers, "authorization") {
            use base64::Engine;
            let user = crate::proxy::percent_decode(url.username());
            let pass = crate::proxy::percent_decode(url.password().unwrap_or(""));
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            line("Authorization", &format!("Basic {token}"));
        }
        for (k, v) in headers {
            if k.is_empty()
                || !k.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                || v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
            {
                anyhow::bail!(
                    "--headers: `{k}` is not a valid header; names are tokens, values one line"
                );
            }
            line(k, v);
        }
        let max_idle = settings.max_idle.max(1);
        Ok(Endpoint {
            host,
            port,
            tls,
            head,
            settings,
            pool: Pool::new(display.clone(), max_idle),
            display,
            next_source: Default::default(),
            url: url.clone(),
            headers: headers.to_vec(),
            targets: Default::default(),
            log: tracing::dispatcher::get_default(|d| d.clone()),
            proxy,
        })
    }

    /// The endpoint a redirect's `Location` leads to (relative to this URL), as
    /// evalscope's aiohttp follows it: 307 and 308 keep the method and body, 301,
    /// 302 and 303 turn a POST into a GET without a body. Credentials are not sent
    /// to another origin. Built once per target and said once in the log.
    pub fn follow(&self, location: &str, keep_method: bool) -> Result<&Endpoint, String> {
        let to = self
            .url
            .join(location)
            .map_err(|e| format!("Location `{location}` is not a URL: {e}"))?;
        let key = format!("{} {}", if keep_method { "same" } else { "GET" }, to);
        for slot in &self.targets {
            match slot.get() {
                Some(t) if t.0 == key => return Ok(&t.1),
                Some(_) => {}
                None => {
                    let same_origin = to.origin() == self.url.origin();
                    let headers: Vec<(String, String)> = self
                        .headers
                        .iter()
                        .filter(|(k, _)| same_origin || !is_credential(k))
                        .cloned()
                        .collect();
                    let method = if keep_method {
                        self.head
                            .split(|b| *b == b' ')
                            .next()
                            .map(|m| String::from_utf8_lossy(m).into_owned())
                            .unwrap_or_else(|| "POST".into())
                    } else {
                        "GET".to_string()
                    };
                    let ep = Endpoint::with_method(&to, &headers, self.settings.clone(), &method)
                        .map_err(|e| {
                        format!("cannot follow the redirect to {location}: {e:#}")
                    })?;
                    let shown = ep.display.clone();
                    let mut mine = false;
                    let t = slot.get_or_init(|| {
                        mine = true;
                        Box::new((key.clone(), ep))
                    });
                    if mine {
                        let _log = tracing::dispatcher::set_default(&self.log);
                        crate::telemetry::log::warn(format!(
                            "{} redirects to {method} {shown}; following it for every request as evalscope does \
                             (the extra round trip is part of each request's latency: pass --url {shown} to avoid it)",
                            self.display
                        ));
                        return Ok(&t.1);
                    }
                    if t.0 == key {
                        return Ok(&t.1);
                    }
                }
            }
        }
        Err(format!(
            "redirect to {location} not followed: more than {MAX_TARGETS} distinct redirect targets"
        ))
    }

    /// The proxy requests go through, when the environment names one.
    pub fn proxy(&self) -> Option<&crate::proxy::Proxy> {
        self.proxy.as_ref()
    }

    /// The URL with credentials masked.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Largest SSE line or non-stream body accepted.
    pub fn max_response(&self) -> usize {
        self.settings.max_response
    }

    async fn connect(&self) -> Result<Conn, Error> {
        let fut = async {
            let (host, port) = match &self.proxy {
                Some(p) => (p.host.as_str(), p.port),
                None => (self.host.as_str(), self.port),
            };
            let mut tcp = super::conn::open_tcp(
                host.trim_start_matches('[').trim_end_matches(']'),
                port,
                &self.settings.source_addrs,
                &self.next_source,
            )
            .await
            .map_err(|e| match &self.proxy {
                Some(p) => Error::Connect(format!("connect to the proxy {}: {e}", p.shown())),
                None => Error::Connect(format!("connect to {}: {e}", self.display)),
            })?;
            let _ = tcp.set_nodelay(true);
            if let (Some(p), Some(_)) = (&self.proxy, &self.tls) {
                super::conn::tunnel(&mut tcp, &self.host, self.port, p).await?;
            }
            let io = match &self.tls {
                None => Io::Tcp(tcp),
                Some((cfg, name)) => {
                    let c = tokio_rustls::TlsConnector::from(cfg.clone());
                    let s = c.connect(name.clone(), tcp).await.map_err(|e| {
                        Error::Connect(format!("TLS handshake with {}: {e}", self.display))
                    })?;
                    Io::Tls(Box::new(s))
                }
            };
            Ok(Conn {
                io,
                buf: Vec::new(),
                uses: 0,
            })
        };
        match self.settings.connect_timeout {
            None => fut.await,
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout(format!(
                    "connect to {} timed out after {} s (--connect-timeout)",
                    self.display,
                    t.as_secs_f64()
                ))),
            },
        }
    }

    /// Opens one connection (TCP, then TLS for `https://`) within `timeout` and keeps
    /// it for the next request: the connection test's first step, so that a port
    /// that never completes a handshake fails in seconds, not at --total-timeout.
    /// A plain-HTTP port answering the TLS hello is named as such.
    pub async fn probe(&self, timeout: Duration) -> Result<(), Error> {
        let plain_hint = |e: String| {
            let lower = e.to_ascii_lowercase();
            if self.tls.is_some()
                && (lower.contains("invalidcontenttype") || lower.contains("corrupt message"))
            {
                Error::Connect(format!(
                    "{e}: this port speaks plain HTTP, not TLS; use http:// in --url"
                ))
            } else {
                Error::Connect(e)
            }
        };
        match tokio::time::timeout(timeout, self.connect()).await {
            Ok(Ok(c)) => {
                self.pool.checkin(c);
                Ok(())
            }
            Ok(Err(Error::Connect(e))) => Err(plain_hint(e)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Timeout(format!(
                "no {} with {} within {} s{}",
                if self.tls.is_some() {
                    "TCP connection and TLS handshake"
                } else {
                    "TCP connection"
                },
                self.display,
                timeout.as_secs_f64(),
                if self.tls.is_some() {
                    "; a plain-HTTP port waits silently for a request: if it is one, use http:// in --url"
                } else {
                    ""
                }
            ))),
        }
    }

    /// Sends one request and reads the response head. `on_send` is called right
    /// before the request's first byte is written (the request's start time).
    ///
    /// A server may close an idle keep-alive connection at any moment (llama.cpp's
    /// server closes after every response while advertising `Keep-Alive`). When a
    /// request written on a *reused* connection sees that connection closed before a
    /// single response byte, the server cannot have processed it: it is resent once,
    /// on a new connection, and `on_send` is called again so its timing starts at the
    /// resend. Anything else (a close after response bytes, a close on a new
    /// connection, a refused connect) is the request's failure.
    pub async fn send(
        &self,
        extra_headers: &str,
        body: &[u8],
        mut on_send: impl FnMut(),
    ) -> Result<Response<'_>, (Error, bool)> {
        let mut req = Vec::with_capacity(self.head.len() + extra_headers.len() + 32 + body.len());
        req.extend_from_slice(&self.head);
        req.extend_from_slice(extra_headers.as_bytes());
        {
            use std::io::Write;
            // Writing into a Vec cannot fail.
            let _ = write!(req, "Content-Length: {}\r\n\r\n", body.len());
        }
        req.extend_from_slice(body);
        let mut resent = false;
        loop {
            let conn = match (!resent).then(|| self.pool.checkout()).flatten() {
                Some(c) => c,
                None => self.connect().await.map_err(|e| (e, resent))?,
            };
            let reused = conn.uses > 0;
            on_send();
            match self.exchange(conn, &req).await {
                Ok(mut resp) => {
                    resp.resent = resent;
                    return Ok(resp);
                }
                Err(Exchange::ClosedEarly(_)) if reused && !resent => resent = true,
                Err(Exchange::ClosedEarly(e) | Exchange::Failed(e)) => return Err((e, resent)),
            }
        }
    }

    async fn exchange(&self, mut conn: Conn, req: &[u8]) -> Result<Response<'_>, Exchange> {
        conn.uses += 1;
        if let Err(e) = conn.io.write_all(req).await {
            return Err(Exchange::ClosedEarly(Error::Io(format!(
                "sending the request to {}: {e}",
                self.display
            ))));
        }
        conn.buf.clear();
        loop {
            // Parse what is buffered; read more until a whole head is there.
            if let Some((n, h)) = parse_head(&conn.buf, &self.display).map_err(Exchange::Failed)? {
                conn.buf.drain(..n);
                if (100..200).contains(&h.status) {
                    // An interim response (100 Continue, 103 Early Hints): the real
                    // one follows.
                    continue;
                }
                return Ok(Response::new(
                    h,
                    conn,
                    &self.pool,
                    self.settings.read_timeout,
                ));
            }
            if conn.buf.len() > MAX_HEAD {
                return Err(Exchange::Failed(Error::Protocol(format!(
                    "response headers from {} exceed {} KiB",
                    self.display,
                    MAX_HEAD / 1024
                ))));
            }
            let any = !conn.buf.is_empty();
            match read_more(&mut conn, self.settings.read_timeout, &self.display).await {
                Ok(0) => {
                    let e = Error::Io(format!(
                        "{} closed the connection before the response{}",
                        self.display,
                        if any { " was complete" } else { "" }
                    ));
                    return Err(if any {
                        Exchange::Failed(e)
                    } else {
                        Exchange::ClosedEarly(e)
                    });
                }
                Ok(_) => {}
                Err(e @ Error::Io(_)) if !any => return Err(Exchange::ClosedEarly(e)),
                Err(e) => return Err(Exchange::Failed(e)),
            }
        }
    }
}

enum Exchange {
    /// The connection failed before any response byte arrived.
    ClosedEarly(Error),
    Failed(Error),
}
