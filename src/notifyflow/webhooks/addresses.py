"""Where a webhook may be sent (DESIGN §8): http(s) only; never the link-local range (the cloud
metadata address 169.254.169.254 lives there); private and loopback addresses only with
NOTIFYFLOW_WEBHOOK_ALLOW_PRIVATE. Checked at subscription and again before every attempt,
since a name can resolve elsewhere later."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL = 2000


class WebhookAddressRefused(ValueError):
    """The receiver URL may not be used; the message says why."""


def _refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.is_link_local:
        return f"{address} is link-local (never allowed)"
    if address.is_multicast or address.is_unspecified or address.is_reserved:
        return f"{address} is not a unicast address"
    if not allow_private and (address.is_private or address.is_loopback):
        return (
            f"{address} is a private or loopback address "
            "(allowed only with NOTIFYFLOW_WEBHOOK_ALLOW_PRIVATE=true)"
        )
    return ""


def check_url_shape(url: str) -> tuple[str, int]:
    """The host and port of an acceptable URL, or WebhookAddressRefused."""
    if len(url) > MAX_URL:
        raise WebhookAddressRefused(f"url is longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookAddressRefused(f"url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise WebhookAddressRefused("url must be http or https")
    if not parts.hostname:
        raise WebhookAddressRefused("url has no host")
    if parts.username or parts.password:
        raise WebhookAddressRefused("url must not carry credentials")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse the URL unless every address its host resolves to is allowed."""
    host, port = check_url_shape(url)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = {literal}
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise WebhookAddressRefused(f"url host {host!r} does not resolve: {exc}") from None
        addresses = {ipaddress.ip_address(info[4][0]) for info in infos}
    for address in sorted(addresses, key=str):
        why = _refusal(address, allow_private)
        if why:
            raise WebhookAddressRefused(f"url host {host!r} resolves to {why}")
