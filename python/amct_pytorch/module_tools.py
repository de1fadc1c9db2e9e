"""Small helpers shared by the wrappers that hand activations to the core."""

import torch


def as_float32_cpu(tensor):
    """The tensor as the contiguous float32 CPU array the core reads in place
    (no copy when it already is one)."""
    data = tensor.detach()
    if data.dtype != torch.float32:
        data = data.float()
    if data.device.type != "cpu":
        data = data.cpu()
    if not data.is_contiguous():
        data = data.contiguous()
    return data


def set_submodule(model, name, module):
    """Replaces the submodule at dotted path `name`."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
