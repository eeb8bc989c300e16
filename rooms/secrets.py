"""Encryption of provider secrets at rest.

The Fernet key is derived from SECRET_KEY with HKDF, so one setting protects
both sessions and stored secrets, and rotating SECRET_KEY is a re-encrypt.
"""

from __future__ import annotations

import base64
import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"roomkit-channel-secrets", info=b"fernet").derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt_secrets(values: dict[str, str]) -> str:
    if not values:
        return ""
    return _fernet(settings.SECRET_KEY).encrypt(json.dumps(values).encode()).decode()


@lru_cache(maxsize=256)
def _decrypt_cached(secret_key: str, token: str) -> tuple[tuple[str, str], ...]:
    try:
        data = json.loads(_fernet(secret_key).decrypt(token.encode()))
    except (InvalidToken, ValueError):
        # A token made with another SECRET_KEY: treat as no secrets rather than
        # crash every request; the admin shows the channel as unconfigured.
        return ()
    return tuple(sorted(data.items()))


def decrypt_secrets(token: str) -> dict[str, str]:
    if not token:
        return {}
    return dict(_decrypt_cached(settings.SECRET_KEY, token))
