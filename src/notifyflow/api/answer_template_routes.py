"""Answer templates (canned answers, DESIGN §10): ``/v1/merchants/{id}/answer-templates``.

A merchant key manages its own merchant's templates; another merchant's are a missing
merchant (the very body an unknown id gets)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from notifyflow import answer_templates
from notifyflow.api.deps import DB
from notifyflow.api.errors import ErrorEnvelope
from notifyflow.api.scope import CallerDep, check_merchant
from notifyflow.models.answer_templates import (
    AnswerTemplateCreate,
    AnswerTemplateReplace,
    AnswerTemplateView,
)
from notifyflow.models.ids import INT32_MAX
from notifyflow.models.notification import NotificationType
from notifyflow.models.pages import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page

router = APIRouter(prefix="/v1/merchants/{merchant_id}/answer-templates", tags=["answer templates"])

MerchantId = Annotated[int, Path(ge=1, le=INT32_MAX)]
# Read as given: a code that cannot exist is simply not found.
CodePath = Annotated[str, Path(min_length=1, max_length=64, description="The template's code")]
_E: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorEnvelope, "description": "Unreadable body (not UTF-8 JSON)"},
    404: {"model": ErrorEnvelope, "description": "Unknown merchant or template code"},
    409: {"model": ErrorEnvelope, "description": "The code exists already (replace it with PUT)"},
    422: {"model": ErrorEnvelope, "description": "A bad value, named in details; nothing stored"},
}


@router.post("", status_code=201, responses=_E)
async def create_answer_template(
    merchant_id: MerchantId, body: AnswerTemplateCreate, db: DB, caller: CallerDep
) -> AnswerTemplateView:
    """A canned answer for one notification type. ``code`` (a short lower-case slug) is what
    admins reply with (``#hours``) or answer with (``{"template": "hours"}``); ``answer`` must fit
    the type's answer schema (422 naming the field otherwise). A code the merchant already
    has is 409: replace it with PUT."""
    check_merchant(caller, merchant_id)
    return await answer_templates.create(db, merchant_id, body)


@router.get("", responses=_E)
async def list_answer_templates(
    merchant_id: MerchantId,
    db: DB,
    caller: CallerDep,
    type: NotificationType | None = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Page size, at most {MAX_PAGE_SIZE}")
    ] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[
        str | None, Query(max_length=512, description="The previous page's next_cursor")
    ] = None,
) -> Page[AnswerTemplateView]:
    """The merchant's answer templates, oldest first, optionally of one type; a page of
    them, each with how often it was used."""
    check_merchant(caller, merchant_id)
    return await answer_templates.list_page(db, merchant_id, type, limit=limit, cursor=cursor)


@router.put("/{code}", responses=_E)
async def replace_answer_template(
    merchant_id: MerchantId,
    code: CodePath,
    body: AnswerTemplateReplace,
    db: DB,
    caller: CallerDep,
) -> AnswerTemplateView:
    """Replace an existing code's answer (and type), validated like a new one. Answers
    already given with it keep what it said then."""
    check_merchant(caller, merchant_id)
    return await answer_templates.replace(db, merchant_id, code, body)


@router.delete("/{code}", status_code=204, response_class=Response, responses=_E)
async def delete_answer_template(
    merchant_id: MerchantId, code: CodePath, db: DB, caller: CallerDep
) -> Response:
    """Delete a template: the code is refused from the next answer on (answers that used it
    keep its code and what it said)."""
    check_merchant(caller, merchant_id)
    await answer_templates.remove(db, merchant_id, code)
    return Response(status_code=204)
