"""The training run of a network as a Gymnasium environment."""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

from sparsity_gym.core.checks import check_fields
from sparsity_gym.core.threads import limit_threads_if_forked
from sparsity_gym.datasets import DatasetSplits, load_dataset
from sparsity_gym.env.env_config import EnvConfig, field_names
from sparsity_gym.env.episode import Episode, seeded_network
from sparsity_gym.env.interop import check_network_fits, copy_state, mid_episode_copy_error, render_densities
from sparsity_gym.env.tasks import task_env_kwargs
from sparsity_gym.env.training import TrainingLoop, resolve_device
from sparsity_gym.masks.freezing import RowFreezer
from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.models.layers import LayerCache
from sparsity_gym.observation.observers import Observer
from sparsity_gym.pruning.pruner import Pruner

METADATA: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 4}


class SparsityEnv(gym.Env[np.ndarray, np.ndarray]):
    """Prune a network while it trains: one episode is one full training run.

    ## Description

    The environment trains a network (a zoo name or a user factory, see :class:`EnvConfig`) on a classification
    dataset for ``total_iterations`` optimizer steps. Every ``decision_interval`` steps the agent sets the
    density of each prunable layer (``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d``, found by walking the module;
    at neuron granularity the output layer is excluded). The selector decides *which* units go, the regrowth rule how
    units return (CRITERIA §5: random or magnitude pruning, random regrowth with zero weights and zero optimizer
    state). After every optimizer step each layer holds exactly ``max(1, round(d * n))`` active units and
    inactive weights are exactly zero (:mod:`sparsity_gym.masks`). An episode is the pruning driver
    :class:`sparsity_gym.pruning.Pruner` (without a policy) stepped by the env's own training loop after every
    optimizer step; ``step(action)`` is one call of its ``decide(action)``, so a user's loop that steps a
    ``Pruner`` with the same policy, seed, batches and optimizer plays the same episode.

    Selectors (*which* units): ``magnitude``, ``random``, ``snr`` (smoothed gradient SNR, CRITERIA §1),
    ``redundancy`` (DYNO: dormant first, then greedy cosine, §2), ``contribution`` (§3), ``equilibrium``
    (NEq velocity, §4). Regrowth (*how* units return): ``random``, ``none``, ``north`` (NORTH-Select fan-ins
    with zero fan-out, bias and optimizer state, §2) or ``feedback`` (DPF, §1: the dense weights keep training
    under the mask and every update re-selects among all units). With ``capacity > 1`` hidden layers are built
    wider and start with the spare units inactive, so they can grow. ``burn_in_epochs`` and ``loss_hold`` let
    decisions leave the masks as they are (``info["mask_update"]``: ``applied``, ``burn_in`` or ``loss_hold``).

    ## Action Space

    ``Box(-1, 1, shape=(L,), float32)``, one value per controlled layer, in the order of
    ``env.unwrapped.layer_names``. With ``action_mode="density"`` the value ``a`` maps affinely onto
    ``[min_density, max_density]``: ``d = min_density + (a + 1) / 2 * (max_density - min_density)``; with
    ``action_scale="log"`` log-affinely, ``log d = log min_density + (a + 1) / 2 * log(max_density / min_density)``
    (equal steps are equal density ratios; the MNIST tasks use it over [0.001, 1]).
    With ``action_mode="threshold"`` it maps onto the selector's threshold range instead
    (``sparsity_gym.masks.threshold_range``: magnitude |w|/RMS in [0, 3], random in [0, 1], equilibrium
    log10 |v| in [-6, 0], contribution score/mean in [0, 2], snr log10 SNR in [-2, 2]) and the active units
    whose score reaches the threshold stay active (prune: at least one per layer, never regrown) or trainable
    (freeze). Under ``regrowth="feedback"`` every unit whose score passes is active, so units return; the
    ``snr`` selector has its own rule, ``keep = snr > 10**t OR global magnitude of the same sparsity``.
    When ``target_density`` is set, the last decision of the episode is projected onto the budget, in every
    action mode, so every policy, learned or fixed, ends on it. ``budget="layer"``: every layer at
    ``target_density``. ``budget="global"`` (or ``"flops"``): the policy's last per-layer densities are scaled by
    one factor onto ``target_density`` times the dense weights (inference FLOPs), water-filling within each
    layer's bounds [one unit, all units], with exact unit counts and largest-remainder rounding
    (:mod:`sparsity_gym.pruning.projection`); the final global density (FLOPs fraction) is the target to one unit
    and the allocation across layers stays the policy's. In threshold mode the last decision's thresholds are
    read as the densities they would leave, and those are projected (under ``layer`` every layer then ends at
    the target too). With ``allocation`` set to a rule (``uniform``, ``er``, ``erk``, ``lamp``,
    ``global_magnitude``; :mod:`sparsity_gym.masks.allocation`, density mode) every decision's densities are
    reduced to their parameter-weighted mean and shared out across the layers by the rule before the budget's
    projection; ``info["allocation"]`` holds the per-layer densities the rule and the projection produced.
    ``allocation_tilt=True`` keeps the request's shape as a residual on the rule: each layer's rule density times
    its requested density over the request's weighted mean, water-filled back onto the requested global density
    (a uniform request is the rule exactly).
    With ``effect="freeze"`` (neuron granularity) nothing is pruned: the units an action leaves out keep their
    forward pass but their fan-in rows and biases stay bit-identical through every optimizer step
    (:class:`sparsity_gym.masks.freezing.RowFreezer`), and thaw at a later decision. Non-finite or out-of-range
    values are clipped (NaN keeps the layer's current density) and counted in ``info["invalid_actions"]``; an
    action of the wrong shape raises ``ValueError``.

    ## Observation Space

    ``Box(shape=(L, F), float32)``: row ``l`` describes layer ``l``; the global features are repeated on every
    row, so a policy with weights shared across rows acts on networks of any depth. Columns
    (``env.unwrapped.layout.columns`` maps names to indices; statistic families named in ``observations`` are
    inserted before the global features):

    | Column            | Family       | Meaning                                                  | Range   |
    |-------------------|--------------|----------------------------------------------------------|---------|
    | relative_depth    | static       | layer index / (number of prunable layers - 1)            | [0, 1]  |
    | is_conv           | static       | 1 for Conv1d and Conv2d, 0 for Linear                    | {0, 1}  |
    | is_output         | static       | 1 for the output layer                                   | {0, 1}  |
    | log_fan_in        | static       | ln(fan-in) / 10                                          | [0, 2]  |
    | log_fan_out       | static       | ln(output units) / 10                                    | [0, 2]  |
    | param_share       | static       | the layer's weights / all prunable weights               | [0, 1]  |
    | density           | state        | active units / units                                     | [0, 1]  |
    | target_density    | state        | the episode's target density, -1 when none is set        | [-1, 1] |
    | snr_above_one     | snr          | fraction of active weights with smoothed SNR > 1         | [0, 1]  |
    | snr_log_mean      | snr          | mean log10(1 + smoothed SNR) / 4 over active weights     | [0, 3]  |
    | rank_ed           | rank         | effective dimension φ_ED = E / N of the post-activations | [0, 1]  |
    | rank_active_share | rank         | E / active units                                         | [0, 1]  |
    | contribution_q10  | contribution | 10% quantile of C_avg / its mean (active units)           | [0, 10] |
    | contribution_q50  | contribution | median of C_avg / its mean (active units)                 | [0, 10] |
    | eq_similarity     | equilibrium  | mean NEq similarity φ of active neurons                  | [0, 1]  |
    | eq_log_velocity   | equilibrium  | (log10(mean abs velocity + 1e-6) + 6) / 6                | [0, 1]  |
    | eq_frozen_share   | equilibrium  | fraction of active neurons at equilibrium (abs v < 1e-3) | [0, 1]  |
    | progress          | global       | optimizer steps done / total_iterations                  | [0, 1]  |
    | train_loss        | global       | mean training loss over the last interval / ln(classes)  | [0, 10] |
    | val_accuracy      | global       | validation accuracy                                      | [0, 1]  |
    | global_density    | global       | active weights / weights over all prunable layers        | [0, 1]  |
    | flops_fraction    | global       | inference FLOPs / dense inference FLOPs                  | [0, 1]  |

    The statistic families (CRITERIA §1–§4, :mod:`sparsity_gym.observation.observers`) are computed over each
    layer's active
    units: SNR, effective rank and contribution from the last ``stats_window`` training steps of each interval,
    equilibrium from the validation pass at each decision; they are 0 until first measured. Before the first
    step ``train_loss`` is the validation loss of the fresh network. Every value is finite and clipped into the
    declared bounds.

    ## Rewards

    ``reward="final_accuracy"`` (default): 0 at every step but the last, where it is the validation accuracy
    minus ``density_cost * global_density`` minus ``flops_cost * flops_fraction``. ``"delta_accuracy"``: the
    change of validation accuracy at every step (summing to final minus initial accuracy), with the same costs
    at the last step. A step at which training diverged earns ``divergence_reward``.

    ## Starting State

    ``reset(seed=...)`` builds a fresh instance of the network (a new initialisation), a fresh optimizer and the
    data order from the seed; every layer starts dense. All randomness comes from ``self.np_random`` and a
    ``torch.Generator`` seeded from it; the global torch generator is only used inside ``fork_rng`` to initialise
    the network, and is restored afterwards. With ``initial_state`` the seeded build is then loaded from a
    pre-trained state (fine-tuning episodes); with ``capacity > 1`` it is widened after that.

    ## Episode End

    Truncation after ``total_iterations / decision_interval`` steps (the training budget is spent);
    ``info["test_accuracy"]`` is then set. With a ``target_density`` the episode ends on the budget: every layer
    at the target (``budget="layer"``), or the global density (``"global"``) or the inference-FLOPs fraction
    (``"flops"``) within one unit of it, whatever the policy and the action mode. Termination only when the
    training loss becomes non-finite (divergence). The dataset split is fixed by ``data_seed``: the test set
    never changes between episodes.

    The registered id carries this horizon: ``gym.make`` wraps the env in ``TimeLimit`` at
    ``config.num_decisions`` steps (``env.spec.max_episode_steps``), which coincides with the env's own end.
    A shorter outside limit (``gym.make(..., max_episode_steps=k)``, a ``TimeLimit`` wrapper) cuts the
    training run short, and the env cannot see it: that last step is an ordinary decision. Its ``info`` holds
    what is known then (``val_accuracy``, ``density``, ``flops``, ``iteration``, and ``decision`` <
    ``num_decisions``), but not ``test_accuracy``, no projection onto ``target_density`` has happened, and the
    ``final_accuracy`` reward, paid only at the env's own end, is never paid (the return is 0);
    ``delta_accuracy`` pays as it goes, so its return is then the validation accuracy gained so far. The
    episode is over for its client then: a copy of the env is exact (see Clients) and the next call is
    ``reset()``.

    ## Info

    ``density`` (global, parameter-weighted), ``layer_densities``, ``target_density``,
    ``requested_densities`` (this step's densities after clipping and projection), ``allocation`` (the
    per-layer densities the allocation rule and the projection produced at this step: the requested densities
    under ``allocation="policy"``, the current ones at a threshold decision before the last), ``val_accuracy``,
    ``train_loss``, ``flops`` (inference FLOPs per sample of the active network), ``dense_flops``,
    ``base_dense_flops`` (those of the network before ``capacity`` widened it: what FLOPs fractions compare to),
    ``training_flops`` (summed over the episode so far, frozen neurons' weight gradients excluded),
    ``saved_backward_flops`` (those, summed: 2·B·P·F per frozen neuron and step), ``frozen_fraction``,
    ``invalid_actions``, ``mask_update``, ``iteration``, ``diverged``, and at the end ``test_accuracy``. In
    threshold mode ``requested_densities`` holds the thresholds (the projected densities at the last decision).

    ## Arguments

    ``gym.make("SparsityGym/Schedule-v0", **fields)`` with any field of :class:`EnvConfig` (network, dataset,
    target_density, granularity, selector, regrowth, total_iterations, decision_interval, batch_size, ...), or
    ``SparsityEnv(config=EnvConfig(...))``. ``task="mnist1d_mlp"`` (a name of :data:`sparsity_gym.env.tasks.TASKS`)
    takes a named benchmark task's settings as the defaults; the other keywords override them (``network`` may then
    be a sized name such as ``"mlp_512"``). An unknown field raises ``UnknownFieldError`` (a ``TypeError`` and a
    ``ValueError``) naming the closest field. The network is checked before anything else is built: a zoo name
    or a user factory that cannot be built for the dataset, or whose network cannot take the dataset's inputs
    or does not return one logit per class, raises ``ValueError`` naming ``network``, the dataset's input shape
    and the original message; a sized name (``"mlp_512"``) without ``task=`` points to ``network_kwargs``.
    ``render_mode`` is ``None`` or ``"rgb_array"`` (what stable-baselines3's ``make_vec_env`` passes):
    :meth:`render` then draws the layers' densities.

    ## Clients

    Gymnasium's vector envs (``AsyncVectorEnv`` with its default ``fork`` context too: an env built in a forked
    child uses one torch thread, :mod:`sparsity_gym.core.threads`), SB3's ``make_vec_env``/``SubprocVecEnv``.
    ``copy.deepcopy``, ``pickle`` and ``cloudpickle`` work at any time: the copy is rebuilt from the config (and
    the data passed in, if any) with the same random stream, so its next ``reset()`` plays the episode the
    original's next ``reset()`` would. Taken between episodes (before the first ``reset()``, once the episode
    ended, or once an outside ``TimeLimit`` truncated it, which the env cannot see) the copy is exact. A copy
    taken in the middle of an episode cannot continue it (its network, optimizer state, masks and statistics
    live in hooks a copy would not enforce): its ``step()`` before a ``reset()`` raises ``TypeError`` saying how
    to rebuild the env. ``step()`` after ``close()`` raises ``RuntimeError``; ``reset()`` builds everything anew.
    """

    metadata: dict[str, Any] = METADATA

    def __init__(
        self,
        config: EnvConfig | None = None,
        render_mode: str | None = None,
        data: DatasetSplits | None = None,
        task: str | None = None,
        **kwargs: Any,
    ) -> None:
        limit_threads_if_forked()  # before any torch operation: a forked child must not enter OpenMP
        check_fields(type(self).__name__, kwargs, (*field_names(), "config", "render_mode", "data", "task"))
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode={render_mode!r} is not allowed; expected None or one of: "
                + ", ".join(repr(m) for m in self.metadata["render_modes"])
            )
        self.render_mode = render_mode
        self._data_given = data is not None
        self._closed = False
        if task is not None:
            if config is not None:
                raise ValueError(f"task={task!r} is not allowed with a config; expected one of them")
            kwargs = task_env_kwargs(task, kwargs)
        self.config = EnvConfig(**kwargs) if config is None else config.replace(**kwargs) if kwargs else config
        self.device = resolve_device(self.config.device)
        if self.config.precision == "float16" and self.device.type != "cuda":
            raise ValueError(
                f"precision='float16' is not allowed on device={self.config.device!r}; expected a cuda device "
                "(use 'bfloat16' on the CPU)"
            )
        if data is None:
            data = load_dataset(self.config.dataset, self.config.data_seed, self.config.data_root)
        elif data.name != self.config.dataset:
            raise ValueError(f"data holds dataset {data.name!r}; expected the config's dataset={self.config.dataset!r}")
        self.data: DatasetSplits = data.to(self.device)
        model = seeded_network(self.config, self.data, 0, self.device)  # the network first, before anything else
        check_network_fits(model, self.data.val_x[:2].cpu(), self.data.num_classes, self.config)
        self._generator = torch.Generator().manual_seed(0)
        self._layer_cache = LayerCache()
        self.episode = Episode(self.config, self.data, self.device, self._generator, self._layer_cache, 0, model)
        self.layer_names = self.episode.pruner.layer_names
        self.layout = self.episode.pruner.layout
        self.observation_space = self.layout.space
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(len(self.layer_names),), dtype=np.float32)
        self._needs_reset = True
        self._copied_at: int | None = None  # the decision at which a mid-episode copy was taken

    # ----------------------------------------------------------------------------------------------- episode
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start a new training run: a new initialisation and data order drawn from the seed."""
        limit_threads_if_forked()  # an env built before a fork and used in the child
        super().reset(seed=seed)
        torch_seed = int(self.np_random.integers(0, 2**62))
        self._generator = torch.Generator().manual_seed(torch_seed)
        self.episode.release()
        self.episode = Episode(self.config, self.data, self.device, self._generator, self._layer_cache, torch_seed)
        names = self.episode.pruner.layer_names
        if names != self.layer_names:
            raise ValueError(
                f"network={self.config.network_name!r} built layers {names} at reset; expected {self.layer_names}: "
                "the network must keep the same prunable layers across resets"
            )
        self.last_val_accuracy, self._reset_loss = self.episode.validate()
        self._needs_reset = self._closed = False
        self._copied_at = None
        return self._observation(), self._info(requested=self.masks.densities)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Apply ``action`` (densities or thresholds), train ``decision_interval`` steps, observe and reward."""
        limit_threads_if_forked()
        self._check_steppable()
        cfg, episode = self.config, self.episode
        requested = episode.pruner.decide(action)
        diverged = not episode.train(cfg.decision_interval)
        previous_accuracy = self.last_val_accuracy
        self.last_val_accuracy, _ = episode.validate()
        truncated = episode.pruner.decision >= cfg.num_decisions and not diverged
        reward = self._reward(previous_accuracy, last=truncated, diverged=diverged)
        info = self._info(requested=requested, diverged=diverged)
        if truncated or diverged:
            info["test_accuracy"] = episode.test_accuracy()
            self._needs_reset = True
        return self._observation(), float(reward), diverged, truncated, info

    def _check_steppable(self) -> None:
        """``RuntimeError`` after ``close()`` or at an episode's end; ``TypeError`` in a copy taken mid-episode."""
        if self._closed:
            raise RuntimeError(
                "step() after close(): the env released its network's hooks; call reset() to build a new episode "
                "or make a new env"
            )
        if self._copied_at is not None:
            raise mid_episode_copy_error(self._copied_at, self.config.num_decisions)
        if self._needs_reset:
            raise RuntimeError("call reset() before step(): the episode has ended or never started")

    def close(self) -> None:
        """Release the hooks of the masks and the observers; ``step()`` then raises until ``reset()``."""
        self.episode.release()
        self._closed = self._needs_reset = True

    def render(self) -> np.ndarray | None:
        """The layers' densities as an RGB array ``(64, 12·L, 3)`` with ``render_mode="rgb_array"``.

        Blue bars, the target density as a red line; ``None`` without a render mode.
        """
        if self.render_mode != "rgb_array":
            return None
        return render_densities(np.array(self.masks.densities), self.config.target_density)

    # ----------------------------------------------------------------------------------------------- copies
    def __getstate__(self) -> dict[str, Any]:
        """The state a copy is rebuilt from (see Clients), and the decision of an unfinished episode, if any."""
        state = copy_state(self, self._data_given)
        state["copied_at"] = None if self._needs_reset else self.decision
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild the env from its config (fresh hooks, enforced masks) and restore its random stream."""
        self.__init__(config=state["config"], render_mode=state["render_mode"], data=state["data"])  # type: ignore[misc]
        self._np_random, self._np_random_seed = state["np_random"], state["np_random_seed"]
        self.spec = state["spec"]
        self._copied_at = state["copied_at"]

    def __deepcopy__(self, memo: dict[int, Any]) -> SparsityEnv:
        """A rebuilt copy (see :meth:`__setstate__`) that shares the read-only dataset tensors."""
        state = copy.deepcopy({k: v for k, v in self.__getstate__().items() if k != "data"}, memo)
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__setstate__({**state, "data": self.data})  # the splits the config loads, without reading them again
        new._data_given = self._data_given
        return new

    # ----------------------------------------------------------------------------------------------- parts
    @property
    def pruner(self) -> Pruner:
        """The episode's pruning driver (masks, statistics, decisions, counters)."""
        return self.episode.pruner

    @property
    def model(self) -> nn.Module:
        """The episode's network."""
        return self.episode.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The episode's optimizer."""
        return self.episode.optimizer

    @property
    def loop(self) -> TrainingLoop:
        """The episode's training loop (seeded batches, optimizer steps, evaluation passes)."""
        return self.episode.loop

    @property
    def masks(self) -> MaskedNetwork:
        """The episode's masks."""
        return self.episode.pruner.masks

    @property
    def observers(self) -> dict[str, Observer]:
        """The episode's observers by statistic name."""
        return self.episode.pruner.observers

    @property
    def freezer(self) -> RowFreezer | None:
        """The episode's row freezer (``effect="freeze"``), else ``None``."""
        return self.episode.pruner.freezer

    @property
    def iteration(self) -> int:
        """Optimizer steps done in this episode."""
        return self.episode.pruner.iteration

    @property
    def decision(self) -> int:
        """Decisions (env steps) done in this episode."""
        return self.episode.pruner.decision

    @property
    def progress(self) -> float:
        """Optimizer steps done / total_iterations."""
        return self.episode.pruner.progress

    @property
    def num_classes(self) -> int:
        """Classes of the dataset."""
        return self.data.num_classes

    @property
    def last_train_loss(self) -> float:
        """The mean training loss of the last interval (the validation loss of the fresh network at reset)."""
        loss = self.episode.pruner.train_loss
        return self._reset_loss if loss is None else loss

    def inference_flops(self) -> int:
        """Inference FLOPs per sample of the active network."""
        return self.episode.pruner.inference_flops()

    def density_to_action(self, density: float | np.ndarray) -> np.ndarray:
        """The action that asks for ``density`` (inverse of the action map), clipped to [-1, 1]."""
        return self.episode.pruner.density_to_action(density)

    def threshold_to_action(self, threshold: float | np.ndarray) -> np.ndarray:
        """The action that asks for ``threshold`` on the selector's score scale, clipped to [-1, 1]."""
        return self.episode.pruner.threshold_to_action(threshold)

    def densities_from_action(self, action: np.ndarray) -> np.ndarray:
        """The layer densities ``action`` asks for (validated, clipped; NaN keeps a layer's density)."""
        return self.episode.pruner.decisions.densities_from_action(action)

    # ----------------------------------------------------------------------------------------------- reward
    def _reward(self, previous_accuracy: float, *, last: bool, diverged: bool) -> float:
        cfg = self.config
        if diverged:
            return cfg.divergence_reward
        reward = self.last_val_accuracy - previous_accuracy if cfg.reward == "delta_accuracy" else 0.0
        if last:
            if cfg.reward == "final_accuracy":
                reward = self.last_val_accuracy
            reward -= cfg.density_cost * self.masks.global_density()
            reward -= cfg.flops_cost * self.inference_flops() / self.episode.dense_flops
        return reward

    def _observation(self) -> np.ndarray:
        return self.episode.pruner.observation(self.last_val_accuracy, self.last_train_loss)

    def _info(self, requested: list[float], diverged: bool = False) -> dict[str, Any]:
        return self.episode.info(requested, self.last_val_accuracy, self.last_train_loss, diverged)
