"""The product's default campaign templates, and the demo merchant of ``notifyflow seed demo``.

Template variables
==================

Every default template is a WhatsApp body with numbered slots. The workflow and its activities
fill them in this order (:data:`TEMPLATE_VARIABLES` names each slot):

=================================  =================================================================
campaign                           slots
=================================  =================================================================
merchant_user_question_request     ``{{1}}`` notification id (``NOTIF_12``), ``{{2}}`` the question
merchant_user_override_request     ``{{1}}`` notification id, ``{{2}}`` the support reason summary
merchant_user_question_answer      ``{{1}}`` the answer, localized as a continuation fragment
customer_support_response          ``{{1}}`` the response, localized as a continuation fragment
notification_closed                ``{{1}}`` the closure notice (contract text, DESIGN §2)
notification_reminder              ``{{1}}`` notification id, ``{{2}}`` question / reason summary
customer_request_expired           ``{{1}}`` a polite message in the customer's language
notification_follow_up             ``{{1}}`` notification id, ``{{2}}`` the customer's new message
notification_correction            ``{{1}}`` the corrected answer, localized as a fragment
customer_satisfaction_quick_reply  ``{{1}}`` notification id (also in the buttons' ids)
customer_satisfaction_request      ``{{1}}`` notification id (also in the buttons' ids)
=================================  =================================================================

The two ``customer_satisfaction_*`` campaigns are ``twilio/quick-reply`` contents (their buttons
in :data:`QUICK_REPLY_ACTIONS`; :func:`content_definition` gives the Content API definition of
any default). Twilio allows at most three quick-reply buttons in a WhatsApp session message
that was not approved as a template, up to ten in an approved one: the in-window ask offers
5, 3 and 1 and says "or reply with a number from 1 to 5" (any digit counts), the approved
template outside the window offers all five.

Bodies never begin or end with a slot (Meta rejects such templates) and leave each value on its
own or after a colon, so any text reads well in them. Content SIDs are derived from the campaign
and language, so every installation ships the same ones; replace them with real Twilio Content
SIDs through ``PUT /v1/campaigns/{campaign}/templates/{language}``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from notifyflow.db.session import SessionFactory, create_engine, session_factory
from notifyflow.db.statements import dialect_name, execute, insert_rows
from notifyflow.db.tables import (
    CampaignTemplate,
    Conversation,
    ConversationUser,
    Document,
    Merchant,
    MerchantUser,
    Message,
)
from notifyflow.db.types import utcnow
from notifyflow.models.notification import Campaign

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_SCOPE = 0
DEFAULT_LANGUAGES: tuple[str, ...] = ("en", "es")

TEMPLATE_VARIABLES: dict[Campaign, tuple[str, ...]] = {
    Campaign.merchant_user_question_request: ("notification_id", "question"),
    Campaign.merchant_user_override_request: ("notification_id", "support_request_reason"),
    Campaign.merchant_user_question_answer: ("answer_fragment",),
    Campaign.customer_support_response: ("answer_fragment",),
    Campaign.notification_closed: ("closure_notice",),
    Campaign.notification_reminder: ("notification_id", "request_summary"),
    Campaign.customer_request_expired: ("expiry_message",),
    Campaign.notification_follow_up: ("notification_id", "customer_message"),
    Campaign.notification_correction: ("answer_fragment",),
    Campaign.customer_satisfaction_quick_reply: ("notification_id",),
    Campaign.customer_satisfaction_request: ("notification_id",),
}

_BODIES: dict[Campaign, dict[str, str]] = {
    Campaign.merchant_user_question_request: {
        "en": (
            "Hi! A customer has a question our assistant could not answer.\n\n"
            "Reference: {{1}}\nQuestion: {{2}}\n\n"
            "Please reply to this message with your answer."
        ),
        "es": (
            "¡Hola! Un cliente tiene una pregunta que nuestro asistente no pudo responder.\n\n"
            "Referencia: {{1}}\nPregunta: {{2}}\n\n"
            "Por favor, responde a este mensaje con tu respuesta."
        ),
    },
    Campaign.merchant_user_override_request: {
        "en": (
            "Hi! A customer needs help from your team.\n\n"
            "Reference: {{1}}\nReason: {{2}}\n\n"
            "Please reply to this message with the response for the customer."
        ),
        "es": (
            "¡Hola! Un cliente necesita ayuda de tu equipo.\n\n"
            "Referencia: {{1}}\nMotivo: {{2}}\n\n"
            "Por favor, responde a este mensaje con la respuesta para el cliente."
        ),
    },
    Campaign.merchant_user_question_answer: {
        "en": (
            "Hello! Following up on your question: {{1}}\n\n"
            "Reply to this message if there is anything else we can help with."
        ),
        "es": (
            "¡Hola! Te escribimos sobre tu pregunta: {{1}}\n\n"
            "Si necesitas algo más, responde a este mensaje."
        ),
    },
    Campaign.customer_support_response: {
        "en": (
            "Hello! Our team has an update on your support request: {{1}}\n\n"
            "Reply to this message if there is anything else we can help with."
        ),
        "es": (
            "¡Hola! Nuestro equipo tiene novedades sobre tu solicitud de soporte: {{1}}\n\n"
            "Si necesitas algo más, responde a este mensaje."
        ),
    },
    Campaign.notification_closed: {
        "en": "Update on a customer request:\n\n{{1}}\n\nNo further action is needed from you.",
        "es": (
            "Actualización sobre la solicitud de un cliente:\n\n{{1}}\n\n"
            "No necesitas hacer nada más."
        ),
    },
    Campaign.notification_reminder: {
        "en": (
            "Reminder: a customer is still waiting for an answer.\n\n"
            "Reference: {{1}}\nRequest: {{2}}\n\n"
            "Please reply to this message with your answer."
        ),
        "es": (
            "Recordatorio: un cliente sigue esperando una respuesta.\n\n"
            "Referencia: {{1}}\nSolicitud: {{2}}\n\n"
            "Por favor, responde a este mensaje con tu respuesta."
        ),
    },
    Campaign.notification_follow_up: {
        "en": (
            "The customer wrote again about a request.\n\nReference: {{1}}\nMessage: {{2}}\n\n"
            "Reply to this message to answer."
        ),
        "es": (
            "El cliente volvió a escribir sobre una solicitud.\n\nReferencia: {{1}}\n"
            "Mensaje: {{2}}\n\nResponde a este mensaje para contestar."
        ),
    },
    Campaign.notification_correction: {
        "en": (
            "Hello! A correction to our earlier answer: {{1}}\n\n"
            "We are sorry for the confusion. Reply to this message if there is anything else "
            "we can help with."
        ),
        "es": (
            "¡Hola! Una corrección a nuestra respuesta anterior: {{1}}\n\n"
            "Disculpa la confusión. Si necesitas algo más, responde a este mensaje."
        ),
    },
    Campaign.customer_request_expired: {
        "en": "Hello! An update on your recent request: {{1}}\n\nThank you for your patience.",
        "es": (
            "¡Hola! Te escribimos sobre tu solicitud reciente: {{1}}\n\nGracias por tu paciencia."
        ),
    },
    Campaign.customer_satisfaction_quick_reply: {
        "en": (
            "How would you rate our answer (ref. {{1}})? Tap a button, or reply with a number "
            "from 1 (poor) to 5 (excellent)."
        ),
        "es": (
            "¿Cómo valorarías nuestra respuesta (ref. {{1}})? Toca un botón o responde con un "
            "número del 1 (mala) al 5 (excelente)."
        ),
    },
    Campaign.customer_satisfaction_request: {
        "en": (
            "Hello! We recently answered your request (ref. {{1}}). How would you rate our "
            "answer? Tap a score from 1 (poor) to 5 (excellent)."
        ),
        "es": (
            "¡Hola! Hace poco respondimos a tu solicitud (ref. {{1}}). ¿Cómo valorarías "
            "nuestra respuesta? Toca una nota del 1 (mala) al 5 (excelente)."
        ),
    },
}

# The quick-reply buttons (title, score) of the CSAT contents. A tap comes back as the
# inbound webhook's ButtonPayload ``csat:{{1}}:<score>`` (notifyflow/csat.py reads it); titles
# stay within Twilio's 20 characters. In session, unapproved, WhatsApp shows at most three.
_QUICK_REPLY_SCORES: dict[Campaign, dict[str, tuple[tuple[str, int], ...]]] = {
    Campaign.customer_satisfaction_quick_reply: {
        "en": (("5 - Excellent", 5), ("3 - Okay", 3), ("1 - Poor", 1)),
        "es": (("5 - Excelente", 5), ("3 - Normal", 3), ("1 - Mala", 1)),
    },
    Campaign.customer_satisfaction_request: {
        "en": (("1 - Poor", 1), ("2", 2), ("3 - Okay", 3), ("4", 4), ("5 - Excellent", 5)),
        "es": (("1 - Mala", 1), ("2", 2), ("3 - Normal", 3), ("4", 4), ("5 - Excelente", 5)),
    },
}
QUICK_REPLY_ACTIONS: dict[tuple[Campaign, str], list[dict[str, str]]] = {
    (campaign, language): [
        {"title": title, "id": f"csat:{{{{1}}}}:{score}"} for title, score in buttons
    ]
    for campaign, by_language in _QUICK_REPLY_SCORES.items()
    for language, buttons in by_language.items()
}
# Quick-reply limits (Twilio Content API, twilio/quick-reply): checked by tests/unit.
MAX_SESSION_BUTTONS = 3
MAX_TEMPLATE_BUTTONS = 10
MAX_BUTTON_TITLE = 20


def default_content_sid(campaign: Campaign | str, language: str) -> str:
    """``HX`` + 32 hex digits, the same for a campaign and language on every installation."""
    digest = hashlib.sha256(f"notifyflow:{campaign}:{language}".encode()).hexdigest()
    return "HX" + digest[:32]


@dataclass(frozen=True)
class DefaultTemplate:
    campaign: Campaign
    language: str
    content_sid: str
    body: str


DEFAULT_TEMPLATES: dict[tuple[Campaign, str], DefaultTemplate] = {
    (campaign, language): DefaultTemplate(
        campaign=campaign,
        language=language,
        content_sid=default_content_sid(campaign, language),
        body=_BODIES[campaign][language],
    )
    for campaign in Campaign
    for language in DEFAULT_LANGUAGES
}


def content_definition(template: DefaultTemplate) -> dict[str, Any]:
    """The Twilio Content API definition of a default template (``POST /v1/Content``): what an
    operator creates, and has approved for WhatsApp, once per template; its SID then replaces
    the derived one (``PUT /v1/campaigns/{campaign}/templates/{language}``)."""
    slots = TEMPLATE_VARIABLES[template.campaign]
    samples = {str(i): name.replace("_", " ") for i, name in enumerate(slots, start=1)}
    if "notification_id" in slots:
        samples[str(slots.index("notification_id") + 1)] = "NOTIF_12"
    actions = QUICK_REPLY_ACTIONS.get((template.campaign, template.language))
    types: dict[str, Any] = (
        {"twilio/quick-reply": {"body": template.body, "actions": actions}}
        if actions is not None
        else {"twilio/text": {"body": template.body}}
    )
    return {
        "friendly_name": f"notifyflow_{template.campaign}_{template.language}",
        "language": template.language,
        "variables": samples,
        "types": types,
    }


# What each team handles: SupportClassification documents name a user type in their title.
SUPPORT_CLASSIFICATIONS: dict[str, str] = {
    "sales": (
        "Sales team: questions about pricing, discounts and promotions, bulk or wholesale "
        "orders, product availability and stock, and help with buying or placing an order."
    ),
    "returns": (
        "Returns team: refunds, returns, exchanges, and orders that arrived damaged, "
        "incomplete or with the wrong items."
    ),
    "technical": (
        "Technical team: product setup and assembly, problems with the app, bugs, and "
        "products that are not working as expected."
    ),
}
SUPPORT_CLASSIFICATION_CATEGORY = "SupportClassification"


async def ensure_default_templates(session_factory: SessionFactory) -> int:
    """Insert the default templates (merchant scope 0) that are missing; never overwrite an
    existing row. Returns how many were inserted."""
    async with session_factory() as session:
        result = await session.execute(
            select(CampaignTemplate.campaign, CampaignTemplate.language).where(
                CampaignTemplate.merchant_scope == DEFAULT_SCOPE
            )
        )
        existing = {(campaign, language) for campaign, language in result}
        now = utcnow()
        rows = [
            {
                "campaign": str(t.campaign),
                "language": t.language,
                "merchant_scope": DEFAULT_SCOPE,
                "content_sid": t.content_sid,
                "body": t.body,
                "created_at": now,
                "updated_at": now,
            }
            for (campaign, language), t in DEFAULT_TEMPLATES.items()
            if (str(campaign), language) not in existing
        ]
        if not rows:
            return 0
        # ON CONFLICT DO NOTHING: two processes seeding at once both succeed, and neither
        # overwrites a template an operator has already replaced.
        stmt = insert_rows(
            dialect_name(session),
            CampaignTemplate,
            rows,
            unique=["campaign", "language", "merchant_scope"],
            returning=["id"],
        )
        inserted = len((await execute(session, stmt)).all())
        await session.commit()
    log.info("inserted %d default campaign templates", inserted)
    return inserted


# The demo merchant (``notifyflow seed demo``, the embedded stack, tests).
DEMO_MERCHANT_NAME = "Acme Outdoor"
DEMO_WHATSAPP_SENDER = "whatsapp:+14155550100"
DEMO_CUSTOMER_PHONE = "+15551230000"
DEMO_CUSTOMER_NAME = "Casey Customer"
DEMO_CUSTOMER_MESSAGE = "Hola, ¿a qué hora abren el sábado?"


@dataclass(frozen=True)
class _DemoUser:
    name: str
    phone: str
    user_type: str
    on_call: bool = False


# No technical user on purpose: a technical request falls back to the admins.
DEMO_USERS: tuple[_DemoUser, ...] = (
    _DemoUser("Ana Admin", "+15550000001", "admin"),
    _DemoUser("Omar Admin", "+15550000002", "admin", on_call=True),
    _DemoUser("Sam Sales", "+15550000003", "sales"),
    _DemoUser("Riley Returns", "+15550000004", "returns"),
)


@dataclass(frozen=True)
class DemoIds:
    merchant_id: int
    admin_ids: tuple[int, ...]
    sales_id: int
    returns_id: int
    conversation_id: int
    customer_id: int
    # Whether this call created the merchant; not part of equality, so two calls compare equal.
    created: bool = field(default=False, compare=False)


async def seed_demo(session_factory: SessionFactory) -> DemoIds:
    """Create the demo merchant, its people, documents, customer conversation and the default
    templates; whatever already exists is reused, so a second call creates nothing and returns
    the same ids."""
    await ensure_default_templates(session_factory)
    try:
        return await _seed_demo_once(session_factory)
    except IntegrityError:
        # A concurrent seeding created the same unique rows first: use theirs.
        log.info("demo seeding raced with another; reading its rows")
        return await _seed_demo_once(session_factory)


async def _seed_demo_once(session_factory: SessionFactory) -> DemoIds:
    async with session_factory() as session:
        merchant = await session.scalar(
            select(Merchant)
            .where(
                Merchant.name == DEMO_MERCHANT_NAME,
                Merchant.whatsapp_sender == DEMO_WHATSAPP_SENDER,
            )
            .order_by(Merchant.id)
            .limit(1)
        )
        created = merchant is None
        if merchant is None:
            merchant = Merchant(
                name=DEMO_MERCHANT_NAME,
                whatsapp_sender=DEMO_WHATSAPP_SENDER,
                default_language="en",
                timezone="America/New_York",
            )
            session.add(merchant)
            await session.flush()

        users = {spec.phone: await _demo_user(session, merchant.id, spec) for spec in DEMO_USERS}
        for user_type, content in SUPPORT_CLASSIFICATIONS.items():
            await _classification_document(session, merchant.id, user_type, content)
        customer, conversation = await _demo_customer_conversation(session, merchant.id)
        await session.commit()

        by_type: dict[str, list[int]] = {}
        for spec in DEMO_USERS:
            by_type.setdefault(spec.user_type, []).append(users[spec.phone].id)
        ids = DemoIds(
            merchant_id=merchant.id,
            admin_ids=tuple(by_type["admin"]),
            sales_id=by_type["sales"][0],
            returns_id=by_type["returns"][0],
            conversation_id=conversation.id,
            customer_id=customer.id,
            created=created,
        )
    if created:
        log.info("seeded demo merchant %s", ids)
    return ids


async def _demo_user(session: AsyncSession, merchant_id: int, spec: _DemoUser) -> MerchantUser:
    user = await session.scalar(
        select(MerchantUser).where(
            MerchantUser.merchant_id == merchant_id, MerchantUser.phone == spec.phone
        )
    )
    if user is None:
        user = MerchantUser(
            merchant_id=merchant_id,
            name=spec.name,
            phone=spec.phone,
            user_type=spec.user_type,
            on_call=spec.on_call,
        )
        session.add(user)
        await session.flush()
    return user


async def _classification_document(
    session: AsyncSession, merchant_id: int, user_type: str, content: str
) -> None:
    existing = await session.scalar(
        select(Document.id).where(
            Document.merchant_id == merchant_id,
            Document.category == SUPPORT_CLASSIFICATION_CATEGORY,
            Document.title == user_type,
        )
    )
    if existing is None:
        session.add(
            Document(
                merchant_id=merchant_id,
                category=SUPPORT_CLASSIFICATION_CATEGORY,
                title=user_type,
                content=content,
            )
        )


async def _demo_customer_conversation(
    session: AsyncSession, merchant_id: int
) -> tuple[ConversationUser, Conversation]:
    customer = await session.scalar(
        select(ConversationUser).where(ConversationUser.phone == DEMO_CUSTOMER_PHONE)
    )
    if customer is None:
        customer = ConversationUser(phone=DEMO_CUSTOMER_PHONE, name=DEMO_CUSTOMER_NAME)
        session.add(customer)
        await session.flush()
    conversation = await session.scalar(
        select(Conversation).where(
            Conversation.merchant_id == merchant_id,
            Conversation.conversation_user_id == customer.id,
            Conversation.channel == "whatsapp",
        )
    )
    if conversation is None:
        now = utcnow()
        # The customer just wrote, so the 24-hour window is open: answers go out free-form.
        conversation = Conversation(
            merchant_id=merchant_id,
            conversation_user_id=customer.id,
            channel="whatsapp",
            language="es",
            last_inbound_at=now,
        )
        session.add(conversation)
        await session.flush()
        session.add(
            Message(
                conversation_id=conversation.id,
                role="user",
                content=DEMO_CUSTOMER_MESSAGE,
                created_at=now,
            )
        )
    return customer, conversation


_DEMO_CONTEXT = json.dumps({"question": "What time do you open on Saturday?"})


def demo_summary(ids: DemoIds) -> str:
    """One paragraph saying what the demo is and how to try it."""
    state = "Seeded" if ids.created else "Already present:"
    admins = " and ".join(f"#{i}" for i in ids.admin_ids)
    return (
        f'{state} demo merchant "{DEMO_MERCHANT_NAME}" (id {ids.merchant_id}, sender '
        f"{DEMO_WHATSAPP_SENDER}) with admins {admins} (the second on call), sales user "
        f"#{ids.sales_id} and returns user #{ids.returns_id} (no technical user, so technical "
        f"requests go to the admins); customer {DEMO_CUSTOMER_NAME} ({DEMO_CUSTOMER_PHONE}, "
        f"id {ids.customer_id}) writes in Spanish in conversation {ids.conversation_id}. Try: "
        f"notifyflow request user_question_request --conversation {ids.conversation_id} "
        f"--context '{_DEMO_CONTEXT}'"
    )


def _run_with_engine(database_url: str, work: Callable[[SessionFactory], Awaitable[T]]) -> T:
    """Run ``work`` against a short-lived engine; synchronous, for the CLI and migrations.

    Works from a thread whose event loop is running, too (the work then runs on a private loop
    in a helper thread)."""

    async def main() -> T:
        engine = create_engine(database_url, pool_size=1)
        try:
            return await work(session_factory(engine))
        finally:
            await engine.dispose()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="seed") as executor:
        return executor.submit(asyncio.run, main()).result()


def provision_default_templates_sync(database_url: str) -> int:
    """:func:`ensure_default_templates` for ``notifyflow db upgrade``: a migrated database
    must be able to serve its first notification with no other step (DESIGN §7)."""
    return _run_with_engine(database_url, ensure_default_templates)


def seed_demo_sync(database_url: str) -> str:
    """Seed the demo into an already migrated database; returns :func:`demo_summary`."""
    return demo_summary(seed_demo_ids_sync(database_url))


def seed_demo_ids_sync(database_url: str) -> DemoIds:
    """Seed the demo into an already migrated database; returns its ids."""
    return _run_with_engine(database_url, seed_demo)
