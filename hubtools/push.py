"""``python -m hubtools push outputs/<recipe>``: publish a finished run as one Hub commit.

The repo gets the model files (layout: :mod:`hubtools.runinfo`), ``README.md`` (the card),
``recipe.yaml``, ``run.json``, ``benchmark.json``, ``layout.json`` and the plot, all in ONE
``HfApi.create_commit``: a push that fails leaves the repo as it was. The commit names its
parent, so a retry after a reply that was lost cannot commit twice: if the head moved to a
commit with our message, that commit is ours.

Works unchanged against the real Hub (``HF_ENDPOINT`` unset) and the local one. The token
comes from huggingface_hub's usual places (``HF_TOKEN``, ``hf auth login``) and is never
printed or written.

Python::

    from hubtools.push import push_run
    url = push_run(Path("outputs/kd-quant"))          # -> commit URL
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, constants, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError

from recipes.modelio import QUANTIZED_STATE_FILE
from recipes.onnxio import REPO_ONNX_DIR, assemble_repo_folder
from recipes.runner import RESOLVED_RECIPE_FILE, RUN_FILE
from recipes.stages.benchmark import BENCHMARK_FILE

from hubtools.card import PLOT_FILE, build_card
from hubtools.errors import PublishedMetricsDifferError, PushFailedError
from hubtools.plot import accuracy_latency_plot
from hubtools.runinfo import INT8_DIR, LAYOUT_FILE, QUANTIZE_TYPES, TRAINING_TYPES, Hop, Layout, RunInfo, plan_layout

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
    return LOCAL_NAMESPACE if is_local_endpoint(api.endpoint) else api.whoami()["name"]


def default_repo_id(ns: str, base: str, recipe: str) -> str:
    return f"{ns}/{base}-clinc-{recipe}"


def repo_id_for(info: RunInfo, api: HfApi, ns: str | None = None) -> str:
    """The recipe's ``publish.repo_id``, else ``<namespace>/<base>-clinc-<recipe>``."""
    publish = info.run["resolved"].get("publish") or {}
    return publish.get("repo_id") or default_repo_id(ns or namespace(api), info.base_short_name, info.name)


def relation(hops: list[Hop]) -> str | None:
    """``base_model_relation`` for a model made from its base by ``hops``' stages."""
    types = {h.stage_type for h in hops}
    if types & TRAINING_TYPES:
        return "finetune"
    if types & QUANTIZE_TYPES:
        return "quantized"
    return None


def choose_base_model(info: RunInfo, api: HfApi, ns: str) -> tuple[str | None, str | None]:
    """The nearest published ancestor (another recipe's published model, if its repo exists),
    else the Hub model the line started from; with the relation that fits the stages between."""
    hops = info.lineage()
    for i, hop in enumerate(hops[1:], start=1):
        if hop.recipe != info.name and hop.is_final and hop.stage_type:
            candidate = hop.publish_repo_id or default_repo_id(ns, info.base_short_name, hop.recipe)
            if api.repo_exists(candidate):
                return candidate, relation(hops[:i])
    root = hops[-1]
    return (root.source, relation(hops[:-1])) if root.is_hub_id else (None, None)


# --- the repo folder ---------------------------------------------------------------------------


def stage_repo_folder(info: RunInfo, layout: Layout, repo_id: str, out_dir: Path, base_model=None,
                      base_model_relation=None) -> Path:
    """Write everything the commit uploads into ``out_dir``."""
    assemble_repo_folder(layout.pytorch_dir, layout.onnx_dirs, out_dir)
    if not layout.onnx_dirs:
        shutil.rmtree(out_dir / REPO_ONNX_DIR)
    if layout.int8_dir is not None:
        (out_dir / INT8_DIR).mkdir()
        shutil.copy2(layout.int8_dir / QUANTIZED_STATE_FILE, out_dir / INT8_DIR / QUANTIZED_STATE_FILE)
    for name in (RUN_FILE, RESOLVED_RECIPE_FILE):
        shutil.copy2(info.run_dir / name, out_dir / name)
    shutil.copy2(info.benchmark_path, out_dir / BENCHMARK_FILE)
    (out_dir / LAYOUT_FILE).write_text(layout.to_json())
    accuracy_latency_plot(info.benchmark, info.final_model, out_dir / PLOT_FILE, title=f"{info.name}: accuracy vs latency")
    card = build_card(info, layout, repo_id, base_model=base_model, base_model_relation=base_model_relation)
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


def commit_with_retries(api: HfApi, repo_id: str, operations: list[CommitOperationAdd], message: str,
                        description: str = "") -> str:
    """One commit of ``operations``; transient failures are retried against the same parent."""
    parent = api.repo_info(repo_id).sha
    for attempt, delay in enumerate((*RETRY_DELAYS, None), start=1):
        try:
            info = api.create_commit(repo_id, operations, commit_message=message, commit_description=description,
                                     parent_commit=parent)
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
            log.warning("Push to %s failed (%s: %s); retry %d in %.0f s", repo_id, err.__class__.__name__,
                        str(err).splitlines()[0], attempt, delay)
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


def push_run(run_dir: Path, repo_id: str | None = None, private: bool = False, overwrite: bool = False) -> str:
    """Publish ``run_dir`` (``outputs/<recipe>``) in one commit; returns the commit URL.

    Refuses (``PublishedMetricsDifferError``) when the repo's card already states other
    metrics, unless ``overwrite``.
    """
    info = RunInfo(Path(run_dir))
    layout = plan_layout(info)
    api = HfApi()
    try:
        return _push(info, layout, api, repo_id, private, overwrite)
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        hint = " Check that HF_TOKEN is set and may write to that namespace." if status in (401, 403) else ""
        raise PushFailedError(f"The Hub refused the push ({err.__class__.__name__}: {str(err).splitlines()[0]}); "
                              f"nothing was committed.{hint}") from err
    except (requests.ConnectionError, requests.Timeout) as err:
        raise PushFailedError(f"Cannot reach {api.endpoint} ({err.__class__.__name__}); nothing was committed. "
                              "Is the Hub up (local: `make hub`) and HF_ENDPOINT right?") from err


def _push(info: RunInfo, layout: Layout, api: HfApi, repo_id: str | None, private: bool, overwrite: bool) -> str:
    ns = repo_id.split("/")[0] if repo_id and "/" in repo_id else namespace(api)
    repo_id = repo_id or repo_id_for(info, api, ns)
    private = private or bool((info.run["resolved"].get("publish") or {}).get("private"))
    base_model, base_relation = choose_base_model(info, api, ns)
    with tempfile.TemporaryDirectory(prefix="hubtools-push-") as tmp:
        folder = stage_repo_folder(info, layout, repo_id, Path(tmp), base_model, base_relation)
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
        message = f"Publish recipe {info.name} (sha256 {info.run['recipe_sha256']})"
        description = (
            f"Published model `{info.final_model}` of recipe `{info.name}`, from {info.run_dir.name}/run.json"
            + (f"; replaces published metrics: {'; '.join(changes)}" if changes else "")
        )
        url = commit_with_retries(api, repo_id, operations, message, description)
    log.info("Pushed %s to %s", info.run_dir, url)
    return url


def register(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("push", help="publish a finished recipe run to the Hub in one commit",
                               description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="the run folder, e.g. outputs/kd-quant")
    parser.add_argument("--repo-id", help="default: the recipe's publish.repo_id, else <namespace>/<base>-clinc-<recipe>")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--overwrite", action="store_true", help="replace metrics the published card states differently")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    print(push_run(args.run_dir, args.repo_id, args.private, args.overwrite))
    return 0
