from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from strategies.ids.config import SnowflakeConfig
from strategies.ids.snowflake import MAX_SEQ, SnowflakeIds
from tests.support.context import strategy_context

NOW = 1_750_000_000_000


def gen(node: int) -> SnowflakeIds:
    return SnowflakeIds(SnowflakeConfig(node_id=node), strategy_context())


def test_ids_increase_and_embed_time() -> None:
    g = gen(5)
    ids = [g.next_id(NOW + i // 3) for i in range(30)]
    assert ids == sorted(ids) and len(set(ids)) == 30
    assert SnowflakeIds.timestamp_ms(ids[0]) == NOW


def test_two_nodes_never_collide() -> None:
    a, b = gen(1), gen(2)
    ids = {a.next_id(NOW) for _ in range(1000)} | {b.next_id(NOW) for _ in range(1000)}
    assert len(ids) == 2000


def test_clock_rollback_keeps_ids_unique_and_increasing() -> None:
    g = gen(3)
    first = [g.next_id(NOW) for _ in range(10)]
    back = [g.next_id(NOW - 5000) for _ in range(10)]  # wall clock stepped back 5 s
    assert g.rollbacks == 10
    assert first + back == sorted(first + back) and len(set(first + back)) == 20


def test_sequence_overflow_borrows_next_millisecond() -> None:
    g = gen(0)
    ids = [g.next_id(NOW) for _ in range(MAX_SEQ + 10)]
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
    assert SnowflakeIds.timestamp_ms(ids[-1]) == NOW + 1


@given(st.lists(st.integers(min_value=-10_000, max_value=10_000), min_size=1, max_size=300))
def test_property_unique_and_monotonic_under_any_clock(jitter: list[int]) -> None:
    g = gen(7)
    ids = [g.next_id(NOW + j) for j in jitter]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
