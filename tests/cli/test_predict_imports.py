"""`uplift predict` with a saved model imports neither LightGBM nor scikit-learn: the trees are
read from the model's text and evaluated by our own evaluator, the risk model's causes by our own
tree SHAP. Those imports take about a second, which every prediction would otherwise pay."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import CliResult
from uplift.data.simulate import simulate

# Runs `uplift predict` in a fresh interpreter, then names the heavy modules it imported.
SCRIPT = """
import sys
from uplift.cli import main
sys.argv = ["uplift", "predict", *sys.argv[1:]]
try:
    main()
except SystemExit as done:
    assert not done.code, done.code
heavy = ("lightgbm", "sklearn", "scipy.stats")
print(sorted(m for m in sys.modules if m in heavy or m.startswith(("lightgbm.", "sklearn."))))
"""


def test_predict_with_a_saved_blend_imports_neither_lightgbm_nor_scikit_learn(
    tmp_path: Path, uplift_cli: Callable[..., CliResult]
) -> None:
    log, model = tmp_path / "log.parquet", tmp_path / "model"
    simulate(3000, 1, 1).log.to_parquet(log, index=False)
    trained = uplift_cli(
        "train", log, "--learner", "s_blend", "--no-validate", "--model-dir", model
    )
    assert trained.exit_code == 0, trained.output
    in_process = tmp_path / "in-process.parquet"
    assert uplift_cli("predict", log, "--model-dir", model, "--out", in_process).exit_code == 0

    out = tmp_path / "effects.parquet"
    args = [str(log), "--model-dir", str(model), "--out", str(out)]
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"
    # The same effects, risks and causes as the command run in this process.
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(in_process))
    assert np.isfinite(pd.read_parquet(out)["risk"]).all()
