"""Where a webhook may be sent (DESIGN §8): http(s) only; never the link-local range (the cloud
metadata address 169.254.169.254 lives there); private and loopback addresses only with
NOTIFYFLOW_WEBHOOK_ALLOW_PRIVATE. Checked at subscription and again before every attempt,
since a name can resolve elsewhere later."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

MAX_URL = 2000
RESOLVE_TIMEOUT = 5.0
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookAddressRefused(ValueError):
    """The receiver URL may not be used; the message says why."""


class WebhookAddressUnresolved(WebhookAddressRefused):
    """The host did not resolve now (a DNS hiccup): worth trying again later."""


# Cloud metadata services outside the link-local range.
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("100.100.100.200", "fd00:ec2::254", "169.254.169.254")
)


def _embedded(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped ``::ffff:a.b.c.d`` or 6to4 ``2002::``)."""
    if isinstance(address, ipaddress.IPv6Address):
        return address.ipv4_mapped or address.sixtofour or address
    return address


def _refusal(address: IPAddress, allow_private: bool) -> str:
    address = _embedded(address)
    if address in METADATA or address.is_link_local:
        return f"{address} is link-local or a metadata service (never allowed)"
    if address.is_multicast or address.is_unspecified:
        return f"{address} is not a unicast address"
    if allow_private and (address.is_private or address.is_loopback):
        return ""
    if not address.is_global:
        return (
            f"{address} is a private, loopback or reserved address "
            "(private and loopback are allowed only with NOTIFYFLOW_WEBHOOK_ALLOW_PRIVATE=true)"
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


async def check_url(url: str, *, allow_private: bool) -> IPAddress:
    """The address to connect to: every address the host resolves to must be allowed, and the
    caller connects to the one returned (never resolving again, so a name cannot point
    somewhere else between this check and the request)."""
    host, port = check_url_shape(url)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM),
                RESOLVE_TIMEOUT,
            )
        except UnicodeError:
            raise WebhookAddressRefused(f"url host {host!r} is not a valid host name") from None
        except (OSError, TimeoutError) as exc:
            raise WebhookAddressUnresolved(
                f"url host {host!r} does not resolve: {exc or 'timed out'}"
            ) from None
        addresses = sorted({ipaddress.ip_address(info[4][0]) for info in infos}, key=str)
    for address in addresses:
        why = _refusal(address, allow_private)
        if why:
            raise WebhookAddressRefused(f"url host {host!r} resolves to {why}")
    return addresses[0]


def pinned(url: str, address: IPAddress) -> tuple[str, str, str]:
    """``url`` with its host replaced by ``address``, the original ``host[:port]`` (the Host
    header) and host name (TLS's server name, so the certificate is checked for it)."""
    parts = urlsplit(url)
    shown = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
    netloc = shown + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc)), parts.netloc, parts.hostname or ""
