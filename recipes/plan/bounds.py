"""The limits recipe values share, defined once: a value past them would only fail mid-run.

Each type states a natural range: what the libraries downstream accept (a numpy/torch
seed), what the filesystem holds (names become folders), or what no sane recipe exceeds.
Floats are finite everywhere (``.inf`` and ``.nan`` are YAML floats, never settings), and every
text has a length limit. Values keep their YAML type: the recipe sections are strict
(:class:`~recipes.stages.base.StrictSpec`), so ``true`` or ``'0.5'`` is no number and ``1`` no text;
only a whole number stands for a float (``alpha: 0``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

#: Recipe and stage names become folder names: a short slug, far within filesystem limits.
NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"
NAME_MAX_LENGTH = 64
#: Names of things: columns, splits, configs, labels, model keys and references, a language.
TEXT_MAX_LENGTH = 256
#: A Hub id (the Hub's own limit is 96 per part) or a local folder path (well within PATH_MAX).
SOURCE_MAX_LENGTH = 1024
#: A recipe's description: a paragraph (the catalog's are under 400 characters).
DESCRIPTION_MAX_LENGTH = 2000
#: A benchmark query or a database URL.
LONG_TEXT_MAX_LENGTH = 4096
#: Digits of the longest whole number a recipe file may hold: the largest setting (a seed) has 10,
#: and Python refuses to read one of more than 4300 digits.
MAX_INT_DIGITS = 100

#: Deepest teacher whose layers a student may keep, and so the most it can keep.
MAX_LAYERS = 128

#: ONNX opsets optimum can export: it uses torch's TorchScript exporter, which stops at 20
#: (``torch.onnx._constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET``), below what onnx knows.
MIN_OPSET, MAX_OPSET = 11, 20


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _not_bool(value):
    """Strict mode does not reach a ``Literal`` of numbers, where ``true`` would pass as 1."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


def _text(max_length: int):
    return Annotated[str, StringConstraints(max_length=max_length), AfterValidator(_not_blank)]


Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=NAME_MAX_LENGTH)]
Text = _text(TEXT_MAX_LENGTH)
Source = _text(SOURCE_MAX_LENGTH)
Description = _text(DESCRIPTION_MAX_LENGTH)
LongText = _text(LONG_TEXT_MAX_LENGTH)
NotBool = BeforeValidator(_not_bool)
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
