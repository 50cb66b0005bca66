//! The replay schedule on a paused clock: a fake sender takes a fixed service
//! time per request and records when each was released.

use super::plan::{build, Plan};
use super::replay::{run, Credit, Options, Outcome, SendFuture, Sender, Stats};
use super::trace::read;
use super::tstar::Start;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// (conversation, turn, release time, play, warmup).
type Log = Vec<(String, usize, f64, u64, bool)>;

struct Fake {
    start: Instant,
    /// Service seconds for a request of this conversation id prefix.
    service: Box<dyn Fn(&str) -> f64 + Send + Sync>,
    fail: Option<(String, usize, Outcome)>,
    plan: Arc<Plan>,
    log: Mutex<Log>,
}

impl Sender for Fake {
    fn send(&self, c: Credit) -> SendFuture {
        let id = self.plan.conversations[c.conversation].id.clone();
        let at = (c.issued - self.start).as_secs_f64();
        if let Ok(mut l) = self.log.lock() {
            l.push((id.clone(), c.turn, at, c.play, c.warmup));
        }
        let secs = (self.service)(&id);
        let out = match &self.fail {
            Some((f, k, o)) if *f == id && *k == c.turn => *o,
            _ => Outcome::Ok,
        };
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            out
        })
    }
}

fn req(t: f64, hash: &[i64], api: f64) -> serde_json::Value {
    json!({"t": t, "type": "n", "model": "m", "in": 200, "out": 10, "hash_ids": hash, "api_time": api})
}

fn sub(t: f64, id: &str, ms: i64, reqs: Vec<serde_json::Value>) -> serde_json::Value {
    json!({"t": t, "type": "subagent", "agent_id": id, "subagent_type": "Explore",
           "status": "completed", "duration_ms": ms, "models": ["m"], "requests": reqs})
}

/// Root turns at 0, 4, 9 (api 1, 2, 1): delays 3 and 3. A (spawned after turn 0,
/// first request 0.5 s after its marker, ends at 9) gates turn 2; B runs in the
/// background.
fn trace(id: &str) -> serde_json::Value {
    json!({"id": id, "models": ["m"], "block_size": 64, "hash_id_scope": "local",
    "requests": [
        req(0.0, &[1], 1.0),
        sub(2.0, "A", 7000, vec![req(2.5, &[1, 2], 1.0), req(5.0, &[1, 2, 3], 1.0)]),
        req(4.0, &[1, 4], 2.0),
        sub(6.0, "B", 24000, vec![req(6.5, &[9], 0.5)]),
        req(9.0, &[1, 4, 5], 1.0),
    ]})
}

fn plan_of(traces: &[serde_json::Value]) -> Arc<Plan> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("traces.jsonl");
    std::fs::write(
        &p,
        traces.iter().map(|t| format!("{t}\n")).collect::<String>(),
    )
    .unwrap();
    Arc::new(build(&read(&p).unwrap(), false))
}

async fn play(
    plan: Arc<Plan>,
    lanes: usize,
    deadline: Option<f64>,
    service: impl Fn(&str) -> f64 + Send + Sync + 'static,
    fail: Option<(&str, usize, Outcome)>,
) -> (Log, Stats) {
    play_from(plan, lanes, deadline, service, fail, (0.0, 0.0)).await
}

async fn play_from(
    plan: Arc<Plan>,
    lanes: usize,
    deadline: Option<f64>,
    service: impl Fn(&str) -> f64 + Send + Sync + 'static,
    fail: Option<(&str, usize, Outcome)>,
    ratios: (f64, f64),
) -> (Log, Stats) {
    let fake = Arc::new(Fake {
        start: Instant::now(),
        service: Box::new(service),
        fail: fail.map(|(c, k, o)| (c.to_string(), k, o)),
        plan: plan.clone(),
        log: Mutex::new(Vec::new()),
    });
    let opts = Options {
        lanes,
        deadline: deadline.map(Duration::from_secs_f64),
        idle_cap: Duration::from_secs(10),
        run_id: "r".into(),
        stopped: Arc::new(|| false),
        precise: false,
        start: Start {
            min_ratio: ratios.0,
            max_ratio: ratios.1,
            seed: 7,
        },
        live: None,
    };
    let stats = run(plan, opts, fake.clone()).await.unwrap();
    let mut log = fake.log.lock().unwrap().clone();
    log.sort_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(&b.0)));
    (log, stats)
}

