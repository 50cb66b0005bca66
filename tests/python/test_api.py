"""`from perfscope import run_perf_benchmark` against the built-in simulator.

Run with the installed package (`python tests/python/test_api.py` in a virtualenv
where `pip install .` ran), or with PYTHONPATH=python and PERFSCOPE_BINARY pointing
at a built binary. Plain asserts: no test framework needed.
"""

import argparse
import json
import os
import sqlite3
import sys
import tempfile

from perfscope import PerfError, run_perf_benchmark


def check_sweep(outputs):
    # A two-point sweep, as evalscope's run_perf_benchmark takes a dict.
    results = run_perf_benchmark(
        {
            "model": "m",
            "api": "sim",
            "parallel": [1, 2],
            "number": [3, 6],
            "max_tokens": 8,
            "outputs_dir": outputs,
            "sim_args": json.dumps({"zero_delay": True, "seed": 7}),
            "api_key": "sk-python-secret",
            "tokenizer_path": None,
        }
    )
    assert list(results) == ["parallel_1_number_3", "parallel_2_number_6"], list(results)
    for key, total in [("parallel_1_number_3", 3), ("parallel_2_number_6", 6)]:
        step = results[key]
        assert set(step) == {"metrics", "percentiles", "trace_summary", "workload_throughput"}
        metrics = step["metrics"]
        assert metrics["Total Requests"] == total, metrics
        assert metrics["Success Requests"] == total, metrics
        assert metrics.to_dict() == dict(metrics)
        pct = step["percentiles"]
        assert pct["Percentiles"] == [
            "min", "1%", "5%", "10%", "25%", "50%", "75%", "90%", "95%", "99%", "max"
        ], pct["Percentiles"]
        assert len(pct["TTFT (ms)"]) == 11
        rows = pct.to_list()
        assert rows[0]["Percentiles"] == "min" and len(rows) == 11
        assert step["trace_summary"] is None  # single-turn, as evalscope
        # The figures are the run's own: recomputed here from its SQLite rows.
        run_dir = _run_dir(outputs)
        db = os.path.join(run_dir, key, "benchmark_data.db")
        with sqlite3.connect(db) as con:
            (n, ok, out_tokens) = con.execute(
                "SELECT COUNT(*), SUM(success), SUM(completion_tokens) FROM result"
            ).fetchone()
        assert n == total and ok == total, (n, ok)
        assert abs(metrics["Avg Output Tokens"] - out_tokens / total) < 1e-3, metrics
        with open(os.path.join(run_dir, key, "benchmark_args.json")) as f:
            assert "sk-python-secret" not in f.read()


def check_namespace(outputs):
    # What evalscope's argparse parser gives: every key, None for unset ones.
    ns = argparse.Namespace(
        model="m", api="sim", parallel=[2], number=[4], rate=[-1], stream=True,
        outputs_dir=outputs, max_tokens=4, api_key=None, func=None, headers={},
        sim_args='{"zero_delay": true}', open_loop=False, dataset="openqa",
    )
    results = run_perf_benchmark(ns)
    assert list(results) == ["parallel_2_number_4"], list(results)
    assert results["parallel_2_number_4"]["metrics"]["Total Requests"] == 4


def check_sla(outputs):
    results = run_perf_benchmark(
        {
            "model": "m", "api": "sim", "sla_auto_tune": True, "sla_variable": "parallel",
            "sla_params": '[{"p99_latency": "<=10"}]', "sla_upper_bound": 2, "sla_num_runs": 1,
            "max_tokens": 4, "outputs_dir": outputs, "sim_args": '{"zero_delay": true}',
        }
    )
    assert results and all(k.startswith("parallel_") for k in results), list(results)
    point = next(iter(results.values()))
    assert point["metrics"]["Total Requests"] > 0 and "Percentiles" in point["percentiles"]


def check_errors(outputs):
    for bad, words in [
        ({"model": "m", "api": "nope", "outputs_dir": outputs}, "--api"),
        ({"model": "m", "api": "sim", "parallell": 2, "outputs_dir": outputs}, "parallell"),
    ]:
        try:
            run_perf_benchmark(bad)
        except PerfError as e:
            assert e.code == 2, e.code
            assert words in str(e), str(e)
        else:
            raise AssertionError("no error for %r" % bad)
    try:
        run_perf_benchmark(["--model", "m"])
    except TypeError:
        pass
    else:
        raise AssertionError("a list is not evalscope's argument type")


def _run_dir(outputs):
    (stamp,) = os.listdir(outputs)
    return os.path.join(outputs, stamp, "m")


def main():
    for check in (check_sweep, check_namespace, check_sla, check_errors):
        with tempfile.TemporaryDirectory() as outputs:
            check(outputs)
        print("ok", check.__name__, file=sys.stderr)


if __name__ == "__main__":
    main()
