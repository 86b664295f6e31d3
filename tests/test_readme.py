"""The README's quick start and Python examples work as written."""

import re
from pathlib import Path

import pytest

README = (Path(__file__).parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_quick_start_is_two_commands_and_ci_runs_the_second():
    first_block = re.search(r"```sh\n(.*?)```", README, flags=re.S).group(1)
    lines = [line for line in first_block.splitlines() if line.strip()]
    assert len(lines) == 2
    assert "python -m skconv demo" in lines[0] and "pytest" in lines[1]
    assert README.index("```sh") < README.index("```python")  # the quick start comes first
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    assert "pytest" in ci and "README.md" in ci


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_python_examples_run(index):
    code = BLOCKS[index]
    if "big" in code:
        pytest.importorskip("dask.array")
        import numpy as np

        namespace = {
            "big": np.random.default_rng(0).random((2_000, 64)),
            "conv": __import__("skconv").BatchConv2DTransformer(),
        }
    else:
        namespace = {}
    exec(compile(code, f"README.md python block {index}", "exec"), namespace)
