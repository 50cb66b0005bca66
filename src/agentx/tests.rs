use super::plan::{build, theoretical_hit};
use super::trace::read;
use serde_json::json;

fn req(t: f64, input: u64, out: u64, hash: &[i64], api: f64) -> serde_json::Value {
    json!({"t": t, "type": "n", "model": "m", "in": input, "out": out, "hash_ids": hash, "api_time": api})
}

/// A root of three turns; subagent A (spawned after turn 0, ends at 9.0) joins
/// turn 2 (t = 9.0, exactly its end); subagent B (ends at 30) runs in the
/// background; a marker before any parent turn is dropped.
fn set() -> serde_json::Value {
    json!({
        "id": "tr1", "models": ["m"], "block_size": 64, "hash_id_scope": "local",
        "tool_tokens": 64, "system_tokens": 0,
        "requests": [
            {"t": 0.0, "type": "subagent", "agent_id": "early", "subagent_type": "Explore",
             "status": "completed", "models": ["m"], "requests": []},
            req(0.0, 200, 10, &[1, 2, 3], 1.0),
            {"t": 2.0, "type": "subagent", "agent_id": "A", "subagent_type": "Explore",
             "status": "completed", "duration_ms": 7000, "models": ["m"],
             "requests": [req(2.5, 150, 5, &[1, 7], 1.0), req(5.0, 300, 5, &[1, 7, 8], 1.0)]},
            req(4.0, 260, 10, &[1, 2, 3, 4], 2.0),
            {"t": 6.0, "type": "subagent", "agent_id": "B", "subagent_type": "Explore",
             "status": "completed", "duration_ms": 24000, "models": ["m"],
             "requests": [{"t": 0.5, "type": "s", "model": "m", "in": 100, "out": 0,
                           "hash_ids": [9, 10], "api_time": 0.5, "ttft": 0.1}]},
            req(9.0, 400, 0, &[1, 2, 3, 4, 5, 6, 7], 1.0),
        ]
    })
}

fn write(dir: &std::path::Path, traces: &[serde_json::Value]) -> std::path::PathBuf {
    let p = dir.join("traces.jsonl");
    let text: String = traces.iter().map(|t| format!("{t}\n")).collect();
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn traces_become_conversations_branches_and_delays() {
    let dir = tempfile::tempdir().unwrap();
    let traces = read(&write(dir.path(), &[set()])).unwrap();
    let plan = build(&traces, false);
    let ids: Vec<&str> = plan.conversations.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["tr1", "tr1::sa:A", "tr1::sa:B"]);
    assert_eq!(
        plan.dropped_subagents,
        [("tr1".to_string(), "early".to_string())]
    );
    let root = &plan.conversations[0];
    // End-to-start: 4.0 − (0.0 + 1.0) = 3.0; 9.0 − (4.0 + 2.0) = 3.0.
    let delays: Vec<f64> = root.turns.iter().map(|t| t.delay_s).collect();
    assert_eq!(delays, [0.0, 3.0, 3.0]);
    assert_eq!(root.turns[2].max_tokens, 1, "out 0 is sent as max_tokens 1");
    // A spawns after turn 0 and gates turn 2; B spawns after turn 1, background.
    assert_eq!(root.turns[0].spawns, [0]);
    assert_eq!(root.turns[2].joins, [0]);
    assert_eq!(root.turns[1].spawns, [1]);
    assert!(!plan.branches[0].background && plan.branches[1].background);
    // B's inner request was recorded relative to its marker: 6.0 + 0.5.
    let b = &plan.conversations[2];
    assert_eq!(b.turns[0].t, 6.5);
    assert_eq!(plan.branches[1].dispatch_offset_s(b), 0.5);
    assert_eq!(plan.conversations[1].turns[1].delay_s, 1.5);
}

