from __future__ import annotations

from strategies.context import StrategyContext
from strategies.ids.config import SnowflakeConfig

TIME_BITS = 41
NODE_BITS = 10
SEQ_BITS = 12
MAX_NODE = (1 << NODE_BITS) - 1
MAX_SEQ = (1 << SEQ_BITS) - 1


class SnowflakeIds:
    """41 bits of milliseconds since ``epoch_ms``, 10 bits of node id, 12 bits of sequence.

    Clock rollback: the generator never uses a timestamp below the last one it issued. When the wall clock steps
    back it keeps counting on the last millisecond, and when that millisecond's 4096 ids are spent it borrows the
    next millisecond ("logical time runs ahead"), so ids stay unique and increasing without blocking. The drift is
    bounded by the id rate and shrinks as soon as the wall clock catches up.
    """

    def __init__(self, config: SnowflakeConfig, ctx: StrategyContext) -> None:
        del ctx
        if not 0 <= config.node_id <= MAX_NODE:
            raise ValueError(f"node_id must be in 0..{MAX_NODE}")
        self._node = config.node_id
        self._epoch = config.epoch_ms
        self._last_ms = -1
        self._seq = 0
        self.rollbacks = 0

    @property
    def node_id(self) -> int:
        return self._node

    @property
    def node_id_count(self) -> int:
        return MAX_NODE + 1

    def set_node_id(self, node_id: int) -> None:
        """Adopt a leased node id. Safe after ids were issued too: ids are unique per (time, node, sequence), and
        a released id's previous holder stopped renewing it at least a lease ago, so it issued nothing newer."""
        if not 0 <= node_id <= MAX_NODE:
            raise ValueError(f"node_id must be in 0..{MAX_NODE}")
        self._node = node_id

    def next_id(self, now_ms: int) -> int:
        t = now_ms - self._epoch
        if t < 0:
            raise ValueError("clock is before the snowflake epoch")
        if t < self._last_ms:
            self.rollbacks += 1
            t = self._last_ms
        if t == self._last_ms:
            self._seq += 1
            if self._seq > MAX_SEQ:
                t = self._last_ms + 1
                self._seq = 0
        else:
            self._seq = 0
        self._last_ms = t
        return (t << (NODE_BITS + SEQ_BITS)) | (self._node << SEQ_BITS) | self._seq

    @staticmethod
    def timestamp_ms(snowflake: int, epoch_ms: int = 1_704_067_200_000) -> int:
        return (snowflake >> (NODE_BITS + SEQ_BITS)) + epoch_ms
