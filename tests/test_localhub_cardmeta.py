"""README front matter as the local Hub's ``cardData``: any YAML a client commits gives a 200
with JSON-safe data (dates as ISO text, ``!!binary`` as base64, sets as lists, other keys as
their JSON text), and YAML that would cost too much (an alias bomb, deep nesting) gives
``cardData: {}`` cheaply, or a 400 from validate-yaml."""

from __future__ import annotations

import base64
import json

import pytest
from huggingface_hub import HfApi

from hubtools.localhub.cardmeta import MAX_CHARS, MAX_DEPTH, card_metadata, file_card_metadata
from tests.test_localhub_errors import AUTH, raw

# Each alias level multiplies by ten: seven levels of ten are 10**7 values from 365 bytes.
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]\n" for a, b in zip("abcdef", "bcdefg")
)
TYPED = """\
released: 2024-01-31
trained: 2024-01-31 10:20:30.5 +02:00
2024-02-01: a date as a key
blob: !!binary aGVsbG8=
labels: !!set {oos, greeting}
1: one
null: nothing
true: yes
nan: .nan
big: 123456789012345678901234567890
pairs: !!omap [b: 1, a: 2]
"""
TYPED_JSON = {
    "released": "2024-01-31",
    "trained": "2024-01-31T10:20:30.500000+02:00",
    "2024-02-01": "a date as a key",
    "blob": base64.b64encode(b"hello").decode(),
    "labels": ["oos", "greeting"],
    "1": "one",
    "null": "nothing",
    "true": True,
    "nan": None,
    "big": "123456789012345678901234567890",
    "pairs": [["b", 1], ["a", 2]],
}


def front(yaml_text: str) -> str:
    return f"---\n{yaml_text}---\n# card\n"


def test_yaml_types_become_json_values():
    data = card_metadata(front(TYPED))
    assert json.loads(json.dumps(data, allow_nan=False)) == TYPED_JSON  # no NaN, dates, bytes or sets


@pytest.mark.parametrize(
    ("yaml_text", "problem"),
    [
        (ALIAS_BOMB, "once its aliases are expanded"),
        ("a: &a [1, *a]\n", "refers to the value that contains it"),
        ("a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n", f"nested deeper than {MAX_DEPTH} levels"),
        ("a: &a " + "[" * 40 + "1" + "]" * 40 + "\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n", "levels once"),
        ("a: !!bool maybe\n", "line 1"),
        ("a: !!timestamp someday\n", "line 1"),
        ("a: !!int twelve\n", "line 1"),
        ("a: !!python/object:os.system x\n", "could not determine a constructor"),
        (f"a: '{'x' * MAX_CHARS}'\n", f"reads {MAX_CHARS} at most"),
    ],
)
def test_costly_or_unreadable_yaml_is_refused_with_its_reason(yaml_text, problem):
    with pytest.raises(ValueError, match="README.md metadata") as refused:
        card_metadata(front(yaml_text))
    assert problem in str(refused.value)


def test_a_huge_readme_is_read_as_far_as_its_metadata(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_bytes(front("license: mit\n").encode() + b"\xff" * (5 * MAX_CHARS))  # and not UTF-8 after it
    assert file_card_metadata(readme) == {"license": "mit"}


@pytest.fixture
def card_repo(local_hub, new_repo_id) -> str:
    repo_id = new_repo_id("card")
    HfApi().create_repo(repo_id)
    return repo_id


def repo_info_with_readme(hub, repo_id: str, readme: str) -> tuple[int, dict]:
    """Commit ``readme`` as a raw commit (huggingface_hub would validate it first), then get the repo info."""
    lines = [
        {"key": "header", "value": {"summary": "card"}},
        {"key": "file", "value": {"path": "README.md", "content": base64.b64encode(readme.encode()).decode()}},
    ]
    payload = "\n".join(json.dumps(line) for line in lines).encode()
    assert raw(hub, "POST", f"/api/models/{repo_id}/commit/main", payload, AUTH)[0] == 200
    status, _, body = raw(hub, "GET", f"/api/models/{repo_id}", headers=AUTH)
    return status, body


def test_repo_info_gives_typed_yaml_as_json(local_hub, card_repo):
    status, body = repo_info_with_readme(local_hub, card_repo, front(TYPED))
    assert status == 200
    assert body["cardData"] == TYPED_JSON
    assert HfApi().model_info(card_repo).card_data.to_dict()["released"] == "2024-01-31"


def test_repo_info_of_an_alias_bomb_is_small(local_hub, card_repo):
    status, body = repo_info_with_readme(local_hub, card_repo, front(ALIAS_BOMB))
    assert status == 200
    assert body["cardData"] == {}
    assert len(json.dumps(body)) < 10_000


def test_validate_yaml_names_the_refusal(local_hub):
    content = front(ALIAS_BOMB)
    status, headers, body = raw(local_hub, "POST", "/api/validate-yaml", json.dumps({"content": content}).encode())
    assert (status, headers["X-Error-Code"]) == (400, "BadRequest")
    assert "aliases are expanded" in body["errors"][0]["message"]
