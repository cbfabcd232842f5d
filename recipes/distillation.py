"""Knowledge distillation: the loss, a student cut from the teacher, cached teacher logits."""

from __future__ import annotations

import re

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Trainer

TEACHER_LOGITS = "teacher_logits"


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """``alpha * CE + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))``.

    KL uses ``reduction="batchmean"`` (the true KL per example; ``"mean"`` would also divide
    by the number of classes) and the ``T^2`` factor keeps its gradients on the CE scale.
    """
    ce = F.cross_entropy(student_logits, labels)
    if alpha >= 1.0:
        return ce
    kl = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.log_softmax(teacher_logits / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * ce + (1.0 - alpha) * kl * temperature**2


class DistillationTrainer(Trainer):
    """A Trainer whose batches carry the teacher's logits, precomputed once per example.

    The teacher is frozen and in eval mode, so its logits for an example never change:
    computing them once (:func:`teacher_logits`) is exact and makes each epoch cost what a
    plain student epoch costs.
    """

    def __init__(self, *args, alpha: float, temperature: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha = alpha
        self.temperature = temperature

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        teacher = inputs.pop(TEACHER_LOGITS, None)
        outputs = model(**inputs)
        if teacher is None:  # evaluation batches carry no teacher logits: plain CE
            return (outputs.loss, outputs) if return_outputs else outputs.loss
        loss = distillation_loss(outputs.logits, teacher.to(outputs.logits.dtype), inputs["labels"], self.alpha, self.temperature)
        return (loss, outputs) if return_outputs else loss


def teacher_logits(teacher, dataset, collator, batch_size: int = 64) -> np.ndarray:
    """Logits of the frozen teacher for every row of a tokenized dataset, in row order."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    teacher.eval()
    columns = [c for c in dataset.column_names if c != "label"]
    loader = DataLoader(dataset.select_columns(columns), batch_size=batch_size, collate_fn=collator)
    out = []
    with torch.inference_mode():
        for batch in tqdm(loader, desc="Teacher logits"):
            out.append(teacher(**batch).logits.float().numpy())
    return np.concatenate(out)


_LAYER_KEY = re.compile(r"^(.*\.layer\.)(\d+)(\..*)$")


def student_from_teacher(teacher, keep_layers: list[int]):
    """A shallower copy of ``teacher`` keeping the listed encoder layers (DistilBERT-style).

    Embeddings, pooler and classifier are copied; kept layer ``keep_layers[j]`` becomes
    layer ``j``. Works for BERT-like models whose blocks live in ``encoder.layer.<i>``.
    """
    n_layers = teacher.config.num_hidden_layers
    bad = [i for i in keep_layers if not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"keep_layers {bad} out of range: the teacher has layers 0..{n_layers - 1}")
    config = teacher.config.__class__.from_dict(teacher.config.to_dict())
    config.num_hidden_layers = len(keep_layers)
    student = type(teacher)(config)
    new_index = {old: new for new, old in enumerate(keep_layers)}
    state = {}
    for key, value in teacher.state_dict().items():
        match = _LAYER_KEY.match(key)
        if match and ".encoder.layer." in key:
            old = int(match.group(2))
            if old not in new_index:
                continue
            key = f"{match.group(1)}{new_index[old]}{match.group(3)}"
        state[key] = value.clone()
    student.load_state_dict(state, strict=True)
    return student
