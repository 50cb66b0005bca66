//! Protobuf encoding of OTLP trace export requests (opentelemetry-proto v1:
//! `ExportTraceServiceRequest` → `ResourceSpans` → `ScopeSpans` → `Span`).
//!
//! Written directly into reused byte buffers rather than through generated message
//! structs: a span is encoded in about a microsecond with no allocation, and the
//! attributes shared by every span of a stage are encoded once and copied. The tests
//! decode the output with the official generated types (`opentelemetry-proto`).

/// Wire types.
const VARINT: u32 = 0;
const I64: u32 = 1;
const LEN: u32 = 2;
const I32: u32 = 5;

fn tag(buf: &mut Vec<u8>, field: u32, wire: u32) {
    varint(buf, u64::from((field << 3) | wire));
}

pub fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Length-delimited field holding raw bytes (strings, bytes, nested messages).
pub fn bytes_field(buf: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(buf, field, LEN);
    varint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

pub fn fixed64_field(buf: &mut Vec<u8>, field: u32, v: u64) {
    tag(buf, field, I64);
    buf.extend_from_slice(&v.to_le_bytes());
}

pub fn fixed32_field(buf: &mut Vec<u8>, field: u32, v: u32) {
    tag(buf, field, I32);
    buf.extend_from_slice(&v.to_le_bytes());
}

pub fn varint_field(buf: &mut Vec<u8>, field: u32, v: u64) {
    tag(buf, field, VARINT);
    varint(buf, v);
}

/// Starts a nested length-delimited field whose length is not known yet: reserves
/// the largest varint a 32-bit length needs and returns where the body starts.
/// [`end_nested`] writes the length and closes the gap.
pub fn begin_nested(buf: &mut Vec<u8>, field: u32) -> usize {
    tag(buf, field, LEN);
    buf.extend_from_slice(&[0; 5]);
    buf.len()
}

pub fn end_nested(buf: &mut Vec<u8>, body_start: usize) {
    let mut len = (buf.len() - body_start) as u64;
    let (mut l, mut n) = ([0u8; 10], 0);
    while len >= 0x80 {
        l[n] = (len as u8) | 0x80;
        len >>= 7;
        n += 1;
    }
    l[n] = len as u8;
    n += 1;
    let gap = 5 - n;
    let len_at = body_start - 5;
    buf[len_at..len_at + n].copy_from_slice(&l[..n]);
    if gap > 0 {
        buf.copy_within(body_start.., body_start - gap);
        buf.truncate(buf.len() - gap);
    }
}

/// An attribute value (`AnyValue`).
#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    /// An array of one string (e.g. `gen_ai.response.finish_reasons`).
    StrArray1(&'a str),
}

fn any_value(buf: &mut Vec<u8>, v: Value) {
    match v {
        Value::Str(s) => bytes_field(buf, 1, s.as_bytes()),
        Value::Bool(b) => varint_field(buf, 2, u64::from(b)),
        Value::Int(i) => varint_field(buf, 3, i as u64),
        Value::Double(d) => fixed64_field(buf, 4, d.to_bits()),
        Value::StrArray1(s) => {
            // ArrayValue { values: [AnyValue { string_value }] }
            let inner = 1 + varint_len(s.len() as u64) + s.len();
            tag(buf, 5, LEN);
            varint(buf, (1 + varint_len(inner as u64) + inner) as u64);
            tag(buf, 1, LEN);
            varint(buf, inner as u64);
            bytes_field(buf, 1, s.as_bytes());
        }
    }
}

/// A `KeyValue` in field `field` of the enclosing message.
pub fn key_value(buf: &mut Vec<u8>, field: u32, key: &str, v: Value) {
    let kv = begin_nested(buf, field);
    bytes_field(buf, 1, key.as_bytes());
    let av = begin_nested(buf, 2);
    any_value(buf, v);
    end_nested(buf, av);
    end_nested(buf, kv);
}

/// OTLP field numbers used by the exporter.
pub mod field {
    pub const REQUEST_RESOURCE_SPANS: u32 = 1;
    pub const RESOURCE_SPANS_RESOURCE: u32 = 1;
    pub const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
    pub const RESOURCE_ATTRIBUTES: u32 = 1;
    pub const SCOPE_SPANS_SCOPE: u32 = 1;
    pub const SCOPE_SPANS_SPANS: u32 = 2;
    pub const SCOPE_NAME: u32 = 1;
    pub const SCOPE_VERSION: u32 = 2;
    pub const SPAN_TRACE_ID: u32 = 1;
    pub const SPAN_SPAN_ID: u32 = 2;
    pub const SPAN_PARENT_SPAN_ID: u32 = 4;
    pub const SPAN_NAME: u32 = 5;
    pub const SPAN_KIND: u32 = 6;
    pub const SPAN_START: u32 = 7;
    pub const SPAN_END: u32 = 8;
    pub const SPAN_ATTRIBUTES: u32 = 9;
    pub const SPAN_EVENTS: u32 = 11;
    pub const SPAN_STATUS: u32 = 15;
    pub const SPAN_FLAGS: u32 = 16;
    pub const EVENT_TIME: u32 = 1;
    pub const EVENT_NAME: u32 = 2;
    pub const STATUS_MESSAGE: u32 = 2;
    pub const STATUS_CODE: u32 = 3;
    pub const SPAN_KIND_INTERNAL: u64 = 1;
    pub const SPAN_KIND_CLIENT: u64 = 3;
    pub const STATUS_CODE_ERROR: u64 = 2;
}

/// Reads `ExportTraceServiceResponse.partial_success` (`rejected_spans`,
/// `error_message`) from a response body; None when absent or unreadable.
pub fn partial_success(body: &[u8]) -> Option<(i64, String)> {
    let ps = find_len_field(body, 1)?;
    let mut rejected = 0i64;
    let mut message = String::new();
    let mut i = 0;
    while i < ps.len() {
        let (key, n) = read_varint(&ps[i..])?;
        i += n;
        match (key >> 3, key & 7) {
            (1, 0) => {
                let (v, n) = read_varint(&ps[i..])?;
                rejected = v as i64;
                i += n;
            }
            (2, 2) => {
                let (l, n) = read_varint(&ps[i..])?;
                i += n;
                let s = ps.get(i..i + l as usize)?;
                message = String::from_utf8_lossy(s).into_owned();
                i += l as usize;
            }
            (_, w) => i += skip(&ps[i..], w as u32)?,
        }
    }
    Some((rejected, message))
}

fn find_len_field(msg: &[u8], want: u64) -> Option<&[u8]> {
    let mut i = 0;
    while i < msg.len() {
        let (key, n) = read_varint(&msg[i..])?;
        i += n;
        if key >> 3 == want && key & 7 == 2 {
            let (l, n) = read_varint(&msg[i..])?;
            i += n;
            return msg.get(i..i + l as usize);
        }
        i += skip(&msg[i..], (key & 7) as u32)?;
    }
    None
}

fn skip(b: &[u8], wire: u32) -> Option<usize> {
    match wire {
        VARINT => read_varint(b).map(|(_, n)| n),
        I64 => Some(8),
        I32 => Some(4),
        LEN => {
            let (l, n) = read_varint(b)?;
            Some(n + l as usize)
        }
        _ => None,
    }
}

fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &x) in b.iter().enumerate().take(10) {
        v |= u64::from(x & 0x7f) << (7 * i);
        if x < 0x80 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
            assert_eq!(read_varint(&b), Some((v, b.len())));
        }
    }

    #[test]
    fn nested_lengths_shrink_to_fit() {
        for n in [0usize, 1, 127, 128, 300, 20_000] {
            let mut b = vec![9u8];
            let s = begin_nested(&mut b, 3);
            b.extend(std::iter::repeat_n(7u8, n));
            end_nested(&mut b, s);
            let mut want = vec![9u8];
            bytes_field(&mut want, 3, &vec![7u8; n]);
            assert_eq!(b, want, "{n}");
        }
    }

    #[test]
    fn partial_success_is_read() {
        // partial_success { rejected_spans: 3, error_message: "full" }
        let mut inner = Vec::new();
        varint_field(&mut inner, 1, 3);
        bytes_field(&mut inner, 2, b"full");
        let mut body = Vec::new();
        bytes_field(&mut body, 1, &inner);
        assert_eq!(partial_success(&body), Some((3, "full".to_string())));
        assert_eq!(partial_success(&[]), None);
    }
}
