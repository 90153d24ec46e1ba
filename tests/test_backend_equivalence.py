"""The TensorFlow and JAX backends take the same training steps, given the same random draws."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_tensorflow_and_jax_steps_agree_with_dropout_on(tiny_model, synthetic_data, tmp_path):
    pytest.importorskip("jax")
    out = tmp_path / "equivalence.json"
    subprocess.run(
        [
            sys.executable, os.path.join(ROOT, "bench", "backend_equivalence.py"), f"--model_dir={tiny_model}",
            f"--data_dir={synthetic_data}", "--steps=6", "--batch_size=8", "--learning_rate=1e-3", f"--output_json={out}",
        ],
        check=True,
        capture_output=True,
    )
    result = json.loads(out.read_text())
    assert result["steps"] == 6
    # Dropout was on in both: the comparison covers masked forward and backward passes.
    assert result["dropout_layers"]["tensorflow"] == result["dropout_layers"]["jax"] > 0
    losses = result["losses"]
    assert losses["tensorflow"][0] != losses["tensorflow"][-1]  # the model trained
    assert result["max_abs_loss_difference"] < 1e-5
    assert result["max_abs_weight_difference"] < 1e-5
