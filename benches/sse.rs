//! SSE decoding + chunk interpretation throughput: `cargo bench --bench sse`.
//!
//! Decodes a recorded vLLM-style stream of 64 output tokens (role prelude, one token
//! per chunk, finish chunk, usage chunk, [DONE]) fed in 1,500-byte reads, and reports
//! MB/s, ns per chunk and ns per request.

use perfscope::client::sse::SseDecoder;
use perfscope::protocol::openai::parse_payload;
use std::hint::black_box;
use std::time::Instant;

fn recorded_stream(tokens: usize) -> Vec<u8> {
    let head = r#"{"id":"chatcmpl-8f1c2a","object":"chat.completion.chunk","created":1732780000,"model":"Qwen/Qwen2.5-7B-Instruct","#;
    let mut s = String::new();
    s.push_str(&format!("data: {head}\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"));
    for i in 0..tokens {
        let fin = if i + 1 == tokens {
            "\"length\""
        } else {
            "null"
        };
        s.push_str(&format!("data: {head}\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" word{i}\"}},\"logprobs\":null,\"finish_reason\":{fin}}}]}}\n\n"));
    }
    s.push_str(&format!("data: {head}\"choices\":[],\"usage\":{{\"prompt_tokens\":120,\"total_tokens\":184,\"completion_tokens\":64}}}}\n\n"));
    s.push_str("data: [DONE]\n\n");
    s.into_bytes()
}

/// Best of five rounds (the least disturbed by other work on the machine).
fn best(mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let stream = recorded_stream(64);
    let events = 67usize;
    let reps = 20_000usize;
    // Decoder only.
    let dec = best(|| {
        let mut n = 0usize;
        for _ in 0..reps {
            let mut d = SseDecoder::new();
            for part in stream.chunks(1500) {
                d.feed(part, |e| n += e.len());
            }
            d.finish(|e| n += e.len());
        }
        black_box(n);
    });
    // Decoder + JSON interpretation (what the client does per read).
    let full = best(|| {
        let mut chars = 0usize;
        for _ in 0..reps {
            let mut d = SseDecoder::new();
            for part in stream.chunks(1500) {
                d.feed(part, |e| {
                    if e != b"[DONE]" {
                        if let Ok(info) = parse_payload(e) {
                            chars += info.output_chars;
                        }
                    }
                });
            }
        }
        black_box(chars);
    });
    let mb = (stream.len() * reps) as f64 / 1e6;
    println!(
        "stream: {} bytes, {events} events per request",
        stream.len()
    );
    println!(
        "sse decode only:      {:8.1} MB/s  {:6.1} ns/chunk  {:7.2} us/request",
        mb / dec,
        dec * 1e9 / (reps * events) as f64,
        dec * 1e6 / reps as f64
    );
    println!(
        "decode + parse chunk: {:8.1} MB/s  {:6.1} ns/chunk  {:7.2} us/request",
        mb / full,
        full * 1e9 / (reps * events) as f64,
        full * 1e6 / reps as f64
    );
}
