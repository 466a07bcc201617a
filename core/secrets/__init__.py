"""Secrets: the one type that holds them, where they are stored, and the one redactor.

- :class:`Secret` (``secret.py``): a credential in the daemon's memory; it shows itself
  only as ``[redacted:NAME]`` and only :meth:`Secret.reveal` gives the value.
- :class:`SecretsStore` and its backends (``store.py``): the environment, the OS keyring
  and a 0600 file, asked in order.
- :class:`Redactor` and :class:`Redaction` (``redactor.py``, with the patterns in
  ``patterns.py``): every value of a secret, in each of its encodings, replaced with
  ``[redacted:NAME]`` in logs, the journal, run errors and results, and alert sink errors.

``[redacted:NAME]`` is the one placeholder: :func:`placeholder` makes it and
:data:`PLACEHOLDER` finds it. docs/secrets.md documents it all.
"""

from corral.secrets.redactor import Redaction, Redactor
from corral.secrets.secret import (
    MIN_SECRET_LENGTH,
    PLACEHOLDER,
    Secret,
    placeholder,
    redact_url,
    secrets_in,
    url_pieces,
)
from corral.secrets.store import (
    ENV_PREFIX,
    KEYRING_SERVICE,
    EnvSecrets,
    FileSecrets,
    KeyringSecrets,
    KeyringSupport,
    SecretBackend,
    SecretNotFound,
    SecretsError,
    SecretsStore,
    check_secret,
    detect_keyring,
)

__all__ = [
    "ENV_PREFIX",
    "KEYRING_SERVICE",
    "MIN_SECRET_LENGTH",
    "PLACEHOLDER",
    "EnvSecrets",
    "FileSecrets",
    "KeyringSecrets",
    "KeyringSupport",
    "Redaction",
    "Redactor",
    "Secret",
    "SecretBackend",
    "SecretNotFound",
    "SecretsError",
    "SecretsStore",
    "check_secret",
    "detect_keyring",
    "placeholder",
    "redact_url",
    "secrets_in",
    "url_pieces",
]
