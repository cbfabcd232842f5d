"""``python -m hubtools push RUN_DIR``: publish a finished run as one Hub commit.

``RUN_DIR`` is ``<output root>/<scope>/<recipe>`` (``python -m recipes runs`` lists them). The
repo gets the model files (layout: :mod:`hubtools.runinfo`), ``README.md`` (the card),
``recipe.yaml``, ``run.json``, ``benchmark.json``, ``layout.json`` and the plot, all in ONE
``HfApi.create_commit``: a push that fails leaves the repo as it was. The commit names its
parent, so a retry after a reply that was lost cannot commit twice: if the head moved to a
commit with our message, that commit is ours.

Every other Hub call (whoami, repo_exists, the published card, create_repo, repo_info) is
retried on connection errors, timeouts, 429 and 5xx, honouring ``Retry-After``, and bounded by
timeouts (:class:`hubtools.hubhttp.HubPolicy`). The repo is created only just before the commit;
when this push created it and the commit then fails for good, the repo, still empty, is deleted
again (if the Hub can still be reached; else a warning names it).

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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, constants, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

from hubtools.card import KEPT_PLOT_FILE, PLOT_FILE, CardData, render_card, save_kept_plot
from hubtools.errors import PublishedMetricsDifferError, PushFailedError, UsageError
from hubtools.evalresults import eval_result_files
from hubtools.hubhttp import ENV_HELP, HubPolicy, describe, http_error, is_transient
from hubtools.plot import accuracy_latency_plot
from hubtools.runinfo import LAYOUT_FILE, Hop, Layout, RunInfo, plan_layout
from hubtools.searchcard import copy_study
from recipes.runfolder import BENCHMARK_FILE, RELATIONS, RESOLVED_RECIPE_FILE, RUN_FILE

log = logging.getLogger("hubtools.push")

LOCAL_NAMESPACE = "local"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


# --- names -----------------------------------------------------------------------------------


def is_local_endpoint(endpoint: str | None = None) -> bool:
    return urlsplit(endpoint or constants.ENDPOINT).hostname in LOCAL_HOSTS


def namespace(api: HfApi, policy: HubPolicy | None = None) -> str:
    """``local`` on a local Hub; else the user the token belongs to."""
    if is_local_endpoint(api.endpoint):
        return LOCAL_NAMESPACE
    try:
        return (policy or HubPolicy.from_env()).call("whoami", api.whoami)["name"]
    except LocalTokenNotFoundError:
        raise UsageError(
            f"No Hub token, so no namespace to publish in on {api.endpoint}: set HF_TOKEN "
            "(or `hf auth login`), or name the repo (--repo-id / --namespace)."
        ) from None


def repo_id_for(info: RunInfo, api: HfApi, ns: str | None = None, policy: HubPolicy | None = None) -> str:
    """The recipe's ``publish.repo_id``, else ``<namespace>/<base>-<dataset>[-<config>]-<recipe>``."""
    return info.publish.get("repo_id") or info.default_repo_id(ns or namespace(api, policy))


def relation(hops: list[Hop]) -> str | None:
    """``base_model_relation`` for a model made from its base by ``hops``' stages: the strongest
    relation their stage types declare (a fine-tune, then quantized, is a fine-tune)."""
    declared = {h.publishing.relation for h in hops if h.stage_type}
    return next((r for r in RELATIONS if r in declared), None)


def choose_base_model(
    info: RunInfo, api: HfApi, ns: str, policy: HubPolicy | None = None
) -> tuple[str | None, str | None]:
    """The nearest published ancestor (another recipe's published model, if its repo exists),
    else the Hub model the line started from; with the relation that fits the stages between."""
    policy = policy or HubPolicy.from_env()
    hops = info.lineage()
    for i, hop in enumerate(hops[1:], start=1):
        if hop.recipe != info.name and hop.is_final and hop.stage_type:
            candidate = hop.publish_repo_id or info.default_repo_id(ns, hop.recipe)
            if policy.call(f"repo_exists {candidate}", api.repo_exists, candidate):
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
    card_data = CardData(
        repo_id=repo_id,
        base_model=base_model,
        base_model_relation=base_model_relation,
        hub_url=(hub_url or constants.ENDPOINT).rstrip("/"),
    ).fill(info, layout)
    render_card(card_data).save(out_dir / "README.md")
    date = (info.benchmark.measured_at or datetime.now(timezone.utc).isoformat())[:10]
    for repo_path, text in eval_result_files(card_data, date).items():
        (out_dir / repo_path).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / repo_path).write_text(text)
    return out_dir


