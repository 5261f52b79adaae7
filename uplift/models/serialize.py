"""Our own models as plain JSON plus LightGBM text models: a format that runs no code on load.

:func:`dump` turns an :class:`UpliftModel` made only of our classes into ``model.json`` and one
LightGBM text model per booster (a linear learner's coefficients are numbers in ``model.json``,
as are the risk model's calibrator and family map); :func:`load` builds it back. Loading
creates objects only from the fixed allow-list :data:`CLASSES` (no name read from a file is
ever imported), checks the type of every field and that the feature lists agree with the
boosters, and reports any damage as
:class:`~uplift.exceptions.ModelLoadError` naming the file. Boosters are read as text
(:class:`~uplift.models.lgbm_text.TextBooster`): predicting needs no LightGBM.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
import pandas as pd

from uplift.data.causes import FAMILIES, OTHER
from uplift.data.files import to_json_ready
from uplift.exceptions import ConfigError, ModelLoadError
from uplift.models.base import FeatureEncoder
from uplift.models.blend import BlendLearner, members_of
from uplift.models.calibration import CalibrationReport, calibrator_from_dict
from uplift.models.learners import ARM_FEATURE, DRLearner, LightGBMLearner, SLearner, TLearner
from uplift.models.lgbm_text import TextBooster
from uplift.models.linear import LinearLearner, base_width, numeric_columns
from uplift.models.risk import RiskModel
from uplift.models.uplift_model import ControlOutcomeModel, Selection, UpliftModel

if TYPE_CHECKING:
    from uplift.models.trees import Booster

__all__ = ["BOOSTER_NAME", "CLASSES", "JSON_FILE", "can_dump", "dump", "load"]

JSON_FILE = "model.json"
JSON_VERSION = 1
#: The only classes the format can describe, by the name written in ``model.json``.
LEARNERS: dict[str, type[LightGBMLearner]] = {
    "TLearner": TLearner,
    "SLearner": SLearner,
    "DRLearner": DRLearner,
    "LinearLearner": LinearLearner,
    "BlendLearner": BlendLearner,
}
CLASSES = (*LEARNERS, "ControlOutcomeModel", "RiskModel")
ROLES = ("retained_model", "revenue_model", "retained_base_model", "revenue_base_model")
#: Booster files are named ``<role>-<i>.lgbm.txt``; nothing else is read as a booster.
BOOSTER_NAME = re.compile(r"((retained|revenue)(_base)?|risk)_model-\d{1,4}\.lgbm\.txt")
RISK_ROLE = "risk_model"
#: Column types a selection's scores table may have.
_SCORE_DTYPES = ("float64", "int64", "bool", "object", "str", "string")


class _Damaged(Exception):
    """A field of ``model.json`` (or a booster) is not what the format allows."""


def can_dump(model: UpliftModel) -> bool:
    """Whether every component of ``model`` is one of our classes (exact types, no subclasses)."""
    learners = (model.retained_model, model.revenue_model)
    bases = (model.retained_base_model, model.revenue_base_model)
    return (
        type(model) is UpliftModel
        and all(m is None or type(m) in LEARNERS.values() for m in learners)
        and all(m is None or type(m) is ControlOutcomeModel for m in bases)
        and all(type(m.encoder_) is FeatureEncoder for m in learners if m is not None)
        and all(type(m.encoder) is FeatureEncoder for m in bases if m is not None)
        and (model.selection is None or type(model.selection) is Selection)
        and (
            model.risk_model is None
            or (
                type(model.risk_model) is RiskModel
                and type(model.risk_model.encoder) is FeatureEncoder
            )
        )
    )


def dump(model: UpliftModel) -> tuple[bytes, dict[str, bytes]]:
    """``model.json`` and the booster files (name -> text) of a model :func:`can_dump` takes."""
    boosters: dict[str, bytes] = {}
    components: dict[str, Any] = {}
    for role in ROLES:
        component = getattr(model, role)
        if component is None:
            components[role] = None
            continue
        if isinstance(component, ControlOutcomeModel):
            found, description = [component.booster], _control_outcome(component)
        else:
            found, description = _boosters(component), _learner(component)
        names = [f"{role}-{i}.lgbm.txt" for i in range(len(found))]
        for name, booster in zip(names, found, strict=True):
            boosters[name] = booster.model_to_string().encode()
        components[role] = {**description, "boosters": names}
    risk = model.risk_model
    if risk is not None:
        name = f"{RISK_ROLE}-0.lgbm.txt"
        boosters[name] = risk.booster.model_to_string().encode()
        components[RISK_ROLE] = {**_risk(risk), "boosters": [name]}
    payload = {
        "format": "uplift-model",
        "version": JSON_VERSION,
        "learner": model.learner,
        "control": model.control,
        "treatment_arms": list(model.treatment_arms),
        "inputs": list(model.inputs),
        "training": model.training,
        "selection": None if model.selection is None else _selection(model.selection),
        **components,
    }
    text = json.dumps(to_json_ready(payload), indent=1, allow_nan=False) + "\n"
    return text.encode(), boosters


def _learner(model: LightGBMLearner) -> dict[str, Any]:
    return {
        "class": type(model).__name__,
        "params": model.get_params(),
        "control": model.control_,
        "treatment_arms": list(model.treatment_arms_),
        "binary_outcome": model.binary_outcome_,
        "n_features_in": model.n_features_in_,
        "feature_names_in": [str(c) for c in model.feature_names_in_],
        "encoder": _encoder(model.encoder_),
        **({"linear": _linear(model)} if isinstance(model, LinearLearner) else {}),
        **(
            {"linear": _linear(model.linear_), "stretch": _stretch(model)}
            if isinstance(model, BlendLearner)
            else {}
        ),
    }


def _stretch(model: BlendLearner) -> dict[str, Any]:
    return {"factor": model.stretch_, "tree_uplift": [float(v) for v in model.tree_uplift_]}


def _risk(model: RiskModel) -> dict[str, Any]:
    return {
        "class": "RiskModel",
        "encoder": _encoder(model.encoder),
        "families": dict(model.families),
        "calibrator": model.calibrator.to_dict(),
        "report": model.report.to_dict(),
    }


def _control_outcome(model: ControlOutcomeModel) -> dict[str, Any]:
    return {"class": "ControlOutcomeModel", "encoder": _encoder(model.encoder)}


def _encoder(encoder: FeatureEncoder) -> dict[str, Any]:
    return {
        "columns": list(encoder.columns),
        "categories": {
            name: [str(v) for v in levels] for name, levels in encoder.categories.items()
        },
    }


def _boosters(model: LightGBMLearner) -> list[Booster]:
    if isinstance(model, SLearner | TLearner | DRLearner):
        return list(model.models_)
    if isinstance(model, LinearLearner):
        return []  # its coefficients are numbers in model.json
    if isinstance(model, BlendLearner):
        return list(model.trees_.models_)  # and the linear member's numbers in model.json
    raise TypeError(f"not one of ours: {type(model).__name__}")


def _linear(model: LinearLearner) -> dict[str, Any]:
    """The fitted numbers of a linear learner, including the encoder's missing-value fill."""
    encoder = model.encoder_
    return {
        "medians": {name: float(encoder.medians[name]) for name in numeric_columns(encoder)},
        "with_missing": list(encoder.with_missing),
        "means": [float(v) for v in model.means_],
        "scales": [float(v) for v in model.scales_],
        "coef": [float(v) for v in model.coef_],
        "intercept": float(model.intercept_),
        "penalty": [float(v) for v in model.penalty_],
    }


