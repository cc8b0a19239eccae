from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from strategies._registry import StrategyConfig


class ThreeStateAckConfig(StrategyConfig, implementation="strategies.ack.policies:ThreeStateAck"):
    """Sent after the durable write, delivered per device ack (tracked, retried, dead-lettered), read per mark."""

    kind: Literal["three_state"] = "three_state"


class AckOffConfig(StrategyConfig, implementation="strategies.ack.policies:AckOff"):
    """Fire and forget: no `message.sent`, no push tracking or retry, no receipts (the ack experiment's control)."""

    kind: Literal["off"] = "off"


AckConfig = Annotated[ThreeStateAckConfig | AckOffConfig, Field(discriminator="kind")]
