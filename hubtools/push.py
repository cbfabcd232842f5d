"""``python -m hubtools push RUN_DIR``: publish a finished run as one Hub commit.

``RUN_DIR`` is ``<output root>/<scope>/<recipe>`` (``python -m recipes runs`` lists them). The
repo gets the model files (layout: :mod:`hubtools.runinfo`), ``README.md`` (the card),
``recipe.yaml``, ``run.json``, ``benchmark.json``, ``layout.json`` and the plot, all in ONE
``HfApi.create_commit``: a push that fails leaves the repo as it was. The commit names its
parent, so a retry after a reply that was lost cannot commit twice: if the head moved to a
commit with our message, that commit is ours.

Works unchanged against the real Hub (``HF_ENDPOINT`` unset) and the local one. The token
comes from huggingface_hub's usual places (``HF_TOKEN``, ``hf auth login``) and is never
printed or written.

Python (:func:`publish`, also ``hubtools.publish``)::

    import hubtools

    pushed = hubtools.publish("outputs/clinc_oos-plus_all-MiniLM-L6-v2_1a2b3c4d/kd-quant")
    pushed.repo_id, pushed.commit_id, pushed.url     # the repo, its new commit and that commit's page
    pushed.files                                     # every path the commit wrote

The default repo id is ``<namespace>/<base>-<dataset>[-<config>]-<recipe>``
(:func:`hubtools.runinfo.default_repo_id`).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, constants, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

from hubtools.card import KEPT_PLOT_FILE, PLOT_FILE, build_card, save_kept_plot
from hubtools.errors import PublishedMetricsDifferError, PushFailedError, UsageError
from hubtools.plot import accuracy_latency_plot
from hubtools.runinfo import LAYOUT_FILE, Hop, Layout, RunInfo, plan_layout
from hubtools.searchcard import copy_study
from recipes.runfolder import BENCHMARK_FILE, RESOLVED_RECIPE_FILE, RUN_FILE
from recipes.stages.base import RELATIONS

log = logging.getLogger("hubtools.push")

LOCAL_NAMESPACE = "local"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
#: Seconds to wait before each retry of a transient failure (5xx, connection error).
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)


# --- names -----------------------------------------------------------------------------------


def is_local_endpoint(endpoint: str | None = None) -> bool:
    return urlsplit(endpoint or constants.ENDPOINT).hostname in LOCAL_HOSTS


def namespace(api: HfApi) -> str:
    """``local`` on a local Hub; else the user the token belongs to."""
    if is_local_endpoint(api.endpoint):
        return LOCAL_NAMESPACE
    try:
        return api.whoami()["name"]
    except LocalTokenNotFoundError:
        raise UsageError(
            f"No Hub token, so no namespace to publish in on {api.endpoint}: set HF_TOKEN "
            "(or `hf auth login`), or name the repo (--repo-id / --namespace)."
        ) from None


def repo_id_for(info: RunInfo, api: HfApi, ns: str | None = None) -> str:
    """The recipe's ``publish.repo_id``, else ``<namespace>/<base>-<dataset>[-<config>]-<recipe>``."""
    return info.publish.get("repo_id") or info.default_repo_id(ns or namespace(api))


def relation(hops: list[Hop]) -> str | None:
    """``base_model_relation`` for a model made from its base by ``hops``' stages: the strongest
    relation their stage types declare (a fine-tune, then quantized, is a fine-tune)."""
    declared = {h.publishing.relation for h in hops if h.stage_type}
    return next((r for r in RELATIONS if r in declared), None)


def choose_base_model(info: RunInfo, api: HfApi, ns: str) -> tuple[str | None, str | None]:
    """The nearest published ancestor (another recipe's published model, if its repo exists),
    else the Hub model the line started from; with the relation that fits the stages between."""
    hops = info.lineage()
    for i, hop in enumerate(hops[1:], start=1):
        if hop.recipe != info.name and hop.is_final and hop.stage_type:
            candidate = hop.publish_repo_id or info.default_repo_id(ns, hop.recipe)
            if api.repo_exists(candidate):
                return candidate, relation(hops[:i])
    root = hops[-1]
    return (root.source, relation(hops[:-1])) if root.is_hub_id else (None, None)


# --- the repo folder ---------------------------------------------------------------------------


def plot_title(info: RunInfo) -> str:
    return f"{info.name}: {info.base_short_name} on {info.dataset.label}, accuracy vs latency"


