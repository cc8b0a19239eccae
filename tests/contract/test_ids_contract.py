"""The id generator contract (strategies/ids/base.py) for every registered kind, on explicit wall-clock readings.

Ids from one generator strictly increase, also when the clock steps back or a millisecond is exhausted; ids of
generators with distinct node ids never collide; ids are positive signed 64-bit integers (a BIGINT column), and
ids taken a second apart are ordered by time whichever node issued them."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from strategies import ids
from strategies.ids.base import IdGenerator
from tests.support.context import strategy_context
from tests.support.contract import contract_config

NOW_MS = 1_800_000_000_000
Make = Callable[[int], IdGenerator]


@pytest.fixture(params=ids.REGISTRY.names())
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Make:
    kind: str = request.param

    def build(node_id: int = 0) -> IdGenerator:
        g = ids.REGISTRY.create(contract_config(ids.REGISTRY, kind), strategy_context(tmp_path))
        g.set_node_id(node_id)
        return g

    return build


def test_ids_strictly_increase_even_when_the_clock_steps_back(make: Make) -> None:
    g = make(1)
    times = [NOW_MS, NOW_MS, NOW_MS + 5, NOW_MS + 2, NOW_MS - 1000, NOW_MS + 5, NOW_MS + 6]
    issued = [g.next_id(t) for t in times]
    assert issued == sorted(issued) and len(set(issued)) == len(issued)


def test_a_burst_in_one_millisecond_stays_unique_and_increasing(make: Make) -> None:
    g = make(2)
    issued = [g.next_id(NOW_MS) for _ in range(20_000)]
    assert all(a < b for a, b in itertools.pairwise(issued))


def test_distinct_node_ids_never_collide(make: Make) -> None:
    a, b = make(0), make(1)
    count = a.node_id_count
    c = make(count - 1)
    seen: set[int] = set()
    for t in range(NOW_MS, NOW_MS + 50):
        for g in (a, b, c):
            for _ in range(30):
                seen.add(g.next_id(t))
    assert len(seen) == 50 * 3 * 30


def test_ids_fit_a_signed_64_bit_column_and_follow_time(make: Make) -> None:
    a, b = make(3), make(0)
    first = a.next_id(NOW_MS)
    later = b.next_id(NOW_MS + 1000)
    assert 0 < first < later < 2**63


def test_node_ids_outside_the_range_are_refused(make: Make) -> None:
    g = make(0)
    g.set_node_id(g.node_id_count - 1)
    assert g.node_id == g.node_id_count - 1
    for bad in (-1, g.node_id_count):
        with pytest.raises(ValueError, match="node_id"):
            g.set_node_id(bad)