def _selection(selection: Selection) -> dict[str, Any]:
    scores = selection.scores
    return {
        "chosen": selection.chosen,
        "method": selection.method,
        "outcome": selection.outcome,
        "n_orders": selection.n_orders,
        "scores": {
            "columns": [str(c) for c in scores.columns],
            "dtypes": [str(t) for t in scores.dtypes],
            "records": scores.to_dict(orient="records"),
        },
    }


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load(files: Mapping[str, bytes], folder: Path) -> UpliftModel:
    """The model described by ``files`` (``model.json`` and the boosters it names).

    ``files`` holds the bytes of every file the model card lists (already checksummed), so a
    booster the card does not list cannot be read. Damage raises ModelLoadError.
    """
    where = folder / JSON_FILE
    try:
        payload = json.loads(files[JSON_FILE])
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise ModelLoadError(
            f"{where}: not valid JSON ({error}); the model folder is damaged"
        ) from None
    try:
        return _model(_obj(payload, JSON_FILE), files, folder)
    except _Damaged as error:
        raise ModelLoadError(
            f"{where}: {error}; the model folder is damaged or was edited (train the model again)"
        ) from None


def _model(payload: dict[str, Any], files: Mapping[str, bytes], folder: Path) -> UpliftModel:
    if payload.get("format") != "uplift-model" or payload.get("version") != JSON_VERSION:
        raise _Damaged(f"not an uplift model of format version {JSON_VERSION}")
    control = _str(payload, "control")
    arms = tuple(_strs(payload, "treatment_arms"))
    inputs = tuple(_strs(payload, "inputs"))
    if not arms or control in arms or len(set(arms)) != len(arms):
        raise _Damaged("treatment_arms must be distinct arms other than control")
    components: dict[str, Any] = {}
    for role in ROLES:
        spec = payload.get(role)
        if spec is None:
            components[role] = None
            continue
        spec = _obj(spec, role)
        boosters = [_booster(name, files, folder) for name in _strs(spec, "boosters")]
        if role.endswith("_base_model"):
            components[role] = _build_control_outcome(spec, boosters, inputs, role)
        else:
            components[role] = _build_learner(spec, boosters, inputs, control, arms, role)
    for outcome in ("retained", "revenue"):
        learner, base = components[f"{outcome}_model"], components[f"{outcome}_base_model"]
        # T/S-learners give outcome levels themselves; the DR-learner needs a control model.
        if (base is None) != (learner is None or not isinstance(learner, DRLearner)):
            raise _Damaged(f"{outcome}_base_model does not fit {outcome}_model")
    selection = payload.get("selection")
    risk = payload.get(RISK_ROLE)  # absent from models saved before risk models existed
    if risk is not None:
        risk = _obj(risk, RISK_ROLE)
        boosters = [_booster(name, files, folder) for name in _strs(risk, "boosters")]
        components[RISK_ROLE] = _build_risk(risk, boosters, inputs)
    return UpliftModel(
        learner=_str(payload, "learner"),
        control=control,
        treatment_arms=arms,
        inputs=inputs,
        selection=None if selection is None else _build_selection(_obj(selection, "selection")),
        training=_obj(payload.get("training"), "training"),
        **components,
    )


