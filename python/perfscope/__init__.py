"""perfscope from Python: evalscope's ``run_perf_benchmark``, one word changed.

    from perfscope import run_perf_benchmark   # was: from evalscope.perf.main import ...

    results = run_perf_benchmark({"model": "m", "api": "sim", "parallel": [1, 2], "number": [4, 8]})
    results["parallel_2_number_8"]["metrics"]["Request throughput (req/s)"]

This module is a thin wrapper: it writes the arguments to a private JSON file, runs
the ``perfscope`` binary installed next to it (``perfscope perf --args-file``), which
parses and checks them exactly as its command line does, and reads back the JSON
files the run wrote. Nothing here computes a metric.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

__all__ = [
    "run_perf_benchmark",
    "PerfError",
    "BenchmarkSummary",
    "PercentileResult",
    "binary",
]

# Exit codes of a run that finished its requests: 0, and 3 when a step had no
# successful request (evalscope still returns that step's zeros).
_FINISHED = (0, 3)


class PerfError(RuntimeError):
    """``perfscope perf`` failed: the message is the binary's own error.

    ``code`` is its exit code (2 bad flags or input, 4 a stop rule tripped, 74 the
    store failed, 128 + N a signal); ``run_dir`` the run's directory when it was
    created (what was stored is there).
    """

    def __init__(self, message, code, run_dir=None):
        super().__init__(message)
        self.code = code
        self.run_dir = run_dir


class BenchmarkSummary(dict):
    """One step's ``benchmark_summary.json``: keys as in the file
    (``"Request throughput (req/s)"``, ``"Average time to first token (s)"``, ...)."""

    def to_dict(self):
        return dict(self)


class PercentileResult(dict):
    """One step's percentiles, by column: ``{"Percentiles": ["min", "1%", ...],
    "TTFT (s)": [...], ...}``, the shape evalscope's ``to_columns()`` gives."""

    def to_columns(self):
        return dict(self)

    def to_list(self):
        """Rows as in ``benchmark_percentile.json``."""
        labels = self.get("Percentiles", [])
        return [
            {key: values[i] for key, values in self.items() if i < len(values)}
            for i in range(len(labels))
        ]


def binary():
    """The ``perfscope`` executable: the one this package installed, else the
    first on PATH, else ``$PERFSCOPE_BINARY``."""
    override = os.environ.get("PERFSCOPE_BINARY")
    if override:
        return override
    name = "perfscope.exe" if os.name == "nt" else "perfscope"
    dirs = [sysconfig.get_path("scripts")]
    if os.name == "posix":
        dirs.append(sysconfig.get_path("scripts", "posix_user"))
    for d in dirs:
        path = os.path.join(d, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    found = shutil.which("perfscope")
    if found:
        return found
    raise FileNotFoundError(
        "the perfscope binary is not installed: `pip install perfscope` (or a checkout "
        "with `pip install .`), or set PERFSCOPE_BINARY to its path"
    )


def run_perf_benchmark(args):
    """Run ``perfscope perf`` with evalscope's arguments.

    Args:
        args: a dict of evalscope's argument names (``{"model": ..., "parallel":
            [1, 2], "stream": False}``) or the ``argparse.Namespace`` its parser
            gives. ``None`` values are left out, so their defaults apply.

    Returns:
        ``{"parallel_X_number_Y": {"metrics": BenchmarkSummary, "percentiles":
        PercentileResult, "trace_summary": dict | None, "workload_throughput": dict
        | None}}`` in the order the steps ran (``rate_X_number_Y`` with
        ``open_loop``). With ``sla_auto_tune``, ``sla_summary.json``: the tested
        values keyed ``parallel_N`` (or ``rate_N``), each with its averaged
        ``metrics`` and ``percentiles``.

    Raises:
        PerfError: the binary's message when the flags are refused or the run fails.
    """
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    if not isinstance(args, dict):
        raise TypeError(
            "run_perf_benchmark takes a dict of evalscope's argument names or an "
            "argparse.Namespace, not %s" % type(args).__name__
        )
    # Like evalscope's BaseArgument.from_args: None means "the default".
    args = {k: v for k, v in args.items() if v is not None and k != "func"}
    with tempfile.TemporaryDirectory(prefix="perfscope-") as tmp:
        run_dir_file = os.path.join(tmp, "run_dir")
        args.setdefault("run_dir_file", run_dir_file)
        run_dir_file = args["run_dir_file"]
        args_file = os.path.join(tmp, "args.json")
        # The file may hold API keys: only this user can read it (mkdtemp is 0700).
        with open(args_file, "w", encoding="utf-8") as f:
            json.dump(args, f, default=str)
        code, message = _run([binary(), "perf", "--args-file", args_file])
        run_dir = _read_text(run_dir_file)
    if code not in _FINISHED or run_dir is None:
        raise PerfError(
            message or "perfscope perf exited with code %d" % code, code, run_dir
        )
    if args.get("sla_auto_tune"):
        return _sla_results(run_dir)
    return _step_results(run_dir)


def _run(cmd):
    """Runs the binary with its output on this process's console; returns the exit
    code and its `error:` lines."""
    proc = subprocess.Popen(
        cmd, stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace"
    )
    errors = []
    try:
        for line in proc.stderr:
            sys.stderr.write(line)
            if line.startswith("error:"):
                errors.append(line.rstrip("\n")[len("error:"):].strip())
        code = proc.wait()
    except KeyboardInterrupt:
        # The binary got the same Ctrl-C: let it store what it has, then stop.
        proc.wait()
        raise
    return code, "\n".join(errors)


def _read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _step_results(run_dir):
    steps = []
    for name in os.listdir(run_dir):
        summary = os.path.join(run_dir, name, "benchmark_summary.json")
        if os.path.isfile(summary):
            steps.append((os.stat(summary).st_mtime_ns, name))
    results = {}
    # In the order the steps ran: each step's summary is written when it ends.
    for _, name in sorted(steps):
        step = os.path.join(run_dir, name)
        rows = _read_json(os.path.join(step, "benchmark_percentile.json")) or []
        results[name] = {
            "metrics": BenchmarkSummary(_read_json(os.path.join(step, "benchmark_summary.json"))),
            "percentiles": _columns(rows),
            "trace_summary": _read_json(os.path.join(step, "trace_summary.json")),
            "workload_throughput": _read_json(os.path.join(step, "workload_throughput.json")),
        }
    return results


def _sla_results(run_dir):
    summary = _read_json(os.path.join(run_dir, "sla_summary.json")) or {}
    return {
        key: {
            "metrics": BenchmarkSummary(point.get("metrics") or {}),
            "percentiles": PercentileResult(point.get("percentiles") or {}),
        }
        for key, point in summary.items()
    }


def _columns(rows):
    columns = PercentileResult()
    for row in rows:
        for key, value in row.items():
            columns.setdefault(key, []).append(value)
    return columns
