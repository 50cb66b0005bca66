//! A run's load shape: how many requests may be in flight and when each is released.
//!
//! - closed loop: at most `parallel` requests hold a slot (evalscope's semaphore
//!   around the HTTP call), with no schedule: the next is released as soon as the
//!   dispatcher may create it;
//! - `--rate`: releases follow an absolute Poisson schedule (capped by `parallel`
//!   in closed loop); each request keeps its intended start;
//! - `--open-loop`: released on the schedule with no cap;
//! - `--duration`: nothing is released at or after the deadline.

use super::point::SweepPoint;
use super::poisson::poisson_schedule_until;

/// The load one run puts on the server.
#[derive(Clone, Debug)]
pub struct LoadShape {
    /// Requests to release.
    pub count: u64,
    /// Requests that may hold a slot at once (None: open loop, no cap).
    pub concurrency: Option<usize>,
    /// Arrival offsets (seconds from the anchor) when paced by `--rate`.
    schedule: Option<Vec<f64>>,
    /// Seconds after the anchor at which releasing stops (`--duration`).
    duration: Option<f64>,
}

/// What the dispatcher does next.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Release {
    /// Release request `seq`, at `intended` (clock seconds) when paced.
    Request { seq: u64, intended: Option<f64> },
    /// The next arrival falls at or after the deadline: wait until it, then stop.
    StopAt(f64),
    /// The deadline has passed.
    DurationReached,
    /// Every request was released.
    Done,
}

impl LoadShape {
    /// The shape of `count` requests at `point`; `seed` seeds the Poisson schedule.
    pub fn new(point: &SweepPoint, count: u64, seed: u64, duration: Option<f64>) -> LoadShape {
        LoadShape {
            count,
            concurrency: (point.parallel > 0).then_some(point.parallel as usize),
            // With --duration only the arrivals before it are kept: a release past
            // them is past the deadline.
            schedule: (point.rate > 0.0)
                .then(|| poisson_schedule_until(count as usize, point.rate, seed, duration)),
            duration,
        }
    }

    /// A replayed trace: `offsets` (seconds from the anchor, ascending) are the
    /// absolute schedule, capped by `parallel` in closed loop.
    pub fn from_offsets(point: &SweepPoint, offsets: Vec<f64>, duration: Option<f64>) -> LoadShape {
        LoadShape {
            count: offsets.len() as u64,
            concurrency: (point.parallel > 0).then_some(point.parallel as usize),
            schedule: Some(offsets),
            duration,
        }
    }

    /// The next release after `seq` releases, for a run anchored at `anchor`, at
    /// clock time `now`.
    pub fn next(&self, seq: u64, anchor: f64, now: f64) -> Release {
        if seq >= self.count {
            return Release::Done;
        }
        let deadline = self.duration.map(|d| anchor + d);
        if deadline.is_some_and(|d| now >= d) {
            return Release::DurationReached;
        }
        let intended = match &self.schedule {
            None => None,
            Some(s) => match s.get(seq as usize) {
                Some(o) => Some(anchor + o),
                // Only arrivals before the deadline are laid out.
                None => return deadline.map_or(Release::Done, Release::StopAt),
            },
        };
        match (intended, deadline) {
            (Some(t), Some(d)) if t >= d => Release::StopAt(d),
            _ => Release::Request { seq, intended },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(parallel: i64, rate: f64) -> SweepPoint {
        SweepPoint {
            parallel,
            number: 10,
            rate,
        }
    }

    #[test]
    fn closed_loop_releases_every_request_unpaced() {
        let s = LoadShape::new(&point(4, -1.0), 3, 0, None);
        assert_eq!(s.concurrency, Some(4));
        for i in 0..3 {
            assert_eq!(
                s.next(i, 5.0, 100.0),
                Release::Request {
                    seq: i,
                    intended: None
                }
            );
        }
        assert_eq!(s.next(3, 5.0, 100.0), Release::Done);
    }

    #[test]
    fn trace_offsets_are_the_schedule() {
        let s = LoadShape::from_offsets(&point(-1, -1.0), vec![0.0, 0.25, 1.0], Some(0.5));
        assert_eq!(s.count, 3);
        assert_eq!(
            s.next(1, 2.0, 2.0),
            Release::Request {
                seq: 1,
                intended: Some(2.25)
            }
        );
        assert_eq!(s.next(2, 2.0, 2.3), Release::StopAt(2.5));
    }

    #[test]
    fn rate_and_duration_bound_the_releases() {
        let s = LoadShape::new(&point(-1, 2.0), 8, 1, Some(2.0));
        assert_eq!(s.concurrency, None);
        let offsets = poisson_schedule_until(8, 2.0, 1, None);
        let Release::Request { intended, .. } = s.next(0, 10.0, 10.0) else {
            panic!("first request")
        };
        assert_eq!(intended, Some(10.0 + offsets[0]));
        // The last arrival is at 4 s, after the 2 s deadline: stop at the deadline.
        assert_eq!(s.next(7, 10.0, 10.5), Release::StopAt(12.0));
        assert_eq!(s.next(1, 10.0, 12.0), Release::DurationReached);
    }

    #[test]
    fn a_deadline_lays_out_only_the_arrivals_before_it() {
        // A soak: a hundred million requests asked for, ten seconds at 20 req/s.
        let s = LoadShape::new(&point(64, 20.0), 100_000_000, 3, Some(10.0));
        let laid = s.schedule.as_ref().unwrap().len();
        assert!((150..250).contains(&laid), "{laid}");
        let last = s.next(laid as u64 - 1, 0.0, 0.0);
        assert!(matches!(last, Release::Request { intended: Some(t), .. } if t < 10.0));
        assert_eq!(s.next(laid as u64, 0.0, 0.0), Release::StopAt(10.0));
    }
}
