#!/usr/bin/env python3
"""Writes examples/traces/synthetic_mooncake.jsonl: a small Mooncake-format trace.

Each row is {"timestamp": ms, "input_length": tokens, "output_length": tokens,
"hash_ids": [block ids]} as in Mooncake's FAST'25 traces, with 512-token blocks.
Requests arrive as a Poisson process (10 req/s). Each belongs to one of 12 "apps"
(a long shared system prompt and few-shot context, picked with Zipf-like weights)
and reuses the first 1-8 blocks of its app's chain, then adds 1-3 blocks of its own;
the last (its own) block is partial. So requests share exactly their common leading hash ids,
and a prefix cache has something to find.

Deterministic (seeded): rerunning the script writes the same file.
    python3 scripts/make_synthetic_trace.py [ROWS] [OUT]
"""
import json
import random
import sys

BLOCK = 512


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    out = sys.argv[2] if len(sys.argv) > 2 else "examples/traces/synthetic_mooncake.jsonl"
    rng = random.Random(7)
    apps = 12
    weights = [1.0 / (k + 1) for k in range(apps)]
    next_id = 0
    chains = []
    for _ in range(apps):
        chains.append(list(range(next_id, next_id + 8)))
        next_id += 8
    t = 0.0
    lines = []
    for _ in range(rows):
        t += rng.expovariate(10.0) * 1000.0
        app = rng.choices(range(apps), weights)[0]
        depth = rng.randint(1, 8)
        own = rng.randint(1, 3)
        ids = chains[app][:depth] + list(range(next_id, next_id + own))
        next_id += own
        input_length = (len(ids) - 1) * BLOCK + rng.randint(1, BLOCK)
        row = {
            "timestamp": int(round(t)),
            "input_length": input_length,
            "output_length": rng.randint(16, 256),
            "hash_ids": ids,
        }
        lines.append(json.dumps(row))
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
