"""How many fuzz cases ran and how many payloads they tried (printed and written by conftest)."""

from __future__ import annotations

from collections import defaultdict

STATS: dict[str, dict[str, int]] = defaultdict(lambda: {"cases": 0, "payloads": 0, "bytes": 0})


def tally(test: str, payloads: int = 1, size: int = 0) -> None:
    """One more example of ``test``: ``payloads`` inputs tried, ``size`` bytes in all."""
    entry = STATS[test]
    entry["cases"] += 1
    entry["payloads"] += payloads
    entry["bytes"] += size
