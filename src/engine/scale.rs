//! A shard's setup: its clock offset against a reference, `shard.json`, and the
//! start barrier that lines the shards' load up on one absolute time.

use anyhow::{bail, Context, Result};
use serde_json::json;
use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

use super::ctx::Ctx;
use crate::config::{ClockRef, RunConfig};
use crate::telemetry::log;

/// This machine's clock against a reference: `offset` = reference − local, in
/// seconds, known to ± `uncertainty`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClockOffset {
    pub offset: f64,
    pub uncertainty: f64,
    /// `http-date` or `sntp`.
    pub method: &'static str,
    /// The reference, credentials masked.
    pub reference: String,
}

fn now_unix() -> f64 {
    crate::trackers::now_unix()
}

/// Measures the offset (blocking; at most a few seconds).
pub fn measure(r: &ClockRef) -> Result<Option<ClockOffset>> {
    match r {
        ClockRef::Off => Ok(None),
        ClockRef::Http(url) => http_date_offset(url).map(Some),
        ClockRef::Ntp(addr) => sntp_offset(addr).map(Some),
    }
}

/// An HTTP server's `Date` header has one-second resolution, so one reply says
/// little; the moment the header's second changes is sharp. HEAD requests 10 ms
/// apart until it changes: the server's clock reached the new second after it
/// stamped the previous reply (sent no earlier than that request) and no later
/// than it stamped this one (received no later than this reply).
fn http_date_offset(url: &str) -> Result<ClockOffset> {
    let shown = crate::redact::redact_url(url);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(crate::proxy::ureq_proxy(url))
        .timeout_global(Some(Duration::from_secs(3)))
        .http_status_as_error(false)
        .build()
        .into();
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut prev: Option<(f64, i64)> = None;
    while Instant::now() < deadline {
        let t0 = now_unix();
        let resp = agent
            .head(url)
            .call()
            .with_context(|| format!("--clock-ref: cannot reach {shown}"))?;
        let t1 = now_unix();
        let Some(date) = resp
            .headers()
            .get("date")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
            .map(|d| d.timestamp())
        else {
            bail!("--clock-ref: {shown} sends no Date header; give another reference (an http(s) URL or ntp://HOST) or `off`");
        };
        if let Some((p0, pdate)) = prev {
            if date > pdate {
                let (lo, hi) = (date as f64 - t1, date as f64 - p0);
                return Ok(ClockOffset {
                    offset: (lo + hi) / 2.0,
                    uncertainty: (hi - lo) / 2.0,
                    method: "http-date",
                    reference: shown,
                });
            }
        }
        prev = Some((t0, date));
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("--clock-ref: {shown}'s Date header did not advance within 4 s")
}

/// Seconds between the NTP era (1900) and the unix epoch.
const NTP_UNIX: f64 = 2_208_988_800.0;

fn ntp_time(b: &[u8]) -> f64 {
    let secs = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f64;
    let frac = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as f64 / 4_294_967_296.0;
    secs + frac - NTP_UNIX
}

/// SNTP (RFC 4330): four exchanges, the one with the shortest round trip kept;
/// offset = ((T1 − t0) + (T2 − t3)) / 2, uncertainty half the network delay.
fn sntp_offset(addr: &str) -> Result<ClockOffset> {
    let sock = UdpSocket::bind(if addr.starts_with('[') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    })
    .context("--clock-ref: cannot open a UDP socket")?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    sock.connect(addr)
        .with_context(|| format!("--clock-ref: cannot resolve ntp://{addr}"))?;
    let mut best: Option<(f64, f64)> = None;
    for _ in 0..4 {
        let mut req = [0u8; 48];
        req[0] = 0x23; // LI 0, version 4, mode 3 (client)
        let t0 = now_unix();
        sock.send(&req)
            .with_context(|| format!("--clock-ref: cannot send to ntp://{addr}"))?;
        let mut buf = [0u8; 48];
        let n = sock
            .recv(&mut buf)
            .with_context(|| format!("--clock-ref: no SNTP answer from ntp://{addr}"))?;
        let t3 = now_unix();
        if n < 48 || buf[0] & 0x07 != 4 {
            bail!("--clock-ref: ntp://{addr} did not answer as an SNTP server");
        }
        let (t1, t2) = (ntp_time(&buf[32..40]), ntp_time(&buf[40..48]));
        let offset = ((t1 - t0) + (t2 - t3)) / 2.0;
        let delay = ((t3 - t0) - (t2 - t1)).max(0.0);
        if best.is_none_or(|(_, d)| delay < d) {
            best = Some((offset, delay));
        }
    }
    let (offset, delay) = best.unwrap_or((0.0, 0.0));
    Ok(ClockOffset {
        offset,
        uncertainty: delay / 2.0,
        method: "sntp",
        reference: format!("ntp://{addr}"),
    })
}

