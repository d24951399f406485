"""How the fake App Store Connect answers, in the API's own JSON:API shapes: documents,
`errors` bodies, and the checks of a request's parameters and body that Apple answers with
400, 404, 409 or 422 (asc-release-subset.json)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

IN_PROGRESS = "another reviewSubmission still in progress"


class Refused(Exception):
    """Raised by a handler to answer with an `errors` body."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def errors(status: int, code: str, title: str, detail: str, **headers: str) -> web.Response:
    body = {
        "errors": [
            {
                "id": str(uuid.uuid4()),
                "status": str(status),
                "code": code,
                "title": title,
                "detail": detail,
            }
        ]
    }
    return web.json_response(body, status=status, headers=headers)


def unauthorized(detail: str) -> web.Response:
    return errors(
        401, "NOT_AUTHORIZED", "Authentication credentials are missing or invalid.", detail
    )


def forbidden(detail: str) -> web.Response:
    return errors(403, "FORBIDDEN_ERROR", "This request is forbidden for security reasons", detail)


def not_found(kind: str, rid: str) -> web.Response:
    return errors(
        404,
        "NOT_FOUND",
        "The specified resource does not exist",
        f"There is no resource of type '{kind}' with id '{rid}'",
    )


def state_error(detail: str) -> Refused:
    """409: the change is not allowed in the state the resource (or another) is in."""
    return Refused(
        errors(
            409,
            "STATE_ERROR",
            "The request cannot be fulfilled because of the state of another resource.",
            detail,
        )
    )


def relationship_error(detail: str) -> Refused:
    """409: a relationship in the body names something that isn't there or doesn't fit."""
    return Refused(
        errors(
            409,
            "ENTITY_ERROR.RELATIONSHIP.INVALID",
            "The provided entity includes a relationship with an invalid value",
            detail,
        )
    )


def unprocessable(detail: str) -> Refused:
    """422: well formed, but App Store Connect can't act on it."""
    return Refused(errors(422, "ENTITY_UNPROCESSABLE", "The request entity is not valid", detail))


def invalid_body(detail: str) -> Refused:
    """400: not the request entity the operation takes."""
    return Refused(errors(400, "PARAMETER_ERROR.INVALID", "The request entity is invalid", detail))


def check_query(
    query: Mapping[str, str],
    *,
    required: Iterable[str] = (),
    enums: Mapping[str, Iterable[str]] | None = None,
    known: Iterable[str] = (),
) -> None:
    """400 for a missing required parameter, an unknown one, or a value outside its enum
    (`filter[...]` and `include` take comma-separated lists)."""
    enums = dict(enums or {})
    allowed = {*required, *enums, *known, "limit"}
    for name in required:
        if not query.get(name):
            raise Refused(
                errors(
                    400,
                    "PARAMETER_ERROR.REQUIRED",
                    "A required parameter is missing.",
                    f"The parameter '{name}' is required.",
                )
            )
    for name, value in query.items():
        if name not in allowed and not name.startswith("fields["):
            raise Refused(
                errors(
                    400,
                    "PARAMETER_ERROR.ILLEGAL",
                    "A parameter is not allowed for this request.",
                    f"The parameter '{name}' can not be used with this request",
                )
            )
        values = set(enums.get(name, ()))
        bad = [v for v in value.split(",") if values and v not in values]
        if name == "limit" and not (value.isdigit() and 0 < int(value) <= 200):
            bad = [value]
        if bad:
            raise Refused(
                errors(
                    400,
                    "PARAMETER_ERROR.INVALID",
                    "A parameter has an invalid value",
                    f"'{bad[0]}' is not a valid value for the parameter '{name}'",
                )
            )


def data_of(body: Any, kind: str, *, rid: str | None = None) -> dict[str, Any]:
    """A request body's `data` of type `kind`; with `rid`, its id must be the URL's (409)."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or data.get("type") != kind:
        raise invalid_body(f"Expected a '{kind}' resource in 'data'.")
    if rid is not None and data.get("id") != rid:
        raise Refused(
            errors(
                409,
                "ENTITY_ERROR.ID.INVALID",
                "The provided entity id is invalid",
                "The id in the body does not match the URL.",
            )
        )
    return data


def related_id(data: Mapping[str, Any], name: str, kind: str) -> str:
    """The id a to-one relationship of a create body names (400 if it is missing)."""
    link = (data.get("relationships") or {}).get(name) or {}
    target = link.get("data") if isinstance(link, dict) else None
    if not isinstance(target, dict) or target.get("type") != kind or not target.get("id"):
        raise invalid_body(f"The relationship '{name}' must name a '{kind}' resource.")
    return str(target["id"])


def linkages(body: Any, kind: str) -> list[str]:
    """The ids of a to-many relationship request (`{"data": [{type, id}, …]}`)."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not data:
        raise invalid_body(f"Expected a list of '{kind}' linkages in 'data'.")
    ids = []
    for item in data:
        if not isinstance(item, dict) or item.get("type") != kind or not item.get("id"):
            raise invalid_body(f"Each linkage must name a '{kind}' resource.")
        ids.append(str(item["id"]))
    return ids


def includes(query: Mapping[str, str]) -> set[str]:
    return set(filter(None, query.get("include", "").split(",")))
