"""Inputs and views of the directory: merchants, their users and documents, conversations,
messages and campaign templates (DESIGN §4).

The input models are the one place where user text is checked and normalized, so the HTTP API,
the CLI and direct callers of ``notifyflow.directory`` refuse the same things the same way.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from notifyflow.models.ids import INT32_MAX
from notifyflow.models.languages import normalize_language
from notifyflow.models.text import plain_text

# ---- field types ---------------------------------------------------------------------------


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


# What people type around the digits; anything else (letters, "ext.") is refused up front,
# so phonenumbers' lenient parsing never turns junk into a number.
_PHONE_TEXT = re.compile(r"^\+?[0-9\s().\-/]{1,40}$")
_PHONE_PUNCTUATION = re.compile(r"[\s().\-/]")
_NATIONAL = re.compile(r"^[0-9]{2,17}$")
_E164_EXAMPLE = "like +14155550100"

_WHY_IMPOSSIBLE = {
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "has no such country code",
    phonenumbers.ValidationResult.TOO_SHORT: "is too short",
    phonenumbers.ValidationResult.TOO_LONG: "is too long",
    phonenumbers.ValidationResult.INVALID_LENGTH: "has a length no number of its country has",
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "lacks the area code",
}


def _strip_whatsapp(value: str) -> str:
    text = value.strip()
    if text.lower().startswith("whatsapp:"):
        text = text[len("whatsapp:") :].strip()
    return text


def check_country(value: str) -> str:
    """An ISO 3166-1 alpha-2 region phonenumbers knows (``US``, ``ES``, ``GB``), upper case."""
    text = value.strip().upper()
    if text not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError("must be an ISO 3166-1 alpha-2 country code like 'US', 'ES' or 'BR'")
    return text


def normalize_phone(value: str, country: str | None = None) -> str:
    """A phone number in E.164 (``+14155550100``), by ``phonenumbers``.

    International input (``+…``, Twilio's ``whatsapp:+…``) needs no country; a national number
    (``(415) 555-0100``, ``0612 34 56 78``) is read as one of ``country``. Spaces, dots, dashes
    and brackets are dropped. An *impossible* number (no such country code, a length no number
    of that country has) is refused; a possible number that is not yet assigned is not —
    validity depends on numbering-plan metadata that ages, and the provider refuses unknown
    numbers anyway.
    """
    text = _strip_whatsapp(value)
    if not _PHONE_TEXT.match(text) or not any(c.isdigit() for c in text):
        raise ValueError(
            f"must be a phone number: + and the country code, {_E164_EXAMPLE} (digits, "
            "spaces, dots, dashes and brackets only)"
        )
    if not text.startswith("+") and country is None:
        raise ValueError(
            f"must be in international format, {_E164_EXAMPLE}: a national number needs "
            "the merchant's country"
        )
    try:
        number = phonenumbers.parse(text, country)
    except phonenumbers.NumberParseException:
        raise ValueError(f"is not a phone number; write it {_E164_EXAMPLE}") from None
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        why = _WHY_IMPOSSIBLE.get(reason, "is not a possible phone number")
        raise ValueError(f"is an impossible phone number: it {why} ({_E164_EXAMPLE})")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_input(value: str) -> str:
    """An input model's phone: international numbers are normalized at once; a national one
    is kept as its digits for ``notifyflow.directory`` to read with the merchant's country."""
    text = _strip_whatsapp(value)
    if text.startswith("+") or text != value.strip():
        # Twilio's "whatsapp:" form is always international.
        return normalize_phone(text)
    if not _PHONE_TEXT.match(text) or not _NATIONAL.match(_PHONE_PUNCTUATION.sub("", text)):
        raise ValueError(
            f"must be a phone number: + and the country code, {_E164_EXAMPLE}, or a national "
            "number (digits, spaces, dots, dashes and brackets only)"
        )
    return _PHONE_PUNCTUATION.sub("", text)


def is_national(phone: str) -> bool:
    """A phone ``phone_input`` kept national (no ``+``): the directory must resolve it."""
    return not _strip_whatsapp(phone).startswith("+")


def normalize_whatsapp_sender(value: str, country: str | None = None) -> str:
    """Twilio's sender form ``whatsapp:+E164``; a bare E.164 number is accepted, and a national
    one with the merchant's ``country``."""
    return f"whatsapp:{normalize_phone(value, country)}"


def whatsapp_sender_input(value: str) -> str:
    """As :func:`phone_input`, in Twilio's sender form once international."""
    phone = phone_input(value)
    return phone if is_national(phone) else f"whatsapp:{phone}"


_SLUG = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def _slug(value: str) -> str:
    if not _SLUG.match(value):
        raise ValueError(
            "must be a lowercase slug: a-z first, then a-z, 0-9, '_' or '-' (like 'admin')"
        )
    return value


def check_timezone(value: str) -> str:
    """An IANA zone the machine knows (``Europe/Madrid``), so local times can be computed."""
    text = value.strip()
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError("must be an IANA time zone like 'UTC' or 'America/New_York'") from None
    return text


_SLOT = re.compile(r"\{\{([^{}]*)\}\}")
_EDGE_SLOT = re.compile(r"^\{\{[^{}]*\}\}|\{\{[^{}]*\}\}$")
TEMPLATE_BODY_MAX = 1024


def check_template_body(value: str) -> str:
    """WhatsApp template text: ``{{1}}`` present, slots numbered 1, 2, … with no gap, no
    malformed braces, within 1,024 characters (Twilio's Content API limit)."""
    if not value.strip():
        raise ValueError("must not be blank")
    if len(value) > TEMPLATE_BODY_MAX:
        raise ValueError(f"must be at most {TEMPLATE_BODY_MAX} characters")
    numbers: set[int] = set()
    for inner in _SLOT.findall(value):
        if not re.fullmatch(r"[1-9][0-9]{0,2}", inner):
            raise ValueError(f"'{{{{{inner}}}}}' is not a slot: write {{{{1}}}}, {{{{2}}}}, …")
        numbers.add(int(inner))
    if "{{" in _SLOT.sub("", value) or "}}" in _SLOT.sub("", value):
        raise ValueError("has unbalanced '{{' or '}}': slots are written {{1}}, {{2}}, …")
    if 1 not in numbers:
        raise ValueError("must contain the slot {{1}}")
    if _EDGE_SLOT.search(value.strip()):
        # Meta rejects such templates, so no approved Content SID can have one.
        raise ValueError("must not begin or end with a slot: put text around {{1}}")
    expected = set(range(1, max(numbers) + 1))
    if numbers != expected:
        missing = ", ".join(f"{{{{{n}}}}}" for n in sorted(expected - numbers))
        raise ValueError(f"slots must be numbered from 1 without gaps; missing {missing}")
    return value


Id = Annotated[int, Field(ge=1, le=INT32_MAX)]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(plain_text),
]
# E.164 once international; a national number stays digits until the directory reads it with
# the merchant's country (phone_input).
Phone = Annotated[str, StringConstraints(max_length=64), AfterValidator(phone_input)]
WhatsAppSender = Annotated[
    str, StringConstraints(max_length=64), AfterValidator(whatsapp_sender_input)
]
Country = Annotated[str, StringConstraints(max_length=8), AfterValidator(check_country)]
UserType = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_slug)]
Language = Annotated[str, StringConstraints(max_length=32), AfterValidator(normalize_language)]
TimeZone = Annotated[str, StringConstraints(max_length=64), AfterValidator(check_timezone)]
Category = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    AfterValidator(plain_text),
]
ExternalId = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_.:-]{1,64}$"),
]
Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=1000),
    AfterValidator(plain_text),
]
LongText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100_000),
    AfterValidator(plain_text),
    AfterValidator(_not_blank),
]
ContentSid = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^HX[0-9a-fA-F]{32}$")
]
TemplateBody = Annotated[str, AfterValidator(plain_text), AfterValidator(check_template_body)]