# --- published metrics -----------------------------------------------------------------------------


def _metric_key(result) -> tuple:
    return (result.task_type, result.dataset_type, result.dataset_config, result.dataset_split, result.metric_type)


def published_card(api: HfApi, repo_id: str, policy: HubPolicy | None = None) -> ModelCard | None:
    """The card the Hub serves now, or None. Asked fresh: on a failed HEAD call
    ``hf_hub_download`` would return a stale cached copy (e.g. of a since-deleted repo)."""
    policy = policy or HubPolicy.from_env()
    if not policy.call(f"file_exists {repo_id}/README.md", api.file_exists, repo_id, "README.md"):
        return None
    path = policy.call(
        f"download of {repo_id}/README.md",
        hf_hub_download,
        repo_id,
        "README.md",
        endpoint=api.endpoint,
        token=api.token,
        force_download=True,
        etag_timeout=policy.read_timeout,
    )
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


def create_repo_if_missing(api: HfApi, repo_id: str, private: bool, policy: HubPolicy) -> bool:
    """Create ``repo_id`` unless it exists. True when it did not exist: this push created it
    (or another pusher did, at the same moment; :func:`remove_if_empty` deletes it only empty)."""
    if policy.call(f"repo_exists {repo_id}", api.repo_exists, repo_id):
        return False
    policy.call(f"create_repo {repo_id}", api.create_repo, repo_id, private=private, exist_ok=True)
    return True


def remove_if_empty(api: HfApi, repo_id: str, policy: HubPolicy) -> None:
    """Delete ``repo_id``, created by a push that then failed, if it holds nothing but the
    Hub's initial commit; when the Hub cannot be asked, say that it may be left empty."""
    try:
        commits = policy.call(f"list_repo_commits {repo_id}", api.list_repo_commits, repo_id)
        if len(commits) <= 1:
            policy.call(f"delete_repo {repo_id}", api.delete_repo, repo_id, missing_ok=True)
            log.warning("Deleted %s again: this push had created it, and it stayed empty.", repo_id)
    except Exception as err:  # the push's own error is the one to raise; this one is reported
        log.warning(
            "This push created %s and could not delete it again (%s): it may be left empty. Push again, or delete "
            "it with HfApi().delete_repo(%r).",
            repo_id,
            describe(err),
            repo_id,
        )


def commit_with_retries(
    api: HfApi,
    repo_id: str,
    operations: list[CommitOperationAdd],
    message: str,
    description: str = "",
    *,
    private: bool = False,
    policy: HubPolicy | None = None,
) -> str:
    """One commit of ``operations`` to ``repo_id`` (created first, ``private``, if missing);
    transient failures are retried against the same parent. A repo this call created is deleted
    again if the commit fails for good (:func:`remove_if_empty`)."""
    policy = policy or HubPolicy.from_env()
    created = create_repo_if_missing(api, repo_id, private, policy)
    try:
        return _commit(api, repo_id, operations, message, description, policy)
    except Exception:
        if created:
            remove_if_empty(api, repo_id, policy)
        raise


def _commit(
    api: HfApi, repo_id: str, operations: list[CommitOperationAdd], message: str, description: str, policy: HubPolicy
) -> str:
    parent = policy.call(f"repo_info {repo_id}", api.repo_info, repo_id, timeout=policy.timeout).sha
    for attempt in range(1, policy.tries + 1):
        try:
            info = api.create_commit(
                repo_id, operations, commit_message=message, commit_description=description, parent_commit=parent
            )
            return info.commit_url
        except Exception as err:  # classified below; anything else is re-raised as is
            if not is_transient(err) and not _is_parent_mismatch(err):
                raise
            head = _head(api, repo_id, policy)
            if head is not None and head.commit_id != parent and head.title == message:
                log.warning("The commit landed although the reply was lost (%s); not committing again.", err)
                return f"{api.endpoint}/{repo_id}/commit/{head.commit_id}"
            if _is_parent_mismatch(err):
                raise PushFailedError(_moved_message(repo_id, head, api.endpoint)) from None
            if attempt == policy.tries:
                raise PushFailedError(
                    f"Pushing to {repo_id} failed {attempt} times ({err.__class__.__name__}: {describe(err)}); "
                    f"nothing was committed. Check that {api.endpoint} is reachable and push again."
                ) from None
            policy.wait(attempt, err, f"The commit to {repo_id}")
    raise AssertionError("unreachable")


