"""The benchmark harness (benchmarks/bench.py) runs, fast, and writes the JSON it promises."""

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).parent.parent / "benchmarks" / "bench.py"
_spec = importlib.util.spec_from_file_location("skconv_bench_harness", PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)
build_parser, main = bench.build_parser, bench.main


def test_smoke_run_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    start = time.perf_counter()
    assert main(["--smoke", "--json", str(path)]) == 0
    assert time.perf_counter() - start < 60  # seconds even on a loaded 2-core machine
    printed = capsys.readouterr().out
    assert "Targets (reported" in printed and "sgemm" in printed and "Cost model of auto" in printed

    report = json.loads(path.read_text())
    assert {
        "machine",
        "calibration",
        "gemm_gflops",
        "workloads",
        "transform",
        "recipes",
        "sweep",
        "memory",
        "targets",
        "level",
    } <= set(report)
    assert report["level"] == "smoke"
    assert {"cpu", "cores", "numpy", "blas", "OPENBLAS_CORETYPE", "haswell_kernels"} <= set(
        report["machine"]
    )
    assert isinstance(report["calibration"]["used"], bool)
    assert report["gemm_gflops"]["float32"] > 0 and report["gemm_gflops"]["float64"] > 0
    names = {(w["workload"], w["dtype"]) for w in report["workloads"]}
    assert {(f"W{i}", "float32") for i in range(1, 11)} <= names
    assert {(f"W{i}", "float64") for i in range(1, 11) if i != 6} <= names
    for workload in report["workloads"]:
        results = workload["results"]
        assert {"auto", "auto[n_jobs=1]", "rowgemm", "stride_tricks_einsum"} <= set(results)
        assert workload["chosen"]["n_jobs=-1"] in results
        assert workload["auto_over_fastest"] > 0
        check = workload["auto_check"]
        assert {"auto", workload["chosen"]["n_jobs=-1"], check["fastest"]} <= set(check["best_ms"])
        assert check["auto_over_fastest"] > 0
        for entry in results.values():
            assert 0 < entry["best_ms"] <= entry["median_ms"] and entry["gflops"] > 0
            assert entry["peak_fraction"] > 0
        assert results["auto"]["method"] == workload["chosen"]["n_jobs=-1"]
        assert "ratio_to_stride_tricks_einsum" in results["auto"]
        assert "scaled_by" in results["stride_tricks_einsum"]  # slow peers may run on a subset
    by = {(w["workload"], w["dtype"]): w for w in report["workloads"]}
    assert by[("W9", "float32")]["shape"]["channels"] == 3
    assert by[("W10", "float32")]["shape"]["stride"] == 2
    assert "scipy_loop" not in by[("W9", "float32")]["results"]  # single channel, stride 1 only
    t1 = report["transform"]
    assert {"transform", "conv2d_alone"} <= set(t1["results"])
    recipes = report["recipes"]["results"]
    assert set(recipes) == {f"{r}[n_jobs={j}]" for r in ("scattering", "pcanet") for j in (None, 2)}
    assert all(e["best_ms"] > 0 and e["n_features"] > 0 for e in recipes.values())
    assert "skconv.recipes, transform of" in printed
    assert t1["transform_over_conv2d"] > 0 and t1["peak_extra_mib"] >= 0
    assert report["memory"]["n_jobs=1"]["measured_by"] == "tracemalloc"
    for target in report["targets"]:
        assert {"target", "value", "met"} <= set(target)


def test_runs_as_a_script():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(PATH), "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "--calibrate" in result.stdout


