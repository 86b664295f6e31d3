"""The command line: python -m skconv demo / bench, help and exit codes."""

import json
import os
import subprocess
import sys
import time

import pytest

import skconv
from skconv.__main__ import main


def run(*args, timeout=300, env=None):
    return subprocess.run(
        [sys.executable, "-m", "skconv", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_demo_quick_prints_the_table(capsys):
    assert main(["demo", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "pipeline" in out and "n_features" in out and "accuracy" in out
    rows = [
        line for line in out.splitlines() if line.startswith(("raw pixels", "edges", "default"))
    ]
    assert len(rows) == 3
    raw, edges = float(rows[0].split()[-1]), float(rows[1].split()[-1])
    assert 0.9 < raw < edges <= 1.0  # the features beat raw pixels


def test_help_for_every_subcommand():
    for args in ([], ["demo"], ["bench"], ["calibrate"]):
        result = run(*args, "--help")
        assert result.returncode == 0, result.stderr
        assert "usage:" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["frobnicate"],
        ["demo", "--fast"],
        [],
        ["bench", "--nonsense"],
        ["calibrate", "--max-seconds", "0"],
        ["calibrate", "--fast"],
    ],
)
def test_bad_arguments_exit_2_with_a_message(args):
    result = run(*args)
    assert result.returncode == 2
    assert result.stderr.strip()


def test_bench_quick_reports_what_auto_picks(tmp_path):
    path = tmp_path / "bench.json"
    result = run("bench", "--quick", "--json", str(path))
    assert result.returncode == 0, result.stderr
    assert "auto picks" in result.stdout and "estimated" in result.stdout
    report = json.loads(path.read_text())
    for row in report["workloads"]:
        assert row["auto_picks"] in row["strategies"] and row["auto_over_fastest"] > 0
        assert row["auto_ms"] > 0 and all(s["measured_ms"] > 0 for s in row["strategies"].values())


def test_version_and_fail_fast_arguments():
    result = run("--version")
    assert result.returncode == 0 and skconv.__version__ in result.stdout
    result = run("bench", "--json", "/nonexistent/dir/x.json")
    assert result.returncode == 2 and "/nonexistent/dir/x.json" in result.stderr
    result = run("bench", "--frobnicate")
    assert result.returncode == 2 and "--frobnicate" in result.stderr
    result = run("demo", "--n-jobs", "0")
    assert result.returncode == 2 and "n-jobs" in result.stderr


def test_calibrate_tiny_writes_to_the_cache_and_bench_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("SKCONV_CACHE_DIR", str(tmp_path))
    env = {**os.environ, "SKCONV_CACHE_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "skconv", "calibrate", "--max-seconds", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "measured now" in result.stdout and str(tmp_path) in result.stdout
    files = list(tmp_path.glob("calibration-*.json"))
    assert len(files) == 1
    again = subprocess.run(
        [sys.executable, "-m", "skconv", "calibrate"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert again.returncode == 0 and "cached" in again.stdout
    # A fresh process (the cost model is read once per process) uses it.
    source = subprocess.run(
        [
            sys.executable,
            "-c",
            "from skconv._quickbench import model_source; print(model_source())",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert "calibrated on this machine" in source.stdout, source.stderr


@pytest.mark.parametrize("value", ["inf", "1e309", "nan", "-inf", "0.01", "1e-9"])
def test_calibrate_refuses_a_budget_that_is_not_finite_or_too_short(
    value, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("SKCONV_CACHE_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as info:
        main(["calibrate", f"--max-seconds={value}"])
    assert info.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--max-seconds must be a finite number of seconds >= 0.1; got" in message
    assert not list(tmp_path.iterdir())  # nothing measured, nothing written


def test_calibrate_bad_budget_is_a_usage_error_not_a_traceback(tmp_path):
    env = {**os.environ, "SKCONV_CACHE_DIR": str(tmp_path)}
    result = run("calibrate", "--max-seconds", "inf", timeout=60, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "usage:" in result.stderr and "finite" in result.stderr


def _unwritable_json_paths(tmp_path):
    read_only = tmp_path / "read-only.json"
    read_only.write_text("kept")
    read_only.chmod(0o444)
    paths = [str(tmp_path), "/proc/x.json", str(tmp_path / "missing" / "x.json")]
    if not os.access(read_only, os.W_OK):  # (root may write it anyway)
        paths.append(str(read_only))
    return paths


def test_bench_refuses_an_unwritable_json_path_before_timing(tmp_path, monkeypatch, capsys):
    from skconv import _quickbench

    def no_timing(*args, **kwargs):
        raise AssertionError("the benchmark started before its --json path was checked")

    monkeypatch.setattr(_quickbench, "run_workload", no_timing)
    for path in _unwritable_json_paths(tmp_path):
        with pytest.raises(SystemExit) as info:
            main(["bench", "--quick", "--json", path])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "usage:" in err and "--json must be" in err and repr(path) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["read-only.json"]  # no scratch left
    assert (tmp_path / "read-only.json").read_text() == "kept"


def test_bench_json_directory_fails_fast_in_a_fresh_process(tmp_path):
    start = time.perf_counter()
    try:
        result = run("bench", "--json", str(tmp_path), timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("bench --json DIRECTORY ran the benchmark instead of failing fast")
    assert time.perf_counter() - start < 20
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--json must be a file path, not a directory" in result.stderr


def test_bench_json_checks_leave_a_writable_path_alone(tmp_path):
    from skconv._validation import check_output_path

    existing = tmp_path / "old.json"
    existing.write_text("old results")
    check_output_path(str(existing), "--json")
    check_output_path(str(tmp_path / "new.json"), "--json")
    assert existing.read_text() == "old results"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]
