//! URLs as they may be shown: credentials masked. A leaf module (it imports nothing
//! of the crate), so the client, the recorders and the trackers can use it.

pub const MASK: &str = "**********";

/// Splits a URL before its query string or fragment: (`scheme://host/path`,
/// `?query#fragment`). Only the path is examined and rewritten (evalscope 1.14.1).
/// Header names whose values are masked when shown or stored (evalscope's list).
pub const SECRET_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "x-auth-token",
];

/// Whether a header's value is a secret (any case).
pub fn is_secret_header(name: &str) -> bool {
    SECRET_HEADERS.contains(&name.to_ascii_lowercase().as_str())
}

pub fn split_query(url: &str) -> (&str, &str) {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].find(['?', '#']) {
        Some(i) => url.split_at(start + i),
        None => (url, ""),
    }
}

/// A URL as it may be shown or stored: userinfo (`user:password@`) masked, and the
/// value of every query parameter whose name looks like a credential (key, token,
/// sig, secret, password, auth, …) masked; everything else (e.g. `api-version`)
/// kept. Used for logs, error messages, benchmark_args.json, the `run` table,
/// `/metrics` labels, spans and trackers.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let (base, query) = split_query(rest);
    let base = match base.find('/').map_or(base, |i| &base[..i]).rfind('@') {
        Some(at) => format!("{MASK}@{}", &base[at + 1..]),
        None => base.to_string(),
    };
    let (query, fragment) = match query.find('#') {
        Some(i) => query.split_at(i),
        None => (query, ""),
    };
    let query = match query.strip_prefix('?') {
        None => String::new(),
        Some(q) => {
            let parts: Vec<String> = q
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if is_secret_name(k) => format!("{k}={MASK}"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("?{}", parts.join("&"))
        }
    };
    format!("{scheme}{base}{query}{fragment}")
}

/// Query parameter names that carry credentials (`key`, `api_key`, `access_token`,
/// `sig`, `X-Amz-Signature`, `password`, `auth`, …).
fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "key",
        "token",
        "sig",
        "secret",
        "pass",
        "pwd",
        "auth",
        "credential",
        "session",
        "cookie",
        "code",
    ]
    .iter()
    .any(|w| n.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_masked() {
        assert_eq!(
            redact_url("http://user:PW@h:8000/v1/chat/completions?api-version=2024-02-01&key=SECRET&sig=S2#x"),
            "http://**********@h:8000/v1/chat/completions?api-version=2024-02-01&key=**********&sig=**********#x"
        );
        assert_eq!(
            redact_url("https://h/p?access_token=T"),
            "https://h/p?access_token=**********"
        );
        assert_eq!(redact_url("http://h:1/v1"), "http://h:1/v1");
        // An @ in the path is not userinfo.
        assert_eq!(redact_url("http://h/a@b"), "http://h/a@b");
    }
}
