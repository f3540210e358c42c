"""Passwords (scrypt), the rate limiter and the failed-login throttle."""
from __future__ import annotations

import errno

import pytest

from middlewared.errors import CallError
from middlewared.plugins.auth.limits import (ADDRESS_FAILURE_LIMIT, FAILURE_MEMORY, PAIR_FAILURE_LIMIT, FailureThrottle,
                                            RateLimiter)
from middlewared.plugins.auth.passwords import hash_password, verify_password


def test_password_hashes() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("$scrypt$ln=14,r=8,p=1$") and "correct" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("wrong horse", stored)
    assert hash_password("correct horse") != stored  # salted
    for bad in (None, "", "plain", "$scrypt$garbage", "$scrypt$ln=14,r=8,p=1$@@$@@"):
        assert not verify_password("correct horse", bad)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        monkeypatch.setattr("middlewared.plugins.auth.limits.time.monotonic", lambda: self.now)


async def test_rate_limit_per_address_then_cool_down(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    limiter = RateLimiter(20, 60)
    assert all(limiter.hit("1.2.3.4") for _ in range(20))
    assert not limiter.hit("1.2.3.4") and limiter.hit("5.6.7.8")
    clock.now += 59
    assert not limiter.hit("1.2.3.4")  # cooling down: the window alone would have let one through
    clock.now += 1.5
    assert all(limiter.hit("1.2.3.4") for _ in range(20))  # the cool-down is over: a full allowance
    assert not limiter.hit("1.2.3.4")


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
    assert 2.0 <= third <= 4.0 and throttle.addresses.recent("a") == 3
    assert throttle.delay("b") <= 2.0  # another address starts afresh
    assert FailureThrottle(0.0).delay("a") == 0.0


def test_failures_as_one_name_refuse_that_address_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """An attacker failing as root locks only themselves out: root logs in from anywhere else."""
    clock = Clock(monkeypatch)
    throttle = FailureThrottle(1.0)
    for _ in range(PAIR_FAILURE_LIMIT - 1):
        throttle.delay("10.0.0.66", "root")
    assert throttle.refusal("10.0.0.66", "root") is None
    throttle.delay("10.0.0.66", "root")
    assert throttle.refusal("10.0.0.66", "root") == \
        "Too many failed logins for this user from this address; try again later"
    assert throttle.refusal("10.0.0.1", "root") is None  # the administrator's own address
    assert throttle.refusal("10.0.0.66", "alice") is None and throttle.refusal("10.0.0.66", None) is None
    clock.now += FAILURE_MEMORY + 1
    assert throttle.refusal("10.0.0.66", "root") is None


def test_failures_over_many_names_refuse_the_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-address limit holds however the guesses are spread over user names (and for none)."""
    clock = Clock(monkeypatch)
    throttle = FailureThrottle(1.0)
    for n in range(ADDRESS_FAILURE_LIMIT):
        assert throttle.refusal("10.0.0.66", f"user{n}") is None
        throttle.delay("10.0.0.66", f"user{n}")
    for name in ("root", "someone-new", None):
        assert throttle.refusal("10.0.0.66", name) == "Too many failed logins from this address; try again later"
    assert throttle.refusal("10.0.0.1", "user0") is None
    clock.now += FAILURE_MEMORY + 1
    assert throttle.refusal("10.0.0.66", "root") is None


def test_failures_as_one_name_from_many_addresses_slow_it_down() -> None:
    """Guesses spread over addresses refuse nobody, but each failure of that name waits longer."""
    throttle = FailureThrottle(1.0)
    for n in range(3 * PAIR_FAILURE_LIMIT):
        throttle.delay(f"10.0.{n}.1", "root")
    assert throttle.refusal("10.0.99.1", "root") is None
    assert throttle.delay("10.0.99.1", "root") >= 1.0 * (1 + 0.5 * 8)
