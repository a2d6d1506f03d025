"""The behaviour funnel every model reads: one vocabulary of actions, its aliases and codes.

Adapters map each source's codes onto these four names; the events API also accepts the
common aliases below. Models encode an action as `ACTION_IDS[name]` (0 is padding) or by
its position in `ACTIONS` (funnel order). Training imports this module, so a fifth action
or a new alias is one edit here.
"""

from __future__ import annotations

from typing import Literal, get_args

Action = Literal["browse", "collect", "cart", "purchase"]
#: Funnel order: browse < collect < cart < purchase.
ACTIONS: tuple[str, ...] = get_args(Action)
#: Codes for embedding tables, 0 reserved for padding.
ACTION_IDS: dict[str, int] = {name: i + 1 for i, name in enumerate(ACTIONS)}
#: What clients may send for each action, including the names themselves.
ACTION_ALIASES: dict[str, str] = {
    **{a: a for a in ACTIONS},
    "click": "browse",
    "pv": "browse",
    "view": "browse",
    "fav": "collect",
    "favorite": "collect",
    "buy": "purchase",
    "order": "purchase",
}
