"""Rendered rows kept for the next refetch: a run's steps and log lines do not change once
written, and a run's page followed live is rendered again every second with the same
hundred of each (10 ms of Jinja a refetch, on the interpreter the agents' steps need).

A row is keyed by a digest of everything it is rendered from, so a step that changes (done,
approved) is a new row; rows not asked for lately are forgotten first.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from typing import Any

import jinja2
from markupsafe import Markup

from corral.packing import pack

KEPT = 4096
"""Rows kept: a page shows at most 100 steps and 100 log lines, so about twenty pages' worth."""
KEPT_CHARS = 16 * 2**20
"""Characters of HTML kept at most, whatever the rows' count: a model step's row holds its
whole answer, so 4,096 long ones alone could hold gigabytes."""


class Rows:
    """``row(name, *values)`` in a template: the macro ``name`` of ``rows.html`` called with
    ``values``, from memory when it was rendered with the same values before. Pages render
    on worker threads, so the memory is shared under a lock (held only to look up and store)."""

    def __init__(self, env: jinja2.Environment, kept: int = KEPT, kept_chars: int = KEPT_CHARS) -> None:
        self._env = env
        self._kept = kept
        self._kept_chars = kept_chars
        self._chars = 0
        self._rows: OrderedDict[bytes, Markup] = OrderedDict()
        self._lock = threading.Lock()

    @functools.cached_property
    def _macros(self) -> Any:
        return self._env.get_template("rows.html").module

    def __call__(self, name: str, *values: Any) -> Markup:
        macro = getattr(self._macros, name)
        try:
            key = hashlib.blake2b(pack([name, *values]), digest_size=16).digest()
        except (TypeError, ValueError, OverflowError):  # a log field msgpack cannot hold: rendered each time
            return Markup(macro(*values))
        with self._lock:
            html = self._rows.get(key)
            if html is not None:
                self._rows.move_to_end(key)
                return html
        html = Markup(macro(*values))
        if len(html) > self._kept_chars // 64:
            return html  # one huge answer would push out everything else
        with self._lock:
            if key not in self._rows:
                self._rows[key] = html
                self._chars += len(html)
            while len(self._rows) > self._kept or self._chars > self._kept_chars:
                self._chars -= len(self._rows.popitem(last=False)[1])
        return html
