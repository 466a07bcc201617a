"""The door's state and log API against its shipped OpenAPI document: which operation a
request was, and whether an answer is one the document describes (checked with ``jsonschema``;
OpenAPI 3.1's schemas are JSON Schema 2020-12)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from corral.sandbox.door import API_PREFIX
from corral.sandbox.door.api import DOCUMENT

SPEC: dict[str, Any] = json.loads(DOCUMENT.read_text())


def template(path: str) -> str:
    """The document's path for ``path`` (relative to the API's base, as the agents ask)."""
    full = API_PREFIX + path.split("?", 1)[0]
    return f"{API_PREFIX}/state/{{key}}" if full.startswith(f"{API_PREFIX}/state/") else full


def answer_problems(answers: list[list[Any]]) -> list[str]:
    """Each ``[method, path, status, body]`` the document does not describe, as a sentence.

    An answer to a path or method the API does not serve (404, 405) has no operation; its
    body must still be the document's ``Error``."""
    problems = []
    for method, path, status, body in answers:
        operation = SPEC["paths"].get(template(path), {}).get(method.lower())
        if operation is None:
            if status not in (404, 405):
                problems.append(f"{method} {path}: {status} for an operation the document lacks")
            schema: dict[str, Any] = {"$ref": "#/components/schemas/Error"}
        elif str(status) not in operation["responses"]:
            problems.append(f"{method} {path}: status {status} is not among {sorted(operation['responses'])}")
            continue
        else:
            schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
        validator = jsonschema.Draft202012Validator({**schema, "components": SPEC["components"]})
        problems += [f"{method} {path} {status}: {error.message}" for error in validator.iter_errors(body)]
    return problems
