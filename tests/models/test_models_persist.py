"""Model directories: safe JSON + LightGBM format, signed pickles, digests, keeping user files,
and the train / evaluate / predict commands."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickle
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from tests.models.model_files import copy_folder, edit_file, edit_model_json
from uplift.data.files import to_json_ready
from uplift.data.log import ExperimentLog
from uplift.data.simulate import pending_orders, simulate
from uplift.exceptions import ConfigError, ModelLoadError
from uplift.models import (
    ModelVersionWarning,
    UpliftModel,
    load_model,
    model_digest,
    read_card,
    save_model,
    signing,
    train_uplift,
)
from uplift.models.learners import N_BAGS
from uplift.models.persist import PICKLE_FORMAT, model_card


@pytest.fixture(scope="module")
def log() -> ExperimentLog:
    return ExperimentLog.from_frame(simulate(3_000, weeks=2, seed=8).log)


@pytest.fixture(scope="module")
def model(log: ExperimentLog) -> UpliftModel:
    return train_uplift(log, learner="t_lgbm", costs={"expedite": 5.0}, validate=True)


@pytest.fixture(scope="module")
def saved(model: UpliftModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model(model, tmp_path_factory.mktemp("models") / "m")


def _as_categories(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its text columns as pandas categoricals."""
    text = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    return frame.astype(dict.fromkeys(text, "category"))


def _assert_same_predictions(a: UpliftModel, b: UpliftModel, frame: pd.DataFrame) -> None:
    for orders in (frame, _as_categories(frame)):
        pd.testing.assert_frame_equal(
            a.predict_effects(orders).to_frame(),
            b.predict_effects(orders).to_frame(),
            rtol=0,
            atol=1e-12,
        )
        outcomes = ("retained", "revenue") if a.revenue_model is None else ("revenue",)
        for outcome in outcomes:
            pd.testing.assert_frame_equal(
                a.predict_outcomes(orders, outcome),
                b.predict_outcomes(orders, outcome),
                rtol=0,
                atol=1e-12,
            )


def _pickled(
    model: object, folder: Path, *, described: UpliftModel, key: bytes | None = None
) -> Path:
    """A pickled model folder whose card describes ``described``: signed with ``key`` when
    given, else with no model.sig."""
    folder.mkdir()
    data = pickle.dumps(model)
    files = {"model.pkl": data}
    if key is not None:
        files["model.sig"] = hmac.new(key, data, hashlib.sha256).hexdigest().encode()
    for name, content in files.items():
        (folder / name).write_bytes(content)
    checksums = {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}
    card = model_card(described, form=PICKLE_FORMAT, files=checksums)
    (folder / "model_card.json").write_text(json.dumps(to_json_ready(card)))
    return folder


