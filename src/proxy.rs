//! Proxies from the environment, one rule for every HTTP path perfscope takes (the
//! load and its connection test, the server-metrics scraper, the trackers, the
//! clock reference, OTLP export, a local server's readiness probe).
//!
//! The rule is evalscope's: its aiohttp session has `trust_env=True`, which reads
//! `http_proxy` for `http://` URLs and `https_proxy` for `https://` URLs (lower case
//! first, then upper case, as Python's `urllib.request.getproxies`), and skips the
//! proxy for hosts in `no_proxy` (urllib's `proxy_bypass_environment`: `*`, or a
//! host equal to an entry or ending with `.entry`, with or without its port).
//! `ALL_PROXY` is not read: aiohttp ignores it. Loopback is not exempt unless
//! `no_proxy` says so, as in evalscope; perfscope's own in-process simulator
//! (`--api sim`) is always reached directly ([`register_direct`]).

use crate::redact::redact_url;

/// `host:port` authorities always reached directly: servers this process runs.
static DIRECT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Marks `host:port` (a server in this process, the simulator of `--api sim`) as
/// never proxied.
pub fn register_direct(authority: String) {
    let mut d = DIRECT.lock().unwrap_or_else(|p| p.into_inner());
    if !d.contains(&authority) {
        d.push(authority);
    }
}

fn is_direct(host: &str, port: Option<u16>) -> bool {
    let Some(port) = port else {
        return false;
    };
    let authority = format!("{host}:{port}");
    DIRECT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&authority)
}

/// The proxy one URL goes through.
#[derive(Clone, Debug, PartialEq)]
pub struct Proxy {
    /// `http://[user:pass@]host:port` as configured.
    pub url: String,
    pub host: String,
    pub port: u16,
    /// `Basic …` from the proxy URL's credentials.
    pub authorization: Option<String>,
    /// The variable it came from (`HTTP_PROXY`, `https_proxy`, …).
    pub source: &'static str,
}

impl Proxy {
    /// The proxy URL with its credentials masked, and where it came from.
    pub fn shown(&self) -> String {
        format!("{} (from {})", redact_url(&self.url), self.source)
    }
}

