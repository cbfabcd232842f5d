"""Human pages: ``GET /`` (the repo list) and ``GET /<id>``, ``GET /datasets/<id>`` (one repo).

A repo page shows the README rendered as HTML (``markdown`` with the ``tables`` and
``fenced_code`` extensions; the YAML front matter in a collapsed block), then the file list.
Relative links and images in the README resolve through ``/<id>/resolve/<commit>/<path>``,
so a card's plot shows. The rendered HTML passes through :class:`_Sanitizer`, which keeps a
short list of tags and attributes (the Hub sanitizes cards too): a README cannot run script
in the page. Every other value that comes from a repo (ids, file names, commit titles) is
escaped; one with a lone surrogate (JSON can carry ``"\\udcff"``) is shown with the surrogate
as ``\\udcff`` (see :meth:`Reply.html` and :func:`_href`).
"""

from __future__ import annotations

import re
from html import escape
from html.parser import HTMLParser
from urllib.parse import quote, urlsplit

import markdown

from hubtools.localhub.naming import url_prefix
from hubtools.localhub.storage import Commit, RepoRecord, Storage

README = "README.md"
README_LIMIT = 2 * 1024 * 1024  # bigger READMEs are listed, not rendered
FRONT_MATTER = re.compile(r"\A---\r?\n(.*?)\r?\n---\r?\n", re.S)
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; }
th { background: #f3f3f3; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; }
img { max-width: 100%; }
.files td:nth-child(2) { text-align: right; }
.meta { color: #666; }
"""
_PAGE = (
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>{title}</title>\n'
    "<style>{style}</style></head>\n<body>\n{body}\n</body></html>\n"
)

# Tags and attributes a rendered README keeps; everything else is dropped (a dropped
# <script> or <style> loses its content too).
ALLOWED_TAGS = {
    "a",
    "blockquote",
    "br",
    "code",
    "del",
    "details",
    "div",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "img",
    "li",
    "ol",
    "p",
    "pre",
    "span",
    "strong",
    "summary",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "ul",
}
ALLOWED_ATTRS = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "code": {"class"},
    "th": {"align", "style"},
    "td": {"align", "style"},
    "details": {"open"},
}
DROP_CONTENT = {"script", "style", "iframe", "object", "embed", "template"}
VOID = {"br", "hr", "img"}
SAFE_STYLE = re.compile(r"\Atext-align:\s*(left|right|center);?\Z")


def _page(title: str, body: str) -> str:
    return _PAGE.format(title=escape(title), style=STYLE, body=body)


def index_page(repos: list[RepoRecord]) -> str:
    items = "".join(
        f'<li>{escape(r.repo_type)} <a href="{_href("/" + url_prefix(r.repo_type) + r.repo_id)}">'
        f"{escape(r.repo_id)}</a>{' (private)' if r.private else ''}</li>\n"
        for r in repos
    )
    return _page("Local Hub", f'<h1>Local Hub</h1>\n<p class="meta">{len(repos)} repo(s)</p>\n<ul>\n{items}</ul>')


def repo_page(storage: Storage, repo: RepoRecord, commit: Commit) -> str:
    """One repo at ``commit``: the README as HTML, then its files with sizes."""
    base = f"/{url_prefix(repo.repo_type)}{repo.repo_id}/resolve/{commit.id}/"
    items = "".join(
        f'<tr><td><a href="{_href(base + path)}">{escape(path)}</a></td><td>{entry.size:,}</td></tr>\n'
        for path, entry in sorted(commit.tree.items())
    )
    title = f"{repo.repo_type} {repo.repo_id}"
    header = (
        f'<h1>{escape(repo.repo_id)}</h1>\n<p class="meta">{escape(repo.repo_type)} repo, commit '
        f"<code>{escape(commit.id[:12])}</code>: {escape(commit.title)}</p>"
    )
    files = f'<h2>Files</h2>\n<table class="files">\n<tr><th>File</th><th>Bytes</th></tr>\n{items}</table>'
    return _page(title, f"{header}\n{_readme_html(storage, commit, base)}\n{files}")


def _href(url: str) -> str:
    """``url`` percent-encoded for an ``href``; a lone surrogate is encoded as its ``\\udcff`` text."""
    return escape(quote(url, errors="backslashreplace"))


def _readme_html(storage: Storage, commit: Commit, base: str) -> str:
    entry = commit.tree.get(README)
    if entry is None:
        return '<p class="meta">No README.md.</p>'
    if entry.size > README_LIMIT:
        return f'<p class="meta">README.md is {entry.size:,} bytes; too big to show here.</p>'
    text = storage.blob_path(entry).read_text(encoding="utf-8", errors="replace")
    front, body = "", text
    match = FRONT_MATTER.match(text)
    if match:
        front = f"<details><summary>Metadata (YAML)</summary>\n<pre>{escape(match.group(1))}</pre></details>\n"
        body = text[match.end() :]
    html = markdown.markdown(body, extensions=["tables", "fenced_code"])
    return f'<article class="readme">\n{front}{sanitize(html, base)}\n</article>'


def _resolve_link(url: str, base: str) -> str | None:
    """Relative repo links go through ``base``; http(s), anchors and absolute paths stay; others go."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") or url.startswith(("#", "/")):
        return url
    if parts.scheme or parts.netloc:
        return None  # javascript:, data:, mailto: ...
    path = parts.path
    while path.startswith("./"):
        path = path[2:]
    return base + quote(path) + (f"#{parts.fragment}" if parts.fragment else "")


class _Sanitizer(HTMLParser):
    def __init__(self, base: str):
        super().__init__(convert_charrefs=True)
        self.base, self.out, self.dropping = base, [], 0

    def handle_starttag(self, tag, attrs):
        if tag in DROP_CONTENT:
            self.dropping += 1
        if self.dropping or tag not in ALLOWED_TAGS:
            return
        kept = []
        for name, value in attrs:
            value = value or ""
            if name not in ALLOWED_ATTRS.get(tag, ()):
                continue
            if name in ("href", "src"):
                value = _resolve_link(value, self.base)
                if value is None:
                    continue
            if name == "style" and not SAFE_STYLE.match(value.strip()):
                continue
            kept.append(f' {name}="{escape(value)}"')
        self.out.append(f"<{tag}{''.join(kept)}>")

    def handle_endtag(self, tag):
        if tag in DROP_CONTENT:
            self.dropping = max(0, self.dropping - 1)
        elif not self.dropping and tag in ALLOWED_TAGS and tag not in VOID:
            self.out.append(f"</{tag}>")

    def handle_data(self, data):
        if not self.dropping:
            self.out.append(escape(data, quote=False))


def sanitize(html: str, base: str) -> str:
    """``html`` with only :data:`ALLOWED_TAGS`/:data:`ALLOWED_ATTRS`; relative links under ``base``."""
    parser = _Sanitizer(base)
    parser.feed(html)
    parser.close()
    return "".join(parser.out)
