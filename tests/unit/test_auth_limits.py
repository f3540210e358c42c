"""Passwords (scrypt), the rate limiter and the failed-login throttle."""
from __future__ import annotations

import errno

import pytest

from middlewared.errors import CallError
from middlewared.plugins.auth.limits import FailureThrottle, RateLimiter
from middlewared.plugins.auth.passwords import hash_password, verify_password


def test_password_hashes() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("$scrypt$ln=14,r=8,p=1$") and "correct" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("wrong horse", stored)
    assert hash_password("correct horse") != stored  # salted
    for bad in (None, "", "plain", "$scrypt$garbage", "$scrypt$ln=14,r=8,p=1$@@$@@"):
        assert not verify_password("correct horse", bad)


async def test_rate_limit_per_key() -> None:
    limiter = RateLimiter(20, 60)
    assert all(limiter.hit("1.2.3.4|core.ping") for _ in range(20))
    assert not limiter.hit("1.2.3.4|core.ping")
    assert limiter.hit("1.2.3.4|auth.login") and limiter.hit("5.6.7.8|core.ping")
    limiter.period = 0  # the window has passed
    assert limiter.hit("1.2.3.4|core.ping")


async def test_rate_limit_error(monkeypatch: pytest.MonkeyPatch) -> None:
    limiter = RateLimiter(1, 60)
    monkeypatch.setattr("middlewared.plugins.auth.limits.random.uniform", lambda a, b: 0.0)
    await limiter.check("k")
    with pytest.raises(CallError) as e:
        await limiter.check("k")
    assert (e.value.errno, e.value.errmsg) == (errno.EBUSY, "Rate Limit Exceeded")


def test_failure_delay_grows_per_address() -> None:
    throttle = FailureThrottle(1.0)
    first = throttle.delay("a")
    assert 1.0 <= first <= 2.0
    throttle.delay("a")
    third = throttle.delay("a")
    assert 2.0 <= third <= 4.0 and throttle.recent("a") == 3
    assert throttle.delay("b") <= 2.0  # another address starts afresh
    assert FailureThrottle(0.0).delay("a") == 0.0