/// The shared per-trace seen-set in time order: root 0 (0.0) [1,2,3] → 0/3;
/// A0 (2.5) [1,7] → 1/2; root 1 (4.0) [1,2,3,4] → 3/4; A1 (5.0) [1,7,8] → 2/3;
/// B0 (6.5) [9,10] → 0/2; root 2 (9.0) [1..7] → 4/7 (5 was never seen).
#[test]
fn theoretical_prefix_cache_blocks_follow_aiperf() {
    let dir = tempfile::tempdir().unwrap();
    let plan = build(&read(&write(dir.path(), &[set()])).unwrap(), false);
    let blocks: Vec<Vec<(u64, u64)>> = plan
        .conversations
        .iter()
        .map(|c| c.turns.iter().map(|t| t.prefix_blocks).collect())
        .collect();
    assert_eq!(
        blocks,
        vec![
            vec![(0, 3), (3, 4), (4, 7)],
            vec![(1, 2), (2, 3)],
            vec![(0, 2)]
        ]
    );
    let all = plan.conversations.iter().flat_map(|c| &c.turns);
    let (pct, hit, total) = theoretical_hit(all).unwrap();
    assert_eq!((hit, total), (10, 21));
    assert_eq!(pct, 100.0 * 10.0 / 21.0);
}

#[test]
fn bad_traces_name_the_trace_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let err = |t: serde_json::Value| format!("{:#}", read(&write(dir.path(), &[t])).unwrap_err());
    let mut t = set();
    t["extra"] = json!(1);
    assert!(err(t).contains("unknown field `extra`"));
    let mut t = set();
    t["requests"][1]["api_time"] = json!(-1.0);
    let e = err(t);
    assert!(
        e.contains("`tr1`") && e.contains("requests[1].api_time"),
        "{e}"
    );
    let mut t = set();
    t["requests"][1]["hash_ids"] = json!([1, 2, 3, 4, 5]);
    let e = err(t);
    assert!(
        e.contains("requests[1].hash_ids") && e.contains("in` = 200"),
        "{e}"
    );
    let mut t = set();
    t["requests"][4]["agent_id"] = json!("A");
    let e = err(t);
    assert!(e.contains("agent_id `A` appears twice"), "{e}");
    let e = format!(
        "{:#}",
        read(&write(dir.path(), &[set(), set()])).unwrap_err()
    );
    assert!(
        e.contains("trace id `tr1` already used") && e.contains("traces.jsonl:1"),
        "{e}"
    );
    let mut t = set();
    t["tool_tokens"] = json!(200);
    let e = err(t);
    assert!(
        e.contains("the root's first request has 3 hash_ids") && e.contains("need 4"),
        "{e}"
    );
    let mut t = set();
    t["requests"][2]["requests"][0]["ttft"] = json!(0.1);
    assert!(
        err(t).contains("unknown field `ttft`"),
        "a normal request has no ttft"
    );
}

/// The bundled set (`scripts/make_weka_trace.py --out examples/agentx --traces 12
/// --seed 7`): every agent one conversation whose requests extend each other.
#[test]
fn the_bundled_set_reads_and_plans() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agentx");
    let traces = read(&p).unwrap();
    assert_eq!(traces.len(), 12);
    let plan = build(&traces, false);
    assert_eq!(plan.roots.len(), 12);
    assert_eq!(plan.conversations.len(), 12 + 17);
    assert!(plan.dropped_subagents.is_empty());
    let requests: usize = plan.conversations.iter().map(|c| c.turns.len()).sum();
    assert_eq!(requests, 118);
    for c in &plan.conversations {
        for w in c.turns.windows(2) {
            let full = (w[0].input / c.block_size) as usize;
            assert_eq!(w[1].hash_ids[..full], w[0].hash_ids[..full], "{}", c.id);
        }
        assert!(
            c.turns.iter().all(|t| t.input + t.max_tokens <= 3300),
            "{}",
            c.id
        );
    }
    let (pct, _, _) = theoretical_hit(plan.conversations.iter().flat_map(|c| &c.turns)).unwrap();
    assert!(pct > 50.0 && pct < 100.0, "{pct}");
}

/// AIPerf 0.12.0's own loader on the bundled set (its `_build_reconstruction_plans`
/// and `_build_shared_metric_values`, saved in tests/fixtures/agentx): the same
/// child conversations, no flat chains, and bit-equal theoretical prefix-cache
/// blocks for every (conversation, turn).
#[test]
fn the_plan_matches_aiperf_on_the_bundled_set() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let aiperf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/agentx/aiperf_0_12_0_plan.json"))
            .unwrap(),
    )
    .unwrap();
    let plan = build(&read(&root.join("examples/agentx")).unwrap(), false);
    assert_eq!(aiperf["flat"], 0);
    let children: Vec<&str> = plan
        .conversations
        .iter()
        .filter(|c| c.depth == 1)
        .map(|c| c.id.as_str())
        .collect();
    let want: Vec<&str> = aiperf["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(children, want);
    let mut ours = serde_json::Map::new();
    for c in &plan.conversations {
        for (k, t) in c.turns.iter().enumerate() {
            ours.insert(
                format!("{}#{k}", c.id),
                json!([t.prefix_blocks.0, t.prefix_blocks.1]),
            );
        }
    }
    assert_eq!(serde_json::Value::Object(ours), aiperf["prefix"]);
}

