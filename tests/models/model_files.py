"""A saved model folder copied, and edited as an attacker would: a file changed and its
checksum in the model card changed to match."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def copy_folder(saved: Path, target: Path) -> Path:
    target.mkdir()
    for path in saved.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def edit_file(folder: Path, name: str, content: bytes) -> None:
    """Replace a file and fix its checksum in the card."""
    (folder / name).write_bytes(content)
    card = json.loads((folder / "model_card.json").read_text())
    card["files"][name] = hashlib.sha256(content).hexdigest()
    (folder / "model_card.json").write_text(json.dumps(card))


def edit_model_json(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``change`` to model.json's payload and fix its checksum in the card."""
    payload = json.loads((folder / "model.json").read_text())
    change(payload)
    edit_file(folder, "model.json", json.dumps(payload).encode())
