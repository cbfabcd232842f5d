"""Progress on long work: bars on a terminal, a few log lines elsewhere (log files, CI).

The choice is made once, by the entry point (:func:`configure_progress`), through the
libraries' own switches; everything else asks :func:`bars_enabled`. Training always logs
about ten progress lines (:class:`LogProgress`), so ``run.log`` shows how far it got.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("recipes")


def bars_enabled() -> bool:
    from transformers.utils import logging as hf_logging

    return hf_logging.is_progress_bar_enabled()


def configure_progress(bars: bool | None = None) -> None:
    """Entry points only: bars when ``bars`` (default: stderr is a terminal), else none."""
    import datasets
    import huggingface_hub.utils
    from transformers.utils import logging as hf_logging

    on = sys.stderr.isatty() if bars is None else bars
    for module in (datasets, huggingface_hub.utils):
        (module.enable_progress_bars if on else module.disable_progress_bars)()
    (hf_logging.enable_progress_bar if on else hf_logging.disable_progress_bar)()


def make_log_progress(lines: int = 10):
    """A Trainer callback that logs ``lines`` progress lines over a training run."""
    from transformers import TrainerCallback

    class LogProgress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.time()
            self.every = max(1, state.max_steps // lines)

        def on_step_end(self, args, state, control, **kwargs):
            step, total = state.global_step, state.max_steps
            if step % self.every and step != total:
                return
            elapsed = time.time() - self.start
            left = elapsed / step * (total - step)
            loss = next((e["loss"] for e in reversed(state.log_history) if "loss" in e), None)
            log.info(
                "  training step %d/%d (%d%%), epoch %.2f, %.0f s elapsed, ~%.0f s left%s",
                step,
                total,
                100 * step // total,
                state.epoch or 0,
                elapsed,
                left,
                f", loss {loss:.4f}" if loss else "",
            )

    return LogProgress()
