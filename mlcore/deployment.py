"""Deployment checks that run before anything starts: the secrets a compose stack is given.

The rules are plain functions of the environment; ``mlcore check-secrets`` (the compose stack's
first one-shot service) applies them and refuses to go on, naming each bad secret and the fix.
"""
from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping

#: What ``.env.example`` and similar templates put where a secret belongs.
PLACEHOLDERS = frozenset({"generate", "changeme", "change-me", "change_me", "secret", "password", "admin",
                          "airflow", "postgres", "example", "xxx", "todo"})
MIN_PASSWORD = 16
MIN_SIGNING_KEY = 32

_HOW = {
    "fernet": 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"',
    "signing": 'python -c "import secrets; print(secrets.token_urlsafe(48))"',
    "password": 'python -c "import secrets; print(secrets.token_urlsafe(24))"',
}


def secret_kind(name: str) -> str:
    """``fernet``, ``signing`` (JWT and other signing keys) or ``password``, from the variable's name."""
    upper = name.upper()
    if "FERNET" in upper:
        return "fernet"
    if "JWT" in upper or upper.endswith(("SECRET", "SECRET_KEY")):
        return "signing"
    return "password"


def secret_problem(name: str, value: str | None) -> str | None:
    """Why ``value`` is not acceptable as the secret ``name``, or None when it is.

    Example:
        >>> secret_problem("AIRFLOW_JWT_SECRET", "generate")
        "is the placeholder 'generate'"
    """
    if value is None or not value.strip():
        return "is not set"
    if value.strip().lower() in PLACEHOLDERS or re.fullmatch(r"(.)\1*", value):
        return f"is the placeholder {value!r}"
    kind = secret_kind(name)
    if kind == "fernet":
        try:
            key = base64.urlsafe_b64decode(value.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            key = b""
        if len(key) != 32:
            return f"is not a Fernet key (32 url-safe base64-encoded bytes; got {len(value)} characters)"
        return None
    least = MIN_SIGNING_KEY if kind == "signing" else MIN_PASSWORD
    if len(value) < least:
        return f"has {len(value)} characters; at least {least} are required"
    return None


def check_secrets(environ: Mapping[str, str], names: Iterable[str]) -> list[str]:
    """One message per unacceptable secret among ``names``, each with the command that makes a good one."""
    messages = []
    for name in names:
        problem = secret_problem(name, environ.get(name))
        if problem:
            messages.append(f"{name} {problem}: generate one with {_HOW[secret_kind(name)]} and set it in .env")
    return messages
