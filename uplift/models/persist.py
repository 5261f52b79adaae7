"""Saving and loading a model directory: the fitted model, its model card and checksums.

A model made of our own learners is saved as ``model.json`` plus one LightGBM text model per
booster (``*.lgbm.txt``), which load without running any code (:mod:`uplift.models.serialize`).
Any other model (causalml, econml adapters) is saved as ``model.pkl`` with ``model.sig``, an
HMAC-SHA256 signature under the user's key, kept outside the folder
(:mod:`uplift.models.signing`): a pickle runs code when loaded, so ``load_model`` unpickles only
what that key signed, unless the caller vouches for the folder with ``trust=True``.

``model_card.json`` (learner, features, arms, data hash, validation scores, the risk model's
calibration and family map, package versions, time, format and the SHA-256 of every other
file) is written last, so a save that did not
finish fails the checksums. Saving replaces only the files a model owns; other files in the
folder are kept. :func:`model_digest` fingerprints the whole model for a store to record.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import importlib.metadata
import json
import pickle
import platform
import re
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from uplift._version import __version__
from uplift.data.files import atomic_path, to_json_ready
from uplift.exceptions import ConfigError, ModelLoadError, ModelVersionWarning
from uplift.models import serialize, signing
from uplift.models.uplift_model import UpliftModel

__all__ = [
    "CARD_FILE",
    "PICKLE_FORMAT",
    "ModelVersionWarning",
    "load_model",
    "model_card",
    "model_digest",
    "read_card",
    "save_model",
]

CARD_FILE = "model_card.json"
JSON_FILE = serialize.JSON_FILE
PICKLE_FILE = "model.pkl"
SIGNATURE_FILE = "model.sig"
SAFE_FORMAT = "json+lightgbm"
PICKLE_FORMAT = "signed-pickle"
CARD_FORMAT = 2
_PACKAGES = ("numpy", "pandas", "scikit-learn", "lightgbm", "causalml", "econml")
#: A temporary file of ``atomic_path``: ``.<name>.<random>.tmp``.
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[A-Za-z0-9_]+\.tmp")
_TRUST_HINT = "if you trust this folder, load it with trust=True / --trust-model"


def model_card(model: UpliftModel, *, form: str, files: dict[str, str]) -> dict[str, Any]:
    """The model card of ``model``: what it is, what it learned from, how it was chosen.

    ``files`` maps every other file of the model folder to its SHA-256.
    """
    selection = model.selection
    return {
        "card_format": CARD_FORMAT,
        "format": form,
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
        "risk": _risk_card(model),
        "selection": None
        if selection is None
        else {
            "chosen": selection.chosen,
            "method": selection.method,
            "outcome": selection.outcome,
            "orders_scored": selection.n_orders,
            "criterion": "doubly robust policy value net of costs on cross-fitted folds; the "
            "first candidate stays unless another is clearly better (paired 95% interval, "
            "Bonferroni-adjusted for the number of alternatives, above zero)",
            "candidates": selection.scores,
        },
        "package_version": __version__,
        "package_versions": _versions(),
        "python": platform.python_version(),
        "created_at": datetime.now(UTC).isoformat(),
        "files": files,
    }


def _risk_card(model: UpliftModel) -> dict[str, Any]:
    """The card's ``risk`` section: the risk model's calibration (method chosen, both
    cross-validated log losses, expected calibration error and reliability curve, out of fold
    on the calibration orders), its expected value and family map; or why there is none."""
    if model.risk_model is not None:
        return model.risk_model.card()
    reason = model.training.get("risk_absent") or (
        "no risk model: the log had no 0/1 outcome (retained or cancelled)"
        if model.retained_model is None
        else "no risk model: trained before risk models existed; retrain to get one"
    )
    return {"fitted": False, "reason": reason}


def _versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def is_owned_name(name: str) -> bool:
    """Whether a file called ``name`` in a model folder belongs to the model."""
    fixed = (CARD_FILE, JSON_FILE, PICKLE_FILE, SIGNATURE_FILE)
    return name in fixed or serialize.BOOSTER_NAME.fullmatch(name) is not None


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


def save_model(
    model: UpliftModel, directory: str | Path, *, metrics: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` and its card into ``directory``, replacing a model saved there before.

    Only the files a model owns are written or removed; anything else in the folder stays.
    ``metrics`` (e.g. an evaluation) are added to the card under ``metrics``.
    """
    target = Path(directory)
    is_model_dir = (target / CARD_FILE).is_file()
    if target.exists() and not is_model_dir and not _holds_only_model_files(target):
        raise ConfigError(
            f"{target}: exists and is not a model directory; choose a new or empty "
            "directory for --model-dir"
        )
    # Everything is serialised (and signed) before the folder is touched.
    if serialize.can_dump(model):
        form = SAFE_FORMAT
        text, boosters = serialize.dump(model)
        files = {**boosters, JSON_FILE: text}
    else:
        form = PICKLE_FORMAT
        data = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        files = {PICKLE_FILE: data, SIGNATURE_FILE: (signing.sign(data) + "\n").encode()}
    card = model_card(model, form=form, files={n: _sha256(d) for n, d in files.items()})
    if metrics is not None:
        card["metrics"] = metrics
    card_text = (json.dumps(to_json_ready(card), indent=2) + "\n").encode()
    previous = _previous_files(target) if is_model_dir else set()
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    try:
        _remove_stale_temporaries(target)
        for name, content in files.items():
            _write(target / name, content)
        for name in previous - files.keys():
            (target / name).unlink(missing_ok=True)
        # Last: until the card is replaced, the old card's checksums refuse a half-saved model.
        _write(target / CARD_FILE, card_text)
    except BaseException:
        if created:
            for name in files:
                (target / name).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                target.rmdir()
        raise
    return target


