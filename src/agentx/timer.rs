//! Sleeps that end within tens of microseconds of their deadline without burning
//! CPU. Tokio's timer rounds every deadline up to its next millisecond tick, so a
//! replay released on it lands up to 1 ms late. Here the task sleeps on tokio's
//! timer until 2 ms before the deadline. One timer thread then waits out the rest
//! on a condition variable (a futex with a timeout) and wakes the task. That costs
//! one thread wakeup per release, where spinning to the deadline would cost the
//! whole last stretch in CPU.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How long before the deadline the timer thread takes over.
const HANDOVER: Duration = Duration::from_millis(2);

struct Entry {
    at: Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    /// Reversed: the heap's top is the earliest deadline.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Entry>,
    seq: u64,
}

struct Timer {
    queue: Mutex<Queue>,
    changed: Condvar,
}

fn timer() -> Option<&'static Timer> {
    static TIMER: OnceLock<Option<&'static Timer>> = OnceLock::new();
    *TIMER.get_or_init(|| {
        let t: &'static Timer = Box::leak(Box::new(Timer {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("perfscope-timer".into())
            .spawn(move || run(t))
            .ok()
            .map(|_| t)
    })
}

fn run(t: &Timer) {
    let Ok(mut q) = t.queue.lock() else { return };
    loop {
        let now = Instant::now();
        match q.heap.peek().map(|e| e.at) {
            None => match t.changed.wait(q) {
                Ok(g) => q = g,
                Err(_) => return,
            },
            Some(at) if at <= now => {
                if let Some(e) = q.heap.pop() {
                    // The task may have stopped waiting (cancelled): nothing to do.
                    let _ = e.wake.send(());
                }
            }
            Some(at) => match t.changed.wait_timeout(q, at - now) {
                Ok((g, _)) => q = g,
                Err(_) => return,
            },
        }
    }
}

/// Sleeps until `at` (cancel-safe). Without the timer thread (it could not be
/// started), tokio's timer.
pub async fn sleep_until(at: tokio::time::Instant) {
    let now = tokio::time::Instant::now();
    if at <= now {
        return;
    }
    if at - now > HANDOVER {
        tokio::time::sleep_until(at - HANDOVER).await;
    }
    let Some(t) = timer() else {
        tokio::time::sleep_until(at).await;
        return;
    };
    let (wake, woken) = oneshot::channel();
    let queued = match t.queue.lock() {
        Ok(mut q) => {
            q.seq += 1;
            let seq = q.seq;
            q.heap.push(Entry {
                at: at.into_std(),
                seq,
                wake,
            });
            true
        }
        Err(_) => false,
    };
    if !queued {
        tokio::time::sleep_until(at).await;
        return;
    }
    t.changed.notify_one();
    let _ = woken.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deadlines land within a fraction of a millisecond, in order.
    #[tokio::test]
    async fn wakes_close_to_the_deadline() {
        let mut late = Vec::new();
        for ms in [1u64, 3, 7, 12] {
            let at = tokio::time::Instant::now() + Duration::from_millis(ms);
            sleep_until(at).await;
            late.push(tokio::time::Instant::now() - at);
        }
        late.sort();
        // Generous for a loaded CI machine; typically tens of microseconds.
        assert!(late[1] < Duration::from_millis(1), "{late:?}");
    }
}
