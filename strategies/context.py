"""What the composition root hands every strategy it builds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.clock import Clock
from core.metrics import Metrics


@dataclass(frozen=True)
class StrategyContext:
    clock: Clock
    metrics: Metrics
    data_dir: Path
    # Stable name of this node in a cluster ("node-1"); single-node servers use "local".
    node_name: str