def _write(path: Path, content: bytes) -> None:
    """Write ``path`` atomically (temporary file beside it, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)


def _previous_files(target: Path) -> set[str]:
    """The files the model saved in ``target`` owns, besides its card."""
    names = {JSON_FILE, PICKLE_FILE, SIGNATURE_FILE}
    with contextlib.suppress(ModelLoadError):
        names |= set(_listed_files(read_card(target), target / CARD_FILE))
    return names


def _holds_only_model_files(target: Path) -> bool:
    """Whether ``target`` is a folder holding nothing but model files (a save killed early)."""
    return target.is_dir() and all(
        is_owned_name(path.name) or _is_owned_temporary(path.name) for path in target.iterdir()
    )


def _is_owned_temporary(name: str) -> bool:
    match = _TEMPORARY.fullmatch(name)
    return match is not None and is_owned_name(match["name"])


def _remove_stale_temporaries(target: Path) -> None:
    """Remove the temporary files a killed save left (of owned names only)."""
    for path in target.iterdir():
        if _is_owned_temporary(path.name) and path.is_file():
            path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def read_card(directory: str | Path) -> dict[str, Any]:
    """The model card of a saved model directory."""
    return _card(Path(directory))[1]


def _card(folder: Path) -> tuple[bytes, dict[str, Any]]:
    """The card's bytes and its content, checked to be a model card."""
    path = folder / CARD_FILE
    if not path.is_file():
        raise ModelLoadError(
            f"{folder}: no {CARD_FILE}; not a model directory (train one with uplift train)"
        )
    raw = path.read_bytes()
    try:
        card = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{path}: damaged model card ({error})") from None
    if not isinstance(card, dict):
        raise ModelLoadError(f"{path}: damaged model card (not a JSON object)")
    _listed_files(card, path)
    return raw, card


def _listed_files(card: dict[str, Any], path: Path) -> dict[str, str]:
    """File name -> SHA-256 of every file the card lists (a card before format 2: model.pkl)."""
    files = card.get("files")
    if files is None and isinstance(card.get("model_sha256"), str):
        files = {PICKLE_FILE: card["model_sha256"]}
    if (
        not isinstance(files, dict)
        or not files
        or not all(isinstance(d, str) and is_owned_name(n) for n, d in files.items())
        or CARD_FILE in files
    ):
        raise ModelLoadError(f"{path}: model card has no valid list of files; it is damaged")
    return files


def _format(card: dict[str, Any], files: dict[str, str], path: Path) -> str:
    form = card.get("format", PICKLE_FORMAT)  # cards before format 2 describe a pickle
    needed = {SAFE_FORMAT: JSON_FILE, PICKLE_FORMAT: PICKLE_FILE}.get(form)
    if needed is None or needed not in files:
        raise ModelLoadError(f"{path}: unknown model format {form!r}; it is damaged")
    return str(form)


def _read_files(folder: Path, names: list[str]) -> dict[str, bytes]:
    contents = {}
    for name in names:
        try:
            contents[name] = (folder / name).read_bytes()
        except FileNotFoundError:
            raise ModelLoadError(
                f"{folder}: no {name}; the model directory is incomplete"
            ) from None
        except OSError as error:
            raise ModelLoadError(f"{folder / name}: cannot be read ({error})") from None
    return contents


