"""The generator as an MLflow pyfunc model (MLflow "models from code": this file is logged with the model).

``mlflow.pyfunc.load_model("models:/stagediff@champion").predict(pd.DataFrame([{"n_samples": 2, "length": 512,
"seed": 0}]))`` returns samples as the library's long DataFrame, in data units. Optional columns: sampler, steps
(default: the model's own, stagediff.diffusion.sampling_choice)."""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class GeneratorModel(PythonModel):
    def load_context(self, context: Any) -> None:
        from stagediff import StageDiff

        self.generator = StageDiff.load(context.artifacts["generator"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        request = model_input.iloc[0]
        steps, sampler, start = request.get("steps"), request.get("sampler"), request.get("start")
        return self.generator.sample(
            n=int(request.get("n_samples", 1)),
            length=int(request["length"]),
            seed=int(request.get("seed", 0)),
            steps=None if steps is None or pd.isna(steps) else int(steps),
            sampler=None if sampler is None or pd.isna(sampler) else str(sampler),
            start=None if start is None or pd.isna(start) else str(start),
        )


mlflow.models.set_model(GeneratorModel())