class _Evil:
    """A pickle that creates a file when loaded: what an attacker would put in model.pkl."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


# --------------------------------------------------------------------------------------------
# The JSON + LightGBM format
# --------------------------------------------------------------------------------------------


def test_round_trip_predicts_the_same(log: ExperimentLog, model: UpliftModel, saved: Path) -> None:
    loaded = load_model(saved)
    _assert_same_predictions(model, loaded, log.frame)
    pd.testing.assert_frame_equal(loaded.selection.scores, model.selection.scores)  # type: ignore[union-attr]
    assert loaded.training == model.training
    again = train_uplift(log, learner="t_lgbm", costs={"expedite": 5.0})
    pd.testing.assert_frame_equal(
        loaded.predict_effects(log.frame).to_frame(), again.predict_effects(log.frame).to_frame()
    )


@pytest.mark.parametrize(
    ("learner", "order_value"),
    [
        ("s_lgbm", True),
        ("dr_lgbm", True),
        ("t_lgbm", False),
        ("dr_lgbm", False),
        ("s_blend", True),
        ("s_blend", False),
    ],
)
def test_our_learners_round_trip_exactly(
    log: ExperimentLog,
    learner: str,
    order_value: bool,
    tmp_path: Path,
) -> None:
    frame = log.frame if order_value else log.frame.drop(columns="order_value")
    original = train_uplift(ExperimentLog.from_frame(frame), learner=learner, seed=3)
    save_model(original, tmp_path / "m")
    assert sorted(
        p.name for p in (tmp_path / "m").iterdir() if not p.name.endswith(".lgbm.txt")
    ) == [
        "model.json",
        "model_card.json",
    ]
    loaded = load_model(tmp_path / "m")
    for role in ("retained_model", "revenue_model", "retained_base_model", "revenue_base_model"):
        before, after = getattr(original, role), getattr(loaded, role)
        assert type(before) is type(after), role
        if hasattr(before, "get_params"):
            assert after.get_params() == before.get_params()
            assert sorted(vars(after)) == sorted(vars(before))
    _assert_same_predictions(original, loaded, frame)


def test_an_s_learner_saved_before_bagging_loads_as_one_bag(
    log: ExperimentLog, tmp_path: Path
) -> None:
    original = train_uplift(log, learner="s_lgbm", seed=3)
    single = original.retained_model
    single.set_params(n_bags=1)
    single.models_ = single.models_[:1]
    save_model(original, tmp_path / "m")

    def unbagged(payload: dict[str, Any]) -> None:  # the form written before n_bags existed
        del payload["retained_model"]["params"]["n_bags"]

    edit_model_json(tmp_path / "m", unbagged)
    loaded = load_model(tmp_path / "m")
    assert loaded.retained_model.n_bags == 1
    _assert_same_predictions(original, loaded, log.frame)


def test_model_card_describes_the_model(log: ExperimentLog, saved: Path) -> None:
    card = read_card(saved)
    assert card["format"] == "json+lightgbm"
    assert card["learner"] == "t_lgbm"
    assert card["arms"] == list(log.arms)
    assert card["control"] == "control"
    assert card["features"] == list(log.features)
    assert card["training"]["orders"] == len(log)
    assert len(card["training"]["data_hash"]) == 64
    assert card["training"]["costs"] == {"expedite": 5.0}
    assert [c["learner"] for c in card["selection"]["candidates"]] == ["t_lgbm"]
    assert {"numpy", "pandas", "lightgbm"} <= set(card["package_versions"])
    assert card["created_at"]
    on_disk = {p.name for p in saved.iterdir()} - {"model_card.json"}
    assert set(card["files"]) == on_disk
    assert "model.pkl" not in on_disk


def test_tampered_file_is_refused(saved: Path, tmp_path: Path) -> None:
    copy = copy_folder(saved, tmp_path / "m")
    with (copy / "retained_model-0.lgbm.txt").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelLoadError, match="checksum does not match the model card"):
        load_model(copy)


def test_missing_files_are_load_errors(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no model_card\.json"):
        load_model(tmp_path)
    copy = copy_folder(saved, tmp_path / "m")
    (copy / "retained_model-2.lgbm.txt").unlink()
    with pytest.raises(ModelLoadError, match=r"no retained_model-2\.lgbm\.txt; .* incomplete"):
        load_model(copy)
    (copy / "model_card.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="damaged model card"):
        load_model(copy)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["retained_model"].update({"class": "os.system"}),
         r"model\.json: retained_model: class 'os\.system' is not one of TLearner"),
        (lambda p: p["retained_model"].update({"class": "ControlOutcomeModel"}),
         "class 'ControlOutcomeModel' is not one of"),
        (lambda p: p.update({"inputs": [*p["inputs"][:-1], "basket"]}),
         r"encoder columns .* differ from inputs"),
        (lambda p: p.update({"treatment_arms": "expedite"}), "treatment_arms must be a list"),
        (lambda p: p["retained_model"].update({"params": {"n_estimators": "1; rm -rf"}}),
         "params must be the numbers"),
        (lambda p: p["retained_model"]["params"].update({"n_estimators": None}),
         "params must be the numbers"),
        (lambda p: p["retained_model"]["params"].update({"n_estimators": 0}),
         "n_estimators must be an integer >= 1"),
        (lambda p: p["retained_model"].update({"boosters": ["../../etc/passwd"]}),
         "is not a booster file name"),
        (lambda p: p["retained_model"].update({"boosters": ["revenue_model-0.lgbm.txt"]}),
         "which the model card does not list"),
        (lambda p: p["retained_model"]["boosters"].pop(), "5 boosters; the model needs 6"),
        (lambda p: p.update({"selection": {"scores": []}}), "selection.scores must be an object"),
        (lambda p: p.update({"version": 99}), "not an uplift model of format version 1"),
    ],
)  # fmt: skip
def test_edited_model_json_is_refused(
    saved: Path, tmp_path: Path, change: Any, message: str
) -> None:
    copy = copy_folder(saved, tmp_path / "m")
    edit_model_json(copy, change)
    with pytest.raises(ModelLoadError, match=message):
        load_model(copy)


def test_renamed_features_are_refused_by_the_boosters(saved: Path, tmp_path: Path) -> None:
    """Editing inputs everywhere in model.json still disagrees with the boosters' features."""
    copy = copy_folder(saved, tmp_path / "m")

    def rename(payload: dict[str, Any]) -> None:
        swap = {"hour": "minute"}
        payload["inputs"] = [swap.get(c, c) for c in payload["inputs"]]
        learner = payload["retained_model"]
        learner["feature_names_in"] = payload["inputs"]
        learner["encoder"]["columns"] = payload["inputs"]

    edit_model_json(copy, rename)
    with pytest.raises(ModelLoadError, match="the features do not match its boosters'"):
        load_model(copy)


