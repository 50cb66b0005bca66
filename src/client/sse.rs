//! Incremental Server-Sent Events decoder over raw bytes.
//!
//! Works on bytes, not text: line terminators (`\n`, `\r\n`, `\r`) are ASCII and can
//! never occur inside a multi-byte UTF-8 sequence, so a character split across two
//! reads simply stays in the line buffer until its line is complete. A `\r` at the
//! end of one read followed by `\n` at the start of the next is one terminator.
//!
//! Field handling follows the WHATWG EventSource rules: `:` starts a comment, one
//! optional space after the colon is removed, several `data:` lines of one event are
//! joined with `\n` (evalscope joins them with nothing; for JSON payloads the two are
//! equivalent because a newline is whitespace), and other fields (`event`, `id`,
//! `retry`) are ignored. An event is dispatched at a blank line.

/// Index of the first `\n` or `\r`, eight bytes at a time.
#[inline]
fn find_eol(b: &[u8]) -> Option<usize> {
    #[inline]
    fn zero_bytes(v: u64) -> u64 {
        v.wrapping_sub(0x0101_0101_0101_0101) & !v & 0x8080_8080_8080_8080
    }
    let mut i = 0;
    while let Some(word) = b.get(i..i + 8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(word);
        let w = u64::from_le_bytes(a);
        if zero_bytes(w ^ 0x0A0A_0A0A_0A0A_0A0A) | zero_bytes(w ^ 0x0D0D_0D0D_0D0D_0D0D) != 0 {
            break;
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| c == b'\n' || c == b'\r')
        .map(|p| p + i)
}

#[derive(Default)]
pub struct SseDecoder {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    /// The previous byte was a `\r`: a following `\n` belongs to the same terminator.
    after_cr: bool,
    started: bool,
    /// Longest line or event data kept (0 = unlimited); past it the decoder stops.
    limit: usize,
    overflow: bool,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder that stops (see [`SseDecoder::overflowed`]) once a line or an
    /// event's data grows past `limit` bytes: a stream without newlines must not
    /// grow memory without bound.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// A line or an event exceeded the limit; nothing more is decoded.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    fn check_limit(&mut self) {
        if self.limit > 0 && (self.line.len() > self.limit || self.data.len() > self.limit) {
            self.overflow = true;
            self.line = Vec::new();
            self.data = Vec::new();
        }
    }

    /// Feeds bytes; calls `on_event` with the data of every completed event.
    pub fn feed<F: FnMut(&[u8])>(&mut self, mut bytes: &[u8], mut on_event: F) {
        if self.overflow {
            return;
        }
        if !self.started && !bytes.is_empty() {
            // A UTF-8 byte order mark at the very start of the stream is ignored.
            self.started = true;
            if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
                bytes = rest;
            }
        }
        while !bytes.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if bytes[0] == b'\n' {
                    bytes = &bytes[1..];
                    continue;
                }
            }
            if let Some(rest) = self.whole_event(bytes, &mut on_event) {
                bytes = rest;
                continue;
            }
            match find_eol(bytes) {
                Some(i) => {
                    if self.line.is_empty() {
                        self.process_line_slice(&bytes[..i], &mut on_event);
                    } else {
                        self.line.extend_from_slice(&bytes[..i]);
                        let line = std::mem::take(&mut self.line);
                        self.process_line_slice(&line, &mut on_event);
                        self.line = line;
                        self.line.clear();
                    }
                    self.after_cr = bytes[i] == b'\r';
                    bytes = &bytes[i + 1..];
                }
                None => {
                    self.line.extend_from_slice(bytes);
                    self.check_limit();
                    break;
                }
            }
        }
    }

    /// Fast path for the common case, a complete `data: X` line followed by a blank
    /// line with nothing pending: the payload is handed over without being copied.
    /// Returns the bytes after the event, or None to take the general path.
    #[inline]
    fn whole_event<'b, F: FnMut(&[u8])>(
        &mut self,
        bytes: &'b [u8],
        on_event: &mut F,
    ) -> Option<&'b [u8]> {
        if !self.line.is_empty() || self.has_data || !bytes.starts_with(b"data:") {
            return None;
        }
        let i = find_eol(bytes)?;
        let next = if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            i + 2
        } else {
            i + 1
        };
        let t2 = *bytes.get(next)?;
        if t2 != b'\n' && t2 != b'\r' {
            return None;
        }
        let v = &bytes[5..i];
        on_event(v.strip_prefix(b" ").unwrap_or(v));
        let mut end = next + 1;
        if t2 == b'\r' {
            if bytes.get(end) == Some(&b'\n') {
                end += 1;
            } else if end == bytes.len() {
                self.after_cr = true;
            }
        }
        Some(&bytes[end..])
    }

    /// End of stream. An event whose blank line never arrived is still dispatched when
    /// it holds data (evalscope emits such a leftover if it is `[DONE]` or JSON; the
    /// caller validates the payload either way).
    pub fn finish<F: FnMut(&[u8])>(&mut self, mut on_event: F) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line_slice(&line, &mut on_event);
        }
        if self.has_data {
            on_event(&self.data);
            self.data.clear();
            self.has_data = false;
        }
    }

    fn process_line_slice<F: FnMut(&[u8])>(&mut self, line: &[u8], on_event: &mut F) {
        if line.is_empty() {
            if self.has_data {
                on_event(&self.data);
                self.data.clear();
                self.has_data = false;
            }
            return;
        }
        if line[0] == b':' {
            return; // comment, e.g. a keep-alive ping
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
            self.check_limit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(parts: &[&[u8]]) -> Vec<String> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        for p in parts {
            d.feed(p, |e| out.push(String::from_utf8_lossy(e).into_owned()));
        }
        d.finish(|e| out.push(String::from_utf8_lossy(e).into_owned()));
        out
    }

    #[test]
    fn basic_events_and_terminators() {
        let s = b"data: a\n\ndata: b\r\n\r\ndata: c\r\rdata:d\n\n";
        assert_eq!(decode_all(&[s]), vec!["a", "b", "c", "d"]);
    }

    #[test]
    fn cr_lf_split_across_reads_is_one_terminator() {
        let out = decode_all(&[b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]);
        assert_eq!(out, vec!["a", "b"]);
    }

    #[test]
    fn comments_other_fields_and_multiline_data() {
        let s = b": ping\nevent: message\nid: 7\ndata: {\"a\":\ndata: 1}\nretry: 10\n\n";
        assert_eq!(decode_all(&[s]), vec!["{\"a\":\n1}"]);
    }

    #[test]
    fn utf8_split_inside_character() {
        let s = "data: {\"c\":\"熵é\"}\n\n".as_bytes();
        for i in 0..s.len() {
            let out = decode_all(&[&s[..i], &s[i..]]);
            assert_eq!(out, vec!["{\"c\":\"熵é\"}"], "split at {i}");
        }
    }

    #[test]
    fn leftover_without_blank_line_is_flushed_at_finish() {
        assert_eq!(
            decode_all(&[b"data: x\n\ndata: [DONE]"]),
            vec!["x", "[DONE]"]
        );
        assert_eq!(decode_all(&[b"data: x\n"]), vec!["x"]);
    }

    #[test]
    fn limit_stops_an_endless_line_or_event() {
        let mut d = SseDecoder::with_limit(64);
        let mut n = 0;
        for _ in 0..100 {
            d.feed(&[b'x'; 10], |_| n += 1);
        }
        assert!(d.overflowed());
        assert!(d.line.capacity() <= 128);
        // Many short data lines of one event.
        let mut d = SseDecoder::with_limit(64);
        for _ in 0..100 {
            d.feed(b"data: 0123456789\n", |_| n += 1);
        }
        assert!(d.overflowed());
        assert_eq!(n, 0);
        // Under the limit nothing changes.
        let mut d = SseDecoder::with_limit(64);
        d.feed(b"data: ok\n\n", |e| assert_eq!(e, b"ok"));
        assert!(!d.overflowed());
    }

    #[test]
    fn bom_and_empty_data() {
        assert_eq!(decode_all(&[b"\xEF\xBB\xBFdata\n\n"]), vec![""]);
    }

    /// A recorded vLLM-style stream with every feature the decoder must handle.
    fn recorded(eol: &str) -> (Vec<u8>, Vec<String>) {
        let events = vec![
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#.to_string(),
            r#"{"choices":[{"index":0,"delta":{"reasoning_content":"思考"}}]}"#.to_string(),
            r#"{"choices":[{"index":0,"delta":{"content":"熵 é ü"}}]}"#.to_string(),
            "{\"choices\":[{\"index\":0,\n\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}".to_string(),
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#.to_string(),
            "[DONE]".to_string(),
        ];
        let mut s = format!(": keep-alive{eol}{eol}");
        for (i, e) in events.iter().enumerate() {
            if i == 2 {
                s.push_str(&format!("event: message{eol}id: {i}{eol}"));
            }
            for line in e.split('\n') {
                s.push_str(&format!("data: {line}{eol}"));
            }
            s.push_str(eol);
        }
        (s.into_bytes(), events)
    }

    #[test]
    fn property_any_split_gives_the_same_events() {
        let mut rng = fastrand::Rng::with_seed(42);
        for eol in ["\n", "\r\n", "\r"] {
            let (bytes, events) = recorded(eol);
            assert_eq!(decode_all(&[&bytes]), events, "whole, eol {eol:?}");
            for _ in 0..2000 {
                let mut cuts: Vec<usize> = (0..rng.usize(1..12))
                    .map(|_| rng.usize(0..=bytes.len()))
                    .collect();
                cuts.sort_unstable();
                let mut parts: Vec<&[u8]> = Vec::new();
                let mut prev = 0;
                for c in cuts {
                    parts.push(&bytes[prev..c]);
                    prev = c;
                }
                parts.push(&bytes[prev..]);
                assert_eq!(decode_all(&parts), events, "eol {eol:?}");
            }
            // Byte by byte.
            let parts: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(decode_all(&parts), events);
        }
    }
}
