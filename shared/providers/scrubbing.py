"""Removing a provider key from text a provider sent back.

Providers quote a rejected key in their error messages. Before any such text reaches an
exception, a log line or a member's response, the key, every run of eight or more of its
characters, and anything else shaped like a credential are replaced.
"""

from __future__ import annotations

import re
from typing import Final

# Any run of this many characters of the key counts as a leak, not just the whole key.
_MIN_LEAK_RUN: Final = 8
_REDACTED: Final = "[redacted]"
# Bearer values, "sk-" style keys (masked ones too) and long opaque tokens look like keys.
_KEY_LIKE: Final = re.compile(
    r"\bBearer\s+\S+|\b(?:sk|rk|pk)-[\w\-*.…]{4,}|[A-Za-z0-9_\-]{32,}", re.IGNORECASE
)


def scrub(text: str, key: str) -> str:
    """``text`` without the key, any run of 8+ of its characters, or anything key-like."""
    hidden = [False] * len(text)
    for run in _key_runs(key):
        start = text.find(run)
        while start != -1:
            hidden[start : start + len(run)] = [True] * len(run)
            start = text.find(run, start + 1)

    kept: list[str] = []
    for index, char in enumerate(text):
        if not hidden[index]:
            kept.append(char)
        elif index == 0 or not hidden[index - 1]:
            kept.append(_REDACTED)

    return _KEY_LIKE.sub(_REDACTED, "".join(kept))


def _key_runs(key: str) -> list[str]:
    # Every leaked run of 8+ characters contains one of these windows, so hiding each
    # window's occurrences hides the whole run. A key shorter than that is hidden whole.
    if len(key) < _MIN_LEAK_RUN:
        return [key] if key else []

    return [key[i : i + _MIN_LEAK_RUN] for i in range(len(key) - _MIN_LEAK_RUN + 1)]