class _Input(BaseModel):
    # Unknown fields are refused: a misspelt optional field would otherwise be silently lost.
    model_config = ConfigDict(extra="forbid")


# ---- inputs ---------------------------------------------------------------------------------


class MerchantCreate(_Input):
    name: Name
    whatsapp_sender: WhatsAppSender = Field(
        description="Twilio WhatsApp sender, 'whatsapp:+E164' (a bare +E164 is accepted, and a "
        "national number with country)"
    )
    default_language: Language = "en"
    timezone: TimeZone = "UTC"
    instagram_page_id: ExternalId | None = None
    country: Country | None = Field(
        default=None,
        description="ISO 3166-1 alpha-2 (US, ES, BR): phones of this merchant, its users and "
        "its customers may then be given in national format",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Acme Outdoor",
                    "whatsapp_sender": "whatsapp:+14155550100",
                    "default_language": "en",
                    "timezone": "America/New_York",
                    "country": "US",
                }
            ]
        },
    )


class MerchantUserCreate(_Input):
    name: Name
    phone: Phone
    user_type: UserType = Field(description="admin, sales, returns, technical, …")
    on_call: bool = False

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Ana Admin",
                    "phone": "+14155550111",
                    "user_type": "admin",
                    "on_call": True,
                }
            ]
        },
    )


