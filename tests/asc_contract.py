"""The App Store Connect contract the fake and the bot are held to: every call the fake was
sent, and what it answered, checked against asc-release-subset.json (App Store Connect's
OpenAPI 4.4.1 cut to the build and release-train operations), in ../shared/provider-docs.

A call is valid when its operation is in the subset, its query parameters are ones the
operation documents (with values from their enums), its body validates against the
operation's request schema, and the answer validates against the schema of its status. The one
allowance is JSON:API's empty to-one relationship, `{"data": null}`, which App Store Connect
answers for a version without a build or a phased release although its schemas don't say so.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from bot.sandbox.calls import Call

SUBSET = (
    Path(__file__).resolve().parents[2] / "shared" / "provider-docs" / "asc-release-subset.json"
)
_URI = "urn:asc-release-subset"


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    pattern: re.Pattern[str]
    spec: dict[str, Any]


@functools.cache
def _contract() -> tuple[list[Operation], Registry] | None:
    if not SUBSET.is_file():
        if os.environ.get("CI"):
            raise RuntimeError(f"the App Store Connect contract is missing at {SUBSET}")
        return None
    document = json.loads(SUBSET.read_text())
    operations = []
    for template, item in document["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
        for method, spec in item.items():
            if method != "parameters":
                operations.append(Operation(method.upper(), template, pattern, spec))
    registry = Registry().with_resource(_URI, Resource(contents=document, specification=DRAFT7))
    return operations, registry


def available() -> bool:
    return _contract() is not None


def _schema_errors(registry: Registry, ref: str, instance: Any) -> list[str]:
    name = ref.rsplit("/", 1)[-1]
    validator = jsonschema.Draft7Validator({"$ref": f"{_URI}{ref}"}, registry=registry)
    return [
        f"{name} at {'/'.join(map(str, e.absolute_path)) or 'top'}: {e.message[:200]}"
        for e in validator.iter_errors(instance)
    ]


def violations(call: Call) -> list[str]:
    """What in one call (and its answer) breaks the contract; [] when nothing does."""
    contract = _contract()
    if contract is None:
        return []
    operations, registry = contract
    path, _, query = call.path.partition("?")
    op = next((o for o in operations if o.method == call.method and o.pattern.match(path)), None)
    if op is None:
        return [f"{call.method} {path}: not an operation of the subset"]
    problems = []
    where = f"{call.method} {op.template}"
    documented = {p["name"]: p for p in op.spec.get("parameters", []) if p.get("in") == "query"}
    given = parse_qsl(query, keep_blank_values=True)
    for name, value in given:
        parameter = documented.get(name)
        if parameter is None:
            problems.append(f"{where}: query parameter {name} is not documented")
            continue
        schema = parameter.get("schema", {})
        allowed = schema.get("items", {}).get("enum") or schema.get("enum")
        values = value.split(",") if schema.get("type") == "array" else [value]
        for v in values:
            if allowed and v not in allowed:
                problems.append(f"{where}: {name}={v} is not one of its values")
        if schema.get("type") == "integer" and not value.isdigit():
            problems.append(f"{where}: {name}={value} is not an integer")
        if schema.get("maximum") is not None and value.isdigit() and int(value) > schema["maximum"]:
            problems.append(f"{where}: {name}={value} is over {schema['maximum']}")
    for name, parameter in documented.items():
        if parameter.get("required") and name not in dict(given):
            problems.append(f"{where}: the required {name} is missing")
    body = op.spec.get("requestBody")
    if body is not None:
        ref = body["content"]["application/json"]["schema"]["$ref"]
        if call.body is None:
            problems.append(f"{where}: no body")
        else:
            problems += [f"{where} body: {e}" for e in _schema_errors(registry, ref, call.body)]
    elif call.body is not None:
        problems.append(f"{where}: a body it does not take")
    if call.status is not None:
        response = op.spec["responses"].get(str(call.status))
        if response is None:
            problems.append(f"{where}: answered {call.status}, not a documented status")
        elif "content" in response:
            ref = response["content"]["application/json"]["schema"]["$ref"]
            answer = call.answer
            to_one = op.template.rsplit("/", 1)[-1] in _TO_ONE
            if not (to_one and isinstance(answer, dict) and answer.get("data") is None):
                problems += [
                    f"{where} answer {call.status}: {e}"
                    for e in _schema_errors(registry, ref, answer)
                ]
    return problems


_TO_ONE = {"build", "appStoreVersion", "appStoreVersionPhasedRelease", "betaAppReviewSubmission"}


def check(calls: list[Call]) -> None:
    """Assert that every call keeps the contract, listing each that doesn't."""
    problems = [p for call in calls for p in violations(call)]
    assert not problems, "App Store Connect contract broken:\n" + "\n".join(problems)
