"""Merchant API keys (DESIGN §9): create, list, revoke, and authenticate a presented key.

A key is ``nfk_<prefix>_<secret>``: ``prefix`` is 12 hex characters (48 random bits), public,
shown in listings and logs, unique and indexed so that a request finds its row with one index
look-up; ``secret`` is 32 random bytes (256 bits) in URL-safe base64. The key is shown once, at
creation; the database keeps only ``sha256(key)``.

Why SHA-256 and not bcrypt/argon2: slow hashes exist to make guessing a *low-entropy* secret (a
password) expensive after a database leak. A 256-bit random secret cannot be guessed however
fast the hash is, so a slow hash would only add ~100 ms of CPU to every request for no gain.
The stored hash is compared with ``hmac.compare_digest``, so timing reveals nothing either.

Revocation is immediate in every API process: a presented key is looked up in the database on
every request (no cache), and a revoked row is refused. ``last_used_at`` is written only when
the stored value is older than a minute, so steady traffic costs one read per request, not a
write.

The CLI (``notifyflow keys …``) and the API routes are thin layers over these functions.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import or_, select, update

from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import ApiKey, Merchant
from notifyflow.db.types import utcnow
from notifyflow.models.api_keys import ApiKeyCreated, ApiKeyView
from notifyflow.models.errors import NotificationError, RefusalCode
from notifyflow.models.ids import INT32_MAX

KEY_PREFIX = "nfk_"
_PREFIX_HEX = 12
_SECRET_BYTES = 32
# nfk_ + 12 hex + _ + 43 base64url characters (32 bytes, unpadded): fixed length, so a key of
# any other shape is refused before it reaches the database.
KEY_PATTERN = re.compile(r"nfk_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")
KEY_LENGTH = len(KEY_PREFIX) + _PREFIX_HEX + 1 + 43

# last_used_at is refreshed when older than this: one write a minute per busy key at most.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class KeyRefusal(StrEnum):
    """Why a presented key was refused (the ``reason`` label of the auth-failure counter)."""

    malformed_key = "malformed_key"
    unknown_key = "unknown_key"
    revoked_key = "revoked_key"


@dataclass(frozen=True)
class KeyIdentity:
    key_id: int
    merchant_id: int
    prefix: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def generate_key() -> tuple[str, str]:
    """A new key and its public prefix (``nfk_`` + 12 hex)."""
    prefix = secrets.token_hex(_PREFIX_HEX // 2)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    key = f"{KEY_PREFIX}{prefix}_{secret}"
    assert KEY_PATTERN.fullmatch(key), "generated key has the documented shape"
    return key, prefix


def public_prefix(prefix: str) -> str:
    return f"{KEY_PREFIX}{prefix}"


def looks_like_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX)


def _view(row: ApiKey) -> ApiKeyView:
    return ApiKeyView(
        id=row.id,
        merchant_id=row.merchant_id,
        prefix=public_prefix(row.prefix),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _merchant_missing(merchant_id: int) -> NotificationError:
    # The directory's own wording, so a missing merchant reads the same on every route.
    return NotificationError(
        RefusalCode.not_found,
        f"merchant {merchant_id} does not exist",
        details={"merchant_id": merchant_id},
    )


def _key_missing(key_id: int) -> NotificationError:
    return NotificationError(
        RefusalCode.not_found, f"api_key {key_id} does not exist", details={"api_key_id": key_id}
    )


async def _check_merchant(db: SessionFactory, merchant_id: int) -> None:
    if not 1 <= merchant_id <= INT32_MAX:
        raise _merchant_missing(merchant_id)
    async with db() as session:
        if await session.get(Merchant, merchant_id) is None:
            raise _merchant_missing(merchant_id)


async def create_key(db: SessionFactory, merchant_id: int) -> ApiKeyCreated:
    """A new key for the merchant; the returned ``key`` is the only time it is ever shown."""
    await _check_merchant(db, merchant_id)
    # 48 random bits of prefix: a collision is a one-in-billions event; retry it anyway.
    for _ in range(3):
        key, prefix = generate_key()
        async with db() as session:
            exists = await session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix))
            if exists is not None:
                continue
            row = ApiKey(
                merchant_id=merchant_id, prefix=prefix, key_hash=hash_key(key), created_at=utcnow()
            )
            session.add(row)
            await session.commit()
            return ApiKeyCreated(
                id=row.id,
                merchant_id=merchant_id,
                key=key,
                prefix=public_prefix(prefix),
                created_at=row.created_at,
            )
    raise NotificationError(RefusalCode.conflict, "could not allocate a key prefix; retry")


async def list_keys(
    db: SessionFactory, merchant_id: int, *, limit: int | None = None, after: int = 0
) -> list[ApiKeyView]:
    """The merchant's keys, oldest first, revoked ones included (with ``revoked_at``); with
    ``limit``, at most that many with ids above ``after`` (a page)."""
    await _check_merchant(db, merchant_id)
    query = select(ApiKey).where(ApiKey.merchant_id == merchant_id, ApiKey.id > after)
    if limit is not None:
        query = query.limit(limit)
    async with db() as session:
        rows = (await session.scalars(query.order_by(ApiKey.id))).all()
        return [_view(row) for row in rows]


async def revoke_key(
    db: SessionFactory, key_id: int, *, merchant_id: int | None = None
) -> ApiKeyView:
    """Revoke at once: the next request with the key, on any API process, is refused (401).
    Revoking a revoked key changes nothing. With ``merchant_id`` the key must be that
    merchant's (the route's path), else it does not exist."""
    if merchant_id is not None:
        await _check_merchant(db, merchant_id)
    if not 1 <= key_id <= INT32_MAX:
        raise _key_missing(key_id)
    async with db() as session:
        row = await session.get(ApiKey, key_id)
        if row is None or (merchant_id is not None and row.merchant_id != merchant_id):
            raise _key_missing(key_id)
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            await session.commit()
        return _view(row)


async def authenticate(db: SessionFactory, key: str) -> KeyIdentity | KeyRefusal:
    """The key's merchant, or why it is refused. One indexed read by prefix; a write only when
    ``last_used_at`` is more than a minute old."""
    match = KEY_PATTERN.fullmatch(key)
    if match is None:
        return KeyRefusal.malformed_key
    prefix = match.group(1)
    presented = hash_key(key)
    async with db() as session:
        row = (
            await session.execute(
                select(
                    ApiKey.id,
                    ApiKey.merchant_id,
                    ApiKey.key_hash,
                    ApiKey.last_used_at,
                    ApiKey.revoked_at,
                ).where(ApiKey.prefix == prefix)
            )
        ).one_or_none()
        # The right prefix with the wrong secret is as unknown as any other key.
        if row is None or not hmac.compare_digest(row.key_hash.encode(), presented.encode()):
            return KeyRefusal.unknown_key
        if row.revoked_at is not None:
            return KeyRefusal.revoked_key
        key_id, merchant_id, last_used = row.id, row.merchant_id, row.last_used_at
        now = utcnow()
        if _stale(last_used, now):
            # Conditional: of several processes racing on the same stale key, one writes.
            await session.execute(
                update(ApiKey)
                .where(
                    ApiKey.id == key_id,
                    or_(
                        ApiKey.last_used_at.is_(None),
                        ApiKey.last_used_at < now - LAST_USED_RESOLUTION,
                    ),
                )
                .values(last_used_at=now)
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        return KeyIdentity(key_id=key_id, merchant_id=merchant_id, prefix=public_prefix(prefix))


def _stale(last_used: datetime | None, now: datetime) -> bool:
    return last_used is None or now - last_used >= LAST_USED_RESOLUTION
