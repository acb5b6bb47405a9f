"""Answer validation against a notification's JSON schema: pure, used inside the workflow's
update validator and by clients that want to check before sending."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from notifyflow.models.errors import NotificationError, RefusalCode
from notifyflow.models.text import unstorable


def answer_text(answer: dict[str, Any] | str) -> str:
    """An answer as the JSON text it is stored and submitted as (a string is that already)."""
    return answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)


def parse_answer(answer_json: str | dict[str, Any]) -> dict[str, Any]:
    """The answer as an object; text that is not a JSON object is refused as ``not_json``."""
    if isinstance(answer_json, dict):
        return answer_json
    try:
        value = json.loads(answer_json)
    except (TypeError, ValueError) as exc:
        raise NotificationError(
            RefusalCode.not_json, f"the answer is not valid JSON: {exc}"
        ) from None
    if not isinstance(value, dict):
        raise NotificationError(
            RefusalCode.not_json, 'the answer must be a JSON object, like {"answer": "..."}'
        )
    return value


def check_storable(answer: dict[str, Any]) -> None:
    """Refuse what no database or message can carry (NUL, lone surrogates, deep nesting)."""
    found = unstorable(answer, "")
    if found:
        raise NotificationError(
            RefusalCode.schema_mismatch,
            f"the answer cannot be stored: {found[0]['path'] or '/'}: {found[0]['message']}",
            details=[{"path": f["path"] or "/", "message": f["message"]} for f in found],
        )


def _path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "required" and isinstance(error.message, str):
        # The missing property is named in the message, not the path.
        missing = error.message.split("'")[1] if "'" in error.message else ""
        parts.append(missing)
    return "/" + "/".join(parts) if parts else "/"


def validate_answer(
    answer: dict[str, Any], schema: dict[str, Any], answered_fields: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Check ``answer`` against ``schema``; refuse with every failing path in ``details``."""
    check_storable(answer)
    missing = [f for f in answered_fields if f not in answer]
    if missing:
        raise NotificationError(
            RefusalCode.missing_field,
            f"the answer lacks required field(s): {', '.join(missing)}",
            details=[{"path": f"/{f}", "message": "required"} for f in missing],
        )
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(answer), key=lambda e: list(e.absolute_path))
    if errors:
        details = [{"path": _path(e), "message": e.message} for e in errors]
        summary = "; ".join(f"{d['path']}: {d['message']}" for d in details[:3])
        raise NotificationError(
            RefusalCode.schema_mismatch,
            f"the answer does not match the schema: {summary}",
            details=details,
        )
    for key, value in answer.items():
        # Whitespace-only text passes minLength yet says nothing to a customer.
        if isinstance(value, str) and key in answered_fields and not value.strip():
            raise NotificationError(
                RefusalCode.schema_mismatch,
                f"the answer field {key!r} is blank",
                details=[{"path": f"/{key}", "message": "must not be blank"}],
            )
    return answer
