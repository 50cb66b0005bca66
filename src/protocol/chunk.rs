//! Interpretation of one response payload (an SSE data event or a whole non-stream
//! body), on the per-chunk hot path.
//!
//! A single pass over the bytes with a small JSON scanner that validates the syntax
//! and reads only what the benchmark needs (output text length, finish reason, usage,
//! in-band errors); nothing is allocated unless the payload is an error. General
//! deserialisation cost about 1.1 µs per chunk, a third of the client's budget at
//! 10,000 streamed requests per second; this costs a fraction of that (see
//! `cargo bench --bench sse`). A test checks it against a serde_json implementation
//! on generated payloads.

/// Token usage reported by the server.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Usage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// `prompt_tokens_details.cached_tokens`.
    pub cached_tokens: Option<u64>,
}

/// What one payload contributed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ChunkInfo {
    pub has_choices: bool,
    /// Characters of output text in the first choice (content, reasoning_content,
    /// reasoning, tool-call name/arguments, reasoning_details text, or completions
    /// `text`); > 0 means the chunk carries output (evalscope 1.14's TTFT/ITL rule).
    pub output_chars: usize,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// In-band error text: `{"error": ...}` or `{"object": "error"}`.
    pub error: Option<String>,
    /// The server's id of the request when only the body carries it (the Responses
    /// API's `resp_…`, which vLLM logs instead of the `X-Request-Id` sent).
    pub body_id: Option<String>,
}

const MAX_DEPTH: usize = 64;

/// Bytes of `v` that are zero get their high bit set (classic SWAR test).
#[inline]
fn zero_bytes(v: u64) -> u64 {
    v.wrapping_sub(0x0101_0101_0101_0101) & !v & 0x8080_8080_8080_8080
}