def _build_learner(
    spec: dict[str, Any],
    boosters: list[Booster],
    inputs: tuple[str, ...],
    control: str,
    arms: tuple[str, ...],
    role: str,
) -> LightGBMLearner:
    name = _str(spec, "class")
    if name not in LEARNERS:
        raise _Damaged(f"{role}: class {name!r} is not one of {', '.join(LEARNERS)}")
    cls = LEARNERS[name]
    params = _obj(spec.get("params"), f"{role}.params")
    if cls is SLearner and "n_bags" not in params:
        params["n_bags"] = 1  # written before the S-learner was bagged: one model
    if cls in (LinearLearner, BlendLearner) and "adaptation" not in params:
        params["adaptation"] = 0.0  # written before the second, adapted fit: one fit
    if cls is BlendLearner and "stretch" not in params:
        params["stretch"] = 1.0  # written before the trees' stretch: the plain mean
    defaults = cls().get_params()
    if "directions" in defaults:
        params.setdefault("directions", None)  # written before known directions: none
    # A parameter whose default is None (chosen in fit, such as the linear penalty) may be None;
    # the directions (a map of columns to 1 or -1) are checked with the other params below.
    if set(params) != set(defaults) or not all(
        (isinstance(v, int | float) and not isinstance(v, bool))
        or (v is None and defaults[k] is None)
        or k == "directions"
        for k, v in params.items()
    ):
        raise _Damaged(f"{role}: params must be the numbers {', '.join(defaults)}")
    model = cls(**params)
    try:
        model._check_params()
    except ConfigError as error:
        raise _Damaged(f"{role}: {error}") from None
    encoder = _build_encoder(_obj(spec.get("encoder"), f"{role}.encoder"), inputs, role)
    if _str(spec, "control") != control or tuple(_strs(spec, "treatment_arms")) != arms:
        raise _Damaged(f"{role}: its arms differ from the model's")
    if _strs(spec, "feature_names_in") != list(encoder.columns) or _int(
        spec, "n_features_in"
    ) != len(encoder.columns):
        raise _Damaged(f"{role}: feature_names_in differs from the encoder's columns")
    model.encoder_ = encoder
    model.control_ = control
    model.treatment_arms_ = arms
    model.binary_outcome_ = _bool(spec, "binary_outcome")
    model.n_features_in_ = len(encoder.columns)
    model.feature_names_in_ = np.asarray(encoder.columns, dtype=object)
    if isinstance(model, LinearLearner):
        _check_boosters(boosters, 0, encoder, role)
        _build_linear(model, _obj(spec.get("linear"), f"{role}.linear"), role)
        return model
    if isinstance(model, BlendLearner):
        model.trees_, model.linear_ = members_of(model)
        arm_levels = list(range(1 + len(arms)))
        _check_boosters(boosters, model.n_bags, encoder, role, extra=(ARM_FEATURE, arm_levels))
        model.trees_.models_ = boosters
        _build_linear(model.linear_, _obj(spec.get("linear"), f"{role}.linear"), role)
        _build_stretch(model, spec.get("stretch"), role)
        return model
    if isinstance(model, SLearner):
        arm_levels = list(range(1 + len(arms)))
        _check_boosters(boosters, model.n_bags, encoder, role, extra=(ARM_FEATURE, arm_levels))
        model.models_ = boosters
    elif isinstance(model, TLearner):
        _check_boosters(boosters, 1 + len(arms), encoder, role)
        model.models_ = boosters
    else:
        _check_boosters(boosters, len(arms), encoder, role)
        model.models_ = boosters
    return model


