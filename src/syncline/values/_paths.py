"""How error messages name a place inside a value (``value.a[2]``) and quote text."""

from __future__ import annotations

import json
import re
from typing import Final

_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Long enough to recognise a string, short enough that one huge value cannot
# flood a log line or an error shown to a client.
_EXCERPT_CHARS: Final = 48


def field_path(path: str, name: str) -> str:
    """The path of field *name* of the object at *path*: ``args.a`` or ``args["a b"]``."""
    if _IDENTIFIER.fullmatch(name):
        return f"{path}.{name}"
    return f"{path}[{json.dumps(name)}]"


def index_path(path: str, index: int) -> str:
    """The path of element *index* of the array at *path*: ``args.tags[2]``."""
    return f"{path}[{index}]"


def excerpt(text: str) -> str:
    """*text* quoted for a message (``'abc'``), cut short if it is long."""
    if len(text) <= _EXCERPT_CHARS:
        return repr(text)
    return f"{text[:_EXCERPT_CHARS]!r}... ({len(text)} characters)"