/// Index of the first `"`, `\\` or control byte at or after `i` (or `b.len()`),
/// eight bytes at a time.
#[inline]
fn find_special(b: &[u8], mut i: usize) -> usize {
    while let Some(word) = b.get(i..i + 8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(word);
        let w = u64::from_le_bytes(a);
        let quote = zero_bytes(w ^ 0x2222_2222_2222_2222);
        let backslash = zero_bytes(w ^ 0x5C5C_5C5C_5C5C_5C5C);
        let control = w.wrapping_sub(0x2020_2020_2020_2020) & !w & 0x8080_8080_8080_8080;
        let hit = quote | backslash | control;
        if hit != 0 {
            // The lowest flagged byte is exact (borrows only affect higher bytes).
            return i + (hit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
}

type R<T> = Result<T, &'static str>;

/// A scanned string: byte span inside the quotes and its character count.
#[derive(Clone, Copy)]
struct Str {
    start: usize,
    end: usize,
    chars: usize,
}

impl<'a> Scan<'a> {
    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                self.i += 1;
            } else {
                break;
            }
        }
    }
    #[inline]
    fn peek(&mut self) -> R<u8> {
        self.ws();
        self.b.get(self.i).copied().ok_or("unexpected end")
    }
    #[inline]
    fn eat(&mut self, c: u8) -> R<()> {
        if self.peek()? == c {
            self.i += 1;
            Ok(())
        } else {
            Err("unexpected character")
        }
    }
    /// Scans a string, validating escapes; the character count is computed only
    /// for strings whose text length matters (`counted`).
    fn string(&mut self) -> R<Str> {
        self.string_impl(false)
    }
    fn counted_string(&mut self) -> R<Str> {
        self.string_impl(true)
    }
    #[inline]
    fn string_impl(&mut self, counted: bool) -> R<Str> {
        self.eat(b'"')?;
        let start = self.i;
        let mut chars = 0usize;
        loop {
            let j = find_special(self.b, self.i);
            if counted {
                // Characters = bytes that are not UTF-8 continuation bytes.
                chars += self.b[self.i..j]
                    .iter()
                    .filter(|&&c| c & 0xC0 != 0x80)
                    .count();
            }
            self.i = j;
            let c = *self.b.get(self.i).ok_or("unterminated string")?;
            match c {
                b'"' => {
                    let s = Str {
                        start,
                        end: self.i,
                        chars,
                    };
                    self.i += 1;
                    return Ok(s);
                }
                b'\\' => {
                    let e = *self.b.get(self.i + 1).ok_or("unterminated string")?;
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                            self.i += 2;
                            chars += 1;
                        }
                        b'u' => {
                            let hex = self.b.get(self.i + 2..self.i + 6).ok_or("bad escape")?;
                            let mut v = 0u32;
                            for h in hex {
                                v = v * 16 + (*h as char).to_digit(16).ok_or("bad escape")?;
                            }
                            // A low surrogate completes the character its high
                            // surrogate already counted.
                            if !(0xDC00..=0xDFFF).contains(&v) {
                                chars += 1;
                            }
                            self.i += 6;
                        }
                        _ => return Err("bad escape"),
                    }
                }
                _ => return Err("control character in string"),
            }
        }
    }
    fn literal(&mut self, word: &[u8]) -> R<()> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err("bad literal")
        }
    }
    /// Returns the number's text.
    fn number(&mut self) -> R<&'a [u8]> {
        let start = self.i;
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let digits = |s: &mut Self| {
            let d0 = s.i;
            while s.b.get(s.i).is_some_and(u8::is_ascii_digit) {
                s.i += 1;
            }
            if s.i == d0 {
                Err("bad number")
            } else {
                Ok(())
            }
        };
        digits(self)?;
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            digits(self)?;
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            digits(self)?;
        }
        Ok(&self.b[start..self.i])
    }
    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err("nested too deeply")
        } else {
            Ok(())
        }
    }
    /// Iterates an object's members: `f(scanner, key)` must consume the value.
    fn object(&mut self, mut f: impl FnMut(&mut Self, &'a [u8]) -> R<()>) -> R<()> {
        self.enter()?;
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            let k = self.string()?;
            let key = &self.b[k.start..k.end];
            self.eat(b':')?;
            f(self, key)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err("expected , or }"),
            }
        }
    }
    /// Iterates an array's elements: `f(scanner, index)` must consume the element.
    fn array(&mut self, mut f: impl FnMut(&mut Self, usize) -> R<()>) -> R<()> {
        self.enter()?;
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.i += 1;
            self.depth -= 1;
            return Ok(());
        }
        let mut n = 0;
        loop {
            f(self, n)?;
            n += 1;
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err("expected , or ]"),
            }
        }
    }
    /// For an array value, visits the members of each object element (other
    /// elements and non-array values are skipped).
    fn objects_in_array(&mut self, mut f: impl FnMut(&mut Self, &'a [u8]) -> R<()>) -> R<()> {
        if self.peek()? != b'[' {
            return self.skip();
        }
        self.array(|s, _| {
            if s.peek()? == b'{' {
                s.object(&mut f)
            } else {
                s.skip()
            }
        })
    }
    fn skip(&mut self) -> R<()> {
        match self.peek()? {
            b'{' => self.object(|s, _| s.skip()),
            b'[' => self.array(|s, _| s.skip()),
            b'"' => self.string().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number().map(|_| ()),
            _ => Err("unexpected character"),
        }
    }
    fn is_null(&mut self) -> R<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }
    /// Characters of a string value; null and other types count 0 (and are skipped).
    fn text_chars(&mut self) -> R<usize> {
        if self.peek()? == b'"' {
            Ok(self.counted_string()?.chars)
        } else {
            self.skip().map(|_| 0)
        }
    }
    /// A string value's span, or None for any other value (skipped).
    fn opt_str(&mut self) -> R<Option<Str>> {
        if self.peek()? == b'"' {
            self.string().map(Some)
        } else {
            self.skip().map(|_| None)
        }
    }
    fn opt_u64(&mut self) -> R<Option<u64>> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => {
                let t = self.number()?;
                let s = std::str::from_utf8(t).map_err(|_| "bad number")?;
                Ok(s.parse::<u64>()
                    .ok()
                    .or_else(|| s.parse::<f64>().ok().map(|f| f.max(0.0) as u64)))
            }
            _ => self.skip().map(|_| None),
        }
    }
    fn unescape(&self, s: Str) -> String {
        let raw = &self.b[s.start.saturating_sub(1)..(s.end + 1).min(self.b.len())];
        serde_json::from_slice::<String>(raw)
            .unwrap_or_else(|_| String::from_utf8_lossy(&self.b[s.start..s.end]).into_owned())
    }
}

