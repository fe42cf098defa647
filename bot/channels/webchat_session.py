"""Signed session tokens for the chat widget and the shop's proof of a logged-in shopper."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

_VERSION = "v1"


def sign_session(secret: bytes, conversation_id: str, now: float | None = None) -> str:
    """A token naming the conversation, issued now; only this server's secret can make one."""
    issued = int(time.time() if now is None else now)
    body = f"{_VERSION}.{_b64(conversation_id)}.{issued}"
    return f"{body}.{_mac(secret, body)}"


def open_session(secret: bytes, token: object, max_age_s: float, now: float | None = None) -> str | None:
    """The conversation id of a valid token that is younger than `max_age_s`; None for anything else."""
    if not isinstance(token, str) or len(token) > 1_000:
        return None
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != _VERSION:
        return None
    body, mac = ".".join(parts[:3]), parts[3]
    if not hmac.compare_digest(_mac(secret, body), mac):
        return None
    try:
        issued = int(parts[2])
        conversation_id = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    age = (time.time() if now is None else now) - issued
    return conversation_id if 0 <= age <= max_age_s else None


def identity_signature(secret: bytes, customer_id: str) -> str:
    """What the shop's server puts beside a logged-in shopper's id: HMAC-SHA256(secret, id), hex."""
    return hmac.new(secret, customer_id.encode(), hashlib.sha256).hexdigest()


def verified_customer(secret: bytes, customer: object) -> str | None:
    """The customer id when `customer` is {"id", "signature"} with a valid signature; else None."""
    if not secret or not isinstance(customer, dict):
        return None
    customer_id, signature = customer.get("id"), customer.get("signature")
    if not isinstance(customer_id, str) or not isinstance(signature, str) or not 0 < len(customer_id) <= 200:
        return None
    return customer_id if hmac.compare_digest(identity_signature(secret, customer_id), signature.lower()) else None


def _mac(secret: bytes, body: str) -> str:
    return hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()[:32]


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