def _build_control_outcome(
    spec: dict[str, Any], boosters: list[Booster], inputs: tuple[str, ...], role: str
) -> ControlOutcomeModel:
    if _str(spec, "class") != "ControlOutcomeModel":
        raise _Damaged(f"{role}: class {spec['class']!r} is not ControlOutcomeModel")
    encoder = _build_encoder(_obj(spec.get("encoder"), f"{role}.encoder"), inputs, role)
    _check_boosters(boosters, 1, encoder, role)
    return ControlOutcomeModel(encoder, boosters[0])


def _build_risk(
    spec: dict[str, Any], boosters: list[Booster], inputs: tuple[str, ...]
) -> RiskModel:
    if _str(spec, "class") != "RiskModel":
        raise _Damaged(f"{RISK_ROLE}: class {spec['class']!r} is not RiskModel")
    encoder = _build_encoder(_obj(spec.get("encoder"), f"{RISK_ROLE}.encoder"), inputs, RISK_ROLE)
    _check_boosters(boosters, 1, encoder, RISK_ROLE)
    objective = str(boosters[0].dump_model(num_iteration=1).get("objective", ""))
    if objective.split()[:1] != ["binary"]:
        raise _Damaged(f"{RISK_ROLE}: its booster is not a binary classifier")
    families = _obj(spec.get("families"), f"{RISK_ROLE}.families")
    if list(families) != list(inputs) or not all(
        v in (*FAMILIES, OTHER) for v in families.values()
    ):
        raise _Damaged(
            f"{RISK_ROLE}: families must give each input one of {', '.join((*FAMILIES, OTHER))}"
        )
    try:
        calibrator = calibrator_from_dict(_obj(spec.get("calibrator"), f"{RISK_ROLE}.calibrator"))
        report = CalibrationReport.from_dict(_obj(spec.get("report"), f"{RISK_ROLE}.report"))
    except ValueError as error:
        raise _Damaged(f"{RISK_ROLE}: {error}") from None
    return RiskModel(encoder, boosters[0], calibrator, dict(families), report)


