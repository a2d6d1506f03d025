"""The Lua scripts of the state store, loaded once and run by SHA.

Each script is its own ``.lua`` file beside this module. Scripts that compare versions start
with `version_order.lua` (the one copy of the ``(ts, event id)`` order), joined here, because
Redis scripts cannot import one another. A script runs as ``EVALSHA``; a server that does not
know it (restarted, or ``SCRIPT FLUSH``) answers ``NOSCRIPT`` and the store loads it and runs
the refused calls again, which is safe because a refused call did not run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

PRELUDE = "version_order.lua"


def _source(name: str) -> str:
    return resources.files("service.state").joinpath(name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Script:
    """A Lua script's text and SHA1, as ``SCRIPT LOAD`` and ``EVALSHA`` use them."""

    name: str
    source: str
    sha: str

    @classmethod
    def load(cls, name: str, *, ordered: bool = True) -> Script:
        """The script in `name`, with the version order first when `ordered`."""
        body = _source(name)
        source = _source(PRELUDE) + "\n" + body if ordered else body
        return cls(name, source, hashlib.sha1(source.encode()).hexdigest())


CAS_STATE = Script.load("cas_state.lua")
APPLY_USER = Script.load("apply_user.lua")
APPLY_WAVE = Script.load("apply_wave.lua")
HISTORY_APPEND = Script.load("history_append.lua", ordered=False)
APPEND_LOG = Script.load("append_log.lua")
APPLY_LOG = Script.load("apply_log.lua", ordered=False)
RENEW_LEASE = Script.load("renew_lease.lua", ordered=False)
ALL = (CAS_STATE, APPLY_USER, APPLY_WAVE, HISTORY_APPEND, APPEND_LOG, APPLY_LOG, RENEW_LEASE)