/// Delta / message object: output text characters.
fn delta_chars(s: &mut Scan) -> R<usize> {
    let mut n = 0;
    if s.is_null()? {
        return Ok(0);
    }
    if s.peek()? != b'{' {
        s.skip()?;
        return Ok(0);
    }
    s.object(|s, k| {
        match k {
            b"content" | b"reasoning_content" | b"reasoning" => n += s.text_chars()?,
            b"tool_calls" => s.objects_in_array(|s, k| {
                if k == b"function" && s.peek()? == b'{' {
                    s.object(|s, k| {
                        match k {
                            b"name" | b"arguments" => n += s.text_chars()?,
                            _ => s.skip()?,
                        }
                        Ok(())
                    })
                } else {
                    s.skip()
                }
            })?,
            b"reasoning_details" => s.objects_in_array(|s, k| {
                if k == b"text" {
                    n += s.text_chars()?;
                    Ok(())
                } else {
                    s.skip()
                }
            })?,
            _ => s.skip()?,
        }
        Ok(())
    })?;
    Ok(n)
}

/// Parses one JSON payload. `Err` = not valid JSON (a malformed chunk).
pub fn parse_payload(data: &[u8]) -> Result<ChunkInfo, String> {
    let malformed = |why: &str| {
        let shown = String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned();
        format!("malformed chunk ({why}): {shown}")
    };
    if std::str::from_utf8(data).is_err() {
        return Err(malformed("invalid UTF-8"));
    }
    let mut s = Scan {
        b: data,
        i: 0,
        depth: 0,
    };
    let mut info = ChunkInfo::default();
    let mut object: Option<Str> = None;
    let mut top_message: Option<Str> = None;
    let mut error_span: Option<(usize, usize)> = None;
    let mut first_text = 0usize;
    let mut first_delta = 0usize;
    let mut finish: Option<Str> = None;
    let r = s.object(|s, k| {
        match k {
            b"object" => object = s.opt_str()?,
            b"message" => top_message = s.opt_str()?,
            b"error" => {
                s.ws();
                let start = s.i;
                if !s.is_null()? {
                    s.skip()?;
                    error_span = Some((start, s.i));
                }
            }
            b"usage" => {
                if s.peek()? == b'{' {
                    let mut u = Usage::default();
                    s.object(|s, k| {
                        match k {
                            b"prompt_tokens" => u.prompt_tokens = s.opt_u64()?,
                            b"completion_tokens" => u.completion_tokens = s.opt_u64()?,
                            b"prompt_tokens_details" if s.peek()? == b'{' => s.object(|s, k| {
                                if k == b"cached_tokens" {
                                    u.cached_tokens = s.opt_u64()?;
                                    Ok(())
                                } else {
                                    s.skip()
                                }
                            })?,
                            _ => s.skip()?,
                        }
                        Ok(())
                    })?;
                    info.usage = Some(u);
                } else {
                    s.skip()?;
                }
            }
            b"choices" if s.peek()? == b'[' => s.array(|s, idx| {
                if s.peek()? != b'{' {
                    return s.skip();
                }
                if idx == 0 {
                    info.has_choices = true;
                }
                s.object(|s, k| {
                    match k {
                        b"delta" | b"message" if idx == 0 => first_delta += delta_chars(s)?,
                        b"text" if idx == 0 => first_text += s.text_chars()?,
                        b"finish_reason" => {
                            if let Some(f) = s.opt_str()? {
                                finish = Some(f);
                            }
                        }
                        _ => s.skip()?,
                    }
                    Ok(())
                })
            })?,
            _ => s.skip()?,
        }
        Ok(())
    });
    r.map_err(malformed)?;
    s.ws();
    if s.i != data.len() {
        return Err(malformed("trailing characters"));
    }
    let object_is = |want: &[u8]| object.is_some_and(|o| &data[o.start..o.end] == want);
    if error_span.is_some() || object_is(b"error") {
        let text = match error_span {
            Some((a, b)) => match serde_json::from_slice::<serde_json::Value>(&data[a..b]) {
                Ok(serde_json::Value::String(t)) => t,
                Ok(serde_json::Value::Object(o)) => o
                    .get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| serde_json::Value::Object(o).to_string()),
                Ok(v) => v.to_string(),
                Err(_) => String::from_utf8_lossy(&data[a..b]).into_owned(),
            },
            None => top_message
                .map(|m| s.unescape(m))
                .unwrap_or_else(|| "error object in stream".into()),
        };
        return Ok(ChunkInfo {
            error: Some(text),
            ..ChunkInfo::default()
        });
    }
    // evalscope: a text_completion chunk's output is choices[0].text.
    info.output_chars = if object_is(b"text_completion") && first_text > 0 {
        first_text
    } else {
        first_text + first_delta
    };
    info.finish_reason = finish.map(|f| s.unescape(f));
    Ok(info)
}

