//! Retry waits shared by the exporters that talk to other services (the OTLP
//! exporter, the trackers): exponential backoff that honours a server's
//! `Retry-After`.

use std::time::Duration;

/// The waits between attempts: doubling from a first wait, each capped; a server's
/// `Retry-After` lengthens the wait it answers (never shortens it), and the
/// doubling goes on from where it was.
#[derive(Clone, Debug)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff { next: first, cap }
    }

    /// The wait before the next attempt, given the `Retry-After` of the last reply.
    pub fn wait(&mut self, retry_after: Option<Duration>) -> Duration {
        let backoff = self.next;
        self.next = (self.next * 2).min(self.cap);
        retry_after.unwrap_or_default().max(backoff).min(self.cap)
    }
}

/// A `Retry-After` header value in delta-seconds (the form rate limiters send); an
/// HTTP date or anything else is ignored and the backoff applies.
pub fn retry_after(value: Option<&str>) -> Option<Duration> {
    value?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_capped_and_honours_retry_after() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(200), ms(1000));
        assert_eq!(b.wait(None), ms(200));
        assert_eq!(b.wait(None), ms(400));
        // A longer Retry-After wins for its wait; the doubling goes on underneath.
        assert_eq!(b.wait(Some(ms(900))), ms(900));
        assert_eq!(b.wait(None), ms(1000));
        // A shorter one does not cut the backoff; a huge one is capped.
        assert_eq!(b.wait(Some(ms(1))), ms(1000));
        assert_eq!(b.wait(Some(Duration::from_secs(3600))), ms(1000));
        assert_eq!(retry_after(Some(" 7 ")), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(None), None);
    }
}
