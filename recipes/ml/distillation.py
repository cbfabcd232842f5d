"""Knowledge distillation: the loss, a student cut from the teacher, cached teacher logits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Trainer

from .families import TOKENIZER_OUTPUTS, align_tokenizer, layout, model_inputs

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
    Rows labelled -100 (teacher-labelled augmentation) count in the KL term only.
    """
    has_label = labels != -100
    ce = F.cross_entropy(student_logits[has_label], labels[has_label]) if has_label.any() else student_logits.sum() * 0
    if alpha >= 1.0:
        return ce
    kl = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.log_softmax(teacher_logits / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * ce + (1.0 - alpha) * kl * temperature**2


@dataclass(frozen=True)
class LayerTargets:
    """Distillation beyond logits: the frozen teacher (run on each batch, since its hidden states
    and attention maps are too big to cache), the weights of the two extra losses, and the
    teacher layer of each student layer."""

    teacher: torch.nn.Module
    hidden_weight: float
    attention_weight: float
    layer_map: list[int]

    def loss(self, inputs: dict, outputs) -> torch.Tensor:
        from .layer_losses import attention_loss, hidden_state_loss

        teacher = self.teacher.to(outputs.logits.device).eval()
        tokens = {k: v for k, v in model_inputs(teacher, inputs).items() if k in TOKENIZER_OUTPUTS}
        with torch.no_grad():
            target = teacher(
                **tokens,
                output_hidden_states=self.hidden_weight > 0,
                output_attentions=self.attention_weight > 0,
            )
        mask, total = inputs["attention_mask"], outputs.logits.new_zeros(())
        if self.hidden_weight > 0:
            total = total + self.hidden_weight * hidden_state_loss(
                outputs.hidden_states, target.hidden_states, self.layer_map, mask
            )
        if self.attention_weight > 0:
            total = total + self.attention_weight * attention_loss(
                outputs.attentions, target.attentions, self.layer_map, mask
            )
        return total


class DistillationTrainer(Trainer):
    """A Trainer whose batches carry the teacher's logits, precomputed once per example.

    The teacher is frozen and in eval mode, so its logits for an example never change:
    computing them once (:func:`teacher_logits`) is exact and makes each epoch cost what a
    plain student epoch costs. With ``layers`` the loss also matches hidden states and/or
    attention maps, which costs a teacher forward pass per batch.
    """

    def __init__(self, *args, alpha: float, temperature: float, layers: LayerTargets | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha = alpha
        self.temperature = temperature
        self.layers = layers

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        teacher = inputs.pop(TEACHER_LOGITS, None)
        inputs = model_inputs(self.model, inputs)  # the tokenizer's outputs the student's forward takes
        if teacher is None:  # evaluation batches carry no teacher logits: plain CE
            outputs = model(**inputs)
            return (outputs.loss, outputs) if return_outputs else outputs.loss
        layers = self.layers
        outputs = model(
            **inputs,
            output_hidden_states=bool(layers and layers.hidden_weight > 0),
            output_attentions=bool(layers and layers.attention_weight > 0),
        )
        loss = distillation_loss(
            outputs.logits, teacher.to(outputs.logits.dtype), inputs["labels"], self.alpha, self.temperature
        )
        if layers is not None:
            loss = loss + layers.loss(inputs, outputs)
        return (loss, outputs) if return_outputs else loss


def teacher_logits(teacher, dataset, collator, batch_size: int = 64) -> np.ndarray:
    """Logits of the frozen teacher for every row of a tokenized dataset, in row order."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from ..engine.progress import bars_enabled

    teacher.eval()
    columns = [c for c in dataset.column_names if c != "label"]
    loader = DataLoader(dataset.select_columns(columns), batch_size=batch_size, collate_fn=collator)
    out = []
    device = next(teacher.parameters()).device
    with torch.inference_mode():
        for batch in tqdm(loader, desc="Teacher logits", disable=not bars_enabled()):
            batch = {k: v.to(device) for k, v in model_inputs(teacher, batch).items()}
            out.append(teacher(**batch).logits.float().cpu().numpy())
    if not out:  # no rows (a rank's empty share of a tiny set)
        return np.zeros((0, teacher.config.num_labels), dtype=np.float32)
    return np.concatenate(out)


def load_teacher(model_dir, label_names: list[str]):
    """The frozen teacher classifier of ``model_dir`` and its tokenizer; a teacher that predicts
    another number of labels than the dataset has is refused (distil from one fine-tuned on it)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    teacher = AutoModelForSequenceClassification.from_pretrained(model_dir)
    if teacher.config.num_labels != len(label_names):
        raise ValueError(
            f"the teacher has {teacher.config.num_labels} labels but the dataset has {len(label_names)}: "
            "distil from a teacher fine-tuned on this dataset"
        )
    return teacher, align_tokenizer(teacher, AutoTokenizer.from_pretrained(model_dir))


def logits_of_rows(teacher, tokenizer, rows, max_length: int) -> np.ndarray:
    """The teacher's logits for rows with a ``text`` column, tokenized its way, in row order."""
    from transformers import DataCollatorWithPadding

    from .data import tokenize

    return teacher_logits(teacher, tokenize(rows, tokenizer, max_length), DataCollatorWithPadding(tokenizer))


def with_teacher_logits(rows, logits: np.ndarray, tokenizer, max_length: int):
    """``rows`` tokenized by the student's ``tokenizer``, each carrying its teacher logits: what a
    :class:`DistillationTrainer` trains on."""
    from .data import tokenize

    return tokenize(rows, tokenizer, max_length).add_column(TEACHER_LOGITS, [row.tolist() for row in logits])


def student_from_teacher(teacher, keep_layers: list[int]):
    """A shallower copy of ``teacher`` keeping the listed encoder layers (DistilBERT-style): see
    :meth:`recipes.ml.families.Family.cut`, which knows where each family keeps its layers."""
    n_layers = teacher.config.num_hidden_layers
    bad = [i for i in keep_layers if not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"keep_layers {bad} out of range: the teacher has layers 0..{n_layers - 1}")
    return layout(teacher, "cutting layers (keep_layers)").cut(teacher, keep_layers)
