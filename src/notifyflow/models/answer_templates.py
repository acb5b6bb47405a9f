"""Answer templates (canned answers, DESIGN §10): the HTTP contract, and how an answer names
one. Pure: the admin-reply activity and the starter both read answers with it."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from notifyflow.models.notification import NotificationType

# A short slug an admin types after "#" on a phone: lower-case, no spaces, no accents.
CODE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
CODE_RULE = (
    "a short lower-case code: a-z, 0-9, '-' or '_', starting with a letter or digit, at most "
    "32 characters, like hours"
)
_CODE = re.compile(CODE_PATTERN)
# "#hours" as the whole of a WhatsApp reply (the NOTIF_<n> mention already taken out).
_HASH_CODE = re.compile(r"^#([A-Za-z0-9][A-Za-z0-9_-]{0,31})[.!]?$")
# The instruction message lists at most this many codes.
MAX_QUICK_CODES = 5
# A canned answer is a few sentences; the row and every message it becomes stay small.
MAX_ANSWER_CHARS = 4_000


def check_code(value: str) -> str:
    if not _CODE.fullmatch(value):
        raise ValueError(f"must be {CODE_RULE}")
    return value


Code = Annotated[
    str,
    AfterValidator(check_code),
    Field(
        description=CODE_RULE,
        json_schema_extra={"pattern": CODE_PATTERN, "minLength": 1, "maxLength": 32},
    ),
]


class AnswerTemplateCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "code": "hours",
                    "type": "user_question_request",
                    "answer": {"answer": "We open Monday to Friday, 9:00 to 18:00."},
                }
            ]
        },
    )

    code: Code
    type: NotificationType = Field(description="The notification type the template answers")
    answer: dict[str, Any] = Field(description="An answer valid for the type's answer schema")


class AnswerTemplateReplace(BaseModel):
    """``PUT …/answer-templates/{code}``: the code's new answer (and type)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "user_question_request",
                    "answer": {"answer": "We open Monday to Saturday, 9:00 to 18:00."},
                }
            ]
        },
    )

    type: NotificationType
    answer: dict[str, Any]


class AnswerTemplateView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    merchant_id: int
    code: str
    type: str
    answer: dict[str, Any]
    use_count: int = Field(description="Accepted answers that used it")
    created_at: datetime
    last_used_at: datetime | None = None


def template_reference(answer: dict[str, Any] | str) -> str | None:
    """The code when the answer is ``{"template": "<code>"}`` (an object or its JSON text),
    else None. No answer schema has a ``template`` field (they forbid extra fields), so the
    shape is never a literal answer. A non-string code is returned as its JSON text, to be
    refused as an unknown template rather than read as an answer."""
    value: Any = answer
    if isinstance(answer, str):
        stripped = answer.strip()
        if not stripped.startswith("{") or '"template"' not in stripped:
            return None
        try:
            value = json.loads(stripped)
        except ValueError:
            return None
    if not isinstance(value, dict) or set(value) != {"template"}:
        return None
    code = value["template"]
    return code if isinstance(code, str) else json.dumps(code)


def hash_code(text: str) -> str | None:
    """``hours`` from a WhatsApp reply that is only ``#hours`` (any case), else None."""
    match = _HASH_CODE.fullmatch(text.strip())
    return match.group(1).lower() if match else None


def quick_answers_line(codes: list[str]) -> str:
    """The instruction message's line: one word answers."""
    return "Quick answers: " + ", ".join(f"#{c}" for c in codes[:MAX_QUICK_CODES])
