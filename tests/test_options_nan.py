"""Times and rates that are not numbers are refused when the options are made (config.py),
with the option's name: a NaN deadline has no order (a loop timer at NaN, a wheel bucket
key of NaN raises in the link at its handshake)."""

from __future__ import annotations

import pytest

from objtransport.config import Options

NAN = float("nan")


@pytest.mark.parametrize("name", ["keepalive_interval", "pong_timeout", "hello_timeout",
                                  "timeout", "raw_keepalive_interval", "max_bandwidth"])
def test_a_nan_time_or_rate_is_refused_by_name(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Options(**{name: NAN})


def test_infinity_stays_valid_for_a_time() -> None:
    """Infinity is an order (never): keepalive off (tests/test_keepalive_wheel.py)."""
    assert Options(keepalive_interval=float("inf")).keepalive_interval == float("inf")
