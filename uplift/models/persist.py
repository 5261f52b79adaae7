"""Saving and loading a model directory: the fitted model, its model card and a checksum.

A model directory holds ``model.pkl`` (the pickled :class:`UpliftModel`) and
``model_card.json`` (learner, features, arms, control, data hash, validation scores, package
versions, time, and the SHA-256 of ``model.pkl``). Loading verifies the checksum before
unpickling, so a damaged or swapped file is refused rather than executed. The directory is
written beside its destination and renamed into place, so a failed save leaves nothing half
written.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import pickle
import platform
import shutil
import tempfile
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uplift
from uplift.exceptions import ConfigError, ModelLoadError, ModelVersionWarning
from uplift.files import to_json_ready
from uplift.models.bundle import UpliftModel

MODEL_FILE = "model.pkl"
CARD_FILE = "model_card.json"
CARD_FORMAT = 1
_PACKAGES = ("numpy", "pandas", "scikit-learn", "lightgbm", "causalml", "econml")


def model_card(model: UpliftModel, checksum: str) -> dict[str, Any]:
    """The model card of ``model``: what it is, what it learned from, how it was chosen."""
    selection = model.selection
    return {
        "card_format": CARD_FORMAT,
        "learner": model.learner,
        "control": model.control,
        "arms": [model.control, *model.treatment_arms],
        "treatment_arms": list(model.treatment_arms),
        "features": list(model.features),
        "inputs": list(model.inputs),
        "outputs": list(model.effect_columns),
        "revenue_uplift": (
            "order_value x retained uplift"
            if model.revenue_from_order_value
            else "modelled on revenue"
            if model.revenue_model is not None
            else "none (the log has no revenue)"
        ),
        "training": model.training,
        "selection": None
        if selection is None
        else {
            "chosen": selection.chosen,
            "method": selection.method,
            "outcome": selection.outcome,
            "orders_scored": selection.n_orders,
            "criterion": "doubly robust policy value net of costs; Qini breaks ties",
            "candidates": selection.scores,
        },
        "package_version": uplift.__version__,
        "package_versions": _versions(),
        "python": platform.python_version(),
        "created_at": datetime.now(UTC).isoformat(),
        "model_sha256": checksum,
    }


def _versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def save_model(
    model: UpliftModel, directory: str | Path, *, metrics: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` and its card into ``directory`` (replacing a model saved there before).

    ``metrics`` (e.g. an evaluation) are added to the card under ``metrics``.
    """
    target = Path(directory)
    is_model_dir = (target / CARD_FILE).is_file()
    if target.exists() and not is_model_dir and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(
            f"{target}: exists and is not a model directory; choose a new or empty "
            "directory for --model-dir"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        (staging / MODEL_FILE).write_bytes(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
        card = model_card(model, _sha256(staging / MODEL_FILE))
        if metrics is not None:
            card["metrics"] = metrics
        (staging / CARD_FILE).write_text(json.dumps(to_json_ready(card), indent=2) + "\n")
        _swap_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _swap_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` onto ``target``; an older model there is removed only afterwards."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_card(directory: str | Path) -> dict[str, Any]:
    """The model card of a saved model directory."""
    path = Path(directory) / CARD_FILE
    if not path.is_file():
        raise ModelLoadError(
            f"{directory}: no {CARD_FILE}; not a model directory (train one with uplift train)"
        )
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{path}: damaged model card ({error})") from None
    if not isinstance(card, dict) or not isinstance(card.get("model_sha256"), str):
        raise ModelLoadError(f"{path}: model card has no model_sha256; it is damaged")
    return card


def load_model(directory: str | Path) -> UpliftModel:
    """Load a saved model after verifying its checksum; warn when another version saved it."""
    card = read_card(directory)
    path = Path(directory) / MODEL_FILE
    if not path.is_file():
        raise ModelLoadError(f"{directory}: no {MODEL_FILE}; the model directory is incomplete")
    if _sha256(path) != card["model_sha256"]:
        raise ModelLoadError(
            f"{path}: checksum does not match the model card; the file was changed or damaged "
            "after saving, so it is not loaded (train the model again)"
        )
    saved_by = card.get("package_version")
    if saved_by != uplift.__version__:
        warnings.warn(
            f"{directory}: model saved by uplift {saved_by}, loaded by {uplift.__version__}; "
            "predictions may differ, retrain to be sure",
            ModelVersionWarning,
            stacklevel=2,
        )
    try:
        model = pickle.loads(path.read_bytes())
    except (pickle.UnpicklingError, EOFError, ImportError, AttributeError, ValueError) as error:
        raise ModelLoadError(
            f"{path}: cannot be loaded by this installation ({type(error).__name__}: {error}); "
            "train the model again"
        ) from None
    if not isinstance(model, UpliftModel):
        raise ModelLoadError(f"{path}: holds a {type(model).__name__}, not an UpliftModel")
    return model


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
