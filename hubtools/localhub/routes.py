"""Map a request path onto a named route with its repo, revision and file path.

The path is split on ``/`` first and each segment is then percent-decoded, so a revision
sent as ``refs%2Fpr%2F1`` stays one segment, and ``%2e%2e`` is seen as ``..`` by the checks
in :mod:`naming`. Repo ids have one or two segments; when both readings fit (``/api/models/
org/refs``), :func:`match` returns both and the server takes the one whose repo exists.

Routes (``{t}`` is ``model`` or ``dataset``; ``[datasets/]`` only for datasets)::

    GET    /api/whoami-v2                                 whoami
    POST   /api/repos/create | DELETE /api/repos/delete   create_repo | delete_repo
    POST   /api/validate-yaml                             validate_yaml
    GET    /api/{t}s                                      list_repos
    GET    /api/{t}s/{id}[/revision/{rev}]                repo_info
    GET    /api/{t}s/{id}/tree/{rev}[/{path}]             tree
    POST   /api/{t}s/{id}/paths-info/{rev}                paths_info
    GET    /api/{t}s/{id}/commits/{rev}                   commits
    GET    /api/{t}s/{id}/refs                            refs
    POST   /api/{t}s/{id}/preupload/{rev}                 preupload
    POST   /api/{t}s/{id}/commit/{rev}                    commit
    POST   /[datasets/]{id}.git/info/lfs/objects/batch    lfs_batch
    PUT    /lfs/objects/{sha256}?size=&ticket=            lfs_upload (the href lfs_batch hands out)
    GET    /[datasets/]{id}/resolve/{rev}/{path}          resolve (and HEAD)
    GET    /  and  /[datasets/]{id}                       index_page, repo_page
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from hubtools.errors import HubRequestError, NotFoundError
from hubtools.localhub import naming

# Actions after a repo id in /api/{t}s/{id}/..., with how many segments they need at least.
API_ACTIONS = {"revision": 1, "tree": 1, "paths-info": 1, "commits": 1, "refs": 0, "preupload": 1, "commit": 1}
WEB_ACTIONS = {"resolve": 2}
FIXED = {
    ("api", "whoami-v2"): "whoami",
    ("api", "repos", "create"): "create_repo",
    ("api", "repos", "delete"): "delete_repo",
    ("api", "validate-yaml"): "validate_yaml",
}


@dataclass(frozen=True)
class Route:
    name: str
    repo_type: str | None = None
    repo_id: str | None = None
    revision: str | None = None
    path: str = ""  # file or folder in the repo; the LFS oid for lfs_upload


def split_target(target: str) -> tuple[str, str]:
    """``(path, query)`` of a request target: ``/path?query``, or ``http://host/path?query``."""
    try:
        url = urlsplit(target)
    except ValueError:
        url = None
    origin_form = target.startswith("/") and url is not None and not url.scheme
    absolute_form = url is not None and url.scheme in ("http", "https") and url.path.startswith("/")
    if not (origin_form or absolute_form):
        raise HubRequestError(f"Request target {target[:100]!r} is not a URL path; send '/path?query'.")
    return url.path, url.query


def match(raw_path: str) -> list[Route]:
    """Routes ``raw_path`` (without query) can mean, most likely first; raises if none."""
    segments = [unquote(s) for s in raw_path.split("/")[1:]]
    if segments in ([""], []):
        return [Route("index_page")]
    if tuple(segments) in FIXED:
        return [Route(FIXED[tuple(segments)])]
    if segments[0] == "api" and len(segments) >= 2 and segments[1] in naming.TYPE_BY_PLURAL:
        repo_type = naming.TYPE_BY_PLURAL[segments[1]]
        if len(segments) == 2:
            return [Route("list_repos", repo_type)]
        return _repo_routes(repo_type, segments[2:], API_ACTIONS, _api_route)
    if segments[:2] == ["lfs", "objects"] and len(segments) == 3:
        return [Route("lfs_upload", path=segments[2])]
    if segments[0] == "api":
        raise NotFoundError(f"No API endpoint at {raw_path!r}.")
    repo_type, rest = ("dataset", segments[1:]) if segments[0] == "datasets" else ("model", segments)
    for n in (1, 2):
        if rest[n:] == ["info", "lfs", "objects", "batch"] and rest[n - 1].endswith(".git"):
            repo_id = "/".join(rest[:n])[: -len(".git")]
            return [Route("lfs_batch", repo_type, naming.check_repo_id(repo_id))]
    return _repo_routes(repo_type, rest, WEB_ACTIONS, _web_route)


def _repo_routes(repo_type: str, segments: list[str], actions: dict[str, int], build) -> list[Route]:
    readings, error = [], None
    for n in (2, 1):
        repo_id, tail = "/".join(segments[:n]), segments[n:]
        if len(segments) >= n and (not tail or (tail[0] in actions and len(tail) - 1 >= actions[tail[0]])):
            try:
                readings.append(build(repo_type, naming.check_repo_id(repo_id), tail))
            except HubRequestError as exc:
                error = error or exc
    if readings:
        return readings
    raise error or NotFoundError(f"No endpoint at /{'/'.join(segments)} for {repo_type} repos.")


def _api_route(repo_type: str, repo_id: str, tail: list[str]) -> Route:
    if not tail:
        return Route("repo_info", repo_type, repo_id)
    action, args = tail[0], tail[1:]
    if action != "tree" and len(args) > API_ACTIONS[action]:
        raise NotFoundError(f"Unexpected path after /{'/'.join(tail[:2])}.")
    name = "repo_info" if action == "revision" else action.replace("-", "_")
    path = naming.check_folder("/".join(args[1:])) if action == "tree" else ""
    return Route(name, repo_type, repo_id, args[0] if args else None, path)


def _web_route(repo_type: str, repo_id: str, tail: list[str]) -> Route:
    if not tail:
        return Route("repo_page", repo_type, repo_id)
    return Route("resolve", repo_type, repo_id, tail[1], naming.check_path("/".join(tail[2:])))