def _moved_message(repo_id: str, head, endpoint: str) -> str:
    if head is None:
        return (
            f"{repo_id} changed while pushing and its head could not be read, so this push may have landed: see "
            f"{endpoint}/{repo_id}/commits before pushing again."
        )
    return f"{repo_id} changed while pushing (its head is now {head.commit_id}); nothing was committed. Push again."


def _is_parent_mismatch(err: BaseException) -> bool:
    response = getattr(err, "response", None)
    return isinstance(err, HfHubHTTPError) and response is not None and response.status_code == 412


def _head(api: HfApi, repo_id: str, policy: HubPolicy):
    """The repo's newest commit, or None when the Hub cannot tell (even after the retries)."""
    try:
        return policy.call(f"list_repo_commits {repo_id}", api.list_repo_commits, repo_id)[0]
    except Exception as err:
        if is_transient(err):
            return None
        raise


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
    run_dir: str | Path,
    repo_id: str | None = None,
    *,
    private: bool = False,
    overwrite: bool = False,
    policy: HubPolicy | None = None,
) -> PushResult:
    """Publish the finished run ``run_dir`` (``<output root>/<scope>/<recipe>``) in one commit.

    ``repo_id``: default the recipe's ``publish.repo_id``, else
    ``<namespace>/<base>-<dataset>[-<config>]-<recipe>``. Raises
    :class:`~hubtools.errors.PublishedMetricsDifferError` when the repo's card already states other
    metrics, unless ``overwrite``; :class:`~hubtools.errors.PushFailedError` when the Hub refuses
    or stays unreachable (nothing is committed then). ``policy``: timeouts and retries (default
    :meth:`HubPolicy.from_env`). Example::

        pushed = publish("outputs/clinc_oos-plus_all-MiniLM-L6-v2_1a2b3c4d/kd-quant")
        pipeline("text-classification", model=pushed.repo_id)
    """
    info = RunInfo(Path(run_dir))
    layout = plan_layout(info)
    api = HfApi()
    policy = policy or HubPolicy.from_env()
    try:
        with policy.session():
            return _push(info, layout, api, repo_id, private, overwrite, policy)
    except Exception as err:  # a Hub error becomes one message; anything else is raised as is
        if is_transient(err):
            raise PushFailedError(
                f"Cannot reach {api.endpoint} ({describe(err)} after {policy.tries} tries); nothing was committed. "
                "Is the Hub up (local: `make hub`) and HF_ENDPOINT right?"
            ) from err
        refused = http_error(err)
        if refused is None:
            raise
        hint = (
            " Check that HF_TOKEN is set and may write to that namespace."
            if refused.response.status_code in (401, 403)
            else ""
        )
        raise PushFailedError(
            f"The Hub refused the push ({refused.__class__.__name__}: {str(refused).splitlines()[0]}); "
            f"nothing was committed.{hint}"
        ) from err


def push_run(run_dir: Path, repo_id: str | None = None, private: bool = False, overwrite: bool = False) -> str:
    """:func:`publish`, returning only the commit URL: the runner's ``publisher``."""
    return publish(run_dir, repo_id, private=private, overwrite=overwrite).url


def _push(
    info: RunInfo, layout: Layout, api: HfApi, repo_id: str | None, private: bool, overwrite: bool, policy: HubPolicy
) -> PushResult:
    ns = repo_id.split("/")[0] if repo_id and "/" in repo_id else namespace(api, policy)
    repo_id = repo_id or repo_id_for(info, api, ns)
    private = private or bool(info.publish.get("private"))
    base_model, base_relation = choose_base_model(info, api, ns, policy)
    with tempfile.TemporaryDirectory(prefix="hubtools-push-") as tmp:
        folder = stage_repo_folder(info, layout, repo_id, Path(tmp), base_model, base_relation, api.endpoint)
        new_card = ModelCard.load(folder / "README.md")
        old_card = published_card(api, repo_id, policy)
        changes = metric_changes(old_card, new_card) if old_card is not None else []
        if changes and not overwrite:
            raise PublishedMetricsDifferError(
                f"{repo_id} already publishes other numbers: {'; '.join(changes)}. Nothing was pushed. "
                "Push to another --repo-id, or pass --overwrite to replace them."
            )
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
        url = commit_with_retries(api, repo_id, operations, message, description, private=private, policy=policy)
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
    parser.epilog = ENV_HELP
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    print(publish(args.run_dir, args.repo_id, private=args.private, overwrite=args.overwrite).url)
    return 0