def stage_repo_folder(
    info: RunInfo,
    layout: Layout,
    repo_id: str,
    out_dir: Path,
    base_model=None,
    base_model_relation=None,
    hub_url: str | None = None,
) -> Path:
    """Write everything the commit uploads into ``out_dir`` (``hub_url``: the Hub the card's
    links point at; default: the one ``HF_ENDPOINT`` names)."""
    out_dir = Path(out_dir)
    for source, repo_path in layout.copies():
        (out_dir / repo_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, out_dir / repo_path)
    for name in (RUN_FILE, RESOLVED_RECIPE_FILE):
        shutil.copy2(info.run_dir / name, out_dir / name)
    shutil.copy2(info.benchmark_path, out_dir / BENCHMARK_FILE)
    (out_dir / LAYOUT_FILE).write_text(layout.to_json())
    accuracy_latency_plot(info.benchmark, info.final_model, out_dir / PLOT_FILE, title=plot_title(info))
    copy_study(info.lineage(), out_dir)  # a search's trials, plots and study.db, if any
    save_kept_plot(info.lineage(), out_dir / KEPT_PLOT_FILE)  # what pruning kept, if any
    card = build_card(
        info,
        layout,
        repo_id,
        base_model=base_model,
        base_model_relation=base_model_relation,
        hub_url=(hub_url or constants.ENDPOINT).rstrip("/"),
    )
    card.save(out_dir / "README.md")
    return out_dir


# --- published metrics -----------------------------------------------------------------------------


def _metric_key(result) -> tuple:
    return (result.task_type, result.dataset_type, result.dataset_config, result.dataset_split, result.metric_type)


def published_card(api: HfApi, repo_id: str) -> ModelCard | None:
    """The card the Hub serves now, or None. Asked fresh: on a failed HEAD call
    ``hf_hub_download`` would return a stale cached copy (e.g. of a since-deleted repo)."""
    if not api.file_exists(repo_id, "README.md"):
        return None
    path = hf_hub_download(repo_id, "README.md", endpoint=api.endpoint, token=api.token, force_download=True)
    return ModelCard.load(path)


def metric_changes(old: ModelCard, new: ModelCard) -> list[str]:
    """Published metrics the new card states differently (or drops)."""
    before = {_metric_key(r): r.metric_value for r in (old.data.eval_results or [])}
    after = {_metric_key(r): r.metric_value for r in (new.data.eval_results or [])}
    return [
        f"{key[4]} on {key[1]}/{key[2]}/{key[3]}: published {value}, new {after.get(key, 'absent')}"
        for key, value in before.items()
        if after.get(key) != value
    ]


# --- the commit, with retries ---------------------------------------------------------------------


def is_transient(err: BaseException) -> bool:
    if isinstance(err, (requests.ConnectionError, requests.Timeout)):
        return True
    response = getattr(err, "response", None)
    return isinstance(err, HfHubHTTPError) and response is not None and response.status_code >= 500


