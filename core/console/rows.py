"""Rendered rows kept for the next refetch: a run's steps and log lines do not change once
written, and a run's page followed live is rendered again every second with the same
hundred of each (10 ms of Jinja a refetch, on the interpreter the agents' steps need).

A row is keyed by a digest of everything it is rendered from, so a step that changes (done,
approved) is a new row; rows not asked for lately are forgotten first.
"""

from __future__ import annotations

import functools
import hashlib
import sys
import threading
from collections import OrderedDict
from typing import Any

import jinja2
from markupsafe import Markup

from corral.packing import pack

KEPT = 4096
"""Rows kept: a page shows at most 100 steps and 100 log lines, so about twenty pages' worth."""
KEPT_BYTES = 16 * 2**20
"""Memory the kept rows may take, whatever their count (``sys.getsizeof``: a character may
take 4 bytes): a model step's row holds up to 64 K characters of its answer."""


class Rows:
    """``row(name, *values)`` in a template: the macro ``name`` of ``rows.html`` called with
    ``values``, from memory when it was rendered with the same values before. Pages render
    on worker threads, so the memory is shared under a lock (held only to look up and store)."""

    def __init__(self, env: jinja2.Environment, kept: int = KEPT, kept_bytes: int = KEPT_BYTES) -> None:
        self._env = env
        self._kept = kept
        self._kept_bytes = kept_bytes
        self._bytes = 0
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
        size = sys.getsizeof(html)
        if size > self._kept_bytes // 64:
            return html  # one huge row would push out everything else
        with self._lock:
            if key not in self._rows:
                self._rows[key] = html
                self._bytes += size
            while len(self._rows) > self._kept or self._bytes > self._kept_bytes:
                self._bytes -= sys.getsizeof(self._rows.popitem(last=False)[1])
        return html
