//! A response on the load client's connection: its head parsed as aiohttp would
//! accept it, then its body read chunk by chunk by the request's own task.

use std::time::Duration;

use super::chunked::{ChunkState, Chunked};
use super::conn::{Conn, Error, Pool};

/// Most response header lines accepted (aiohttp's limit).
const MAX_HEADERS: usize = 128;
/// Largest response head (status line and headers) accepted.
pub(super) const MAX_HEAD: usize = 64 * 1024;
/// Bytes asked of each socket read. Small on purpose: the buffer a read fills is
/// zeroed, so its pages are resident for as long as the request lasts; at 100k
/// streams 32 KiB per connection alone was 3.2 GB. SSE events are a few hundred
/// bytes; a longer line or body just takes more reads.
const READ_CHUNK: usize = 4 * 1024;

/// What the response head says.
pub(super) struct Head {
    pub(super) status: u16,
    content_type: String,
    server_request_id: Option<String>,
    server_traceparent: Option<String>,
    location: Option<String>,
    content_encoding: String,
    framing: Framing,
    keep_alive: bool,
}

/// Parses a response head from `buf`: its length and contents once complete, None
/// while partial. aiohttp accepts up to 128 header lines, and folded (obs-fold)
/// ones; so does this.
pub(super) fn parse_head(buf: &[u8], display: &str) -> Result<Option<(usize, Head)>, Error> {
    let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut hdrs);
    let n = match httparse::ParserConfig::default()
        .allow_obsolete_multiline_headers_in_responses(true)
        .parse_response(&mut parsed, buf)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(Error::Protocol(format!(
                "invalid HTTP response from {display}: {e}"
            )))
        }
    };
    let status = parsed.code.unwrap_or(0);
    let mut close = parsed.version == Some(0);
    let mut h = Head {
        status,
        content_type: String::new(),
        server_request_id: None,
        server_traceparent: None,
        location: None,
        content_encoding: String::new(),
        framing: Framing::Close,
        keep_alive: false,
    };
    let (mut length, mut chunked) = (None, false);
    let short = |v: &str| v.chars().take(256).collect::<String>();
    for x in parsed.headers.iter() {
        let v = std::str::from_utf8(x.value).unwrap_or("").trim();
        let is = |name: &str| x.name.eq_ignore_ascii_case(name);
        if is("x-request-id") || is("request-id") {
            h.server_request_id = Some(short(v));
        } else if is("traceparent") {
            h.server_traceparent = Some(short(v));
        } else if is("content-encoding") {
            h.content_encoding = short(v).to_ascii_lowercase();
        } else if is("location") {
            h.location = Some(v.chars().take(2048).collect::<String>());
        } else if is("content-type") {
            h.content_type = v.to_ascii_lowercase();
        } else if is("content-length") {
            length = Some(v.parse::<u64>().map_err(|_| {
                Error::Protocol(format!("invalid Content-Length `{v}` from {display}"))
            })?);
        } else if is("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        } else if is("connection") {
            let v = v.to_ascii_lowercase();
            if v.contains("close") {
                close = true;
            } else if v.contains("keep-alive") {
                close = false;
            }
        }
    }
    h.framing = if status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked(Chunked::default())
    } else if let Some(l) = length {
        Framing::Length(l)
    } else {
        close = true;
        Framing::Close
    };
    h.keep_alive = !close;
    Ok(Some((n, h)))
}

/// Appends one socket read to `conn.buf`; returns the byte count (0 = closed).
/// The read goes into zeroed space: reading into spare capacity (`read_buf`) was
/// tried and measured no cheaper, with a worse wire-TTFT tail at 256 streams.
pub(super) async fn read_more(
    conn: &mut Conn,
    timeout: Option<Duration>,
    display: &str,
) -> Result<usize, Error> {
    let start = conn.buf.len();
    conn.buf.resize(start + READ_CHUNK, 0);
    let r = match timeout {
        None => conn.io.read(&mut conn.buf[start..]).await,
        Some(t) => match tokio::time::timeout(t, conn.io.read(&mut conn.buf[start..])).await {
            Ok(r) => r,
            Err(_) => {
                conn.buf.truncate(start);
                return Err(Error::Timeout(format!(
                    "no data from {display} for {} s (--read-timeout)",
                    t.as_secs_f64()
                )));
            }
        },
    };
    match r {
        Ok(n) => {
            conn.buf.truncate(start + n);
            Ok(n)
        }
        Err(e) => {
            conn.buf.truncate(start);
            Err(Error::Io(format!("reading from {display}: {e}")))
        }
    }
}

