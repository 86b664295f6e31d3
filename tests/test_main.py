"""The command line: python -m skconv demo / bench, help and exit codes."""

import json
import subprocess
import sys

import pytest

import skconv
from skconv.__main__ import main


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "skconv", *args], capture_output=True, text=True, timeout=300
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
    env = {**__import__("os").environ, "SKCONV_CACHE_DIR": str(tmp_path)}
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
