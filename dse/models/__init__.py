"""The reference model zoo: plain-torch definitions of the workloads shipped in ``workloads/``.

``MODELS`` maps each name to a :class:`ModelSpec` (how to build it, its batch-1 input shape), so the
export script, the tests and the accuracy simulation build the same networks from one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from dse.models.digits import DigitsCNN, digits_cnn
from dse.models.mobilenet import MobileNetV2, mobilenetv2
from dse.models.resnet import ResNet18, resnet18_cifar10, resnet18_imagenet
from dse.models.vit import ActivationMatMul, VisionTransformer, vit_b32


@dataclass(frozen=True)
class ModelSpec:
    """A zoo entry: ``build()`` returns a fresh (randomly initialised) model taking ``input_shape``."""

    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    description: str


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("resnet18_cifar10", resnet18_cifar10, (1, 3, 32, 32), "ResNet-18, CIFAR-10 variant"),
        ModelSpec("resnet18_imagenet", resnet18_imagenet, (1, 3, 224, 224), "ResNet-18, ImageNet"),
        ModelSpec("mobilenetv2", mobilenetv2, (1, 3, 224, 224), "MobileNetV2 1.0, ImageNet"),
        ModelSpec("vit_b32", vit_b32, (1, 3, 224, 224), "ViT-B/32, ImageNet"),
        ModelSpec("digits_cnn", digits_cnn, (1, 1, 8, 8), "small CNN for scikit-learn digits (trained)"),
    )
}


def get_model_spec(name: str) -> ModelSpec:
    """The zoo entry called ``name``; a KeyError listing the valid names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}") from None


def build_model(name: str) -> nn.Module:
    """A fresh instance of the zoo model ``name``, in eval mode."""
    return get_model_spec(name).build().eval()


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass: Conv2d, Linear and activation-activation matmuls.

    Counted with forward hooks on a zero input, so it is the same quantity the workload loader gets
    from the exported Conv/Gemm/MatMul nodes (element-wise ops, pooling and softmax are not MACs).
    """
    import torch

    total = 0

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features
        elif isinstance(module, ActivationMatMul):
            total += output.numel() * inputs[0].shape[-1]

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear | ActivationMatMul)
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape))
    finally:
        for h in handles:
            h.remove()
    return total


__all__ = [
    "MODELS",
    "ActivationMatMul",
    "DigitsCNN",
    "MobileNetV2",
    "ModelSpec",
    "ResNet18",
    "VisionTransformer",
    "build_model",
    "count_macs",
    "get_model_spec",
]
