"""Which shard of a run each case belongs to (``--llm-shard=K/N``): a pure function of
the set of cases, so N CI jobs, each collecting the same suites, cut them the same way
without talking to each other.

The scheme: every case is keyed by its suite and id (never by model or repeat, so every
model and every repeat of a case land in one shard, and pairing and repeats stay whole);
the keys are ordered by a SHA-256 of the key (stable across processes and machines,
unlike ``hash()``), and the ordered list is cut into N contiguous blocks:
the case of rank ``r`` among ``M`` goes to shard ``r * N // M + 1``.

- Balance: the blocks' sizes differ by at most one case.
- Stability: adding (or removing) one case moves at most N - 1 of the others to another
  shard (each block's edge shifts by at most one place); the rest stay where they were.

Why not something else:

- A per-case hash mod N (pytest-shard) or rendezvous hashing moves no other case when
  one is added, but balances only on average: with 30 cases over 3 shards, the largest
  has 13 or more about half the time.
- Sorting and dealing round-robin (rank mod N) balances within one, but adding a case
  shifts the shard of about every case ranked after it; so does slicing the cases as
  written into ranges (promptfoo's ``--filter-range``), for every case after the new one.
- pytest-split balances by recorded durations: a file of timings to keep, and cases
  move whenever the timings do.

Both properties at once cannot be had: with two shards, any two cases must be apart
(balance), so of three cases {a, b, c} every pair is apart, in two shards; and with
zero moves the three-case cut would keep every two-case cut. So balance is exact and
the moves are bounded instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def case_key(suite: str, case: str) -> str:
    """What a case is sharded by: its suite and id (the unit separator keeps "a", "b/c"
    and "a/b", "c" apart)."""
    return f"{suite}\x1f{case}"


def _order(key: str) -> tuple[bytes, str]:
    # The key itself breaks a tie, so the order is total even in a collision.
    return hashlib.sha256(key.encode("utf-8")).digest(), key


def assign(keys: Iterable[str], total: int) -> dict[str, int]:
    """Each distinct key's shard, 1 to ``total``."""
    if total < 1:
        raise ValueError(f"shards must be at least 1, not {total}")
    ordered = sorted(set(keys), key=_order)
    return {key: rank * total // len(ordered) + 1 for rank, key in enumerate(ordered)}


def select(
    items: Iterable[T], key: Callable[[T], str | None], index: int, total: int
) -> tuple[list[T], list[T]]:
    """``items`` split into those of shard ``index`` of ``total`` and the others, each in
    its own order. An item whose key is None (not a case) is kept in every shard."""
    keyed = [(item, key(item)) for item in items]
    shards = assign((k for _, k in keyed if k is not None), total)
    kept: list[T] = []
    dropped: list[T] = []
    for item, k in keyed:
        (kept if k is None or shards[k] == index else dropped).append(item)
    return kept, dropped
