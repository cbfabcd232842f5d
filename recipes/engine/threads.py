"""Thread settings are process-wide: whoever changes them for a while puts them back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def restore_torch_threads() -> Iterator[None]:
    """Run the block, then restore torch's intra-op thread count as it was before it.

    Model loaders set the count to a benchmark's budget (``threads: 1``); without this the
    next stage, or the next recipe of the plan, would train on that budget.
    """
    import torch

    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)
