"""Merchant settings (DESIGN §10): stored and read back, defaults shown as in effect, a bad
value is 422 naming the field and changes nothing."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import assert_envelope
from tests.fixtures.database import MerchantFactory


async def test_settings_are_stored_and_read_back(
    api: httpx.AsyncClient, make_merchant: MerchantFactory
) -> None:
    shop = await make_merchant(timezone="America/New_York")
    fresh = await api.get(f"/v1/merchants/{shop.merchant_id}/settings")
    assert fresh.status_code == 200
    assert fresh.json()["business_hours"] is None
    assert fresh.json()["effective"] == {
        "remind_after": 1800,
        "escalate_after": 7200,
        "auto_close_after": 86400,
        "first_answer_target": 1800,
    }
    body = {
        "business_hours": {"monday": ["09:00-18:00"], "friday": ["09:00-13:00", "14:00-18:00"]},
        "remind_after": 600,
        "first_answer_target": 900,
        "csat_enabled": True,
    }
    stored = await api.put(f"/v1/merchants/{shop.merchant_id}/settings", json=body)
    assert stored.status_code == 200, stored.text
    read = (await api.get(f"/v1/merchants/{shop.merchant_id}/settings")).json()
    assert read == stored.json()
    assert read["timezone"] == "America/New_York"
    assert read["business_hours"] == body["business_hours"] and read["csat_enabled"] is True
    assert read["effective"] == {
        "remind_after": 600,
        "escalate_after": 7200,
        "auto_close_after": 86400,
        "first_answer_target": 900,
    }
    closed = await api.put(
        f"/v1/merchants/{shop.merchant_id}/settings", json={"business_hours": {}}
    )
    assert closed.json()["business_hours_ignored"] is True


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"business_hours": {"monday": ["9-5"]}}, "/business_hours/monday/0"),
        ({"business_hours": {"someday": ["09:00-10:00"]}}, "/business_hours/someday"),
        ({"remind_after": 9000}, "/escalate_after"),  # after the default escalation
        ({"remind_after": 0}, "/remind_after"),
        ({"first_answer_target": 10**9}, "/first_answer_target"),
    ],
)
async def test_a_bad_value_names_its_field_and_changes_nothing(
    api: httpx.AsyncClient, make_merchant: MerchantFactory, body: dict[str, object], path: str
) -> None:
    shop = await make_merchant()
    before = (await api.get(f"/v1/merchants/{shop.merchant_id}/settings")).json()
    refused = await api.put(f"/v1/merchants/{shop.merchant_id}/settings", json=body)
    details = assert_envelope(refused, 422)
    assert any(d["path"].endswith(path) or path in d["path"] for d in details), details
    assert (await api.get(f"/v1/merchants/{shop.merchant_id}/settings")).json() == before


async def test_an_unknown_merchant_is_404(api: httpx.AsyncClient) -> None:
    assert_envelope(await api.get("/v1/merchants/2147483000/settings"), 404, "not_found")
    assert_envelope(await api.put("/v1/merchants/2147483000/settings", json={}), 404, "not_found")
