"""Human pages: ``GET /`` (the repo list) and ``GET /<id>``, ``GET /datasets/<id>`` (one repo).

A placeholder to be replaced by a real renderer; keep the two signatures. Every value that
comes from a repo is escaped.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from hubtools.localhub.naming import url_prefix
from hubtools.localhub.storage import Commit, RepoRecord, Storage

_PAGE = (
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>\n'
    "<body>\n{body}\n</body></html>\n"
)


def index_page(repos: list[RepoRecord]) -> str:
    items = "".join(
        f'<li>{escape(r.repo_type)} <a href="/{escape(quote(url_prefix(r.repo_type) + r.repo_id))}">'
        f"{escape(r.repo_id)}</a></li>\n"
        for r in repos
    )
    return _PAGE.format(title="Local Hub", body=f"<h1>Local Hub</h1>\n<ul>\n{items}</ul>")


def repo_page(storage: Storage, repo: RepoRecord, commit: Commit) -> str:
    """One repo at ``commit``: its files with sizes. ``storage`` reads file contents (README)."""
    base = f"/{url_prefix(repo.repo_type)}{repo.repo_id}/resolve/{commit.id}/"
    items = "".join(
        f'<li><a href="{escape(quote(base + path))}">{escape(path)}</a> ({entry.size} bytes)</li>\n'
        for path, entry in sorted(commit.tree.items())
    )
    title = f"{repo.repo_type} {repo.repo_id}"
    body = f"<h1>{escape(title)}</h1>\n<p>commit {escape(commit.id)}: {escape(commit.title)}</p>\n<ul>\n{items}</ul>"
    return _PAGE.format(title=escape(title), body=body)
