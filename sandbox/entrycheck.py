"""``corral check``'s look at an agent's entry: import its module in a throwaway process and
say whether the entry function exists and can be called with the run's context.

Started as ``python -I -B -m corral.sandbox.entrycheck SPEC_JSON`` (``code``, ``entry``,
``limits``) by :mod:`corral.config.check`: in a new session, in an empty temporary folder that is
also its ``HOME`` and ``TMPDIR``, with the agent's plain environment and no secrets, under
the agent's resource limits (:func:`corral.sandbox.launcher.apply_rlimits`); the caller
kills its process group after a timeout. ``-B``: no ``__pycache__`` written into the
agent's code folder. What the module prints goes to stderr; the answer, one JSON object,
to the original stdout.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from corral.sandbox.launcher import apply_rlimits


def examine(code: str, entry: str) -> dict[str, Any]:
    """Import ``entry``'s module from ``code`` and look at its function. ``{"ok": true}``, or
    ``problem``: ``import`` (``type``, ``message``, ``where``: the agent's file:line),
    ``missing`` (``file``, ``functions``: what the module does define), ``not_callable``
    (``file``, ``type``) or ``arguments`` (``where``, ``signature``)."""
    module_name, func_name = entry.split(":", 1)
    sys.path.insert(0, code)
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:  # noqa: BLE001 - SystemExit or KeyboardInterrupt at import are the module's too
        return {"problem": "import", "type": type(exc).__name__, "message": _message(exc), "where": _where(exc, code)}
    file = getattr(module, "__file__", None)
    func = getattr(module, func_name, None)
    if func is None:
        functions = sorted(
            name
            for name, value in vars(module).items()
            if inspect.isfunction(value) and value.__module__ == module.__name__ and not name.startswith("_")
        )
        return {"problem": "missing", "file": file, "functions": functions}
    if not callable(func):
        return {"problem": "not_callable", "file": file, "type": type(func).__name__}
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # nothing to read (a builtin): its call is seen at run time
        return {"ok": True}
    try:
        signature.bind(None)  # the runtime calls it with one positional argument, the ctx
    except TypeError:
        return {"problem": "arguments", "where": _defined_at(func) or file, "signature": str(signature)}
    return {"ok": True}


def _message(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return str(exc.msg)
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails still has a type to show
        return repr(exc)


def _where(exc: BaseException, code: str) -> str | None:
    """``file:line`` of the failure: for a syntax error its own, else the innermost frame in
    the agent's code folder (the last frame when none is)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    folder = Path(code).resolve()
    own = [frame for frame in frames if folder in Path(frame.filename).resolve().parents]
    chosen = own or list(frames)
    return f"{chosen[-1].filename}:{chosen[-1].lineno}" if chosen else None


def _defined_at(func: Any) -> str | None:
    code = getattr(inspect.unwrap(func), "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else None


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m corral.sandbox.entrycheck SPEC_JSON (started by `corral check` only)\n")
        raise SystemExit(64)
    spec = json.loads(args[0])
    answer = os.dup(1)
    os.dup2(2, 1)  # what the module prints is not the answer
    apply_rlimits(spec.get("limits", {}))
    result = examine(spec["code"], spec["entry"])
    data = json.dumps(result).encode()
    while data:
        data = data[os.write(answer, data) :]
    os._exit(0)  # not the module's threads or atexit handlers


if __name__ == "__main__":
    main()
