"""``finetune``: fine-tune a sequence classifier on the recipe's dataset with the HF Trainer."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..ml.training import TrainingSpec, classifier_with_dataset_labels, eval_metrics, fit_and_save, training_arguments
from ..plan.bounds import Text
from .base import TRAINING_LIBRARIES, Publishing, StageContext, register


class FinetuneSpec(TrainingSpec):
    """Fine-tune ``input`` on the recipe's dataset (cross-entropy on the train split).

    ``input`` is a key of ``models`` (a Hub id or a local folder) or an earlier stage: an encoder
    or a classifier. It gets a classification head for the dataset's labels (a head for another
    number of labels is replaced by a new one); the labels come from the dataset's ClassLabel, so
    ``id2label`` names the intents.

    .. code-block:: yaml

        stages:
          - name: finetune
            type: finetune
            input: base            # a key of `models:`
            epochs: 3
            learning_rate: 1.0e-4
            batch_size: 32
    """

    type: Literal["finetune"]
    distributed: ClassVar[bool] = True  # every rank trains, data-parallel
    input: Text = Field(description="Model to start from: a key of `models` or an earlier stage.")
    keeps_layers: ClassVar[bool] = True  # its model has its input's layers (checked in recipes.plan.preflight)

    def refs(self) -> dict[str, str]:
        return {"input": self.input}

    def labelled_roles(self) -> set[str]:
        return set()  # the head is replaced for the dataset's labels


#: What the model card and the Hub repo take from this stage type (see :class:`.base.Publishing`).
PUBLISHING = Publishing(
    relation="finetune",
    phrase="fine-tuned on the recipe's dataset",
    repo_dir="",
    usage="usage/pytorch.md.j2",
)


@register("finetune", FinetuneSpec, libraries=TRAINING_LIBRARIES, publishing=PUBLISHING)
def run(spec: FinetuneSpec, ctx: StageContext) -> dict:
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer

    data = ctx.data
    tokenizer = AutoTokenizer.from_pretrained(ctx.inputs["input"])
    model = classifier_with_dataset_labels(ctx.inputs["input"], data)
    trainer = Trainer(
        model=model,
        args=training_arguments(spec, ctx.out_dir / "_trainer", ctx.seed),
        train_dataset=data.tokenized("train", tokenizer, spec.max_length),
        eval_dataset=data.tokenized("eval", tokenizer, spec.max_length),
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=eval_metrics(data.oos_id),
    )
    return fit_and_save(trainer, tokenizer, ctx.out_dir)
