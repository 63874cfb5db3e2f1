"""I/O latency is not implemented: asking for it says why, after checking its arguments, and touches nothing."""

from __future__ import annotations

import pytest

from chaoskit.chaos import Chaos
from chaoskit.errors import FaultUnsupported, SpecError


def test_io_latency_is_refused_as_unsupported_saying_why():
    chaos = Chaos.__new__(Chaos)  # no cluster: nothing is planned, recorded or reached
    with pytest.raises(FaultUnsupported, match=r"I/O latency is not implemented: .*dm-delay"):
        chaos.io_latency("shop", "app=redis", 50)
    with pytest.raises(SpecError, match="delay_ms must be in 1-60000"):
        chaos.io_latency("shop", "app=redis", 0)
