"""JSON on the wire, through orjson: several times faster than the standard library on every message.

It matters twice: per call on busy connections, and for big answers (vm.query of 1,000 VMs is ~1.5 MB).
"""
from __future__ import annotations

from typing import Any

import orjson

# Non-string keys (e.g. integer ids in a choices map) are written as strings, as the json module does.
_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    """Encode a message; TypeError for values JSON cannot hold."""
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except orjson.JSONEncodeError as e:
        raise TypeError(str(e)) from None


def loads(text: str | bytes) -> Any:
    """Decode a message; ValueError (orjson.JSONDecodeError) when it is not JSON."""
    return orjson.loads(text)