/// The proxy environment of this process.
#[derive(Clone, Debug, Default)]
pub struct ProxyEnv {
    http: Option<(String, &'static str)>,
    https: Option<(String, &'static str)>,
    no_proxy: Vec<String>,
}

fn var(names: [&'static str; 2]) -> Option<(String, &'static str)> {
    names.into_iter().find_map(|n| {
        std::env::var(n)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .map(|v| (v, n))
    })
}

impl ProxyEnv {
    /// Read from the environment (lower-case names first, as urllib).
    pub fn from_env() -> ProxyEnv {
        ProxyEnv {
            http: var(["http_proxy", "HTTP_PROXY"]),
            https: var(["https_proxy", "HTTPS_PROXY"]),
            no_proxy: var(["no_proxy", "NO_PROXY"])
                .map(|(v, _)| {
                    v.split(',')
                        .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
                        .filter(|e| !e.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// From explicit values (tests).
    pub fn new(http: Option<&str>, https: Option<&str>, no_proxy: &str) -> ProxyEnv {
        ProxyEnv {
            http: http.map(|v| (v.to_string(), "http_proxy")),
            https: https.map(|v| (v.to_string(), "https_proxy")),
            no_proxy: no_proxy
                .split(',')
                .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|e| !e.is_empty())
                .collect(),
        }
    }

    /// urllib's `proxy_bypass_environment` for `host` and `port`.
    fn bypass(&self, host: &str, port: Option<u16>) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let with_port = port.map(|p| format!("{host}:{p}"));
        self.no_proxy.iter().any(|e| {
            if e == "*" {
                return true;
            }
            let suffix = format!(".{e}");
            let matches = |h: &str| h == e || h.ends_with(&suffix);
            matches(&host) || with_port.as_deref().is_some_and(matches)
        })
    }

    /// The proxy for `url`, None when it connects directly. An unusable proxy
    /// setting is an error naming the variable.
    pub fn for_url(&self, url: &str) -> Result<Option<Proxy>, String> {
        let Ok(u) = reqwest::Url::parse(url) else {
            return Ok(None);
        };
        let chosen = match u.scheme() {
            "http" => &self.http,
            "https" => &self.https,
            _ => return Ok(None),
        };
        let Some((value, source)) = chosen else {
            return Ok(None);
        };
        let host = u.host_str().unwrap_or("");
        let port = u.port_or_known_default();
        if self.bypass(host, port) || is_direct(host, port) {
            return Ok(None);
        }
        parse(value, source).map(Some)
    }
}

/// A proxy URL: `http://[user:pass@]host[:port]`, or `host:port` (taken as http).
fn parse(value: &str, source: &'static str) -> Result<Proxy, String> {
    let full = if value.contains("://") {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    let u = reqwest::Url::parse(&full)
        .map_err(|e| format!("{source}: `{}` is not a URL: {e}", redact_url(&full)))?;
    if u.scheme() != "http" {
        return Err(format!(
            "{source}: only http:// proxies are supported (HTTPS targets tunnel through them with CONNECT), not `{}`",
            u.scheme()
        ));
    }
    let host = u
        .host_str()
        .ok_or_else(|| format!("{source}: `{}` has no host", redact_url(&full)))?
        .to_string();
    let authorization = (!u.username().is_empty()).then(|| {
        use base64::Engine;
        let user = percent_decode(u.username());
        let pass = percent_decode(u.password().unwrap_or(""));
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    });
    Ok(Proxy {
        url: full.clone(),
        host,
        port: u.port().unwrap_or(80),
        authorization,
        source,
    })
}

/// `%XX` escapes decoded (credentials in a URL).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A ureq agent configuration builder with the proxy rule applied for `url`
/// (ureq's own reading of the environment is replaced: it takes ALL_PROXY and
/// ignores NO_PROXY).
pub fn ureq_proxy(url: &str) -> Option<ureq::Proxy> {
    let p = ProxyEnv::from_env().for_url(url).ok().flatten()?;
    ureq::Proxy::new(&p.url).ok()
}

/// The same for a reqwest client builder: no proxy from reqwest's own reading of
/// the environment, only the rule's.
pub fn reqwest_builder(url: &str) -> reqwest::ClientBuilder {
    let b = reqwest::Client::builder().no_proxy();
    match ProxyEnv::from_env()
        .for_url(url)
        .ok()
        .flatten()
        .and_then(|p| reqwest::Proxy::all(&p.url).ok())
    {
        Some(p) => b.proxy(p),
        None => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_is_urllibs() {
        let env = ProxyEnv::new(
            Some("http://u:p%40ss@proxy:3128"),
            Some("proxy2:8080"),
            ".internal, Model.local:8000,10.0.0.1",
        );
        let p = env
            .for_url("http://10.0.0.2:8000/v1")
            .unwrap()
            .expect("proxied");
        assert_eq!((p.host.as_str(), p.port), ("proxy", 3128));
        assert_eq!(
            p.authorization.as_deref(),
            Some("Basic dTpwQHNz") // u:p@ss
        );
        assert!(!p.shown().contains("p%40ss"), "{}", p.shown());
        let s = env.for_url("https://api.example.com/v1").unwrap().unwrap();
        assert_eq!((s.host.as_str(), s.port), ("proxy2", 8080));
        // no_proxy: a domain and its subdomains, host:port, an exact IP.
        for direct in [
            "http://a.internal/v1",
            "http://internal/v1",
            "http://model.local:8000/v1",
            "http://10.0.0.1:9/v1",
        ] {
            assert_eq!(env.for_url(direct).unwrap(), None, "{direct}");
        }
        assert!(env.for_url("http://model.local:9000/v1").unwrap().is_some());
        // Loopback is proxied unless no_proxy names it (aiohttp does the same).
        assert!(env.for_url("http://127.0.0.1:8000/v1").unwrap().is_some());
        let all = ProxyEnv::new(Some("http://proxy:1"), None, "*");
        assert_eq!(all.for_url("http://x/v1").unwrap(), None);
        assert_eq!(all.for_url("https://x/v1").unwrap(), None);
        let socks = ProxyEnv::new(Some("socks5://proxy:1080"), None, "");
        assert!(socks
            .for_url("http://x/")
            .unwrap_err()
            .contains("http_proxy"));
    }

    #[test]
    fn percent_decoding_of_credentials() {
        assert_eq!(percent_decode("p%40ss%3A1"), "p@ss:1");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