fn fake_vocab_ids() -> Vec<u32> {
    (0..50).collect()
}

fn fake_decode(ids: &[u32]) -> String {
    ids.iter().map(|i| format!(" w{i}")).collect()
}

/// The synthesized messages of every conversation of the bundled set have
/// AIPerf 0.12.0's `ConversationReconstructor` shape (its own code run on the
/// set, saved in tests/fixtures/agentx): the same roles and token counts per
/// segment at every turn; each turn is exactly `in` tokens and ends with a user
/// message; a hash id is the same tokens in the root and its subagents.
#[test]
fn synthesized_turns_have_aiperf_s_shape() {
    use super::synth::{conversation, Role, TurnInput, Vocab};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let aiperf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/agentx/aiperf_0_12_0_segments.json"))
            .unwrap(),
    )
    .unwrap();
    let traces = read(&root.join("examples/agentx")).unwrap();
    let plan = build(&traces, false);
    let ids = fake_vocab_ids();
    let vocab = Vocab {
        ids: &ids,
        decode: &fake_decode,
    };
    let mut block_text: std::collections::HashMap<(usize, i64), Vec<u32>> = Default::default();
    for c in &plan.conversations {
        let turns: Vec<TurnInput> = c
            .turns
            .iter()
            .map(|t| TurnInput {
                hash_ids: &t.hash_ids,
                input: t.input,
                output: t.output,
            })
            .collect();
        let trace_id = &traces[c.trace].id;
        let msgs = conversation(
            &vocab,
            c.block_size,
            trace_id,
            &c.id,
            c.tool_tokens,
            c.system_tokens,
            &turns,
        )
        .unwrap();
        let shape: Vec<Vec<serde_json::Value>> = msgs
            .iter()
            .map(|segs| {
                segs.iter()
                    .map(|s| json!([s.role.as_str(), s.tokens.len()]))
                    .collect()
            })
            .collect();
        assert_eq!(json!(shape), aiperf[&c.id], "{}", c.id);
        for (t, segs) in c.turns.iter().zip(&msgs) {
            let all: Vec<u32> = segs.iter().flat_map(|s| s.tokens.iter().copied()).collect();
            assert_eq!(all.len() as u64, t.input, "{}", c.id);
            assert_eq!(segs.last().unwrap().role, Role::User, "{}", c.id);
            assert_eq!(segs[0].text.as_ref(), fake_decode(&segs[0].tokens));
            // Every recorded block is the same tokens wherever it appears.
            let full = (t.input / c.block_size) as usize;
            for (i, h) in t.hash_ids.iter().take(full).enumerate() {
                let bs = c.block_size as usize;
                let chunk = all[i * bs..(i + 1) * bs].to_vec();
                let prev = block_text
                    .entry((c.trace, *h))
                    .or_insert_with(|| chunk.clone());
                assert_eq!(*prev, chunk, "{} block {h}", c.id);
            }
        }
    }
}

