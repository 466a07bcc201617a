"""The state and log API's OpenAPI document: a valid OpenAPI 3.1 document (checked by
openapi-spec-validator where it is installed), shipped in the package, and describing exactly
the routes the door serves (the answers themselves are checked against it end to end, in
tests/e2e/test_command_agents.py)."""

from __future__ import annotations

import importlib.resources
import json

import pytest

from corral.sandbox.door.api import ROUTES
from tests.door.openapi import SPEC

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def test_the_document_is_valid_openapi_3_1() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    assert SPEC["openapi"].startswith("3.1")
    validator.validate(SPEC)


def test_the_document_describes_every_route_the_door_serves_and_no_other() -> None:
    served = {(route.method, route.path) for route in ROUTES}
    described = {(method.upper(), path) for path, item in SPEC["paths"].items() for method in item if method in METHODS}
    assert served == described


def test_the_document_ships_in_the_package() -> None:
    shipped = importlib.resources.files("corral.sandbox.door").joinpath("openapi.json").read_text()
    assert json.loads(shipped) == SPEC
