"""Distillation beyond logits: hidden states (TinyBERT) and attention distributions (MiniLM).

A layer map pairs each student layer with a teacher layer (for a student cut from the
teacher with ``keep_layers``, layer i of the student is teacher layer ``keep_layers[i]``).
Padding positions never count: both losses average over the real tokens of each row.
"""

from __future__ import annotations

import torch


def hidden_state_loss(student_hidden, teacher_hidden, layer_map: list[int], attention_mask) -> torch.Tensor:
    """Mean squared error between each student layer's output and its teacher layer's output,
    averaged over the mapped layers and the real tokens. ``*_hidden`` are the models'
    ``hidden_states`` tuples (index 0 the embeddings, index i + 1 the output of layer i)."""
    mask = attention_mask.unsqueeze(-1).to(student_hidden[0].dtype)
    tokens = mask.sum().clamp(min=1)
    losses = []
    for s_layer, t_layer in enumerate(layer_map):
        diff = (student_hidden[s_layer + 1] - teacher_hidden[t_layer + 1]) ** 2 * mask
        losses.append(diff.sum() / (tokens * diff.shape[-1]))
    return torch.stack(losses).mean()


def attention_loss(student_attentions, teacher_attentions, layer_map: list[int], attention_mask) -> torch.Tensor:
    """KL(teacher || student) between the self-attention distributions of each mapped layer,
    per head and query position, averaged over the real query tokens and the heads. Where the
    layers have different head counts (a student whose heads were pruned), each layer's mean
    attention distribution over its heads is compared instead (a mean of distributions is one)."""
    query_mask = attention_mask.to(student_attentions[0].dtype)  # (batch, seq)
    losses = []
    for s_layer, t_layer in enumerate(layer_map):
        s_att, t_att = student_attentions[s_layer], teacher_attentions[t_layer]  # (batch, heads, seq, seq)
        if s_att.shape[1] != t_att.shape[1]:
            s_att, t_att = s_att.mean(1, keepdim=True), t_att.mean(1, keepdim=True)
        kl = (t_att * (torch.log(t_att.clamp(min=1e-12)) - torch.log(s_att.clamp(min=1e-12)))).sum(-1)
        per_query = kl.mean(1)  # over heads -> (batch, seq)
        losses.append((per_query * query_mask).sum() / query_mask.sum().clamp(min=1))
    return torch.stack(losses).mean()