def test_help_and_bad_arguments(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "--quick" in capsys.readouterr().out
    assert main(["--smoke", "--workloads", "W11"]) == 2
    assert main(["--smoke", "--sweep", "-1"]) == 2
    assert main(["--smoke", "--json", "/nonexistent/dir/x.json"]) == 2
    assert "/nonexistent/dir/x.json" in capsys.readouterr().err
    assert build_parser().parse_args(["--quick"]).quick


def test_an_unwritable_json_path_is_refused_before_any_timing(tmp_path, monkeypatch, capsys):
    def no_work():
        raise AssertionError("the benchmark started before its --json path was checked")

    monkeypatch.setattr(bench, "machine_info", no_work)
    for path in (str(tmp_path), "/proc/x.json", str(tmp_path / "missing" / "x.json")):
        assert main(["--smoke", "--json", path]) == 2
        err = capsys.readouterr().err
        assert "--json must be" in err and repr(path) in err
    assert not list(tmp_path.iterdir())  # no scratch file left behind


def test_blocks_in_passes_alternate_their_order_and_pool_the_samples():
    calls = []
    candidates = {name: (lambda name=name: calls.append(name)) for name in ("a", "torch", "b")}
    samples = bench.time_blocks(candidates, rounds=3, pause=0, min_sample=0, passes=2)
    assert {name: len(times) for name, times in samples.items()} == {"a": 6, "torch": 6, "b": 6}
    # each block: one warm-up call and 3 timed ones; torch first, then reversed
    blocks = [calls[i] for i in range(0, len(calls), 4)]
    assert blocks == ["torch", "a", "b", "b", "a", "torch"]


def test_interleaved_rounds_visit_every_candidate_once_after_a_warm_call():
    calls = []
    candidates = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    samples = bench.time_interleaved(
        candidates, rounds=4, rng=np.random.default_rng(0), pause=0, min_sample=0
    )
    assert {name: len(times) for name, times in samples.items()} == {"a": 4, "b": 4, "c": 4}
    warm, timed = calls[:3], calls[3:]
    assert warm == ["a", "b", "c"]
    # each sample: the candidate's untimed call, then its timed one
    pairs = [timed[i : i + 2] for i in range(0, len(timed), 2)]
    assert all(x == y for x, y in pairs) and len(pairs) == 12
    rounds = [sorted(p[0] for p in pairs[i : i + 3]) for i in range(0, 12, 3)]
    assert rounds == [["a", "b", "c"]] * 4
    assert len({tuple(p[0] for p in pairs[i : i + 3]) for i in range(0, 12, 3)}) > 1  # shuffled


def test_interleaved_timing_of_no_candidates_returns_at_once():
    # (the cost-model sweep times the strategies that are not slow: none, on a large problem)
    assert bench.time_interleaved({}, rounds=3, rng=np.random.default_rng(0), warmup=0.1) == {}


def test_the_block_after_torch_waits_also_across_calls(monkeypatch):
    slept = []
    monkeypatch.setattr(bench.time, "sleep", slept.append)
    bench.time_blocks({"torch": lambda: None}, rounds=1, pause=0.01, min_sample=0)
    slept.clear()
    bench.time_blocks({"a": lambda: None}, rounds=1, pause=0.01, min_sample=0)
    assert slept[0] == bench.TORCH_SETTLE_S
    bench.time_blocks({"torch": lambda: None}, rounds=1, pause=0.01, min_sample=0)
    slept.clear()
    bench.time_interleaved({"a": lambda: None}, 1, np.random.default_rng(0), pause=0.01)
    assert slept[0] == bench.TORCH_SETTLE_S
    slept.clear()
    bench.time_interleaved({"a": lambda: None}, 1, np.random.default_rng(0), pause=0.01)
    assert bench.TORCH_SETTLE_S not in slept  # not after skconv's own candidates


def test_auto_is_checked_interleaved_against_the_strategies_close_in_the_blocks():
    calls = []

    def sleeper(name, seconds):
        def call():
            calls.append(name)
            time.sleep(seconds)

        return call

    seconds = {"auto": 0.003, "rowgemm": 0.003, "fast": 0.001, "close": 0.002, "far": 0.001}
    seconds["einsum"] = 0.001
    candidates = {name: sleeper(name, t) for name, t in seconds.items()}
    candidates["torch"] = candidates["rowgemm[n_jobs=1]"] = sleeper("other", 0)
    # block bests: auto runs rowgemm, which its block timed slow; "far" is
    # beyond CHECK_CLOSE; einsum is a slow peer (timed on a subset)
    blocks = {"fast": 1.0, "close": 1.4, "rowgemm": 2.0, "far": 1.6, "einsum": 1.1, "torch": 0.5}
    blocks["rowgemm[n_jobs=1]"] = 1.0
    results = {name: {"best_ms": ms} for name, ms in blocks.items()}
    check = bench.check_auto(candidates, results, "fast", "rowgemm", rounds=3, pause=0)
    assert set(check["best_ms"]) == {"auto", "rowgemm", "fast", "close"} == set(calls)
    assert check["fastest"] == "fast"
    assert 2 < check["auto_over_fastest"] < 4  # 3 ms against 1 ms, timed again


def test_warm_ups_last_their_time_whatever_the_number_of_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "WARMUP_S", 0.05)
    bench.time_blocks({"a": lambda: calls.append(1)}, rounds=1, pause=0.001, min_sample=0)
    assert len(calls) > 100  # a no-op for 0.05 s: far more than 30 calls
    calls.clear()
    samples = bench.time_interleaved(
        {"a": lambda: calls.append(time.sleep(0.001))},
        rounds=2,
        rng=np.random.default_rng(0),
        pause=0,
        min_sample=0,
        sample_warmup=0.02,
    )
    # per sample: untimed calls for 0.02 s (about 10 of 1 ms) and one timed call
    assert len(samples["a"]) == 2 and len(calls) >= 1 + 2 * (5 + 1)
