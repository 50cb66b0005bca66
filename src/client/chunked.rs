//! Chunked transfer decoding (RFC 9112 §7.1), fed whatever each read returned.

/// Chunked transfer decoding state (RFC 9112 §7.1).
#[derive(Default)]
pub(crate) struct Chunked {
    pub(crate) state: ChunkState,
    /// The size line read so far.
    line: Vec<u8>,
}

#[derive(Default, PartialEq)]
pub(crate) enum ChunkState {
    #[default]
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk; `line` holds the current one.
    Trailer,
    Done,
}

impl Chunked {
    /// Decodes `input` into `out`; returns the bytes consumed (all of them unless the
    /// body ended inside `input`).
    pub(crate) fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                ChunkState::Done => break,
                ChunkState::Data(n) => {
                    let take = (n as usize).min(input.len() - i);
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::Size | ChunkState::DataEnd | ChunkState::Trailer => {
                    let b = input[i];
                    i += 1;
                    if b != b'\n' {
                        if self.line.len() > 4096 {
                            return Err("chunk size line longer than 4 KiB".into());
                        }
                        self.line.push(b);
                        continue;
                    }
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    self.state = match self.state {
                        ChunkState::DataEnd if line.is_empty() => ChunkState::Size,
                        ChunkState::DataEnd => return Err("missing CRLF after chunk data".into()),
                        ChunkState::Trailer if line.is_empty() => ChunkState::Done,
                        ChunkState::Trailer => ChunkState::Trailer,
                        _ => {
                            let hex = line.split(|&c| c == b';').next().unwrap_or(b"");
                            let hex = std::str::from_utf8(hex).unwrap_or("").trim();
                            let n = u64::from_str_radix(hex, 16)
                                .map_err(|_| format!("invalid chunk size `{hex}`"))?;
                            if n == 0 {
                                ChunkState::Trailer
                            } else {
                                ChunkState::Data(n)
                            }
                        }
                    };
                }
            }
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dechunk(parts: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut c = Chunked::default();
        let mut out = Vec::new();
        for p in parts {
            let n = c.decode(p, &mut out).expect("valid");
            assert!(n == p.len() || c.state == ChunkState::Done);
        }
        (out, c.state == ChunkState::Done)
    }

    #[test]
    fn chunked_any_split() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-T: 1\r\n\r\n";
        assert_eq!(dechunk(&[body]), (b"hello, world".to_vec(), true));
        for i in 0..body.len() {
            for j in i..body.len() {
                let (out, done) = dechunk(&[&body[..i], &body[i..j], &body[j..]]);
                assert_eq!(out, b"hello, world", "split {i} {j}");
                assert!(done);
            }
        }
    }

    #[test]
    fn chunked_errors() {
        let mut c = Chunked::default();
        assert!(c.decode(b"zz\r\n", &mut Vec::new()).is_err());
        let mut c = Chunked::default();
        assert!(c.decode(b"1\r\nab\r\n", &mut Vec::new()).is_err());
    }
}
