"""The Redis Lua scripts, one ``.lua`` file each, with their KEYS and ARGV in a header.

``source`` reads a script once per process; callers register it with the client
(``register_script``: EVALSHA, and SCRIPT LOAD when the server does not know it yet).
A script may start with ``-- requires: NAME.lua [NAME.lua ...]``: those files' texts are put
before it, in that order (the page scripts share the rate-limit and window functions this
way).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

_REQUIRES = "-- requires: "


@cache
def source(name: str) -> str:
    """The text of ``name`` (e.g. ``"page.lua"``), its required files first."""
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    first = text.split("\n", 1)[0]
    if first.startswith(_REQUIRES):
        return "".join(source(required) for required in first[len(_REQUIRES):].split()) + text
    return text