def _digest(contents: dict[str, bytes]) -> str:
    """SHA-256 over the sorted file names and contents (each length-prefixed, so unambiguous)."""
    digest = hashlib.sha256()
    for name in sorted(contents):
        for part in (name.encode(), contents[name]):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()


def model_digest(directory: str | Path) -> str:
    """SHA-256 of a model folder: the card and every file it lists, by sorted name.

    Files in the folder that the model does not own do not count.
    """
    folder = Path(directory)
    raw, card = _card(folder)
    files = _listed_files(card, folder / CARD_FILE)
    return _digest({CARD_FILE: raw, **_read_files(folder, sorted(files))})


def load_model(
    directory: str | Path, *, trust: bool = False, digest: str | None = None
) -> UpliftModel:
    """Load a saved model after verifying its checksums; warn when another version saved it.

    A pickled model loads only when signed with the user's key (see :mod:`signing`), unless
    ``trust`` vouches for the folder. With ``digest`` (from :func:`model_digest`) a folder
    that changed since is refused. Every problem is a :class:`ModelLoadError`.
    """
    folder = Path(directory)
    raw, card = _card(folder)
    listed = _listed_files(card, folder / CARD_FILE)
    form = _format(card, listed, folder / CARD_FILE)
    # Read once: every check below and the model itself use these same bytes.
    contents = _read_files(folder, sorted(listed))
    if digest is not None:
        actual = _digest({CARD_FILE: raw, **contents})
        expected = digest.strip().lower().encode("utf-8", "replace")
        if not hmac.compare_digest(actual.encode(), expected):
            raise ModelLoadError(
                f"{folder}: digest {actual[:12]}... differs from the recorded {digest[:12]}...; "
                "the model folder changed since it was recorded, so it is not loaded"
            )
    for name, content in contents.items():
        if _sha256(content) != listed[name]:
            raise ModelLoadError(
                f"{folder / name}: checksum does not match the model card; the file was changed "
                "or damaged after saving (or its save did not finish), so it is not loaded "
                "(train the model again)"
            )
    saved_by = card.get("package_version")
    if saved_by != __version__:
        warnings.warn(
            f"{folder}: model saved by uplift {saved_by}, loaded by {__version__}; "
            "predictions may differ, retrain to be sure",
            ModelVersionWarning,
            stacklevel=2,
        )
    if form == SAFE_FORMAT:
        model = serialize.load(contents, folder)
    else:
        if not trust:
            _check_signature(folder, contents)
        model = _unpickle(folder / PICKLE_FILE, contents[PICKLE_FILE])
    _check_card(card, model, folder / CARD_FILE)
    return model


def _check_signature(folder: Path, contents: dict[str, bytes]) -> None:
    """Refuse a pickle that the user's key did not sign, before a byte is unpickled."""
    signature = contents.get(SIGNATURE_FILE)
    if signature is None:
        reason = f"no {SIGNATURE_FILE}"
    elif signing.model_key() is None:
        reason = f"you have no key yet ({signing.KEY_ENV} unset, no {signing.key_path()})"
    elif not signing.verify(contents[PICKLE_FILE], signature.decode("utf-8", "replace")):
        reason = f"{SIGNATURE_FILE} does not match"
    else:
        return
    raise ModelLoadError(
        f"{folder / PICKLE_FILE}: was not signed with your key ({reason}); a pickle runs code "
        f"when loaded, so it is refused; {_TRUST_HINT}"
    )


def _unpickle(path: Path, data: bytes) -> UpliftModel:
    try:
        model = pickle.loads(data)
    except (
        pickle.UnpicklingError,
        EOFError,
        ImportError,
        AttributeError,
        TypeError,
        ValueError,
    ) as error:
        raise ModelLoadError(
            f"{path}: cannot be loaded by this installation ({type(error).__name__}: {error}); "
            "train the model again"
        ) from None
    if not isinstance(model, UpliftModel):
        raise ModelLoadError(f"{path}: holds a {type(model).__name__}, not an UpliftModel")
    return model


def _check_card(card: dict[str, Any], model: UpliftModel, path: Path) -> None:
    """The card must describe the model it sits beside (commands read features from it)."""
    described = {
        "learner": model.learner,
        "control": model.control,
        "treatment_arms": list(model.treatment_arms),
        "inputs": list(model.inputs),
        "features": list(model.features),
    }
    for key, value in described.items():
        if card.get(key) != value:
            raise ModelLoadError(f"{path}: {key} differs from the saved model's; it was edited")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
