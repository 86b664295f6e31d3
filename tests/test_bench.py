"""The benchmark harness (benchmarks/bench.py) runs, fast, and writes the JSON it promises."""

import importlib.util
import json
import time
from pathlib import Path

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
    assert "Targets:" in printed and "sgemm" in printed

    report = json.loads(path.read_text())
    assert {"machine", "gemm_gflops", "workloads", "sweep", "memory", "targets", "level"} <= set(
        report
    )
    assert report["level"] == "smoke"
    assert {"cpu", "cores", "numpy", "blas", "OPENBLAS_CORETYPE"} <= set(report["machine"])
    assert report["gemm_gflops"]["float32"] > 0 and report["gemm_gflops"]["float64"] > 0
    names = {(w["workload"], w["dtype"]) for w in report["workloads"]}
    assert {(f"W{i}", "float32") for i in range(1, 7)} <= names
    assert {(f"W{i}", "float64") for i in range(1, 6)} <= names
    for workload in report["workloads"]:
        results = workload["results"]
        assert {"auto", "auto[n_jobs=1]", "rowgemm", "toeplitz", "stride_tricks_einsum"} <= set(
            results
        )
        assert workload["chosen"]["n_jobs=-1"] in results
        assert workload["auto_over_fastest"] > 0
        for entry in results.values():
            assert entry["median_ms"] > 0 and entry["gflops"] > 0
        assert results["auto"]["method"] == workload["chosen"]["n_jobs=-1"]
        assert "ratio_to_stride_tricks_einsum" in results["auto"]
        assert "scaled_by" in results["stride_tricks_einsum"]  # slow peers may run on a subset
    assert report["memory"]["n_jobs=1"]["measured_by"] == "tracemalloc"
    for target in report["targets"]:
        assert {"target", "value", "met"} <= set(target)


def test_help_and_bad_arguments(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "--quick" in capsys.readouterr().out
    assert main(["--smoke", "--workloads", "W9"]) == 2
    assert main(["--smoke", "--sweep", "-1"]) == 2
    assert main(["--smoke", "--json", "/nonexistent/dir/x.json"]) == 2
    assert "/nonexistent/dir/x.json" in capsys.readouterr().err
    assert build_parser().parse_args(["--quick"]).quick
