"""The project's Hub tooling: publishing finished runs, checking and indexing what was published,
and a local Hub (:mod:`hubtools.localhub`); ``python -m hubtools`` is the command line over it.

Python::

    import hubtools

    pushed = hubtools.publish("outputs/clinc_oos-plus_all-MiniLM-L6-v2_1a2b3c4d/kd-quant")
    pushed.repo_id, pushed.commit_id, pushed.files   # PushResult: the repo, its commit, what it holds
    report = hubtools.verify_repo(pushed.repo_id)    # VerifyReport: re-measured here
    report.passed, report.problems                   # True, []
    catalog = hubtools.build_catalog("local")        # CatalogResult: pushes local/catalog
    catalog.rows, catalog.url

The same functions back ``python -m hubtools push | verify | catalog``; they raise the errors of
:mod:`hubtools.errors` (and :mod:`recipes.errors` for a run folder or dataset that cannot be
read), which the command line prints as one ``error:`` line with its exit code.

The names are imported on first use, so ``import hubtools`` (or any ``hubtools`` module) pulls in
only what it needs. They differ from the module names on purpose: ``hubtools.push`` and
``hubtools.verify`` are the modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

#: Public name -> the module that defines it.
_EXPORTS = {
    "publish": "hubtools.push",
    "PushResult": "hubtools.push",
    "verify_repo": "hubtools.verify",
    "VerifyReport": "hubtools.verify",
    "RowCheck": "hubtools.verify",
    "SpeedupCheck": "hubtools.verify",
    "build_catalog": "hubtools.catalog",
    "CatalogResult": "hubtools.catalog",
    "Variant": "hubtools.catalog",
    "HubToolsError": "hubtools.errors",
    "UsageError": "hubtools.errors",
    "PushFailedError": "hubtools.errors",
    "PublishedMetricsDifferError": "hubtools.errors",
    "HubUnreachableError": "hubtools.errors",
    "VerificationFailedError": "hubtools.errors",
}

__all__ = [
    "publish",
    "PushResult",
    "verify_repo",
    "VerifyReport",
    "RowCheck",
    "SpeedupCheck",
    "build_catalog",
    "CatalogResult",
    "Variant",
    "HubToolsError",
    "UsageError",
    "PushFailedError",
    "PublishedMetricsDifferError",
    "HubUnreachableError",
    "VerificationFailedError",
]

if TYPE_CHECKING:
    from hubtools.catalog import CatalogResult, Variant, build_catalog
    from hubtools.errors import (
        HubToolsError,
        HubUnreachableError,
        PublishedMetricsDifferError,
        PushFailedError,
        UsageError,
        VerificationFailedError,
    )
    from hubtools.push import PushResult, publish
    from hubtools.verify import RowCheck, SpeedupCheck, VerifyReport, verify_repo


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hubtools' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