def test_edited_categories_and_card_features_are_refused(saved: Path, tmp_path: Path) -> None:
    copy = copy_folder(saved, tmp_path / "m")
    edit_model_json(
        copy, lambda p: p["retained_model"]["encoder"]["categories"]["device"].append("fridge")
    )
    with pytest.raises(ModelLoadError, match="category levels do not match"):
        load_model(copy)
    copy = copy_folder(saved, tmp_path / "m2")
    card = json.loads((copy / "model_card.json").read_text())
    card["features"] = card["features"][1:]
    (copy / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="features differs from the saved model's"):
        load_model(copy)


def test_damaged_json_and_boosters_are_refused(saved: Path, tmp_path: Path) -> None:
    copy = copy_folder(saved, tmp_path / "m")
    edit_file(copy, "model.json", b"{not json")
    with pytest.raises(ModelLoadError, match=r"model\.json: not valid JSON"):
        load_model(copy)
    copy = copy_folder(saved, tmp_path / "m2")
    edit_file(copy, "retained_model-1.lgbm.txt", b"tree\nversion=v4\nnum_class=x\n")
    with pytest.raises(ModelLoadError, match=r"retained_model-1\.lgbm\.txt: not a LightGBM model"):
        load_model(copy)
    copy = copy_folder(saved, tmp_path / "m3")
    card = json.loads((copy / "model_card.json").read_text())
    card["files"]["../outside.txt"] = "0" * 64
    (copy / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="no valid list of files"):
        load_model(copy)


def test_other_package_version_warns(saved: Path, tmp_path: Path) -> None:
    copy = copy_folder(saved, tmp_path / "m")
    card = json.loads((copy / "model_card.json").read_text())
    card["package_version"] = "0.0.1"
    (copy / "model_card.json").write_text(json.dumps(card))
    with pytest.warns(ModelVersionWarning, match="saved by uplift 0.0.1"):
        load_model(copy)


# --------------------------------------------------------------------------------------------
# Digest
# --------------------------------------------------------------------------------------------


def test_digest_covers_the_model_files_only(saved: Path, tmp_path: Path) -> None:
    copy = copy_folder(saved, tmp_path / "m")
    digest = model_digest(copy)
    assert re.fullmatch("[0-9a-f]{64}", digest)
    assert model_digest(saved) == digest
    (copy / "notes.txt").write_text("not part of the model")
    assert model_digest(copy) == digest
    load_model(copy, digest=digest)
    card = json.loads((copy / "model_card.json").read_text())
    card["metrics"] = {"policy_value_dr": 99.0}
    (copy / "model_card.json").write_text(json.dumps(card))
    assert model_digest(copy) != digest
    for wrong in (digest, "\u00e9"):
        with pytest.raises(ModelLoadError, match="differs from the recorded"):
            load_model(copy, digest=wrong)


