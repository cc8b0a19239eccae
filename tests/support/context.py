"""The context every strategy is built with, for tests that build one directly (not through a node)."""

from __future__ import annotations

from pathlib import Path

from core.clock import Clock, FakeClock
from core.metrics import Metrics
from strategies.context import StrategyContext


def strategy_context(
    data_dir: Path | None = None, clock: Clock | None = None, node: str = "test"
) -> StrategyContext:
    return StrategyContext(clock or FakeClock(), Metrics(), data_dir or Path(), node)
