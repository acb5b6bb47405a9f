"""TwilioChannel with the real ``twilio`` SDK against the fake Twilio server."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from notifyflow.channels.base import OutboundTemplate, OutboundText, SendError
from notifyflow.channels.twilio_channel import TwilioChannel
from tests.fakes.twilio_server import FAKE_MESSAGING_SERVICE_SID, FakeTwilio
from tests.fixtures.client_timeouts import IMPATIENT_S, PATIENT_S
from tests.fixtures.fakes import fake_settings

CUSTOMER = "+15550001111"
SENDER = "+15559990000"
CONTENT_SID = "HX" + "ab" * 16
TEMPLATE = "Hello {{1}}, here is the answer from our team: {{2}}"


def text(body: str = "We open at 9.", to: str = CUSTOMER, key: str = "k-text") -> OutboundText:
    return OutboundText(to=to, sender=SENDER, body=body, idempotency_key=key)


def template(
    variables: dict[str, str] | None = None, content_sid: str = CONTENT_SID, key: str = "k-tpl"
) -> OutboundTemplate:
    variables = variables if variables is not None else {"1": "Ann", "2": "we open at 9"}
    rendered = TEMPLATE.replace("{{1}}", variables.get("1", "")).replace(
        "{{2}}", variables.get("2", "")
    )
    return OutboundTemplate(
        to=CUSTOMER,
        sender=SENDER,
        content_sid=content_sid,
        variables=variables,
        rendered_body=rendered,
        idempotency_key=key,
    )


@pytest.fixture
async def channel(twilio: FakeTwilio) -> AsyncIterator[TwilioChannel]:
    twilio.register_template(CONTENT_SID, TEMPLATE)
    ch = TwilioChannel(fake_settings(twilio), timeout=PATIENT_S)
    yield ch
    await ch.close()


@pytest.fixture
async def impatient(twilio: FakeTwilio) -> AsyncIterator[TwilioChannel]:
    """A channel whose client gives up after IMPATIENT_S, for sends the fake holds."""
    ch = TwilioChannel(fake_settings(twilio), timeout=IMPATIENT_S)
    yield ch
    await ch.close()


async def test_free_form_sends_body_only(channel: TwilioChannel, twilio: FakeTwilio) -> None:
    result = await channel.send_text(text())
    assert result.provider_message_id.startswith("SM") and len(result.provider_message_id) == 34
    assert result.status == "queued"
    [entry] = twilio.sends()
    fields = entry["fields"]
    assert fields["To"] == f"whatsapp:{CUSTOMER}"
    assert fields["From"] == f"whatsapp:{SENDER}"
    assert fields["Body"] == "We open at 9."
    assert "ContentSid" not in fields and "ContentVariables" not in fields
    assert "MessagingServiceSid" not in fields
    assert fields["StatusCallback"] == "http://127.0.0.1:8000/v1/webhooks/twilio/status"
    user, _, token = base64.b64decode(entry["headers"]["authorization"][6:]).decode().partition(":")
    assert (user, token) == (twilio.account_sid, twilio.auth_token)
    assert entry["sid"] == result.provider_message_id
    assert twilio.accepted_count(CUSTOMER, "text") == 1


async def test_template_sends_content_sid_and_no_body(
    channel: TwilioChannel, twilio: FakeTwilio
) -> None:
    result = await channel.send_template(template({"1": "Zoë", "2": "we open at 9"}))
    [entry] = twilio.sends()
    fields = entry["fields"]
    assert fields["ContentSid"] == CONTENT_SID
    assert json.loads(fields["ContentVariables"]) == {"1": "Zoë", "2": "we open at 9"}
    assert "Body" not in fields
    [message] = twilio.accepted(CUSTOMER, "template")
    assert message["sid"] == result.provider_message_id
    assert message["body"] == "Hello Zoë, here is the answer from our team: we open at 9"


async def test_messaging_service_replaces_sender(twilio: FakeTwilio) -> None:
    twilio.register_template(CONTENT_SID, TEMPLATE)
    ch = TwilioChannel(
        fake_settings(twilio, TWILIO_MESSAGING_SERVICE_SID=FAKE_MESSAGING_SERVICE_SID)
    )
    try:
        result = await ch.send_text(text())
        await ch.send_template(template())
    finally:
        await ch.close()
    assert result.status == "accepted"
    for entry in twilio.sends():
        assert entry["fields"]["MessagingServiceSid"] == FAKE_MESSAGING_SERVICE_SID
        assert "From" not in entry["fields"]


@pytest.mark.parametrize(
    ("status", "code", "retryable", "window_closed", "ambiguous"),
    [
        (429, 20429, True, False, False),
        (429, 63018, True, False, False),
        (400, 63018, True, False, False),
        (400, 63016, False, True, False),
        (400, 131047, False, True, False),
        (400, 63013, False, False, False),
        (400, 63021, False, False, False),
        (400, 63005, False, False, False),
        (400, 63014, False, False, False),
        (400, 63028, False, False, False),
        (400, 21211, False, False, False),
        (401, 20003, False, False, False),
        (500, 20500, True, False, True),
        (503, 20503, True, False, True),
    ],
)
async def test_error_codes_map(
    channel: TwilioChannel,
    twilio: FakeTwilio,
    status: int,
    code: int,
    retryable: bool,
    window_closed: bool,
    ambiguous: bool,
) -> None:
    twilio.fail_next(status, code, "injected", retry_after=7 if status == 429 else None)
    with pytest.raises(SendError) as caught:
        await channel.send_text(text())
    error = caught.value
    assert error.code == str(code)
    assert (error.retryable, error.window_closed, error.ambiguous) == (
        retryable,
        window_closed,
        ambiguous,
    )
    assert error.extra["http_status"] == str(status)
    if status == 429:
        assert error.extra["retry_after"] == "7"
    assert twilio.accepted_count(CUSTOMER) == 0


async def test_rate_limit_applies_to_matching_kind_only(
    channel: TwilioChannel, twilio: FakeTwilio
) -> None:
    twilio.fail_next(429, 20429, kind="template")
    await channel.send_text(text())
    with pytest.raises(SendError):
        await channel.send_template(template())
    await channel.send_template(template())
    assert twilio.accepted_counts() == {(CUSTOMER, "text"): 1, (CUSTOMER, "template"): 1}


async def test_window_closed_mode(channel: TwilioChannel, twilio: FakeTwilio) -> None:
    twilio.close_window(CUSTOMER)
    with pytest.raises(SendError) as caught:
        await channel.send_text(text())
    assert caught.value.window_closed and caught.value.code == "63016"
    await channel.send_template(template())  # templates pass outside the window
    await channel.send_text(text(to="+15550002222"))  # other numbers are unaffected
    twilio.open_window(CUSTOMER)
    await channel.send_text(text())


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ({"1": "Ann", "2": "line\nbreak"}, "63013"),
        ({"1": "Ann", "2": "tab\there"}, "63013"),
        ({"1": "Ann", "2": "five     spaces"}, "63013"),
        ({"1": "Ann", "2": ""}, "63013"),
        ({"1": "Ann", "2": "x" * 1000}, "63021"),
        ({"1": "Ann"}, "63028"),
    ],
)
async def test_fake_validates_variables_like_twilio(
    channel: TwilioChannel, variables: dict[str, str], code: str
) -> None:
    with pytest.raises(SendError) as caught:
        await channel.send_template(template(variables))
    assert caught.value.code == code and not caught.value.retryable


async def test_bad_content_sid(channel: TwilioChannel) -> None:
    with pytest.raises(SendError) as caught:
        await channel.send_template(template(content_sid="HX123"))
    assert caught.value.code == "21655" and not caught.value.retryable


async def test_wrong_credentials(twilio: FakeTwilio) -> None:
    ch = TwilioChannel(fake_settings(twilio, TWILIO_AUTH_TOKEN="wrong"))
    try:
        with pytest.raises(SendError) as caught:
            await ch.send_text(text())
    finally:
        await ch.close()
    assert caught.value.code == "20003" and not caught.value.retryable


async def test_timeout_is_ambiguous(impatient: TwilioChannel, twilio: FakeTwilio) -> None:
    twilio.timeout_next()
    with pytest.raises(SendError) as caught:
        await impatient.send_text(text())
    assert caught.value.code == "timeout"
    assert caught.value.retryable and caught.value.ambiguous
    assert twilio.accepted_count(CUSTOMER) == 0


async def test_garbage_is_ambiguous(channel: TwilioChannel, twilio: FakeTwilio) -> None:
    twilio.garbage_next()
    with pytest.raises(SendError) as caught:
        await channel.send_text(text())
    assert caught.value.code == "bad_response" and caught.value.ambiguous


async def test_unreachable_is_not_ambiguous(twilio: FakeTwilio) -> None:
    ch = TwilioChannel(fake_settings(twilio, TWILIO_API_BASE_URL="http://127.0.0.1:9"))
    try:
        with pytest.raises(SendError) as caught:
            await ch.send_text(text())
    finally:
        await ch.close()
    assert caught.value.code == "network"
    assert caught.value.retryable and not caught.value.ambiguous


@pytest.mark.parametrize("then", ["500", "garbage", "timeout"])
async def test_find_accepted_resolves_ambiguous_text(
    channel: TwilioChannel, impatient: TwilioChannel, twilio: FakeTwilio, then: str
) -> None:
    since = datetime.now(UTC)
    await channel.send_text(text("An older message"))
    twilio.accept_then_fail_next(then)  # type: ignore[arg-type]
    sender = impatient if then == "timeout" else channel  # only then does the fake hold it
    with pytest.raises(SendError) as caught:
        await sender.send_text(text("We open at 9."))
    assert caught.value.ambiguous and caught.value.retryable
    [accepted] = [m for m in twilio.accepted(CUSTOMER) if m["body"] == "We open at 9."]
    assert await channel.find_accepted(CUSTOMER, SENDER, since, "We open at 9.") == accepted["sid"]
    assert (
        await channel.find_accepted(CUSTOMER, SENDER, since, "We  open at 9.\n")
        == (accepted["sid"])
    )
    assert await channel.find_accepted(CUSTOMER, SENDER, since, "Something else") is None
    assert await channel.find_accepted("+15550009999", SENDER, since, "We open at 9.") is None
    assert await channel.find_accepted(CUSTOMER, "+15558887777", since, "We open at 9.") is None
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert await channel.find_accepted(CUSTOMER, SENDER, later, "We open at 9.") is None


async def test_find_accepted_resolves_ambiguous_template(
    channel: TwilioChannel, twilio: FakeTwilio
) -> None:
    since = datetime.now(UTC)
    twilio.accept_then_fail_next("500", kind="template")
    message = template()
    with pytest.raises(SendError):
        await channel.send_template(message)
    [accepted] = twilio.accepted(CUSTOMER, "template")
    assert (
        await channel.find_accepted(CUSTOMER, SENDER, since, message.rendered_body)
        == (accepted["sid"])
    )
    assert await channel.find_accepted(CUSTOMER, SENDER, since, CONTENT_SID) == accepted["sid"]


async def test_find_accepted_with_messaging_service(twilio: FakeTwilio) -> None:
    ch = TwilioChannel(
        fake_settings(twilio, TWILIO_MESSAGING_SERVICE_SID=FAKE_MESSAGING_SERVICE_SID)
    )
    since = datetime.now(UTC) - timedelta(hours=1)
    try:
        twilio.accept_then_fail_next("garbage")
        with pytest.raises(SendError):
            await ch.send_text(text("hi"))
        sid = await ch.find_accepted(CUSTOMER, SENDER, since, "hi")
    finally:
        await ch.close()
    assert sid == twilio.accepted(CUSTOMER)[0]["sid"]


async def test_find_accepted_lists_with_filters(channel: TwilioChannel, twilio: FakeTwilio) -> None:
    since = datetime.now(UTC)
    for i in range(5):
        await channel.send_text(text(f"message {i}"))
    assert await channel.find_accepted(CUSTOMER, SENDER, since, "message 0") is not None
    listed = [e for e in twilio.ledger if e["method"] == "GET"]
    assert listed[0]["query"]["To"] == f"whatsapp:{CUSTOMER}"
    # Not by DateSent: Twilio's queued messages have none (the filter would hide them).
    assert not any(k.startswith("DateSent") for k in listed[0]["query"])


@pytest.mark.parametrize("dispatched", [False, True], ids=["still-queued", "sent"])
async def test_find_accepted_sees_a_message_twilio_still_queues(
    channel: TwilioChannel, twilio: FakeTwilio, dispatched: bool
) -> None:
    """Product bug found by the strict fake: find_accepted filtered on DateSent, which a
    queued message does not have, so the retry of an ambiguous send messaged the person
    again."""
    since = datetime.now(UTC)
    twilio.accept_then_fail_next("500")
    with pytest.raises(SendError):
        await channel.send_text(text("We open at 9."))
    if dispatched:
        twilio.dispatch()
    [accepted] = twilio.accepted(CUSTOMER)
    assert accepted["date_sent"] is None or dispatched
    assert await channel.find_accepted(CUSTOMER, SENDER, since, "We open at 9.") == accepted["sid"]


async def test_find_accepted_errors_map(twilio: FakeTwilio) -> None:
    ch = TwilioChannel(fake_settings(twilio, TWILIO_AUTH_TOKEN="wrong"))
    try:
        with pytest.raises(SendError) as caught:
            await ch.find_accepted(CUSTOMER, SENDER, datetime.now(UTC), "x")
    finally:
        await ch.close()
    assert caught.value.code == "20003" and not caught.value.retryable
