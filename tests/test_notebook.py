"""``examples/quickstart.ipynb`` runs top to bottom in a fresh kernel (nbclient), with its outputs
checked, and is committed clean: no outputs, no execution counts."""

from __future__ import annotations

import re

import pytest

from recipes import BENCHMARK_FIELDS

from .tiny import REPO_ROOT

NOTEBOOK = REPO_ROOT / "examples" / "quickstart.ipynb"
#: The DataFrame's columns (the index is ``name``).
COLUMNS = [field for field in BENCHMARK_FIELDS if field != "name"]
#: The notebook runs a recipe (each cell up to 600 s), within the first test's time limit.
pytestmark = pytest.mark.timeout(1200)


def outputs_of(cell) -> tuple[str, dict]:
    """A cell's printed text (stdout) and its rich outputs by MIME type (the last of each kind)."""
    text, data = "", {}
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stdout":
            text += output["text"]
        data.update(output.get("data", {}))
    return text, data


def cell_with(nb, needle: str):
    return next(c for c in nb.cells if c.cell_type == "code" and needle in c.source)


def test_committed_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code), "clear the outputs"
    assert nb.metadata.kernelspec.name == "python3"
    assert not any("from tests" in c.source or "import tests" in c.source for c in code)


@pytest.fixture(scope="module")
def executed():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("pandas")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # "python3" is the kernel of this interpreter: jupyter_client runs a kernel whose command is
    # `python` with sys.executable. The notebook starts its own Hub and sets HF_* itself.
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()
    return nb


def test_runs_top_to_bottom_and_shows_the_benchmark(executed):
    html = outputs_of(cell_with(executed, "result.to_dataframe()"))[1]["text/html"]
    headers = re.findall(r"<th>([^<]*)</th>", html)
    assert all(column in headers for column in COLUMNS), headers
    assert {"teacher-calibrated", "student", "quantize"} <= set(headers)  # the index: one row per measured model
    stages = outputs_of(cell_with(executed, "recipes.run(plan"))[1]["text/plain"]
    assert "('quantize', 'ran'" in stages and "('benchmark', 'ran'" in stages
    plot = outputs_of(cell_with(executed, "result.plot()"))[1]
    assert plot["image/png"], "the figure is shown inline"


def test_pulls_the_published_model_back_and_predicts(executed):
    printed = outputs_of(cell_with(executed, "pipeline("))[0]
    assert re.fullmatch(r"prediction: [a-z_]+ \(score [01]\.\d{3}\)\n", printed), printed
    table = outputs_of(cell_with(executed, "ModelCard.load"))[0].splitlines()
    assert table[0].startswith("| Model |") and "Accuracy" in table[0]
    assert [row.split("|")[1].split()[0] for row in table[2:]] == ["teacher-calibrated", "student", "quantize"], table


def test_progress_bars_are_notebook_widgets(executed):
    pytest.importorskip("ipywidgets", reason="tqdm.auto draws text bars without ipywidgets")
    kinds = {kind for cell in executed.cells for output in cell.get("outputs", []) for kind in output.get("data", {})}
    assert "application/vnd.jupyter.widget-view+json" in kinds
