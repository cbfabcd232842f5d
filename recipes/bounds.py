"""The limits recipe values share, defined once: a value past them would only fail mid-run.

Each type states a natural range: what the libraries downstream accept (a numpy/torch
seed), what the filesystem holds (names become folders), or what no sane recipe exceeds.
Floats are finite everywhere (``.inf`` and ``.nan`` are YAML floats, never settings).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

#: Recipe and stage names become folder names: a short slug, far within filesystem limits.
NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"
NAME_MAX_LENGTH = 64

#: Deepest teacher whose layers a student may keep, and so the most it can keep.
MAX_LAYERS = 128

#: ONNX opsets optimum can export: it uses torch's TorchScript exporter, which stops at 20
#: (``torch.onnx._constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET``), below what onnx knows.
MIN_OPSET, MAX_OPSET = 11, 20


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=NAME_MAX_LENGTH)]
Text = Annotated[str, AfterValidator(_not_blank)]
#: What ``numpy.random.seed`` and ``torch.manual_seed`` both accept.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Fraction = Annotated[FiniteFloat, Field(ge=0, le=1)]
BatchSize = Annotated[int, Field(ge=1, le=65_536)]
#: Rows a stage reads for a check or a calibration (not the dataset's own size).
SampleCount = Annotated[int, Field(ge=1, le=1_000_000)]
TrialCount = Annotated[int, Field(ge=1, le=10_000)]
LayerIndex = Annotated[int, Field(ge=0, lt=MAX_LAYERS)]
Opset = Annotated[int, Field(ge=MIN_OPSET, le=MAX_OPSET)]
