"""FLOPs of the active network, by one documented convention.

* Inference: 2 FLOPs per active multiply-accumulate, ``2 * P * (active weights)`` per layer and sample, with
  P the layer's output positions (1 for Linear, L_out for Conv1d, h_out * w_out for Conv2d). Biases,
  activations, pooling and normalisation are not counted; only prunable layers are.
* Training, per optimizer step: ``3 * B * inference`` (the forward pass, and a backward pass costing twice the
  forward: one product for the input gradient, one for the weight gradient), summed over the episode's steps.
"""

from __future__ import annotations

from collections.abc import Sequence

from sparsity_gym.masks.freezing import RowFreezer
from sparsity_gym.masks.layer_mask import LayerMask


def layer_inference_flops(layer: LayerMask) -> int:
    """Inference FLOPs of one layer for one sample, counting only active weights."""
    return 2 * layer.info.output_positions * layer.active_weights()


def inference_flops(layers: Sequence[LayerMask]) -> int:
    """Inference FLOPs of the active network for one sample (sum over prunable layers)."""
    return sum(layer_inference_flops(m) for m in layers)


def dense_inference_flops(layers: Sequence[LayerMask]) -> int:
    """Inference FLOPs of the same network with every weight active."""
    return sum(2 * m.info.output_positions * m.info.num_weights for m in layers)


def training_step_flops(inference: int, batch_size: int) -> int:
    """FLOPs of one optimizer step: forward plus a backward of twice the forward, over the batch."""
    return 3 * batch_size * inference


def step_costs(
    layers: Sequence[LayerMask], inference: int, batch_size: int, freezer: RowFreezer | None
) -> tuple[int, int]:
    """FLOPs of one optimizer step of the active network, and the backward FLOPs its frozen neurons save.

    ``layers`` are the controlled layers (the freezer's, in order), ``inference`` the active network's inference
    FLOPs per sample. Frozen neurons save their weight gradients: ``2·B·P·F`` each (CRITERIA §4's convention,
    :meth:`RowFreezer.saved_backward_flops <sparsity_gym.masks.freezing.RowFreezer.saved_backward_flops>`).
    """
    step = training_step_flops(inference, batch_size)
    if freezer is None:
        return step, 0
    positions = {i: m.info.output_positions for i, m in enumerate(layers)}
    saved = freezer.saved_backward_flops(batch_size, positions)
    return step - saved, saved