/// Measures the offset off the async threads and logs it; a failure is a warning
/// (the offset is information for the merge, not needed to run).
pub(crate) async fn clock_offset(cfg: &RunConfig) -> Option<ClockOffset> {
    let r = cfg.scale.clock_ref.clone();
    if r == ClockRef::Off {
        return None;
    }
    let d = tracing::dispatcher::get_default(|d| d.clone());
    let got =
        tokio::task::spawn_blocking(move || tracing::dispatcher::with_default(&d, || measure(&r)))
            .await;
    match got {
        Ok(Ok(Some(o))) => {
            log::info(format!(
                "Clock offset against {} ({}): {:+.1} ms ± {:.1} ms",
                o.reference,
                o.method,
                o.offset * 1e3,
                o.uncertainty * 1e3
            ));
            Some(o)
        }
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            log::warn(format!("{e:#}"));
            None
        }
        Err(e) => {
            log::warn(format!("clock offset: {e}"));
            None
        }
    }
}

/// Writes `shard.json` at the invocation root: who this shard is, the global plan
/// it took its share of, and its clock offset. `perfscope merge` checks these.
pub(crate) fn write_shard_file(
    cfg: &RunConfig,
    root: &Path,
    offset: Option<&ClockOffset>,
) -> Result<()> {
    let Some(s) = &cfg.scale.shard else {
        return Ok(());
    };
    let points: Vec<_> = cfg
        .points
        .iter()
        .map(|p| {
            let mine = s.point(p);
            json!({
                "name": p.dir_name(cfg.open_loop),
                "parallel": p.parallel, "number": p.number, "rate": p.rate,
                "shard_parallel": mine.parallel, "shard_number": mine.number,
                "shard_rate": mine.rate,
            })
        })
        .collect();
    let v = json!({
        "run_id": s.run_id,
        "shard_index": s.shard.index,
        "shard_count": s.shard.count,
        "host": s.host,
        "start_at": cfg.scale.start_at,
        "clock_offset_s": offset.map(|o| o.offset),
        "clock_offset_uncertainty_s": offset.map(|o| o.uncertainty),
        "clock_offset_method": offset.map(|o| o.method),
        "clock_reference": offset.map(|o| o.reference.clone()),
        "version": env!("CARGO_PKG_VERSION"),
        "open_loop": cfg.open_loop,
        "points": points,
        "args": serde_json::Value::Object(cfg.args_json.clone()),
    });
    let path = root.join("shard.json");
    std::fs::write(&path, serde_json::to_string_pretty(&v)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
}

/// How long before the barrier `barrier` returns: time for the first server scrape,
/// which must not count in the run's window nor delay its first request.
pub(crate) const BARRIER_LEAD: f64 = 0.5;

/// Waits for `--start-at` (until BARRIER_LEAD before it; `until` waits the rest);
/// returns the clock time the load is anchored at (the barrier itself, so that paced
/// schedules line up across shards), or None without a barrier. False when a signal
/// stopped the wait.
pub(crate) async fn barrier(ctx: &Ctx) -> (Option<f64>, bool) {
    let Some(at) = ctx.cfg.scale.start_at else {
        return (None, true);
    };
    let t = at - ctx.clock.unix(0.0);
    let now = ctx.clock.now();
    if t < now {
        let late = now - t;
        if late > 0.5 {
            log::warn(format!(
                "--start-at {at:.3} passed {late:.2} s ago (setup took longer); starting now, behind the other shards"
            ));
            return (Some(now), true);
        }
        return (Some(t), true);
    }
    log::info(format!(
        "Waiting {:.2} s for the start barrier (--start-at {at:.3})",
        t - now
    ));
    match until(ctx, t - BARRIER_LEAD).await {
        true => (Some(t), true),
        false => (None, false),
    }
}

/// Sleeps until clock time `t`; false when a signal stopped the wait.
pub(crate) async fn until(ctx: &Ctx, t: f64) -> bool {
    if t <= ctx.clock.now() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep_until(ctx.clock.instant(t).into()) => true,
        _ = ctx.stop.dispatch.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sntp_offset_against_a_fake_server() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap().to_string();
        // A server whose clock runs 2.5 s ahead.
        std::thread::spawn(move || {
            for _ in 0..4 {
                let mut buf = [0u8; 48];
                let Ok((_, from)) = server.recv_from(&mut buf) else {
                    return;
                };
                let t = now_unix() + 2.5 + NTP_UNIX;
                let mut out = [0u8; 48];
                out[0] = 0x24;
                let secs = (t.floor() as u32).to_be_bytes();
                let frac = (((t - t.floor()) * 4_294_967_296.0) as u32).to_be_bytes();
                for base in [32, 40] {
                    out[base..base + 4].copy_from_slice(&secs);
                    out[base + 4..base + 8].copy_from_slice(&frac);
                }
                let _ = server.send_to(&out, from);
            }
        });
        let o = sntp_offset(&addr).unwrap();
        assert!((o.offset - 2.5).abs() < 0.01, "{o:?}");
        assert!(o.uncertainty < 0.01);
    }
}
