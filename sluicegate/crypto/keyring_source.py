"""Where the master keys come from: the configuration (environment references) and/or a
key file that is re-read when it changes, so a master key can be rotated without a restart.

The key file holds one key per line (base64 or hex); the first is the primary (seals), the
others are still accepted to open values. Blank lines and ``#`` comments are ignored.
Rotation without a restart:

1. put the new key on the file's first line, the old key below it (every instance now seals
   with the new key and opens both);
2. run ``sluicegate secrets rotate`` (re-wraps every stored value under the new key);
3. remove the old key from the file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sluicegate.crypto.envelope import Keyring, parse_master_key
from sluicegate.secret import Secret
from sluicegate.settings_security import SecretsSettings

log = logging.getLogger("sluicegate.secrets")

NO_MASTER_KEY = (
    "no master key is configured: set secrets.master_key (e.g. os.environ/SLUICEGATE_MASTER_KEY)"
    " or secrets.master_key_file; `sluicegate secrets generate-key` makes one"
)


class MasterKeyMissing(Exception):
    """Secrets cannot be stored or read: no master key is configured."""


def _parse_configured(key: Secret, setting: str) -> bytes:
    if not key.reveal():  # a lenient command read an os.environ/ reference that is not set
        raise MasterKeyMissing(f"{setting}: {key.source}")
    try:
        return parse_master_key(key.reveal())
    except ValueError as exc:
        raise MasterKeyMissing(f"{setting}: {exc}") from None


def read_key_file(path: Path) -> list[bytes]:
    keys: list[bytes] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            keys.append(parse_master_key(text))
        except ValueError as exc:
            raise ValueError(f"{path}, line {number}: {exc}") from None
    return keys


class KeyringSource:
    """The current :class:`Keyring`; the key file is re-read when its mtime or size changes.

    A key file that becomes unreadable or invalid keeps the last good keyring (logged once):
    a bad edit must not take every credential away from a running gateway.
    """

    def __init__(self, settings: SecretsSettings) -> None:
        self._settings = settings
        self._file = Path(settings.master_key_file) if settings.master_key_file else None
        self._stamp: tuple[int, int] | None = None
        self._keyring: Keyring | None = None
        self._warned = False

    @property
    def configured(self) -> bool:
        return self._file is not None or self._settings.master_key is not None

    def keyring(self) -> Keyring:
        """The keyring to use now; raises :class:`MasterKeyMissing` without any key."""
        if self._file is not None:
            self._refresh_from_file(self._file)
        elif self._keyring is None:
            self._keyring = self._from_settings([])
        if self._keyring is None:
            raise MasterKeyMissing(NO_MASTER_KEY)
        return self._keyring

    def _from_settings(self, file_keys: list[bytes]) -> Keyring | None:
        keys = list(file_keys)
        primary = self._settings.master_key
        if primary is not None:
            keys.insert(0, _parse_configured(primary, "secrets.master_key"))
        keys.extend(
            _parse_configured(key, "secrets.previous_master_keys")
            for key in self._settings.previous_master_keys
        )
        if not keys:
            return None
        return Keyring(keys[0], keys[1:])

    def _refresh_from_file(self, path: Path) -> None:
        try:
            status = os.stat(path)
            stamp = (status.st_mtime_ns, status.st_size)
            if stamp == self._stamp and self._keyring is not None:
                return
            file_keys = read_key_file(path)
            if not file_keys and self._keyring is not None:
                # Most likely a rewrite caught half-way (truncated, not yet written): the
                # keys read before stay in use until the file holds keys again.
                raise ValueError(f"{path} holds no key")
            keyring = self._from_settings(file_keys)
        except (OSError, ValueError) as exc:
            if self._keyring is None:
                raise MasterKeyMissing(f"master key file: {exc}") from None
            if not self._warned:
                log.warning("master key file unusable; keeping the keys read before: %s", exc)
                self._warned = True
            return
        self._stamp, self._warned = stamp, False
        if keyring is not None and (
            self._keyring is None or keyring.key_ids != self._keyring.key_ids
        ):
            log.info(
                "master keys loaded: primary %s, %d in all",
                keyring.primary.id,
                len(keyring.key_ids),
            )
        self._keyring = keyring