class DocumentCreate(_Input):
    category: Category = Field(description="UserQuestion, SupportClassification, …")
    title: Title
    content: LongText

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "category": "SupportClassification",
                    "title": "returns",
                    "content": "Refunds, exchanges, damaged or wrong items.",
                }
            ]
        },
    )


class ConversationCreate(_Input):
    merchant_id: Id
    channel: Literal["whatsapp", "instagram"]
    customer_phone: Phone | None = Field(
        default=None,
        description="E.164, or national with the merchant's country; WhatsApp only",
    )
    instagram_user_id: ExternalId | None = Field(default=None, description="Instagram only")
    language: Language | None = Field(
        default=None, description="The customer's language; the merchant's default if absent"
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "merchant_id": 1,
                    "channel": "whatsapp",
                    "customer_phone": "+14155550199",
                    "language": "es",
                }
            ]
        },
    )


class MessageCreate(_Input):
    role: Literal["user", "assistant"]
    content: LongText
    created_at: AwareDatetime | None = Field(
        default=None, description="When it was sent (with a time zone); now if absent"
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"role": "user", "content": "Hi! What are your business hours?"}]
        },
    )


class CampaignTemplateBody(_Input):
    content_sid: ContentSid = Field(description="Twilio Content API SID, HX + 32 hex digits")
    body: TemplateBody = Field(description="The approved text, with {{1}}, {{2}}, … slots")
    merchant_id: Id | None = Field(
        default=None, description="A merchant's own template; the product default if absent"
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "content_sid": "HX0123456789abcdef0123456789abcdef",
                    "body": "Notification {{1}}: a customer asked: {{2}}. Please reply.",
                }
            ]
        },
    )


# ---- updates (PATCH): every field optional, at least one given --------------------------


class _Update(_Input):
    def given(self) -> dict[str, Any]:
        """The fields the request named (``null`` included where the field allows it)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class MerchantUpdate(_Update):
    name: Name | None = None
    whatsapp_sender: WhatsAppSender | None = None
    default_language: Language | None = None
    timezone: TimeZone | None = None
    instagram_page_id: ExternalId | None = None
    country: Country | None = None

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"timezone": "Europe/Madrid"}]}
    )


class MerchantUserUpdate(_Update):
    name: Name | None = None
    phone: Phone | None = None
    user_type: UserType | None = None
    on_call: bool | None = None

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"on_call": True}]})


class DocumentUpdate(_Update):
    category: Category | None = None
    title: Title | None = None
    content: LongText | None = None

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"content": "Ten to six, daily."}]}
    )


class ConversationUpdate(_Update):
    language: Language | None = Field(
        default=None, description="The customer's language (the customer's identity is fixed)"
    )

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"language": "es"}]})


# ---- views ----------------------------------------------------------------------------------


class _View(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class MerchantView(_View):
    id: int
    name: str
    whatsapp_sender: str
    instagram_page_id: str | None = None
    default_language: str
    timezone: str
    country: str | None = None
    created_at: datetime
    deactivated_at: datetime | None = Field(
        default=None, description="Set by DELETE: no new notifications for this merchant"
    )


class MerchantUserView(_View):
    id: int
    merchant_id: int
    name: str
    phone: str
    user_type: str
    on_call: bool
    created_at: datetime
    deactivated_at: datetime | None = Field(
        default=None, description="Set by DELETE: asked no more, may answer no more"
    )


class DocumentVersionView(BaseModel):
    """One kept version of a question's Document (DESIGN §10 corrections)."""

    version: int
    content: str
    notification_id: str
    answered_by: int | None = None
    created_at: datetime


class DocumentView(_View):
    id: int
    merchant_id: int
    category: str
    title: str
    content: str
    created_at: datetime
    updated_at: datetime
    # A question's Document once its answer was corrected: every version, oldest first, the
    # content being the latest's. Empty for a Document never corrected (its content is all).
    versions: list[DocumentVersionView] = Field(default_factory=list)


class ConversationView(_View):
    id: int
    merchant_id: int
    channel: str
    conversation_user_id: int
    customer_phone: str | None = None
    instagram_user_id: str | None = None
    language: str | None = None
    last_inbound_at: datetime | None = None
    created_at: datetime


class MessageView(_View):
    id: int
    conversation_id: int
    role: str
    content: str
    other_data: dict[str, Any] = Field(default_factory=dict)
    # {"type": "template", "campaign": …} for template sends, so they show in the history.
    whatsapp_payload: dict[str, Any] | None = None
    created_at: datetime


class CampaignTemplateView(_View):
    id: int
    campaign: str
    language: str
    merchant_id: int | None = Field(description="None for the product default")
    content_sid: str
    body: str
    updated_at: datetime
