"""Labelled metric children (core/metrics.py): one child per label set, however the values are given."""

from __future__ import annotations

import pytest

from core.errors import ErrorCode
from core.metrics import Metrics


def test_a_label_set_has_one_child_whatever_the_value_types() -> None:
    m = Metrics()
    errors = m.errors
    errors.labels(ErrorCode.INVALID).inc()
    errors.labels("invalid").inc()
    assert errors.labels(ErrorCode.INVALID) is errors.labels("invalid")
    closed = m.connections_closed
    closed.labels(1000).inc()
    assert closed.labels("1000") is closed.labels(1000)
    assert {k: c.value for k, c in errors.children().items()} == {("invalid",): 2.0}  # type: ignore[attr-defined]


def test_a_wrong_number_of_labels_is_refused_every_time() -> None:
    m = Metrics()
    for _ in range(2):
        with pytest.raises(ValueError, match="takes labels"):
            m.errors.labels("invalid", "extra")
