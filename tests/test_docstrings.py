"""The Examples sections of every module's docstrings run as doctests."""

import doctest
import importlib
import pkgutil

import pytest

import skconv

MODULES = sorted(
    name
    for _, name, _ in pkgutil.iter_modules(skconv.__path__, "skconv.")
    if name not in ("skconv.__main__",)
) + ["skconv"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
