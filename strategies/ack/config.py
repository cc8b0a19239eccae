from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from strategies._registry import StrategyConfig


class ThreeStateAckConfig(StrategyConfig):
    """Sent after the durable write, delivered per device ack (tracked, retried, dead-lettered), read per mark."""

    implementation = "strategies.ack.policies:ThreeStateAck"
    kind: Literal["three_state"] = "three_state"


class AckOffConfig(StrategyConfig):
    """Fire and forget: no `message.sent`, no push tracking or retry, no receipts (the ack experiment's control)."""

    implementation = "strategies.ack.policies:AckOff"
    kind: Literal["off"] = "off"


AckConfig = Annotated[ThreeStateAckConfig | AckOffConfig, Field(discriminator="kind")]
