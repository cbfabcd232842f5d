"""A small Hugging Face Hub-compatible server for offline work and tests.

The real clients (huggingface_hub, transformers, datasets, optimum) talk to it unchanged
when ``HF_ENDPOINT`` points at it::

    from hubtools.localhub import LocalHub, seed

    seed(".hub")                                    # clinc_oos + all-MiniLM-L6-v2
    with LocalHub(".hub", port=0) as hub:           # serves in a background thread
        print(hub.url, hub.token)

Modules: ``server`` (listening socket, LocalHub), ``handler`` (one connection's requests),
``bodies`` (request body framing), ``routes`` (URL -> route), ``endpoints`` (one method per
route), ``fields`` (typed JSON fields), ``wire`` (JSON shapes), ``storage``/``trees``/``blobs``
(repos on disk), ``seed``, ``pages`` (HTML), ``cli`` (``python -m hubtools hub ...``).
"""

from hubtools.localhub.defaults import DEV_TOKEN
from hubtools.localhub.seed import SeedResult, seed
from hubtools.localhub.server import LocalHub
from hubtools.localhub.storage import Storage

__all__ = ["DEV_TOKEN", "LocalHub", "SeedResult", "Storage", "seed"]