# --------------------------------------------------------------------------------------------
# Signed pickles
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_third_party_model_is_a_signed_pickle(
    log: ExperimentLog, tmp_path: Path, own_key: Path
) -> None:
    model = train_uplift(log, learner="causalml_t")
    assert not own_key.exists()
    save_model(model, tmp_path / "m")
    card = read_card(tmp_path / "m")
    assert card["format"] == "signed-pickle"
    assert sorted(card["files"]) == ["model.pkl", "model.sig"]
    assert stat.S_IMODE(own_key.stat().st_mode) == 0o600
    assert re.fullmatch("[0-9a-f]{64}", own_key.read_text().strip())
    loaded = load_model(tmp_path / "m", digest=model_digest(tmp_path / "m"))
    _assert_same_predictions(model, loaded, log.frame)


def test_key_file_is_private_and_reused(own_key: Path) -> None:
    assert signing.model_key() is None
    signature = signing.sign(b"model")
    assert stat.S_IMODE(own_key.stat().st_mode) == 0o600
    assert signing.sign(b"model") == signature
    assert signing.verify(b"model", signature)
    assert not signing.verify(b"model!", signature)
    assert not signing.verify(b"model", "not hex \u00e9")
    assert not any(p.name.endswith(".tmp") for p in own_key.parent.iterdir())


def test_environment_key_wins(monkeypatch: pytest.MonkeyPatch, own_key: Path) -> None:
    monkeypatch.setenv(signing.KEY_ENV, "k" * 32)
    expected = hmac.new(b"k" * 32, b"model", hashlib.sha256).hexdigest()
    assert signing.sign(b"model") == expected
    assert not own_key.exists()
    monkeypatch.setenv(signing.KEY_ENV, "short")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        signing.sign(b"model")


@pytest.mark.parametrize("signature", ["other key", "none", "old card"])
def test_malicious_pickle_is_never_unpickled(
    tmp_path: Path, model: UpliftModel, signature: str
) -> None:
    signing.sign(b"")  # the user has a key of their own
    marker = tmp_path / "pwned"
    key = b"the attacker's key, not yours" if signature == "other key" else None
    folder = _pickled(_Evil(marker), tmp_path / "m", described=model, key=key)
    if signature == "old card":  # a card of format 1: model_sha256 and no format
        card = json.loads((folder / "model_card.json").read_text())
        card["model_sha256"] = card.pop("files")["model.pkl"]
        del card["format"]
        (folder / "model_card.json").write_text(json.dumps(card))
    reason = "model.sig does not match" if key else r"no model\.sig"
    with pytest.raises(
        ModelLoadError,
        match=rf"model\.pkl: was not signed with your key \({reason}\).*trust=True / --trust-model",
    ):
        load_model(folder)
    assert not marker.exists()


def test_without_a_key_a_pickle_is_refused(tmp_path: Path, model: UpliftModel) -> None:
    folder = _pickled(model, tmp_path / "m", described=model, key=b"someone else's key")
    with pytest.raises(ModelLoadError, match=r"not signed with your key \(you have no key yet"):
        load_model(folder)


def test_own_signature_and_trust_load_a_pickle(
    log: ExperimentLog, tmp_path: Path, model: UpliftModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(signing.KEY_ENV, "my own key, 32 characters long..")
    signed = _pickled(
        model, tmp_path / "signed", described=model, key=b"my own key, 32 characters long.."
    )
    _assert_same_predictions(model, load_model(signed), log.frame)
    unsigned = _pickled(model, tmp_path / "unsigned", described=model)
    with pytest.raises(ModelLoadError, match="not signed with your key"):
        load_model(unsigned)
    _assert_same_predictions(model, load_model(unsigned, trust=True), log.frame)
    with (unsigned / "model.pkl").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelLoadError, match="checksum does not match"):
        load_model(unsigned, trust=True)


def test_trusted_pickle_must_hold_a_model(tmp_path: Path, model: UpliftModel) -> None:
    folder = _pickled({"not": "a model"}, tmp_path / "m", described=model)
    with pytest.raises(ModelLoadError, match="holds a dict, not an UpliftModel"):
        load_model(folder, trust=True)


# --------------------------------------------------------------------------------------------
# Saving keeps the user's files
# --------------------------------------------------------------------------------------------


