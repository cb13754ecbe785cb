"""Helpers of the Functions tests: a workspace with the linear model registered, its inference
config, and polling with a deadline."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

APP = Path(__file__).parent / "app"
WEIGHTS = {"weights": [1.0, 2.0, 3.0], "bias": 0.5}


def register_model(ws: Any, tmp_path: Path) -> Any:
    from aml_core.model import Model

    folder = tmp_path / "linear"
    folder.mkdir()
    (folder / "weights.json").write_text(json.dumps(WEIGHTS))
    return Model.register(ws, model_path=str(folder / "weights.json"), model_name="linear")


def inference_config() -> Any:
    from aml_core.environment import Environment
    from aml_core.inference import InferenceConfig

    return InferenceConfig(entry_script="score.py", source_directory=str(APP), environment=Environment("functions-env"))


def expected(rows: list[list[float]]) -> list[float]:
    return [sum(w * x for w, x in zip(WEIGHTS["weights"], row)) + WEIGHTS["bias"] for row in rows]


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 60.0, logs: Callable[[], str] = str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout} s; logs:\n{logs()[-4000:]}")
