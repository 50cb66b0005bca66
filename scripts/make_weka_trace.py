#!/usr/bin/env python3
"""A seeded synthetic Weka coding-agent trace set (the format AgentX replays).

Each trace is one coding session: a root agent whose every request extends its
previous one (history + the model's reply + a tool result), subagents spawned
between root turns that start from the root's tool/system prefix and extend their
own history, and recorded timings (`t`, `api_time`) on one timeline. Because each
request's `hash_ids` start with all full blocks of the same agent's previous
request, every agent is exactly one conversation for AIPerf and perfscope alike.

    python3 scripts/make_weka_trace.py --out examples/agentx --traces 12 --seed 7

writes OUT/traces.jsonl (one trace per line) and, with --per-trace-files, a
directory of per-trace .json files beside it. Standard library only.
"""

import argparse
import json
import math
import os
import random


def blocks(n_tokens, bs):
    """Hash blocks an input of n tokens records: one per full block."""
    return n_tokens // bs


class Agent:
    """One agent's growing context: its hash ids and token count."""

    def __init__(self, rng, ids, bs, prefix_ids, prefix_tokens):
        self.rng, self.ids, self.bs = rng, ids, bs
        self.hash_ids = list(prefix_ids)
        self.tokens = prefix_tokens

    def request(self, t, add_tokens, out, model):
        self.tokens += add_tokens
        need = blocks(self.tokens, self.bs)
        while len(self.hash_ids) < need:
            self.hash_ids.append(next(self.ids))
        api = round(0.15 + 0.004 * out + 0.0001 * self.tokens, 3)
        req = {
            "t": round(t, 3),
            "type": "s" if self.rng.random() < 0.7 else "n",
            "model": model,
            "in": self.tokens,
            "out": out,
            "hash_ids": list(self.hash_ids),
            "input_types": ["text"],
            "output_types": ["text"],
            "stop": "tool_use",
            "api_time": api,
            "think_time": None,
        }
        if req["type"] == "s":
            req["ttft"] = round(api * 0.3, 3)
        # The reply becomes history for the next request.
        self.tokens += out
        return req, api


def make_trace(rng, i, args):
    bs = args.block_size
    model = "claude-sonnet"
    counter = iter(range(1, 10**9))
    tool, system = rng.choice([(128, 64), (192, 64), (256, 0)])
    prefix_tokens = math.ceil((tool + system) / bs) * bs
    prefix_ids = [next(counter) for _ in range(prefix_tokens // bs)]
    root = Agent(rng, counter, bs, prefix_ids, prefix_tokens)
    entries, t, n_sub = [], 0.0, 0
    turns = rng.randint(args.min_turns, args.max_turns)
    for k in range(turns):
        add = rng.randint(40, 300) if k else rng.randint(30, 120)
        out = rng.randint(16, 160)
        if root.tokens + add + out > args.max_context:
            break
        req, api = root.request(t, add, out, model)
        entries.append(req)
        t += api
        # A subagent now and then, spawned after this turn.
        if k < turns - 1 and n_sub < args.max_subagents and rng.random() < args.subagent_p:
            n_sub += 1
            spawn = t + round(rng.uniform(0.05, 0.3), 3)
            sub = Agent(rng, counter, bs, prefix_ids, prefix_tokens)
            inner, st = [], spawn + round(rng.uniform(0.05, 0.2), 3)
            for j in range(rng.randint(2, 4)):
                sadd = rng.randint(30, 250)
                sout = rng.randint(16, 96)
                if sub.tokens + sadd + sout > args.max_context:
                    break
                r, sapi = sub.request(st, sadd, sout, model)
                inner.append(r)
                st += sapi + round(rng.uniform(0.05, 0.4), 3)
            duration_ms = int(round((st - spawn) * 1000))
            entries.append({
                "t": round(spawn, 3),
                "type": "subagent",
                "agent_id": f"agent_{n_sub:03d}",
                "subagent_type": rng.choice(["Explore", "general-purpose"]),
                "duration_ms": duration_ms,
                "total_tokens": sum(r["in"] + r["out"] for r in inner),
                "tool_use_count": len(inner),
                "status": "completed",
                "requests": inner,
                "models": [model],
                "tool_tokens": tool,
                "system_tokens": system,
            })
            # The root waits for it (a join) or goes on (the subagent runs on).
            if rng.random() < 0.7:
                t = max(t, spawn + duration_ms / 1000.0)
        t += round(rng.uniform(0.1, 1.0), 3)
    return {
        "id": f"synth_{i:03d}",
        "models": [model],
        "block_size": bs,
        "hash_id_scope": "local",
        "tool_tokens": tool,
        "system_tokens": system,
        "requests": entries,
        "totals": None,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--traces", type=int, default=12)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--min-turns", type=int, default=4)
    p.add_argument("--max-turns", type=int, default=8)
    p.add_argument("--max-subagents", type=int, default=2)
    p.add_argument("--subagent-p", type=float, default=0.35)
    p.add_argument("--max-context", type=int, default=3300,
                   help="largest in + out of any request (the server's context)")
    p.add_argument("--per-trace-files", action="store_true",
                   help="also write OUT/files/<id>.json, one trace per file")
    args = p.parse_args()
    rng = random.Random(args.seed)
    traces = [make_trace(rng, i, args) for i in range(args.traces)]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "traces.jsonl"), "w") as f:
        for tr in traces:
            f.write(json.dumps(tr, separators=(",", ":")) + "\n")
    if args.per_trace_files:
        d = os.path.join(args.out, "files")
        os.makedirs(d, exist_ok=True)
        for tr in traces:
            with open(os.path.join(d, tr["id"] + ".json"), "w") as f:
                json.dump(tr, f)
    reqs = sum(1 for tr in traces for e in tr["requests"] if e["type"] != "subagent")
    subs = [e for tr in traces for e in tr["requests"] if e["type"] == "subagent"]
    inner = sum(len(s["requests"]) for s in subs)
    print(f"{len(traces)} traces, {len(subs)} subagents, {reqs + inner} requests -> {args.out}")


if __name__ == "__main__":
    main()