pub(super) enum Framing {
    Length(u64),
    Chunked(Chunked),
    Close,
}

/// A response whose head has been read; the body is read with [`Response::chunk`].
pub struct Response<'a> {
    pub status: u16,
    /// Lower-cased `Content-Type`, empty when absent.
    pub content_type: String,
    /// The request was resent once after a reused connection closed.
    pub resent: bool,
    /// The server's own id for the request (`x-request-id` or `request-id`) and its
    /// `traceparent`, when it sends them (at most 256 characters each).
    pub server_request_id: Option<String>,
    pub server_traceparent: Option<String>,
    /// The `Location` header (at most 2048 characters).
    pub location: Option<String>,
    /// Lower-cased `Content-Encoding`, empty when absent.
    pub content_encoding: String,
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
    out: Vec<u8>,
    pool: &'a Pool,
    read_timeout: Option<Duration>,
}

impl<'a> Response<'a> {
    /// The URL that answered (the last one after redirects), credentials masked.
    pub fn url(&self) -> &'a str {
        self.pool.display()
    }

    pub(super) fn new(
        h: Head,
        conn: Conn,
        pool: &'a Pool,
        read_timeout: Option<Duration>,
    ) -> Response<'a> {
        Response {
            status: h.status,
            content_type: h.content_type,
            resent: false,
            server_request_id: h.server_request_id,
            server_traceparent: h.server_traceparent,
            location: h.location,
            content_encoding: h.content_encoding,
            conn: Some(conn),
            framing: h.framing,
            keep_alive: h.keep_alive,
            out: Vec::new(),
            pool,
            read_timeout,
        }
    }

    /// The body bytes of the next socket read (possibly several chunks of a chunked
    /// body), `None` at the end of the body. Call `clock.now()` right after it returns:
    /// no other await sits between the read and the return.
    pub async fn chunk(&mut self) -> Result<Option<&[u8]>, Error> {
        self.out.clear();
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Ok(None);
            };
            // Consume what is buffered first.
            if !conn.buf.is_empty() {
                let consumed = match &mut self.framing {
                    Framing::Length(left) => {
                        let take = (*left as usize).min(conn.buf.len());
                        self.out.extend_from_slice(&conn.buf[..take]);
                        *left -= take as u64;
                        take
                    }
                    Framing::Close => {
                        self.out.extend_from_slice(&conn.buf);
                        conn.buf.len()
                    }
                    Framing::Chunked(c) => c.decode(&conn.buf, &mut self.out).map_err(|e| {
                        Error::Protocol(format!(
                            "invalid chunked body from {}: {e}",
                            self.pool.display()
                        ))
                    })?,
                };
                conn.buf.drain(..consumed);
            }
            let finished = match &self.framing {
                Framing::Length(left) => *left == 0,
                Framing::Chunked(c) => c.state == ChunkState::Done,
                Framing::Close => false,
            };
            if finished {
                self.release();
                return Ok((!self.out.is_empty()).then_some(&self.out[..]));
            }
            if !self.out.is_empty() {
                return Ok(Some(&self.out[..]));
            }
            let Some(conn) = self.conn.as_mut() else {
                return Ok(None);
            };
            match read_more(conn, self.read_timeout, self.pool.display()).await? {
                0 => {
                    return match self.framing {
                        Framing::Close => {
                            self.conn = None;
                            Ok(None)
                        }
                        _ => {
                            self.conn = None;
                            Err(Error::Io(format!(
                                "{} closed the connection before the response was complete",
                                self.pool.display()
                            )))
                        }
                    }
                }
                _ => continue,
            }
        }
    }

    /// The body is complete: the connection goes back to the pool when the server
    /// keeps it and nothing unexpected follows the response.
    fn release(&mut self) {
        if let Some(c) = self.conn.take() {
            if self.keep_alive && c.buf.is_empty() {
                self.pool.checkin(c);
            }
        }
    }
}
