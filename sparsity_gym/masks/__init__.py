"""Masks: which units of each prunable layer are active, and how they change (CRITERIA §5).

Modules: :mod:`~sparsity_gym.masks.layer_mask` (one layer), :mod:`~sparsity_gym.masks.masked_network` (the
network), :mod:`~sparsity_gym.masks.selectors` (*which* units go), :mod:`~sparsity_gym.masks.regrowth` (*how*
they return), :mod:`~sparsity_gym.masks.optimizer_state`, :mod:`~sparsity_gym.masks.freezing` (NEq's frozen
rows), :mod:`~sparsity_gym.masks.compaction` (a pruned network made small) and
:mod:`~sparsity_gym.masks.allocation` (how a global density is shared out across layers: uniform, ER, ERK,
LAMP, global magnitude).

The mask contract, one for every method:

* A *unit* is a weight (granularity ``weight``) or a neuron / conv output channel (granularity ``neuron``).
  A layer at density d holds exactly ``k = max(1, round(d * n))`` active units after every mask update.
* Masks are enforced on the parameters themselves, so parameters keep their identity (the optimizer built
  before the masks keeps working): inactive weights are set to exactly zero when a mask changes and again by
  an optimizer *step post-hook* after every ``optimizer.step()``, whoever calls it. The forward pass therefore
  sees exact zeros with no per-forward cost.
* At neuron granularity an inactive neuron's fan-in row and bias are zero, and so are the matching fan-out
  columns of every successor layer (the layers that consume its output, from the traced data-flow graph of
  :mod:`sparsity_gym.models.graph`, or the next layer in module order when the shapes chain if tracing failed; see
  :func:`successor_columns`), so the neuron is removed exactly whatever the activation function or BatchNorm in
  between. The output layer, and every layer whose output enters a residual addition
  (``LayerInfo.neuron_prunable`` False), is never pruned at neuron granularity.
* *Which* units go is a selector's score (lowest go first, ties: the lower index goes first); *how* units
  return is a regrowth rule. Both are registries of specs:
  :mod:`sparsity_gym.masks.selectors` / :mod:`sparsity_gym.masks.regrowth`.
* A regrown unit starts with optimizer state zero (every per-parameter state tensor of the parameter's shape:
  momentum buffers, Adam moments). A regrown *weight* starts at 0. A regrown *neuron* starts with a freshly
  drawn fan-in (uniform with bound 1/sqrt(fan_in), torch's default Linear/Conv2d bound), bias 0 and zero
  fan-out: the network's function is unchanged at the moment of regrowth (CRITERIA §5's "weight 0"), while the
  neuron can still learn (a neuron with an all-zero fan-in behind a ReLU would never receive a gradient).
* Exchange fraction f > 0: every update also drops ``round(f * k)`` more active units by the selector and
  regrows as many at random, chosen among units that were not dropped in this update (if enough exist).
* Regrowth ``feedback`` is DPF (Lin et al. 2019; CRITERIA §1, the SNR method's default): the network keeps
  its dense weights θ. Forward and backward see ``θ ⊙ mask`` (the parameter holds exactly that between
  steps), an optimizer *step pre-hook* puts θ back so the step updates the dense θ, pruned weights included,
  with the gradient taken at the masked weights, and the post-hook stores θ and masks again. Every mask update
  re-selects among *all* units (the ``k`` best by the selector's score on θ), so a pruned unit returns with
  its θ and its optimizer state, untouched. ``feedback_updates_pruned=False`` is the paper's §5.3 option:
  pruned weights keep their θ through the step (no update).
* Explicit state: :meth:`MaskedNetwork.state_dict <sparsity_gym.masks.masked_network.MaskedNetwork.state_dict>`
  holds what changes during an episode (unit and input-column masks, DPF's dense θ, the generator) and
  :meth:`RowFreezer.state_dict <sparsity_gym.masks.freezing.RowFreezer.state_dict>` the frozen rows; loaded after
  the model's and the optimizer's own state, they resume exactly, and a state of another network is refused.
"""
