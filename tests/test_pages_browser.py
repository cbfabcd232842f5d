"""The local Hub's human pages: a pushed card rendered as HTML with its benchmark table and
plot, checked in headless Chromium (DOM dump and screenshot), and what a README may not do."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import requests
from huggingface_hub import HfApi

from hubtools.push import push_run

from .publish_fixtures import fake_runs

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (Debian: apt-get install -y chromium); the page test needs a browser",
)
CRIMSON = np.array([220, 20, 60])  # the ring around the published model in the plot


@pytest.fixture(scope="module")
def card_repo(local_hub):
    repo_id = "test/pages-kd-quant"
    push_run(fake_runs()["kd-quant"], repo_id=repo_id)
    return repo_id


def browse(tmp_path, *args: str) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90)


@needs_chromium
def test_page_shows_the_benchmark_table_and_the_plot(local_hub, card_repo, tmp_path):
    sha = HfApi().repo_info(card_repo).sha
    dom = browse(tmp_path, "--dump-dom", f"{local_hub.url}/{card_repo}").stdout
    assert "<table>" in dom and "Latency mean ± std (ms)</th>" in dom
    assert "<td>quantize (published)</td>" in dom
    assert re.search(f'<img [^>]*src="/{card_repo}/resolve/{sha}/accuracy_vs_latency.png"', dom)
    assert "<summary>Metadata (YAML)</summary>" in dom and "int8/quantized_state_dict.pt" in dom

    shot = tmp_path / "page.png"
    browse(tmp_path, f"--screenshot={shot}", "--window-size=1280,1800", f"{local_hub.url}/{card_repo}")
    import matplotlib.image

    pixels = (matplotlib.image.imread(shot)[..., :3] * 255).round().astype(int)
    assert pixels.shape[:2] == (1800, 1280) and pixels.std() > 10, "blank screenshot"
    # The plot was fetched and drawn: its crimson ring is on screen (nothing else on the page is crimson).
    assert (np.abs(pixels - CRIMSON).sum(axis=-1) < 40).sum() > 50


def test_index_lists_repos(local_hub, card_repo):
    page = requests.get(f"{local_hub.url}/").text
    assert f'<a href="/{card_repo}">{card_repo}</a>' in page


def test_readme_cannot_script_the_page_and_file_names_are_escaped(local_hub):
    api = HfApi()
    repo_id = "test/pages-hostile"
    api.create_repo(repo_id, exist_ok=True)
    readme = (
        "---\nlicense: mit\n---\n# Hi <script>alert(1)</script>\n\n[x](javascript:alert(2)) "
        '<img src="p.png" onerror="alert(3)">\n\n| a |\n| --- |\n| <b>1</b> |\n'
    )
    api.upload_file(path_or_fileobj=readme.encode(), path_in_repo="README.md", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b"x", path_in_repo="<i>odd&name.txt", repo_id=repo_id)
    page = requests.get(f"{local_hub.url}/{repo_id}").text
    assert "<script>" not in page and "javascript:" not in page and "onerror" not in page
    assert "&lt;i&gt;odd&amp;name.txt" in page and "<i>odd" not in page
    assert "license: mit" in page.split("<summary>Metadata (YAML)</summary>")[1]
    assert f'<img src="/{repo_id}/resolve/' in page  # relative image resolved through the repo
