"""`uplift predict` on Spark: a trained model applied to every partition of a DataFrame.

The model travels to the executors in its safe on-disk form: the bytes of the saved model
folder (the card and every file it lists), read once on the driver and broadcast. The driver
loads those very bytes through :func:`uplift.models.load_model` first (checksums, and for a
pickled model the user's signature, unless ``trust``), so a folder that fails there is refused
before any job starts. Each executor's Python worker writes the bytes to a private temporary
folder and loads them through the same function, with the driver's digest, once: the model is
cached by digest for every later task of that worker. Nothing is unpickled that the checks
did not pass; a pickled model needs the user's key on the executors too (``UPLIFT_MODEL_KEY``
in their environment; a local master shares the driver's), or ``trust``.

Every batch of orders is scored by :func:`score_frame`, the steps of ``uplift predict``: the
effects table (``order_id``, ``retained_uplift_<arm>``, ``revenue_uplift_<arm>``,
``retained_base``) and, when the model has a risk model, ``risk``, ``cause``, ``cause_share``.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
from pyspark import Broadcast
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, DoubleType, StringType, StructField, StructType

from uplift.exceptions import ModelLoadError, SchemaError
from uplift.models import load_model, model_digest, read_card
from uplift.models.persist import CARD_FILE
from uplift.models.risk import RISK_COLUMNS
from uplift.models.uplift_model import UpliftModel, predict_table
from uplift.spark.io import column
from uplift.spark.session import quiet_conversions

__all__ = ["ShippedModel", "score_frame", "score_orders", "ship_model", "shipped_model"]


@dataclass(frozen=True)
class ShippedModel:
    """A model folder's bytes as the executors receive them, with the digest to check."""

    files: dict[str, bytes]
    digest: str
    trust: bool


def ship_model(model_dir: str | Path, *, trust: bool = False) -> tuple[UpliftModel, ShippedModel]:
    """Read the folder's files once, load the model from exactly those bytes, and return both.

    Loading from a private copy means the bytes the executors get are the bytes checked here,
    even if the folder changes meanwhile.
    """
    folder = Path(model_dir)
    listed = read_card(folder).get("files")
    if not isinstance(listed, dict):
        raise ModelLoadError(f"{folder}: the model card lists no files; it is damaged")
    names = [CARD_FILE, *sorted(map(str, listed))]
    files: dict[str, bytes] = {}
    for name in names:
        try:
            files[name] = (folder / name).read_bytes()
        except OSError as error:
            raise ModelLoadError(f"{folder / name}: cannot be read ({error})") from None
    with tempfile.TemporaryDirectory(prefix="uplift-model-") as copy:
        _write_files(Path(copy), files)
        model = load_model(copy, trust=trust)
        digest = model_digest(copy)
    return model, ShippedModel(files, digest, trust)


def _write_files(folder: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        (folder / name).write_bytes(content)


# One model per digest per Python worker: Spark reuses a worker for many tasks.
_MODELS: dict[str, UpliftModel] = {}
_LOCK = threading.Lock()


def shipped_model(shipped: ShippedModel) -> UpliftModel:
    """The model of ``shipped``, verified and loaded on first use in this process, then cached."""
    with _LOCK:
        model = _MODELS.get(shipped.digest)
        if model is None:
            folder = Path(tempfile.mkdtemp(prefix="uplift-model-"))
            try:
                _write_files(folder, shipped.files)
                model = load_model(folder, trust=shipped.trust, digest=shipped.digest)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            _MODELS[shipped.digest] = model
        return model


def score_frame(model: UpliftModel, frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """The table ``uplift predict`` writes for the orders of ``frame`` (rows in its order)."""
    if "order_id" not in frame.columns:
        raise SchemaError(f"{source}: no order_id column; map yours with --map order_id=COLUMN")
    effects = predict_table(model, frame, source=source)
    table = effects.to_frame().reset_index(drop=True)
    if model.risk_model is not None:
        risk = model.predict_risk(frame).reset_index(drop=True)
        table = pd.concat([table, risk[list(RISK_COLUMNS)]], axis=1)
    return table


def output_schema(model: UpliftModel, id_type: DataType) -> StructType:
    """The Spark schema of :func:`score_frame`'s table."""
    fields = [StructField("order_id", id_type, nullable=False)]
    fields += [StructField(c, DoubleType()) for c in model.effect_columns]
    if model.risk_model is not None:
        kinds = {"risk": DoubleType(), "cause": StringType(), "cause_share": DoubleType()}
        fields += [StructField(c, kinds[c]) for c in RISK_COLUMNS]
    return StructType(fields)


def score_orders(
    orders: DataFrame,
    model_dir: str | Path,
    *,
    trust: bool = False,
    source: str = "orders",
) -> tuple[UpliftModel, DataFrame]:
    """The model of ``model_dir`` and the (lazy) effects table of every order of ``orders``.

    ``orders`` needs ``order_id`` and the model's inputs (canonical names). The result has the
    columns of ``uplift predict``, equal to the pandas engine's for every order.
    """
    if "order_id" not in orders.columns:
        raise SchemaError(
            f"{source}: no order_id column; on Spark every order needs its id (map yours with "
            "--map order_id=COLUMN)"
        )
    model, shipped = ship_model(model_dir, trust=trust)
    missing = [c for c in model.inputs if c not in orders.columns]
    if missing:
        raise SchemaError(
            f"{source}: orders lack column(s) {', '.join(missing)} that the model was trained "
            f"on; it needs {', '.join(model.inputs)}"
        )
    if "order_value" in model.inputs:
        _check_order_values(orders, source)
    inputs = orders.select([column(c) for c in ("order_id", *model.inputs)])
    schema = output_schema(model, orders.schema["order_id"].dataType)
    broadcast = orders.sparkSession.sparkContext.broadcast(shipped)
    with quiet_conversions():  # mapInPandas warns that pandas 3 is not yet supported
        scored = inputs.mapInPandas(
            partial(_score_batches, shipped=broadcast, source=source), schema
        )
    return model, scored


def _check_order_values(orders: DataFrame, source: str) -> None:
    """Refuse orders whose order_value is missing, negative or infinite, naming their ids
    (a partition knows no row numbers of the file)."""
    value = column("order_value").cast("double")
    bad = value.isNull() | F.isnan(value) | (value < 0) | (value == float("inf"))
    shown = [r["order_id"] for r in orders.filter(bad).select("order_id").limit(5).collect()]
    if shown:
        raise SchemaError(
            f"{source}: column order_value must be a finite number >= 0; not so for order_id "
            f"{', '.join(map(str, shown))}{' and perhaps more' if len(shown) == 5 else ''}"
        )


def _score_batches(
    batches: Iterator[pd.DataFrame], *, shipped: Broadcast[ShippedModel], source: str
) -> Iterator[pd.DataFrame]:
    """Executor side: score each Arrow batch with the cached model."""
    model = shipped_model(shipped.value)
    for batch in batches:
        yield score_frame(model, batch, source)