fn at(log: &[(String, usize, f64, u64, bool)]) -> Vec<(&str, usize, f64)> {
    log.iter()
        .map(|(c, k, t, _, _)| (c.as_str(), *k, (t * 1000.0).round() / 1000.0))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn delays_spawns_and_joins_follow_the_trace() {
    let quick_a = |c: &str| if c.ends_with("sa:A") { 0.5 } else { 1.0 };
    let (log, stats) = play(plan_of(&[trace("t1")]), 1, None, quick_a, None).await;
    assert_eq!(
        at(&log),
        [
            ("t1", 0, 0.0),
            ("t1::sa:A", 0, 1.5), // spawn at 1.0 + offset 0.5
            ("t1::sa:A", 1, 3.5), // 2.0 + delay 1.5
            ("t1", 1, 4.0),       // 1.0 + delay 3
            ("t1::sa:B", 0, 5.5), // 5.0 + offset 0.5
            ("t1", 2, 8.0),       // A was done when turn 1 returned: delay 3
        ]
    );
    assert_eq!(
        (
            stats.plays_started,
            stats.plays_completed,
            stats.children_spawned,
            stats.children_completed,
            stats.children_delayed,
            stats.parents_suspended,
        ),
        (1, 1, 2, 2, 2, 0)
    );
}

/// A slow subagent holds the join-gated turn until it finishes; the background
/// one never holds anything but the tree's drain.
#[tokio::test(start_paused = true)]
async fn a_join_waits_for_its_children() {
    let slow = |c: &str| if c.ends_with("sa:A") { 6.0 } else { 1.0 };
    let (log, stats) = play(plan_of(&[trace("t1")]), 1, None, slow, None).await;
    // A: 1.5 → 7.5, then 1.5 idle, 9.0 → 15.0. Turn 1 returns at 5.0 with A still
    // running: the parent suspends and turn 2 goes the moment A is done, without
    // its 3 s delay (AIPerf's released join).
    assert_eq!(at(&log).last(), Some(&("t1", 2, 15.0)));
    assert_eq!((stats.parents_suspended, stats.parents_resumed), (1, 1));
}

/// One lane: the second trace starts when the first tree (background child
/// included) has drained. Two lanes: both at once.
#[tokio::test(start_paused = true)]
async fn lanes_count_trees_and_recycle_in_order() {
    let long_b = |c: &str| if c.ends_with("sa:B") { 20.0 } else { 1.0 };
    let plan = plan_of(&[trace("t1"), trace("t2")]);
    let (log, _) = play(plan.clone(), 1, None, long_b, None).await;
    let t2 = log.iter().find(|r| r.0 == "t2").unwrap();
    // t1's B runs 5.5 → 25.5, after the root's last turn (8.0 → 9.0).
    assert_eq!(t2.2, 25.5);
    let (log, _) = play(plan, 2, None, long_b, None).await;
    assert_eq!(log.iter().filter(|r| r.2 == 0.0).count(), 2);
    // More requests in flight than lanes: subagents take no lane.
    assert!(log.iter().any(|r| r.0 == "t1::sa:A" && r.2 == 1.5));
}

/// With a deadline the lane recycles the traces (plays 0, 1, …) and stops
/// releasing at the deadline.
#[tokio::test(start_paused = true)]
async fn plays_recycle_until_the_deadline() {
    let (log, stats) = play(plan_of(&[trace("t1")]), 1, Some(30.0), |_| 1.0, None).await;
    assert!(log.iter().all(|r| r.2 < 30.0));
    let plays: std::collections::BTreeSet<u64> = log.iter().map(|r| r.3).collect();
    assert_eq!(plays.into_iter().collect::<Vec<_>>(), [0, 1, 2, 3]);
    // Each play takes 9 s (root ends at 9.0; B ends 6.5): plays at 0, 9, 18, 27.
    assert_eq!(stats.plays_started, 4);
    assert!(log.iter().any(|r| r.0 == "t1" && r.1 == 0 && r.2 == 27.0));
}

/// A failed request does not end its conversation (AIPerf sends the next turn);
/// a child whose final turn failed is an errored child and still releases the join.
#[tokio::test(start_paused = true)]
async fn a_failed_child_releases_the_join() {
    let failed = Some(("t1::sa:A", 0, Outcome::Failed));
    let (log, stats) = play(plan_of(&[trace("t1")]), 1, None, |_| 0.5, failed).await;
    assert!(log.iter().any(|r| r.0 == "t1::sa:A" && r.1 == 1));
    assert_eq!((stats.children_completed, stats.children_errored), (2, 0));
    let failed = Some(("t1::sa:A", 1, Outcome::Failed));
    let (log, stats) = play(plan_of(&[trace("t1")]), 1, None, |_| 0.5, failed).await;
    assert_eq!(log.iter().filter(|r| r.0 == "t1").count(), 3);
    assert_eq!((stats.children_completed, stats.children_errored), (1, 1));
}

/// A context overflow before the final turn ends that stream (AIPerf's
/// short-circuit): the child is truncated and its join released.
#[tokio::test(start_paused = true)]
async fn a_context_overflow_ends_the_stream() {
    let over = Some(("t1::sa:A", 0, Outcome::Overflow));
    let (log, stats) = play(plan_of(&[trace("t1")]), 1, None, |_| 0.5, over).await;
    assert!(!log.iter().any(|r| r.0 == "t1::sa:A" && r.1 == 1));
    assert_eq!(log.iter().filter(|r| r.0 == "t1").count(), 3);
    assert_eq!((stats.children_truncated, stats.children_completed), (1, 1));
    let over = Some(("t1", 0, Outcome::Overflow));
    let (log, stats) = play(plan_of(&[trace("t1")]), 1, None, |_| 0.5, over).await;
    assert_eq!(at(&log), [("t1", 0, 0.0)]);
    assert_eq!((stats.plays_started, stats.plays_completed), (1, 0));
}

/// t* at half the tree's span (4.5 s): the root has sent turns 0 and 1 and waits
/// at turn 2 for A, which has sent its turn 0; B was spawned by turn 1 and starts
/// 2 s after t*. The warmup re-sends root turn 1 (0.5 s before t*) and A turn 0
/// (2 s before), spread so both land on t* together; the replay then resumes each
/// stream at its offset from t*.
#[tokio::test(start_paused = true)]
async fn the_first_tree_starts_at_t_star_after_the_warmup() {
    let (log, stats) = play_from(plan_of(&[trace("t1")]), 1, None, |_| 1.0, None, (0.5, 0.5)).await;
    let got: Vec<_> = log
        .iter()
        .map(|(c, k, t, _, w)| (c.as_str(), *k, *t, *w))
        .collect();
    assert_eq!(
        got,
        [
            ("t1::sa:A", 0, 0.0, true),
            ("t1", 1, 1.5, true),
            // Warmup done at 2.5 = t*.
            ("t1::sa:A", 1, 3.0, false), // 5.0 − 4.5
            ("t1", 2, 4.0, false),       // when A is done
            ("t1::sa:B", 0, 4.5, false), // 6.5 − 4.5
        ]
    );
    assert_eq!(stats.warmup_requests, 2);
    assert_eq!(stats.t_star, [(0, 4500.0)]);
    assert_eq!((stats.parents_suspended, stats.parents_resumed), (1, 1));
}

/// Nothing in flight for 10 s: a longer delay ends at the cap.
#[tokio::test(start_paused = true)]
async fn the_idle_cap_pulls_long_delays_forward() {
    let t = json!({"id": "gap", "models": ["m"], "block_size": 64, "hash_id_scope": "local",
                   "requests": [req(0.0, &[1], 1.0), req(100.0, &[1, 2], 1.0)]});
    let (log, _) = play(plan_of(&[t]), 1, None, |_| 1.0, None).await;
    // Done at 1.0, delay 99 s, idle since 1.0: released at 11.0.
    assert_eq!(at(&log), [("gap", 0, 0.0), ("gap", 1, 11.0)]);
}
