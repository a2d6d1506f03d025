"""The Redis key layout of salecast, in one place.

Every key starts with ``sc:`` and carries a Redis Cluster hash tag in braces, so all keys of
one entity hash to one slot and a Lua script may touch them together:

==============================================  ==================================================
key                                             holds
==============================================  ==================================================
``sc:{u:<user>}:st:<model>``                    hash ``v`` (float32 bytes), ``ts``, ``eid``: a
                                                model's recurrent user state and the (event time,
                                                event id) that produced it
``sc:{i:<item>}:st:<model>``                    the same for an item
``sc:{u:<user>}:ev:<event id>``                 idempotency key of one applied event (TTL)
``sc:{u:<user>}:seq``                           list, oldest first, of
                                                ``ts␟action␟category␟item␟event id`` (bounded:
                                                the newest N events); its tail is the user's
                                                newest applied event, the order guard
``sc:commits``                                  integer: events committed so far on a single
                                                server (each applied event's commit number)
``sc:{u:<user>}:cnt:<bucket s>:<bucket start>``  hash action -> count for one hour/day bucket (TTL)
``sc:{r:<region>}:h:<name>``                    hash row key (ISO date) -> float32 bytes, bounded
``sc:{r:<region>}:hrev``                        integer: incremented by every write to the
                                                region's histories (same script) or STMP task
                                                (right after); replicas reuse what they built
                                                from them while it is unchanged
``sc:pop:<model>:<version>``                    sorted set item -> applied events (popularity
                                                fallback shared by replicas), and its
                                                ``:seeded`` flag
==============================================  ==================================================

Why the braces hold a prefix letter: a user and an item with the same id must not share a
slot by accident (``{u:7}`` and ``{i:7}`` hash apart), and the tag then names the entity kind
so `SCAN` can find all states of one kind.

Ids are escaped (`escape`): Redis takes the hash tag as the text between the first ``{`` and
the first ``}`` after it, so an id containing ``}`` would otherwise cut the tag short and put
that user's keys on different slots. ``%``, ``{``, ``}`` and ``*?[]\\`` (glob characters, so
`SCAN MATCH` patterns built from ids stay literal) are percent-encoded; the encoding is
reversible (`unescape`) so SCAN results give back the original ids.
"""

from __future__ import annotations

import functools
import re
from typing import Literal

PREFIX = "sc"
COMMITS = f"{PREFIX}:commits"
# The event log of the single-writer mode (`service.events.log_applier`): the stream, the
# commit number of the last entry whose states are written, and the writer's lease.
EVENT_LOG = f"{PREFIX}:log"
EVENT_LOG_APPLIED = f"{PREFIX}:log:applied"
EVENT_LOG_LEASE = f"{PREFIX}:log:lease"
Entity = Literal["user", "item"]
_TAG_LETTER: dict[str, str] = {"user": "u", "item": "i"}
_ESCAPED = "%{}*?[]\\"
_NEEDS_ESCAPE = re.compile(r"[%{}*?\[\]\\]")


def escape(identifier: str) -> str:
    """Percent-encode the characters that could break a hash tag or a SCAN pattern."""
    if _NEEDS_ESCAPE.search(identifier) is None:  # almost every id: one C-level scan
        return identifier
    return "".join(f"%{ord(c):02X}" if c in _ESCAPED else c for c in identifier)


def unescape(text: str) -> str:
    """Inverse of `escape`."""
    if "%" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "%" and i + 3 <= len(text):
            out.append(chr(int(text[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@functools.lru_cache(maxsize=1 << 16)
def tag(entity: str, identifier: str) -> str:
    """``{u:<id>}`` / ``{i:<id>}``: the hash tag of one user or item."""
    return "{" + _TAG_LETTER[entity] + ":" + escape(identifier) + "}"


def user_tag(user_id: str) -> str:
    return tag("user", user_id)


def region_tag(region: str) -> str:
    return "{r:" + escape(region) + "}"


def state(model: str, entity: str, identifier: str) -> str:
    """A model's recurrent state of one user or item."""
    return f"{PREFIX}:{tag(entity, identifier)}:st:{escape(model)}"


def idempotency(user_id: str, event_id: str) -> str:
    """Marks one event of the user as applied; lives in the user's slot so the user-side Lua
    script can check and set it atomically with the state write."""
    return f"{PREFIX}:{user_tag(user_id)}:ev:{escape(event_id)}"


def sequence(user_id: str) -> str:
    """The user's bounded behaviour sequence."""
    return f"{PREFIX}:{user_tag(user_id)}:seq"


def counts(user_id: str, bucket_seconds: int, bucket_start: int) -> str:
    """Action counts of the user in the bucket ``[bucket_start, bucket_start + bucket_seconds)``.

    The granularity is part of the key, so switching a deployment from hourly to daily counts
    never mixes the two.
    """
    return f"{PREFIX}:{user_tag(user_id)}:cnt:{bucket_seconds}:{bucket_start}"


def popularity(model: str, version: str) -> str:
    """Sorted set: item -> events applied to it, as a model version's popularity fallback
    counts them (seeded from the artifact once, then one per applied event). No hash tag:
    on a cluster it lives on whichever node its name hashes to."""
    return f"{PREFIX}:pop:{escape(model)}:{escape(version)}"


def history(region: str, name: str) -> str:
    """A bounded float history (sales rows) of a region."""
    return f"{PREFIX}:{region_tag(region)}:h:{escape(name)}"


def history_revision(region: str) -> str:
    """Integer counter of a region's histories: incremented by every write to them, so a
    replica's copy of what it read is known to be current by one GET."""
    return f"{PREFIX}:{region_tag(region)}:hrev"


def state_pattern(model: str, entity: str) -> str:
    """SCAN MATCH pattern for every state of `model` of one entity kind."""
    return f"{PREFIX}:{{{_TAG_LETTER[entity]}:*}}:st:{escape(model)}"


def id_from_state_key(key: str, entity: str) -> str:
    """The (unescaped) id inside a state key's hash tag."""
    start = key.index("{") + 1 + len(_TAG_LETTER[entity]) + 1
    end = key.index("}", start)
    return unescape(key[start:end])
