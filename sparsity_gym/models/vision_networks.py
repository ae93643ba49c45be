"""The seeds' vision networks: seed 003's simple CNN, a CIFAR-style ResNet-18 and torchvision's VGG11.

Importing this module registers ``simple_cnn``, ``resnet18`` and ``vgg11`` in
:data:`sparsity_gym.models.zoo.NETWORKS` (``sparsity_gym.models.zoo`` imports it, so the names exist whenever the
zoo is used). Every builder takes ``(input_shape, num_classes, **kwargs)`` like ``mlp`` and ``cnn``; torchvision
is imported inside :func:`vgg11` only (through :func:`sparsity_gym.core.torchvision_compat.import_torchvision`).

Readings of the seeds, where they leave something open:

* ``simple_cnn`` (seed 003, Tessera et al., "Simple CNN - 5 Layers" on CIFAR-10, 67.8 % dense test accuracy):
  the paper names neither layers nor widths. We read it as the classic 5-layer CIFAR-10 CNN of PyTorch's
  tutorial, whose accuracy matches: two 5x5 conv-ReLU-maxpool blocks of 6 and 16 channels, then Linear layers
  of 120 and 84 units with ReLU, then the output Linear (2 conv + 3 linear = 5 prunable layers). On inputs too
  small for unpadded 5x5 convolutions (the 8x8 digits, 4x4 synthetic) the convs are padded to keep the size
  ("same", ``padding=kernel_size // 2``), and a max-pool is left out where the map is already 1 pixel wide.
* ``resnet18``: the CIFAR variant (He et al.; the seed-003 ResNet-18 on CIFAR-10): a 3x3 stride-1 stem conv with
  BatchNorm and no max-pool, BasicBlocks [2, 2, 2, 2] of widths ``base_width * (1, 2, 4, 8)`` with strides
  (1, 2, 2, 2), 1x1 conv + BatchNorm shortcuts where the shape changes, global average pooling and a Linear head.
  Convolutions have no bias (BatchNorm follows each).
* ``vgg11`` (seed 000, DYNO's transfer setting: an ImageNet-pretrained VGG11 whose final classification layer is
  replaced by a 10-way layer, either re-initialised (Galaxy10) or made of the pretrained rows of the target
  classes (Imagenette / Imagewoof)): torchvision's VGG11 (``batch_norm=True``: VGG11-BN). ``weights_path`` loads a
  local state dict (nothing is ever downloaded), then the last Linear is replaced by a fresh one for
  ``num_classes`` outputs, or by the file's rows ``head_classes`` when given. On inputs smaller than 32x32 the
  max-pools use ``ceil_mode=True`` so that no map shrinks to zero pixels (identical to floor mode whenever the
  size stays even, as on 32x32 and 224x224); the adaptive average pool then replicates the small map to 7x7.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsity_gym.models.zoo import register_network

__all__ = ["BasicBlock", "ResNet", "resnet18", "simple_cnn", "vgg11"]


def _image_shape(input_shape: Sequence[int], network: str) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(
            f"input_shape={tuple(input_shape)!r} is not allowed for network={network!r}; expected (C, H, W) images"
        )
    c, h, w = (int(d) for d in input_shape)
    return c, h, w


# ------------------------------------------------------------------------------------------------ simple_cnn
@register_network("simple_cnn")
def simple_cnn(
    input_shape: Sequence[int],
    num_classes: int,
    channels: Sequence[int] = (6, 16),
    hidden: Sequence[int] = (120, 84),
    kernel_size: int = 5,
    padding: int | None = None,
) -> nn.Module:
    """Seed 003's 5-layer simple CNN (our reading: PyTorch's CIFAR-10 tutorial network, see the module doc).

    Args:
        input_shape: ``(C, H, W)``.
        num_classes: Outputs of the last Linear.
        channels: Output channels of the conv-ReLU-maxpool blocks (default 6, 16).
        hidden: Widths of the hidden Linear-ReLU layers (default 120, 84).
        kernel_size: Conv kernel size (default 5).
        padding: Conv padding; ``None`` chooses 0 (the tutorial's valid convolutions) when the input is large
            enough for every block, otherwise ``kernel_size // 2``.

    """
    c, h, w = _image_shape(input_shape, "simple_cnn")
    if padding is None:
        padding = 0 if _conv_pool_size(min(h, w), len(channels), kernel_size, 0) >= 1 else kernel_size // 2
    layers: list[nn.Module] = []
    c_in = c
    for c_out in channels:
        layers += [nn.Conv2d(c_in, int(c_out), kernel_size, padding=padding), nn.ReLU()]
        h, w = h + 2 * padding - kernel_size + 1, w + 2 * padding - kernel_size + 1
        if h < 1 or w < 1:
            raise ValueError(
                f"padding={padding!r} is not allowed for simple_cnn on input_shape={tuple(input_shape)!r}: the "
                f"maps shrink to nothing; expected padding >= {kernel_size // 2} or None"
            )
        if h >= 2 and w >= 2:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c_in = int(c_out)
    layers.append(nn.Flatten())
    features = c_in * h * w
    for width in hidden:
        layers += [nn.Linear(features, int(width)), nn.ReLU()]
        features = int(width)
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


def _conv_pool_size(size: int, blocks: int, kernel_size: int, padding: int) -> int:
    """Map size after ``blocks`` conv (+ pool when at least 2 pixels) blocks; < 1 if a conv does not fit."""
    for _ in range(blocks):
        size = size + 2 * padding - kernel_size + 1
        if size < 1:
            return size
        if size >= 2:
            size //= 2
    return size


# ------------------------------------------------------------------------------------------------ resnet18
class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut (identity or 1x1 conv + BN), then ReLU."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The residual block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stem conv + BN + ReLU (no max-pool), four stages of BasicBlocks, avgpool, Linear."""

    def __init__(
        self, in_channels: int, num_classes: int, blocks: Sequence[int] = (2, 2, 2, 2), base_width: int = 64
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, base_width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        c_in = base_width
        stages = []
        for i, n in enumerate(blocks):
            width = base_width * 2**i
            stage = [BasicBlock(c_in, width, stride=1 if i == 0 else 2)]
            stage += [BasicBlock(width, width) for _ in range(int(n) - 1)]
            stages.append(nn.Sequential(*stage))
            c_in = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x`` (``(n, C, H, W)``)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(torch.flatten(self.avgpool(out), 1))


@register_network("resnet18")
def resnet18(
    input_shape: Sequence[int], num_classes: int, base_width: int = 64, blocks: Sequence[int] = (2, 2, 2, 2)
) -> nn.Module:
    """CIFAR-style ResNet-18 in plain torch (stage widths ``base_width * (1, 2, 4, 8)``; tests use tiny widths).

    Args:
        input_shape: ``(C, H, W)``; any size of at least 1x1 works (stride-2 convs with padding 1).
        num_classes: Outputs of the Linear head.
        base_width: Width of the stem and the first stage (default 64).
        blocks: BasicBlocks per stage (default ``(2, 2, 2, 2)``: ResNet-18).

    """
    c, _, _ = _image_shape(input_shape, "resnet18")
    if int(base_width) < 1:
        raise ValueError(f"base_width={base_width!r} is not allowed; expected a positive int")
    if len(blocks) != 4 or any(int(b) < 1 for b in blocks):
        raise ValueError(f"blocks={tuple(blocks)!r} is not allowed; expected four positive ints, e.g. (2, 2, 2, 2)")
    return ResNet(c, num_classes, blocks=tuple(int(b) for b in blocks), base_width=int(base_width))


# ------------------------------------------------------------------------------------------------ vgg11
VGG11_CONFIG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


@register_network("vgg11")
def vgg11(
    input_shape: Sequence[int],
    num_classes: int,
    weights_path: str | Path | None = None,
    head_classes: Sequence[int] | None = None,
    batch_norm: bool = False,
    width_multiplier: float = 1.0,
    classifier_width: int = 4096,
    dropout: float = 0.5,
) -> nn.Module:
    """Torchvision's VGG11 (or VGG11-BN), optionally from a local state dict with a new head (DYNO, seed 000).

    Args:
        input_shape: ``(C, H, W)``; torchvision's VGG takes 3 channels, another ``C`` gets a first conv of ``C``
            inputs (a weights file then needs that shape). Inputs below 32x32 use ceil-mode max-pools.
        num_classes: Outputs of the final Linear (``classifier.6``).
        weights_path: A local file holding a state dict of this architecture (as saved by
            ``torch.save(model.state_dict(), path)``, e.g. torchvision's ImageNet ``vgg11`` weights with 1000
            classes), loaded with ``weights_only=True``. After loading, ``classifier.6`` is replaced by a fresh
            Linear with ``num_classes`` outputs (torch's default initialisation) unless ``head_classes`` is given.
        head_classes: With ``weights_path``: the file's output rows (class indices) that make the new head, in
            order (DYNO's Imagenette setting); must have ``num_classes`` entries.
        batch_norm: VGG11-BN (BatchNorm after every conv), torchvision's ``vgg11_bn``.
        width_multiplier: Scales every conv width (64, 128, 256, 512) for small test networks (at least 1).
        classifier_width: Width of the two hidden Linear layers (torchvision: 4096).
        dropout: Dropout probability of the classifier.

    Raises:
        ValueError: A missing or unreadable weights file, one that is not a state dict of tensors, or one whose
            keys or shapes do not match (the message names ``weights_path`` and the mismatch); bad option values.

    """
    c, h, w = _image_shape(input_shape, "vgg11")
    if not float(width_multiplier) > 0:
        raise ValueError(f"width_multiplier={width_multiplier!r} is not allowed; expected a positive number")
    if int(classifier_width) < 1:
        raise ValueError(f"classifier_width={classifier_width!r} is not allowed; expected a positive int")
    if head_classes is not None and weights_path is None:
        raise ValueError("head_classes is only allowed with weights_path (it picks rows of the loaded head)")
    if head_classes is not None and len(head_classes) != num_classes:
        raise ValueError(
            f"head_classes has {len(head_classes)} entries; expected num_classes={num_classes} class indices"
        )
    model = _vgg11_body(
        (c, h, w), bool(batch_norm), float(width_multiplier), int(classifier_width), dropout, weights_path is None
    )
    if weights_path is None:
        model.classifier[6] = _vgg_head(model.classifier[6], num_classes)
        return model
    _load_state_dict(model, weights_path)
    model.classifier[6] = _new_head(model.classifier[6], num_classes, head_classes)
    return model


def _vgg11_body(
    shape: tuple[int, int, int], batch_norm: bool, width: float, hidden: int, dropout: float, init: bool
) -> nn.Module:
    """Torchvision's VGG (1000 outputs) with the widths, input channels and pooling mode this input needs."""
    from sparsity_gym.core.torchvision_compat import import_torchvision

    tv = import_torchvision()
    c, h, w = shape
    config = [v if v == "M" else max(1, round(int(v) * width)) for v in VGG11_CONFIG]
    features = tv.models.vgg.make_layers(config, batch_norm=batch_norm)
    if c != 3:
        features[0] = nn.Conv2d(c, features[0].out_channels, 3, padding=1)
    if min(h, w) < 32:
        for module in features:
            if isinstance(module, nn.MaxPool2d):
                module.ceil_mode = True
    # torchvision's VGG class and forward; its own 25088 x 4096 classifier is built on the meta device (no
    # memory, no initialisation cost) and replaced by one of the requested widths, laid out the same way
    with torch.device("meta"):
        model = tv.models.vgg.VGG(nn.Sequential(), num_classes=1000, init_weights=False, dropout=dropout)
    model.features = features
    model.classifier = nn.Sequential(
        nn.Linear(int(config[-2]) * 7 * 7, hidden),
        nn.ReLU(True),
        nn.Dropout(p=dropout),
        nn.Linear(hidden, hidden),
        nn.ReLU(True),
        nn.Dropout(p=dropout),
        nn.Linear(hidden, 1000),
    )
    if init:  # torchvision's VGG initialisation
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)
    return model


def _new_head(old: nn.Linear, num_classes: int, head_classes: Sequence[int] | None) -> nn.Linear:
    """A fresh Linear for ``num_classes`` (torch's default init), or the loaded head's rows ``head_classes``."""
    new = nn.Linear(old.in_features, num_classes)
    if head_classes is not None:
        rows = torch.as_tensor([int(i) for i in head_classes], dtype=torch.long)
        if bool((rows < 0).any()) or bool((rows >= old.out_features).any()):
            raise ValueError(
                f"head_classes={list(head_classes)!r} is not allowed; expected indices in [0, {old.out_features})"
            )
        with torch.no_grad():
            new.weight.copy_(old.weight[rows])
            new.bias.copy_(old.bias[rows])
    return new


def _vgg_head(old: nn.Linear, num_classes: int) -> nn.Linear:
    """Torchvision's own initialisation of the last Linear, for ``num_classes`` outputs."""
    if old.out_features == num_classes:
        return old
    new = nn.Linear(old.in_features, num_classes)
    nn.init.normal_(new.weight, 0, 0.01)
    nn.init.constant_(new.bias, 0)
    return new


def _load_state_dict(model: nn.Module, weights_path: str | Path) -> None:
    """Load a local state dict into ``model``; every failure is a ``ValueError`` naming ``weights_path``."""
    path = Path(weights_path)
    if not path.is_file():
        raise ValueError(f"weights_path={str(weights_path)!r} is not allowed: no such file (nothing is downloaded)")
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise ValueError(
            f"weights_path={str(weights_path)!r} could not be read as a torch state dict ({type(exc).__name__}: "
            f"{exc}); expected a file written by torch.save(model.state_dict(), path)"
        ) from exc
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(
            f"weights_path={str(weights_path)!r} holds {type(state).__name__}, not a state dict of tensors; expected "
            "a file written by torch.save(model.state_dict(), path)"
        )
    head = state.get("classifier.6.weight")
    if head is not None and head.dim() == 2 and head.shape[0] != model.classifier[6].out_features:
        model.classifier[6] = nn.Linear(model.classifier[6].in_features, int(head.shape[0]))  # the file's classes
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        detail = "; ".join(
            part
            for part in (
                f"missing keys {_few(missing)}" if missing else "",
                f"unexpected keys {_few(unexpected)}" if unexpected else "",
                "shape mismatch "
                + ", ".join(f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}" for k in wrong[:3])
                if wrong
                else "",
            )
            if part
        )
        raise ValueError(
            f"weights_path={str(weights_path)!r} does not match this vgg11 ({detail}); expected a state dict of "
            "the same architecture (batch_norm, width_multiplier, classifier_width and input channels)"
        )
    model.load_state_dict(state, strict=True)


def _few(keys: list[str]) -> str:
    return repr(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
