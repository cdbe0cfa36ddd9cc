"""Sign-In with Ethereum (EIP-4361): the site a login message names, the message, and the site read back from it."""

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest

from accounts.addresses import eip55_address

_ISO = "%Y-%m-%dT%H:%M:%SZ"
_SUFFIX = " wants you to sign in with your Ethereum account:"
_URI_LINE = re.compile(r"^URI: (.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Site:
    """What the wallet signs in to: the message's `domain` (host and port) and `URI`."""

    domain: str
    uri: str


def site_of(request: HttpRequest) -> Site:
    """SITE_DOMAIN / SITE_URI when configured; else the host, port and scheme this request reached the server at.

    The wallet compares the domain with the page asking for the signature and flags a mismatch, so a fixed
    `localhost:8000` over https would be flagged wherever the server really runs. `request.get_host()` is the Host
    header, already checked against ALLOWED_HOSTS; `request.scheme` is how the request came in. Behind a proxy
    they are the forwarded ones only where settings trust that proxy (BEHIND_TLS_PROXY, TRUST_X_FORWARDED_HOST)."""
    domain, uri = settings.SITE_DOMAIN, settings.SITE_URI
    if domain and uri:
        return Site(domain=domain, uri=uri)
    if domain:
        return Site(domain=domain, uri=f"https://{domain}")
    if uri:
        return Site(domain=urlsplit(uri).netloc, uri=uri)
    host = request.get_host()
    return Site(domain=host, uri=f"{request.scheme}://{host}")


def message(*, site: Site, address: str, nonce: str, chain_id: int, issued_at: datetime, expires_at: datetime) -> str:
    """The EIP-4361 message the wallet signs, field for field in the order the standard gives."""
    return (
        f"{site.domain}{_SUFFIX}\n"
        f"{eip55_address(address)}\n"
        "\n"
        "Sign in to the AITBC Coordinator.\n"
        "\n"
        f"URI: {site.uri}\n"
        "Version: 1\n"
        f"Chain ID: {chain_id}\n"
        f"Nonce: {nonce}\n"
        f"Issued At: {issued_at.strftime(_ISO)}\n"
        f"Expiration Time: {expires_at.strftime(_ISO)}"
    )


def site_in(text: str) -> Site | None:
    """The site a message built by `message` names. Read from the message rather than kept beside it: what the
    wallet signed is what the login is checked against. None for a text of another shape."""
    first_line = text.split("\n", 1)[0]
    uri = _URI_LINE.search(text)
    if not first_line.endswith(_SUFFIX) or uri is None:
        return None
    return Site(domain=first_line.removesuffix(_SUFFIX), uri=uri.group(1))
