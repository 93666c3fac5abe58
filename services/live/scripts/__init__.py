"""The Lua scripts of a quiz's live state (the .lua files here), loaded by name."""

from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def source(name: str) -> str:
    """The text of <name>.lua."""
    return resources.files(__name__).joinpath(f"{name}.lua").read_text()


def composed(name: str, *functions: str) -> str:
    """<name>.lua with each of `functions` (<function>.lua, sharing its KEYS and
    ARGV) defined before it as a local function: one copy of each script's logic."""
    defined = [f"local function {f}()\n{source(f)}\nend\n" for f in functions]
    return "".join(defined) + source(name)