def commit_with_retries(
    api: HfApi, repo_id: str, operations: list[CommitOperationAdd], message: str, description: str = ""
) -> str:
    """One commit of ``operations``; transient failures are retried against the same parent."""
    parent = api.repo_info(repo_id).sha
    for attempt, delay in enumerate((*RETRY_DELAYS, None), start=1):
        try:
            info = api.create_commit(
                repo_id, operations, commit_message=message, commit_description=description, parent_commit=parent
            )
            return info.commit_url
        except Exception as err:  # classified below; anything else is re-raised as is
            if not is_transient(err) and not _is_parent_mismatch(err):
                raise
            head = _head(api, repo_id)
            if head is not None and head.commit_id != parent and head.title == message:
                log.warning("The commit landed although the reply was lost (%s); not committing again.", err)
                return f"{api.endpoint}/{repo_id}/commit/{head.commit_id}"
            if _is_parent_mismatch(err):
                raise PushFailedError(
                    f"{repo_id} changed while pushing (its head is now {head.commit_id if head else '?'}); "
                    "nothing was committed. Push again."
                ) from None
            if delay is None:
                raise PushFailedError(
                    f"Pushing to {repo_id} failed {attempt} times ({err.__class__.__name__}: {err}); nothing was "
                    f"committed. Check that {api.endpoint} is reachable and push again."
                ) from None
            log.warning(
                "Push to %s failed (%s: %s); retry %d in %.0f s",
                repo_id,
                err.__class__.__name__,
                str(err).splitlines()[0],
                attempt,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def _is_parent_mismatch(err: BaseException) -> bool:
    response = getattr(err, "response", None)
    return isinstance(err, HfHubHTTPError) and response is not None and response.status_code == 412


def _head(api: HfApi, repo_id: str):
    try:
        return api.list_repo_commits(repo_id)[0]
    except (HfHubHTTPError, requests.ConnectionError, requests.Timeout):
        return None


# --- the command ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushResult:
    """What :func:`publish` committed: the repo, the commit (its id and its page) and the files."""

    repo_id: str
    url: str  # the commit's page: <endpoint>/<repo_id>/commit/<commit_id>
    commit_id: str
    files: tuple[str, ...] = field(repr=False)  # every path the commit wrote, sorted
    endpoint: str = ""  # the Hub pushed to
    replaced_metrics: tuple[str, ...] = ()  # published numbers that ``overwrite`` replaced

    @property
    def repo_url(self) -> str:
        """The repo's page on the Hub it was pushed to."""
        return f"{self.endpoint.rstrip('/')}/{self.repo_id}"


def publish(
    run_dir: str | Path, repo_id: str | None = None, *, private: bool = False, overwrite: bool = False
) -> PushResult:
    """Publish the finished run ``run_dir`` (``<output root>/<scope>/<recipe>``) in one commit.

    ``repo_id``: default the recipe's ``publish.repo_id``, else
    ``<namespace>/<base>-<dataset>[-<config>]-<recipe>``. Raises
    :class:`~hubtools.errors.PublishedMetricsDifferError` when the repo's card already states other
    metrics, unless ``overwrite``; :class:`~hubtools.errors.PushFailedError` when the Hub refuses
    or stays unreachable (nothing is committed then). Example::

        pushed = publish("outputs/clinc_oos-plus_all-MiniLM-L6-v2_1a2b3c4d/kd-quant")
        pipeline("text-classification", model=pushed.repo_id)
    """
    info = RunInfo(Path(run_dir))
    layout = plan_layout(info)
    api = HfApi()
    try:
        return _push(info, layout, api, repo_id, private, overwrite)
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        hint = " Check that HF_TOKEN is set and may write to that namespace." if status in (401, 403) else ""
        raise PushFailedError(
            f"The Hub refused the push ({err.__class__.__name__}: {str(err).splitlines()[0]}); "
            f"nothing was committed.{hint}"
        ) from err
    except (requests.ConnectionError, requests.Timeout) as err:
        raise PushFailedError(
            f"Cannot reach {api.endpoint} ({err.__class__.__name__}); nothing was committed. "
            "Is the Hub up (local: `make hub`) and HF_ENDPOINT right?"
        ) from err


def push_run(run_dir: Path, repo_id: str | None = None, private: bool = False, overwrite: bool = False) -> str:
    """:func:`publish`, returning only the commit URL: the runner's ``publisher``."""
    return publish(run_dir, repo_id, private=private, overwrite=overwrite).url


def _push(
    info: RunInfo, layout: Layout, api: HfApi, repo_id: str | None, private: bool, overwrite: bool
) -> PushResult:
    ns = repo_id.split("/")[0] if repo_id and "/" in repo_id else namespace(api)
    repo_id = repo_id or repo_id_for(info, api, ns)
    private = private or bool(info.publish.get("private"))
    base_model, base_relation = choose_base_model(info, api, ns)
    with tempfile.TemporaryDirectory(prefix="hubtools-push-") as tmp:
        folder = stage_repo_folder(info, layout, repo_id, Path(tmp), base_model, base_relation, api.endpoint)
        new_card = ModelCard.load(folder / "README.md")
        old_card = published_card(api, repo_id)
        changes = metric_changes(old_card, new_card) if old_card is not None else []
        if changes and not overwrite:
            raise PublishedMetricsDifferError(
                f"{repo_id} already publishes other numbers: {'; '.join(changes)}. Nothing was pushed. "
                "Push to another --repo-id, or pass --overwrite to replace them."
            )
        api.create_repo(repo_id, private=private, exist_ok=True)
        operations = [
            CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p))
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        ]
        message = f"Publish recipe {info.name} (sha256 {info.record.recipe_sha256})"
        description = (
            f"Published model `{info.final_model}` of recipe `{info.name}`, from {info.run_dir.name}/run.json"
            + (f"; replaces published metrics: {'; '.join(changes)}" if changes else "")
        )
        url = commit_with_retries(api, repo_id, operations, message, description)
    log.info("Pushed %s to %s", info.run_dir, url)
    return PushResult(
        repo_id=repo_id,
        url=url,
        commit_id=url.rstrip("/").rsplit("/", 1)[-1],
        files=tuple(sorted(op.path_in_repo for op in operations)),
        endpoint=api.endpoint,
        replaced_metrics=tuple(changes),
    )


def register(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser(
        "push", help="publish a finished recipe run to the Hub in one commit", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "run_dir", type=Path, help="the run folder, <output root>/<scope>/<recipe> (see `python -m recipes runs`)"
    )
    parser.add_argument(
        "--repo-id",
        help="default: the recipe's publish.repo_id, else <namespace>/<base>-<dataset>[-<config>]-<recipe>",
    )
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace metrics the published card states differently"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    print(publish(args.run_dir, args.repo_id, private=args.private, overwrite=args.overwrite).url)
    return 0