def _build_linear(model: LinearLearner, spec: dict[str, Any], role: str) -> None:
    """Give ``model`` (its encoder already built) the fitted numbers of ``spec``."""
    encoder = model.encoder_
    numeric = numeric_columns(encoder)
    medians = _obj(spec.get("medians"), f"{role}.linear.medians")
    with_missing = _strs(spec, "with_missing")
    if list(medians) != numeric or not set(with_missing) <= set(numeric):
        raise _Damaged(f"{role}: linear medians and with_missing must name its numeric columns")
    if len(set(with_missing)) != len(with_missing):
        raise _Damaged(f"{role}: linear with_missing names a column twice")
    encoder.medians = {name: _float(medians, name) for name in numeric}
    encoder.with_missing = tuple(with_missing)
    means, scales = _floats(spec, "means"), _floats(spec, "scales")
    width = base_width(encoder) * (1 + len(model.treatment_arms_)) + len(model.treatment_arms_)
    coef = _floats(spec, "coef")
    if len(means) != len(numeric) or len(scales) != len(numeric) or len(coef) != width:
        raise _Damaged(f"{role}: linear means and scales need {len(numeric)} numbers, coef {width}")
    if any(v <= 0 for v in scales):
        raise _Damaged(f"{role}: linear scales must be > 0")
    model.means_ = np.asarray(means, dtype=np.float64)
    model.scales_ = np.asarray(scales, dtype=np.float64)
    model.coef_ = np.asarray(coef, dtype=np.float64)
    model.intercept_ = _float(spec, "intercept")
    if "penalty" in spec:  # written since the default penalty follows the log's size
        # (C, interaction scale), and the adaptation since there is one (0 before: one fit)
        penalty = _floats(spec, "penalty")
        penalty += [0.0] * (len(penalty) == 2)
        if len(penalty) != 3 or any(v <= 0 for v in penalty[:2]) or penalty[2] < 0:
            raise _Damaged(
                f"{role}: linear penalty must be C > 0, interaction scale > 0, adaptation >= 0"
            )
        model.penalty_ = (penalty[0], penalty[1], penalty[2])


def _build_stretch(model: BlendLearner, spec: Any, role: str) -> None:
    """The blend's stretch of its trees' uplift; none (a plain mean) in a model written before."""
    k = len(model.treatment_arms_)
    if spec is None:
        model.stretch_, model.tree_uplift_ = 1.0, np.zeros(k)
        return
    stretch = _obj(spec, f"{role}.stretch")
    factor, centre = _float(stretch, "factor"), _floats(stretch, "tree_uplift")
    if factor <= 0 or len(centre) != k:
        raise _Damaged(f"{role}: stretch needs a factor > 0 and a tree_uplift per arm ({k})")
    model.stretch_, model.tree_uplift_ = factor, np.asarray(centre, dtype=np.float64)


def _build_encoder(spec: dict[str, Any], inputs: tuple[str, ...], role: str) -> FeatureEncoder:
    columns = tuple(_strs(spec, "columns"))
    if columns != inputs:
        raise _Damaged(f"{role}: encoder columns {list(columns)} differ from inputs {list(inputs)}")
    categories = _obj(spec.get("categories"), f"{role}.categories")
    if not set(categories) <= set(columns):
        raise _Damaged(f"{role}: categories name columns that are not inputs")
    encoder = FeatureEncoder()
    encoder.columns = columns
    # pd.Index of str, as FeatureEncoder.fit makes it, so LightGBM sees the same categories.
    encoder.categories = {name: pd.Index(_strs(categories, name)) for name in categories}
    return encoder


