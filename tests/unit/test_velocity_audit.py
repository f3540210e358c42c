"""Which Velocity endpoints reach the audit log: every one that may change state, none that only reads."""
from __future__ import annotations

from middlewared.plugins.velocity import ENDPOINTS

READS = {"/u/user", "/u/user/list", "/u/group", "/u/group/list", "/m/pool/list", "/m/media/list",
         "/m/media/download", "/v/vm/list", "/v/vm", "/v/nic/list", "/v/vm/state", "/v/vm/console"}


def test_only_post_reads_go_unaudited() -> None:
    unaudited = {(e.method, e.path) for e in ENDPOINTS if e.audit is None}
    assert unaudited == {("POST", path) for path in READS}


def test_logins_and_logouts_are_their_own_events() -> None:
    events = {(e.method, e.path): e.audit for e in ENDPOINTS}
    assert events[("POST", "/u/auth")] == "AUTHENTICATION" and events[("DELETE", "/u/auth")] == "LOGOUT"
    assert {e.audit for e in ENDPOINTS if e.path != "/u/auth"} == {None, "METHOD_CALL"}
