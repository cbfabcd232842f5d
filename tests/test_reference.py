"""The stage reference (docs/stages.md) is generated from the stage registry, is current, documents
every stage type and field, and ``python -m recipes docs --check`` catches a stale copy."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from recipes.__main__ import main
from recipes.plan.reference import REFERENCE_FILE, documented_models, field_description, stage_reference
from recipes.stages import STAGE_TYPES
from recipes.stages.base import StageSpec


def undocumented(spec: type[BaseModel]) -> list[str]:
    """``Class.field`` for each field of ``spec`` or of a section nested in it with no description."""
    return [
        f"{model.__name__}.{name}"
        for model in documented_models(spec)
        for name in model.model_fields
        if not field_description(model, name).strip()
    ]


def sections() -> dict[str, str]:
    """The reference's sections by stage type: from its ``## `type``` heading to the next one."""
    parts = stage_reference().split("\n## `")[1:]
    return {part.split("`", 1)[0]: part for part in parts}


def test_docs_file_is_current():
    written = REFERENCE_FILE.read_text() if REFERENCE_FILE.is_file() else ""
    assert written == stage_reference(), f"{REFERENCE_FILE} is stale: run `python -m recipes docs`"


def test_every_stage_type_and_field_is_documented():
    by_type = sections()
    assert sorted(by_type) == sorted(STAGE_TYPES)
    for name, stage_type in STAGE_TYPES.items():
        section = by_type[name]
        for model in documented_models(stage_type.spec):
            for field in model.model_fields:
                assert f"| `{field}` |" in section, f"{name}: field {model.__name__}.{field} missing from its section"


def test_every_field_has_a_description():
    missing = [where for t in STAGE_TYPES.values() for where in undocumented(t.spec)]
    assert not missing, f"fields without a description (add Field(description=...)): {missing}"


def test_a_field_without_description_is_caught():
    class Nested(BaseModel):
        size: int = 1

    class ToySpec(StageSpec):
        type: Literal["toy"]
        depth: int = Field(1, description="How deep.")
        nested: Nested = Nested()

    assert undocumented(ToySpec) == ["ToySpec.nested", "Nested.size"]


def test_check_mode_catches_a_stale_file(tmp_path, capsys):
    out = tmp_path / "stages.md"
    assert main(["docs", "--check", "--out", str(out)]) == 1  # missing
    assert main(["docs", "--out", str(out)]) == 0
    assert out.read_text() == stage_reference()
    assert main(["docs", "--check", "--out", str(out)]) == 0
    out.write_text(out.read_text().replace("Selects this stage type.", "Selects it.", 1))
    assert main(["docs", "--check", "--out", str(out)]) == 1
    assert "is stale: run `python -m recipes docs`" in capsys.readouterr().err