def _check_boosters(
    boosters: list[Booster],
    count: int,
    encoder: FeatureEncoder,
    role: str,
    extra: tuple[str, list[int]] | None = None,
) -> None:
    """The boosters must be ``count`` and read exactly the encoder's columns and categories."""
    if len(boosters) != count:
        raise _Damaged(f"{role}: {len(boosters)} boosters; the model needs {count}")
    names = [_lightgbm_name(c) for c in encoder.columns]
    levels: list[list[Any]] = [
        list(encoder.categories[c]) for c in encoder.columns if c in encoder.categories
    ]
    if extra is not None:
        names.append(extra[0])
        levels.append(extra[1])
    for booster in boosters:
        if booster.feature_name() != names:
            raise _Damaged(
                f"{role}: the features do not match its boosters' {booster.feature_name()}"
            )
        if (booster.pandas_categorical or []) != levels:
            raise _Damaged(f"{role}: the category levels do not match its boosters'")


def _lightgbm_name(column: str) -> str:
    """The feature name LightGBM stores for ``column`` (it writes whitespace as ``_``)."""
    return "".join("_" if c.isspace() else c for c in column)


def _booster(name: str, files: Mapping[str, bytes], folder: Path) -> Booster:
    if not BOOSTER_NAME.fullmatch(name):
        raise _Damaged(f"{name!r} is not a booster file name")
    if name not in files:
        raise _Damaged(f"it names {name}, which the model card does not list")
    try:
        # Read as text: prediction then needs no LightGBM (a second of imports).
        return TextBooster(files[name].decode())
    # A damaged text model: ValueError from its parser, UnicodeDecodeError from its bytes.
    except Exception as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelLoadError(
            f"{folder / name}: not a LightGBM model ({first}); the model folder is damaged"
        ) from None


def _build_selection(spec: dict[str, Any]) -> Selection:
    scores = _obj(spec.get("scores"), "selection.scores")
    columns, dtypes = _strs(scores, "columns"), _strs(scores, "dtypes")
    records = scores.get("records")
    if (
        len(dtypes) != len(columns)
        or not set(dtypes) <= set(_SCORE_DTYPES)
        or not isinstance(records, list)
        or not all(isinstance(r, dict) and list(r) == columns for r in records)
    ):
        raise _Damaged("selection.scores is not a table of the allowed column types")
    try:
        frame = pd.DataFrame.from_records(records, columns=columns)
        table = frame.astype(dict(zip(columns, dtypes, strict=True)))
    except (TypeError, ValueError) as error:
        raise _Damaged(f"selection.scores: {error}") from None
    return Selection(
        chosen=_str(spec, "chosen"),
        method=_str(spec, "method"),
        outcome=_str(spec, "outcome"),
        n_orders=_int(spec, "n_orders"),
        scores=table,
    )


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Damaged(f"{what} must be an object")
    return value


def _str(spec: dict[str, Any], key: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str):
        raise _Damaged(f"{key} must be a string")
    return value


def _strs(spec: dict[str, Any], key: str) -> list[str]:
    value = spec.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Damaged(f"{key} must be a list of strings")
    return value


def _int(spec: dict[str, Any], key: str) -> int:
    value = spec.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Damaged(f"{key} must be an integer")
    return value


def _float(spec: dict[str, Any], key: str) -> float:
    value = spec.get(key)
    if not _is_finite_number(value):
        raise _Damaged(f"{key} must be a finite number")
    return float(value)


def _floats(spec: dict[str, Any], key: str) -> list[float]:
    value = spec.get(key)
    if not isinstance(value, list) or not all(_is_finite_number(v) for v in value):
        raise _Damaged(f"{key} must be a list of finite numbers")
    return [float(v) for v in value]


def _is_finite_number(value: Any) -> TypeGuard[float]:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and bool(np.isfinite(value))
    )


def _bool(spec: dict[str, Any], key: str) -> bool:
    value = spec.get(key)
    if not isinstance(value, bool):
        raise _Damaged(f"{key} must be true or false")
    return value
