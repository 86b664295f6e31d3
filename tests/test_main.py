"""The command line: python -m skconv demo / bench, help and exit codes."""

import subprocess
import sys

import pytest

from skconv.__main__ import main


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "skconv", *args], capture_output=True, text=True, timeout=300
    )


def test_demo_quick_prints_the_table(capsys):
    assert main(["demo", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "pipeline" in out and "n_features" in out and "accuracy" in out
    rows = [line for line in out.splitlines() if line.startswith(("raw pixels", "edges", "default"))]
    assert len(rows) == 3
    raw, edges = float(rows[0].split()[-1]), float(rows[1].split()[-1])
    assert 0.9 < raw < edges <= 1.0  # the features beat raw pixels


def test_help_for_every_subcommand():
    for args in ([], ["demo"], ["bench"]):
        result = run(*args, "--help")
        assert result.returncode == 0, result.stderr
        assert "usage:" in result.stdout


@pytest.mark.parametrize("args", [["frobnicate"], ["demo", "--fast"], [], ["bench", "--nonsense"]])
def test_bad_arguments_exit_2_with_a_message(args):
    result = run(*args)
    assert result.returncode == 2
    assert result.stderr.strip()