def test_saving_replaces_only_the_model_files(
    log: ExperimentLog, model: UpliftModel, tmp_path: Path
) -> None:
    folder = save_model(model, tmp_path / "m")
    (folder / "notes.txt").write_text("keep me")
    (folder / "model.pkl").write_bytes(b"an old pickle")  # owned: a save of the other format
    s_model = train_uplift(log, learner="s_lgbm")
    save_model(s_model, folder)
    assert (folder / "notes.txt").read_text() == "keep me"
    bags = [f"retained_model-{i}.lgbm.txt" for i in range(N_BAGS)]  # one booster per bag
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["model.json", "model_card.json", "notes.txt", *bags, "risk_model-0.lgbm.txt"]
    )
    assert load_model(folder).learner == "s_lgbm"
    _pickled(model, tmp_path / "p", described=model)
    save_model(load_model(tmp_path / "p", trust=True), folder)
    assert (folder / "notes.txt").read_text() == "keep me"


def test_a_pickle_save_removes_the_json_files(model: UpliftModel, tmp_path: Path) -> None:
    folder = save_model(model, tmp_path / "m")
    (folder / "notes.txt").write_text("keep me")
    wrapped = _Wrapped(**{f: getattr(model, f) for f in model.__dataclass_fields__})
    save_model(wrapped, folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "model.pkl",
        "model.sig",
        "model_card.json",
        "notes.txt",
    ]
    assert read_card(folder)["format"] == "signed-pickle"
    assert isinstance(load_model(folder), _Wrapped)


class _Wrapped(UpliftModel):
    """Not one of the allow-listed classes, so it is saved as a signed pickle."""


def test_stale_temporary_files_are_removed(model: UpliftModel, saved: Path, tmp_path: Path) -> None:
    folder = copy_folder(saved, tmp_path / "m")
    stale = [".model.json.k2j4x9_a.tmp", ".retained_model-3.lgbm.txt.abc123de.tmp"]
    kept = [".notes.txt.abc123de.tmp", "notes.txt"]
    for name in stale + kept:
        (folder / name).write_text("left over")
    save_model(model, folder)
    names = {p.name for p in folder.iterdir()}
    assert not names & set(stale)
    assert set(kept) <= names
    assert not [n for n in names - set(kept) if n.endswith(".tmp")]


