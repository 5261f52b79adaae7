"""The user's model key: HMAC-SHA256 signatures of pickled models.

A pickle runs code when it is loaded, so ``load_model`` unpickles only what the user's own key
signed. The key lives outside every model folder, where whoever edits a folder cannot reach
it: the environment variable ``UPLIFT_MODEL_KEY`` when set, else the key file
``$XDG_CONFIG_HOME/uplift/model.key`` (default ``~/.config/uplift/model.key``), which the first
signature creates (mode 0600, 32 random bytes written as hex). Setting ``UPLIFT_MODEL_KEY`` to
that file's text gives the same key, e.g. on another machine.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from uplift.exceptions import ConfigError

__all__ = ["KEY_ENV", "key_path", "model_key", "sign", "verify"]

KEY_ENV = "UPLIFT_MODEL_KEY"
#: A shorter key could be guessed; the generated key has 64 characters.
MIN_KEY_CHARS = 16


def key_path() -> Path:
    """Where the key file is (or will be): ``$XDG_CONFIG_HOME/uplift/model.key``."""
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(config) / "uplift" / "model.key"


def model_key(*, create: bool = False) -> bytes | None:
    """The user's key; None when there is none yet and ``create`` is False."""
    text = os.environ.get(KEY_ENV)
    source = KEY_ENV
    if text is None:
        path = key_path()
        if not path.is_file():
            if not create:
                return None
            _create_key_file(path)
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: cannot read the model key ({error})") from None
        source = str(path)
    text = text.strip()
    if len(text) < MIN_KEY_CHARS:
        raise ConfigError(
            f"{source}: the model key must have at least {MIN_KEY_CHARS} characters; "
            f"got {len(text)}"
        )
    return text.encode()


def _create_key_file(path: Path) -> None:
    """Write a new random key readable by the user only; a key another process wrote wins."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".model.key.", suffix=".tmp", dir=path.parent)  # 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        # link, unlike rename, never replaces a key that appeared meanwhile.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        Path(tmp).unlink(missing_ok=True)


def sign(data: bytes) -> str:
    """HMAC-SHA256 of ``data`` under the user's key (created on first use), as hex."""
    key = model_key(create=True)
    if key is None:  # cannot happen: create=True makes one
        raise ConfigError(f"no model key at {key_path()}")
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def verify(data: bytes, signature: str) -> bool:
    """Whether ``signature`` is the user's key's signature of ``data`` (False without a key)."""
    key = model_key()
    if key is None:
        return False
    expected = hmac.new(key, data, hashlib.sha256).hexdigest()
    given = signature.strip().lower().encode("utf-8", "replace")
    return hmac.compare_digest(expected.encode(), given)
