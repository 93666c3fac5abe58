"""The Lua scripts of a quiz's live state (the .lua files here), loaded by name."""

from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def source(name: str) -> str:
    """The text of <name>.lua."""
    return resources.files(__name__).joinpath(f"{name}.lua").read_text()