def test_failed_save_leaves_nothing(
    model: UpliftModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> str:
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(lgb.Booster, "model_to_string", broken)
        with pytest.raises(OSError, match="disk full"):
            save_model(model, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []
    replace = os.replace
    calls = []

    def fails_third(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 3:
            raise OSError("disk full")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", fails_third)
    with pytest.raises(OSError, match="disk full"):
        save_model(model, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_half_finished_save_is_refused(
    log: ExperimentLog,
    saved: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = copy_folder(saved, tmp_path / "m")
    other = train_uplift(log, learner="t_lgbm", seed=1)
    replace = os.replace

    def killed(src: str, dst: str) -> None:
        if str(dst).endswith("retained_model-1.lgbm.txt"):
            raise KeyboardInterrupt
        replace(src, dst)

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        save_model(other, folder)
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(ModelLoadError, match=r"retained_model-0\.lgbm\.txt: checksum does not"):
        load_model(folder)
    save_model(other, folder)
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert load_model(folder).training["seed"] == 1


def test_new_folders_get_the_usual_mode(model: UpliftModel, tmp_path: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    folder = save_model(model, tmp_path / "m")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((folder / "model.json").stat().st_mode) == 0o666 & ~mask


def test_a_save_killed_before_its_card_can_be_saved_again(
    model: UpliftModel, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.json").write_text("{")  # written, then killed before the card
    (folder / ".retained_model-0.lgbm.txt.99999.tmp").write_text("half")
    save_model(model, folder)
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert load_model(folder).learner == model.learner


def test_save_refuses_a_directory_that_is_not_a_model(saved: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="exists and is not a model directory"):
        save_model(load_model(saved), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    world = simulate(3_000, weeks=2, seed=9)
    world.log.to_csv(folder / "log.csv", index=False)
    pending_orders(world.log).to_parquet(folder / "orders.parquet")
    return folder


def test_cli_train_evaluate_predict(uplift_cli: Callable[..., Any], files: Path) -> None:
    model_dir = files / "model"
    train = uplift_cli(
        "train", files / "log.csv", "--model-dir", model_dir, "--learner", "s_lgbm",
        "--cost", "expedite=5", "--json", files / "card.json",
    )  # fmt: skip
    assert train.exit_code == 0, train.stderr
    assert "trained s_lgbm on 3,000 orders" in train.stdout
    card = json.loads((files / "card.json").read_text())
    assert card["learner"] == "s_lgbm"
    assert card["selection"]["candidates"][0]["policy_value"] > 0

    evaluate = uplift_cli(
        "evaluate", files / "log.csv", "--model-dir", model_dir, "--json", files / "eval.json"
    )
    assert evaluate.exit_code == 0, evaluate.stderr
    result = json.loads((files / "eval.json").read_text())
    assert {row["arm"] for row in result["by_arm"]} == set(card["treatment_arms"])
    assert {row["estimator"] for row in result["policies"]} == {"ipw", "snipw", "dr"}
    assert result["best_single_arm"].startswith("treat_all_")
    assert result["costs"] == {"expedite": 5.0}  # the training costs by default
    assert result["in_sample"] is True
    assert "trained on; its scores are optimistic" in evaluate.stdout

    out = files / "effects.csv"
    predict = uplift_cli(
        "predict", files / "orders.parquet", "--model-dir", model_dir, "--out", out
    )
    assert predict.exit_code == 0, predict.stderr
    effects = pd.read_csv(out)
    arms = card["treatment_arms"]
    assert list(effects.columns) == [
        "order_id",
        *(f"retained_uplift_{a}" for a in arms),
        *(f"revenue_uplift_{a}" for a in arms),
        "retained_base",
        "risk",
        "cause",
        "cause_share",
    ]
    assert len(effects) == 3_000
    numbers = effects.drop(columns=["cause", "cause_share"])  # no share where no cause
    assert np.isfinite(numbers.to_numpy()).all()
    assert effects["risk"].between(0, 1).all()
    assert effects["cause_share"].isna().eq(effects["cause"] == "none").all()

    # --no-validate only fits the named learner: the card has no held-out scores.
    plain = uplift_cli(
        "train", files / "log.csv", "--model-dir", files / "plain", "--learner", "t_lgbm",
        "--no-validate", "--json", files / "plain.json",
    )  # fmt: skip
    assert plain.exit_code == 0, plain.stderr
    assert json.loads((files / "plain.json").read_text())["selection"] is None


def test_cli_trust_model(
    uplift_cli: Callable[..., Any], files: Path, model: UpliftModel, tmp_path: Path
) -> None:
    folder = _pickled(model, tmp_path / "m", described=model)
    out = tmp_path / "effects.csv"
    args = ("predict", files / "orders.parquet", "--model-dir", folder, "--out", out)
    refused = uplift_cli(*args)
    assert refused.exit_code == 2
    assert re.match(r"error: .*model\.pkl: was not signed with your key", refused.stderr)
    assert "--trust-model" in refused.stderr
    assert not out.exists()
    trusted = uplift_cli(*args, "--trust-model")
    assert trusted.exit_code == 0, trusted.stderr
    assert len(pd.read_csv(out)) == 3_000
    for command in ("evaluate", "predict", "rank"):
        shown = uplift_cli(command, "--help")
        assert "--trust-model" in shown.output, command


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("train", "missing.csv", "--model-dir", "{dir}/m"), "file not found"),
        (("train", "{dir}/log.csv", "--model-dir", "{dir}/m", "--learner", "best"),
         "learner must be one of"),
        (("train", "{dir}/log.csv", "--model-dir", "{dir}/m", "--cost", "teleport=1"),
         r"costs name arm\(s\) teleport"),
        (("predict", "{dir}/orders.parquet", "--model-dir", "{dir}/none", "--out", "{dir}/e.csv"),
         "no model_card.json"),
        (("evaluate", "{dir}/log.csv", "--model-dir", "{dir}/none"), "no model_card.json"),
    ],
)  # fmt: skip
def test_cli_bad_input_exits_2_without_output(
    uplift_cli: Callable[..., Any], files: Path, args: tuple, message: str
) -> None:
    result = uplift_cli(*(a.format(dir=files) for a in args))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert re.search(message, result.stderr), result.stderr
    assert not (files / "m").exists()
    assert not (files / "e.csv").exists()
