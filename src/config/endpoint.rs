//! The endpoint the load goes to: parsed and checked once, while the configuration
//! is resolved, then only read. `--api sim` swaps in the simulator's address once it
//! listens (`RunConfig::with_target`), so every output names the one used.

use anyhow::{bail, Context, Result};

use crate::redact::redact_url;

#[derive(Clone, Debug)]
pub struct Endpoint {
    url: reqwest::Url,
    /// The URL with its credentials (userinfo, secret query values) masked.
    shown: String,
}

impl Endpoint {
    /// `url` from `--url` (completed for the API): an absolute http(s) URL.
    pub fn parse(url: &str) -> Result<Endpoint> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!(
                "--url: `{}` must start with http:// or https://",
                redact_url(url)
            );
        }
        let parsed = reqwest::Url::parse(url).with_context(|| {
            format!(
                "--url: `{}` is not a valid URL; give e.g. http://127.0.0.1:8000/v1/chat/completions",
                redact_url(url)
            )
        })?;
        if parsed.host_str().is_none_or(str::is_empty) {
            bail!("--url: `{}` names no host", redact_url(url));
        }
        Ok(Endpoint {
            shown: redact_url(url),
            url: parsed,
        })
    }

    /// The whole URL, credentials included: only for the requests themselves.
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// The whole URL as text, credentials included: only for the requests.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// The URL to show: logs, labels, span attributes and every output file.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The path and query (`/v1/chat/completions`): what a server perfscope starts
    /// is asked for.
    pub fn path_and_query(&self) -> String {
        match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_string(),
        }
    }

    /// The port, the scheme's default when the URL has none.
    pub fn port(&self) -> Option<u16> {
        self.url.port_or_known_default()
    }
}

impl std::fmt::Display for Endpoint {
    /// Shown, never with its credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_once_and_shown_without_credentials() {
        let e = Endpoint::parse("http://u:pw@h:8000/v1/chat/completions?key=s3cret&x=1").unwrap();
        assert_eq!(e.port(), Some(8000));
        assert_eq!(e.path_and_query(), "/v1/chat/completions?key=s3cret&x=1");
        assert!(
            !e.shown().contains("pw") && !e.shown().contains("s3cret"),
            "{}",
            e.shown()
        );
        assert!(!format!("{e}").contains("pw"));
        assert_eq!(Endpoint::parse("https://h/v1/x").unwrap().port(), Some(443));
        for bad in ["ftp://h/x", "http://", "http://h:99999/x", "h:8000/v1"] {
            let err = Endpoint::parse(bad).unwrap_err();
            assert!(format!("{err:#}").starts_with("--url:"), "{bad}: {err:#}");
        }
    }
}