/// Flattened agents (tests/fixtures/agentx/flat: a title-generation preamble, a
/// forked agent, a cross-model one-shot, three agents forked together, a
/// reduction, a compaction seam, and a subagent with chains of its own): the
/// same chains, session ids, turn-0 prefixes
/// and theoretical prefix-cache blocks as AIPerf 0.12.0's own loader, whose
/// output on the set is saved beside it.
#[test]
fn flat_chains_split_as_aiperf_splits_them() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let aiperf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/agentx/aiperf_0_12_0_flat_plan.json"))
            .unwrap(),
    )
    .unwrap();
    let traces = read(&root.join("tests/fixtures/agentx/flat/traces.jsonl")).unwrap();
    let plan = build(&traces, false);
    let hashes = |trace: &str, outers: &serde_json::Value| -> Vec<Vec<i64>> {
        let t = traces.iter().find(|t| t.id == trace).unwrap();
        outers
            .as_array()
            .unwrap()
            .iter()
            .map(|o| match &t.entries[o.as_u64().unwrap() as usize] {
                super::trace::Entry::Request(r) => r.hash_ids.clone(),
                super::trace::Entry::Subagent(_) => panic!("a marker"),
            })
            .collect()
    };
    let conv = |id: &str| plan.conversations.iter().find(|c| c.id == id).unwrap();
    let turns =
        |id: &str| -> Vec<Vec<i64>> { conv(id).turns.iter().map(|t| t.hash_ids.clone()).collect() };
    for (trace, outers) in aiperf["main"].as_object().unwrap() {
        assert_eq!(turns(trace), hashes(trace, outers), "{trace}");
    }
    let flat = aiperf["flat"].as_array().unwrap();
    let ours: Vec<&str> = plan
        .conversations
        .iter()
        .filter(|c| c.id.contains("::") && !c.id.contains("::sa:"))
        .map(|c| c.id.as_str())
        .collect();
    let want: Vec<&str> = flat.iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(ours, want);
    for f in flat {
        let id = f["id"].as_str().unwrap();
        let trace = id.split("::").next().unwrap();
        assert_eq!(turns(id), hashes(trace, &f["outer"]), "{id}");
        let c = conv(id);
        assert_eq!(json!([c.tool_tokens, c.system_tokens]), f["init"], "{id}");
    }
    // A subagent's own chains: its main one keeps its id, the others are siblings.
    let children = aiperf["children"].as_array().unwrap();
    let ours: Vec<&str> = plan
        .conversations
        .iter()
        .filter(|c| c.id.contains("::sa:"))
        .map(|c| c.id.as_str())
        .collect();
    let want: Vec<&str> = children.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ours, want);
    for ch in children {
        let id = ch["id"].as_str().unwrap();
        let agent = id.split("::sa:").nth(1).unwrap().split(':').next().unwrap();
        let sa = traces[0]
            .entries
            .iter()
            .find_map(|e| match e {
                super::trace::Entry::Subagent(s) if s.agent_id == agent => Some(s),
                _ => None,
            })
            .unwrap();
        let want: Vec<Vec<i64>> = ch["inner"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| sa.requests[i.as_u64().unwrap() as usize].hash_ids.clone())
            .collect();
        assert_eq!(turns(id), want, "{id}");
        let c = conv(id);
        assert_eq!(json!([c.tool_tokens, c.system_tokens]), ch["init"], "{id}");
    }
    let mut prefix = serde_json::Map::new();
    for c in &plan.conversations {
        for (k, t) in c.turns.iter().enumerate() {
            prefix.insert(
                format!("{}#{k}", c.id),
                json!([t.prefix_blocks.0, t.prefix_blocks.1]),
            );
        }
    }
    assert_eq!(serde_json::Value::Object(prefix), aiperf["prefix"]);
    // Each flat chain is spawned by the main turn before it and joined by the
    // first later main turn at or after its end (a one-shot ending before the
    // next main turn is joined there).
    let root_turns = &conv("flat_001").turns;
    let branch_of = |id: &str| {
        let c = plan.conversations.iter().position(|c| c.id == id).unwrap();
        plan.branches
            .iter()
            .position(|b| b.children.contains(&c))
            .unwrap()
    };
    let b = branch_of("flat_001::fa:000");
    assert!(
        root_turns[2].spawns.contains(&b),
        "fa:000 follows main turn 2 (t 1.0)"
    );
    assert!(
        root_turns[4].joins.contains(&b),
        "fa:000 ends at 2.5: joined at t 3.0"
    );
    // The parallel fan-out: the two recorded right after main turn 5 (t 3.0) share
    // its branch; the third comes after main turn 6 in the file, so that turn
    // spawns it (AIPerf attaches by file position). All are joined by turn 7.
    let group: Vec<usize> = ["000", "001", "002"]
        .iter()
        .map(|m| branch_of(&format!("flat_001::wg:000_{m}")))
        .collect();
    assert_eq!(group[0], group[1]);
    assert!(root_turns[5].spawns.contains(&group[0]));
    assert!(root_turns[6].spawns.contains(&group[2]));
    assert!(root_turns[7].joins.contains(&group[2]));
    assert!(root_turns[7].joins.contains(&group[0]));
}