/// Appends the output text of one payload (a chat delta or message: content plus
/// `reasoning_content`, else `reasoning`; a completion: `text`) to `out`, as
/// evalscope 1.14 accumulates `generated_text` for the next turn's history. Only
/// multi-turn sessions call it, so it may parse the payload in full.
pub fn push_output_text(data: &[u8], out: &mut String) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Some(c) = v.pointer("/choices/0") else {
        return;
    };
    let d = c.get("delta").or_else(|| c.get("message"));
    match d {
        Some(d) => {
            if let Some(t) = d.get("content").and_then(|t| t.as_str()) {
                out.push_str(t);
            }
            let reasoning = d
                .get("reasoning_content")
                .and_then(|t| t.as_str())
                .filter(|t| !t.is_empty())
                .or_else(|| d.get("reasoning").and_then(|t| t.as_str()));
            if let Some(t) = reasoning {
                out.push_str(t);
            }
        }
        None => {
            if let Some(t) = c.get("text").and_then(|t| t.as_str()) {
                out.push_str(t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::Value;
    use std::borrow::Cow;

    #[test]
    fn output_text_of_deltas_messages_and_completions() {
        let mut out = String::new();
        push_output_text(br#"{"choices":[{"delta":{"content":"Hi"}}]}"#, &mut out);
        push_output_text(
            br#"{"choices":[{"delta":{"content":" a","reasoning_content":"r"}}]}"#,
            &mut out,
        );
        push_output_text(
            br#"{"choices":[{"message":{"content":"!","reasoning":"q"}}]}"#,
            &mut out,
        );
        push_output_text(
            br#"{"object":"text_completion","choices":[{"text":" end"}]}"#,
            &mut out,
        );
        push_output_text(b"not json", &mut out);
        assert_eq!(out, "Hi ar!q end");
    }

    // The general-purpose serde implementation the scanner must agree with.
    #[derive(Deserialize, Default)]
    struct RefUsage {
        #[serde(default)]
        prompt_tokens: Option<u64>,
        #[serde(default)]
        completion_tokens: Option<u64>,
        #[serde(default)]
        prompt_tokens_details: Option<PromptDetails>,
    }

    #[derive(Deserialize, Default)]
    struct PromptDetails {
        #[serde(default)]
        cached_tokens: Option<u64>,
    }

    #[derive(Deserialize, Default)]
    struct FunctionCall<'a> {
        #[serde(default, borrow)]
        name: Option<Cow<'a, str>>,
        #[serde(default, borrow)]
        arguments: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize, Default)]
    struct ToolCall<'a> {
        #[serde(default, borrow)]
        function: Option<FunctionCall<'a>>,
    }

    #[derive(Deserialize, Default)]
    struct ReasoningDetail<'a> {
        #[serde(default, borrow)]
        text: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize, Default)]
    struct Delta<'a> {
        #[serde(default, borrow)]
        content: Option<Cow<'a, str>>,
        #[serde(default, borrow)]
        reasoning_content: Option<Cow<'a, str>>,
        #[serde(default, borrow)]
        reasoning: Option<Cow<'a, str>>,
        #[serde(default, borrow)]
        tool_calls: Option<Vec<ToolCall<'a>>>,
        #[serde(default, borrow)]
        reasoning_details: Option<Vec<ReasoningDetail<'a>>>,
    }

    impl Delta<'_> {
        fn output_chars(&self) -> usize {
            let s = |o: &Option<Cow<str>>| o.as_deref().map_or(0, |x| x.chars().count());
            let mut n = s(&self.content) + s(&self.reasoning_content) + s(&self.reasoning);
            for tc in self.tool_calls.iter().flatten() {
                if let Some(f) = &tc.function {
                    n += s(&f.name) + s(&f.arguments);
                }
            }
            for rd in self.reasoning_details.iter().flatten() {
                n += s(&rd.text);
            }
            n
        }
    }

    #[derive(Deserialize)]
    struct Choice<'a> {
        #[serde(default, borrow)]
        delta: Option<Delta<'a>>,
        #[serde(default, borrow)]
        message: Option<Delta<'a>>,
        #[serde(default, borrow)]
        text: Option<Cow<'a, str>>,
        #[serde(default, borrow)]
        finish_reason: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize)]
    struct Chunk<'a> {
        #[serde(default, borrow)]
        object: Option<Cow<'a, str>>,
        #[serde(default, borrow)]
        choices: Option<Vec<Choice<'a>>>,
        #[serde(default)]
        usage: Option<RefUsage>,
        #[serde(default)]
        error: Option<Value>,
        #[serde(default, borrow)]
        message: Option<Cow<'a, str>>,
    }

    /// Parses one JSON payload. `Err` = not valid JSON (a malformed chunk).
    fn reference(data: &[u8]) -> Result<ChunkInfo, String> {
        let chunk: Chunk = serde_json::from_slice(data).map_err(|e| {
            let shown = String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned();
            format!("malformed chunk ({e}): {shown}")
        })?;
        let mut info = ChunkInfo::default();
        if chunk.error.as_ref().is_some_and(|e| !e.is_null())
            || chunk.object.as_deref() == Some("error")
        {
            let text = match &chunk.error {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Object(o)) => o
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| Value::Object(o.clone()).to_string()),
                Some(v) if !v.is_null() => v.to_string(),
                _ => chunk
                    .message
                    .as_deref()
                    .unwrap_or("error object in stream")
                    .to_string(),
            };
            info.error = Some(text);
            return Ok(info);
        }
        if let Some(choices) = &chunk.choices {
            if let Some(c) = choices.first() {
                info.has_choices = true;
                let text_completion = chunk.object.as_deref() == Some("text_completion");
                let mut n = c.text.as_deref().map_or(0, |t| t.chars().count());
                if !text_completion || n == 0 {
                    n += c.delta.as_ref().map_or(0, Delta::output_chars);
                    n += c.message.as_ref().map_or(0, Delta::output_chars);
                }
                info.output_chars = n;
            }
            for c in choices {
                if let Some(f) = &c.finish_reason {
                    info.finish_reason = Some(f.to_string());
                }
            }
        }
        info.usage = chunk.usage.map(|u| Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cached_tokens: u.prompt_tokens_details.and_then(|d| d.cached_tokens),
        });
        Ok(info)
    }

    #[test]
    fn chunk_kinds() {
        let role =
            parse_payload(br#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#).unwrap();
        assert!(role.has_choices && role.output_chars == 0);
        let c = parse_payload(br#"{"choices":[{"delta":{"content":"ab"}}]}"#).unwrap();
        assert_eq!(c.output_chars, 2);
        let r = parse_payload(br#"{"choices":[{"delta":{"reasoning_content":"xyz"}}]}"#).unwrap();
        assert_eq!(r.output_chars, 3);
        let t = parse_payload(
            br#"{"choices":[{"delta":{"tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}}]}"#,
        )
        .unwrap();
        assert_eq!(t.output_chars, 3);
        let tc = parse_payload(
            br#"{"object":"text_completion","choices":[{"text":"hey","finish_reason":"length"}]}"#,
        )
        .unwrap();
        assert_eq!(tc.output_chars, 3);
        assert_eq!(tc.finish_reason.as_deref(), Some("length"));
        let u = parse_payload(br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":1}}}"#).unwrap();
        assert!(!u.has_choices);
        let u = u.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (Some(3), Some(4)));
        let e = parse_payload(br#"{"error":{"message":"overloaded","code":503}}"#).unwrap();
        assert_eq!(e.error.as_deref(), Some("overloaded"));
        let e = parse_payload(br#"{"object":"error","message":"bad"}"#).unwrap();
        assert_eq!(e.error.as_deref(), Some("bad"));
        assert!(parse_payload(b"{not json").is_err());
    }

    /// Generated payloads: random mixes of the fields servers send, with escapes,
    /// unicode, nulls, unknown fields and nesting.
    fn gen(rng: &mut fastrand::Rng) -> String {
        let strs = [
            "",
            "a",
            "héllo",
            "熵",
            "x\\ny",
            "\\u00e9",
            "\\ud83d\\ude00",
            "q\\\"q",
            "tab\\t",
        ];
        let s = |rng: &mut fastrand::Rng| format!("\"{}\"", strs[rng.usize(..strs.len())]);
        let maybe = |rng: &mut fastrand::Rng, v: String| if rng.bool() { v } else { "null".into() };
        let mut delta = Vec::new();
        if rng.bool() {
            delta.push("\"role\":\"assistant\"".to_string());
        }
        if rng.bool() {
            let v = s(rng);
            delta.push(format!("\"content\":{}", maybe(rng, v)));
        }
        if rng.u8(..4) == 0 {
            let v = s(rng);
            delta.push(format!("\"reasoning_content\":{}", maybe(rng, v)));
        }
        if rng.u8(..6) == 0 {
            delta.push(format!("\"reasoning\":{}", s(rng)));
        }
        if rng.u8(..6) == 0 {
            delta.push(format!("\"tool_calls\":[{{\"index\":0,\"id\":\"c1\",\"function\":{{\"name\":{},\"arguments\":{}}}}}]", s(rng), s(rng)));
        }
        if rng.u8(..8) == 0 {
            delta.push(format!(
                "\"reasoning_details\":[{{\"type\":\"t\",\"text\":{}}}]",
                s(rng)
            ));
        }
        let mut choice = vec![format!("\"index\":0")];
        match rng.u8(..3) {
            0 => choice.push(format!("\"delta\":{{{}}}", delta.join(","))),
            1 => choice.push(format!("\"text\":{}", s(rng))),
            _ => choice.push(format!("\"message\":{{{}}}", delta.join(","))),
        }
        choice.push(format!(
            "\"finish_reason\":{}",
            maybe(rng, "\"stop\"".into())
        ));
        choice.push("\"logprobs\":null".into());
        let mut top = vec![
            "\"id\":\"x-1\"".to_string(),
            format!("\"created\":{}", rng.u32(..)),
        ];
        match rng.u8(..12) {
            0..=2 => top.push("\"object\":\"text_completion\"".into()),
            3..=5 => top.push("\"object\":\"chat.completion.chunk\"".into()),
            6 => top.push("\"object\":\"error\",\"message\":\"bad\"".into()),
            _ => {}
        }
        match rng.u8(..4) {
            0 => top.push("\"choices\":[]".into()),
            1 => {}
            _ => top.push(format!("\"choices\":[{{{}}}]", choice.join(","))),
        }
        if rng.u8(..3) == 0 {
            top.push(format!(
                "\"usage\":{{\"prompt_tokens\":{},\"total_tokens\":9,\"completion_tokens\":{},\"prompt_tokens_details\":{}}}",
                rng.u32(..1000), rng.u32(..1000),
                { let v = format!("{{\"cached_tokens\":{}}}", rng.u32(..100)); maybe(rng, v) }
            ));
        }
        if rng.u8(..10) == 0 {
            top.push(format!(
                "\"error\":{}",
                maybe(rng, "{\"message\":\"boom\",\"code\":500}".into())
            ));
        }
        top.push("\"extra\":{\"nested\":[1,2.5e3,-3,true,false,null,{\"k\":\"v\"}]}".into());
        rng.shuffle(&mut top);
        let sep = if rng.bool() { "," } else { " , " };
        format!("{{{}}}", top.join(sep))
    }

    #[test]
    fn scanner_agrees_with_serde_on_generated_payloads() {
        let mut rng = fastrand::Rng::with_seed(9);
        for _ in 0..20_000 {
            let p = gen(&mut rng);
            let fast = parse_payload(p.as_bytes());
            let slow = reference(p.as_bytes());
            match (&fast, &slow) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{p}"),
                (Err(_), Err(_)) => {}
                _ => panic!(
                    "disagree on {p}: {fast:?} vs {:?}",
                    slow.as_ref().map(|_| ())
                ),
            }
            // Every strict prefix is invalid JSON.
            let cut = rng.usize(..p.len());
            assert!(
                parse_payload(&p.as_bytes()[..cut]).is_err(),
                "{}",
                &p[..cut]
            );
        }
    }

    #[test]
    fn find_special_matches_a_byte_loop() {
        let mut rng = fastrand::Rng::with_seed(4);
        let alphabet = b"ab \"\\\x01\x1f\x20\x7f\xc3\xa9";
        for _ in 0..20_000 {
            let v: Vec<u8> = (0..rng.usize(0..40))
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            let start = rng.usize(0..=v.len());
            let naive = (start..v.len())
                .find(|&i| v[i] == b'"' || v[i] == b'\\' || v[i] < 0x20)
                .unwrap_or(v.len());
            assert_eq!(find_special(&v, start), naive, "{v:?} from {start}");
        }
    }

    #[test]
    fn rejects_what_json_rejects() {
        for bad in [
            &b"{\"a\":1,}"[..],
            b"{\"a\" 1}",
            b"{\"a\":tru}",
            b"{\"a\":\"\\x\"}",
            b"{\"a\":01x}",
            b"{} {}",
            b"[1]x",
            b"{\"a\":\"\xff\"}",
        ] {
            assert!(
                parse_payload(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(parse_payload(deep.as_bytes()).is_err());
    }
}
