"""What the probe measured: plain records, no tensors, no modules, no formatting.

Floats may be NaN or infinite here; `nonfinite` counts them and only the JSON renderer
turns them into null.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gradcheck_cli.records.headroom import LrHeadroom
from gradcheck_cli.records.measures import Measures
from gradcheck_cli.records.precision import Fp16Underflow as Fp16Underflow  # re-exported
from gradcheck_cli.records.precision import LayerUnderflow as LayerUnderflow  # re-exported
from gradcheck_cli.records.precision import PrecisionHeadroom
from gradcheck_cli.records.trained import AttentionStats, CellGateSaturation, CheckpointInfo, Versus

if TYPE_CHECKING:
    from gradcheck_cli.records.history import History


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceRef:
    """Where a module is defined in the user's code."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelInfo:
    class_name: str
    parameters: int
    trainable: int
    device: str
    dtype: str
    dtype_reason: str | None = None
    """Why the analysis ran in `dtype` when a checkpoint's trained precision decided it."""
    found_by: str = "explicit"
    """How the model was found: explicit, build_model, model-instance, single-subclass, builtin."""
    init_args: dict[str, object] = field(default_factory=dict)
    """Constructor arguments the tool supplied (from --init, --arch-opt or a call form)."""
    source: SourceRef | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunInfo:
    batches: int
    steps: int
    seed: int
    loss: str
    loss_reason: str = ""
    """Why `loss` was chosen (shown in the report)."""
    inputs: tuple[str, ...] = ()
    """The input shapes, e.g. ('float:32x784',), as fed to forward."""
    seconds: float = 0.0
    input_origin: str = ""
    """Where the inputs came from and why (e.g. the spatial size chosen after others failed)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerStats:
    """Measurements of one parameter-owning module, aggregated over batches (median)."""

    name: str
    type: str
    index: int
    """Forward execution order (first call)."""
    parameters: int
    trainable: bool
    grad_norm: float
    """L2 norm of the gradient of this module's own parameters."""
    weight_norm: float
    grad_weight_ratio: float
    act_grad_rms: float
    """RMS of dL/d(output of this module)."""
    act_grad_norm: float
    """L2 norm of dL/d(output of this module)."""
    zero_grad_fraction: float
    """Fraction of this module's parameter-gradient elements that are exactly zero."""
    nonfinite: int
    """Non-finite gradient elements (parameters and output), summed over batches."""
    calls: int = 1
    """Times the module ran in one forward."""
    width: int = 0
    """Elements per sample of the module's output (for like-with-like comparisons)."""
    spatial: tuple[int, ...] = ()
    """Spatial size of a convolution's output (compared only within one resolution)."""
    role: str = ""
    """The name with block indices replaced by '#'."""
    kind: str = "other"
    """weight (Linear/Conv/recurrent/embedding), norm, or other."""
    shared_with: str | None = None
    """First owner of tied parameters, if this module's parameters are tied."""
    has_grad: bool = True
    """False when trainable parameters got no gradient (grad stayed None)."""
    hooked: bool = True
    """False when the module never ran in forward (its hooks never fired)."""
    measured: bool = True
    """False when the output-gradient hook never fired although the parameters got a gradient:
    act_grad_norm is then NaN ("not-measured"), never 0."""
    features: int = 0
    """Size of the output's feature dimension (out_features / out_channels; the last dimension)."""
    init_scale: float = float("nan")
    """RMS of the weight times sqrt(fan-in): ~0.58 at PyTorch's default init, ~1.4 at He init."""
    gated_by: str | None = None
    """The zero-initialised parameter downstream whose value closes this layer's gradient path."""
    open_act_grad_norm: float = float("nan")
    """For a gated layer: dL/d(output) norm per unit of learning rate once its gate takes its first
    SGD step (after one step at lr η the output gradient is about η times this)."""
    gate_width: int = 0
    """For a gated layer: the number of elements of its gate (a BatchNorm gain's channels). Gated
    layers compare only with layers behind gates of the same width: one stage of a staged model."""
    batch_act_grad_norm: tuple[float, ...] = ()
    """act_grad_norm per batch, for spread."""
    source: SourceRef | None = None
    measures: Measures = Measures()
    """The registered per-layer measurements (measure/measurements.py) that rules read by name."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivationStats:
    """Unit statistics of one activation module (ReLU family, sigmoid, tanh)."""

    name: str
    type: str
    family: str
    """relu, sigmoid or tanh."""
    after: str | None
    """The parameter-owning layer that ran just before it."""
    units: int
    dead_fraction: float
    """Fraction of units never positive on any sample of any batch (ReLU family)."""
    saturated_fraction: float
    """Fraction of outputs whose local derivative is below the saturation threshold."""
    observations: int = 0
    """Values each unit was observed on (samples x positions, all batches; the fewest over calls)."""
    unobserved_fraction: float = 0.0
    """Fraction of units whose input never varied (e.g. exactly 0 behind a closed gate): not dead."""
    mean_gain: float = float("nan")
    """Saturating family: mean local derivative relative to its maximum (the factor by which the
    activation scales the gradient passing through it; 1 at the linear point)."""
    source: SourceRef | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ThroughTime:
    """Gradient reaching each time step's input from a loss on the last step only."""

    module: str
    type: str
    steps: int
    curve: tuple[float, ...]
    """Gradient norm at each step's input, divided by the last step's (last = 1)."""
    per_step_factor: float
    horizon: int
    """Steps back from the last over which the gradient stays above the horizon floor."""
    horizon_floor: float
    hidden_size: int = 0
    input_size: int = 0
    num_layers: int = 1
    batch_first: bool = False
    source: SourceRef | None = None
    gate_bias: float | None = None
    """GRU update / LSTM forget gate: mean bias (bias_ih + bias_hh) of the first layer."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Divergence:
    """The first --steps step at which the loss, an output, a gradient or a weight went non-finite."""

    step: int
    """1-based: the step that went non-finite (training stopped there; weights are those before it)."""
    loss: float
    forward_layer: str | None = None
    """The first module (in forward order) whose output was non-finite at that step."""
    gradient_layers: tuple[str, ...] = ()
    """Modules whose parameter gradient was non-finite at that step (module order)."""
    weight_layers: tuple[str, ...] = ()
    """Modules whose weights the update made non-finite at that step."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingHistory:
    """What --steps K did: the loss and each layer's gradient norm at every optimizer step."""

    optimizer: str
    lr: float
    loss: tuple[float, ...]
    grad_norms: dict[str, tuple[float, ...]]
    """Layer name -> L2 norm of its own parameters' gradient at each step (NaN: no gradient)."""
    update_ratios: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """Layer name -> ||weight change|| / ||weight before|| at each step."""
    total_grad_norm: tuple[float, ...] = ()
    """The whole model's gradient norm at each step, before clipping."""
    optimizer_source: str = ""
    """Where the optimizer came from: configure_optimizers(), the checkpoint, or --optimizer."""
    optimizer_state: str = ""
    """What happened to a checkpoint's optimizer state (loaded, or why not)."""
    clip: float | None = None
    steps_planned: int = 0
    divergence: Divergence | None = None
    """Set when a step went non-finite; the finite steps before it are the ones recorded."""
    loop: str = "gradcheck's loop"
    """Which loop trained: "train_step() in the model file" (the user's) or "gradcheck's loop"."""
    scheduler: str | None = None  # the learning-rate scheduler's class, when one was stepped
    lrs: tuple[float, ...] = ()
    """The largest param-group learning rate each recorded step was taken with."""
    initial_lr: float | None = None
    """The learning-rate schedule's starting rate (a torch scheduler's 'initial_lr' in the
    optimizer's param groups, kept in a checkpoint's optimizer state); None without one."""
    scaler_skips: int = 0
    """Steps of the model file's train_step() that a GradScaler skipped (inf/NaN gradients, no
    optimizer.step()): its scale settling; not recorded as steps."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ZeroGainStats:
    """A zero-initialised (or tiny) parameter that closes the gradient path of the layers behind it."""

    name: str
    """The parameter, e.g. layer1.0.bn2.weight."""
    module: str
    value: float
    """Its largest absolute value."""
    grad_norm: float
    """Its own gradient's L2 norm at init: > 0, the first step opens it; 0, it is stuck."""
    stuck: bool
    layers: tuple[str, ...] = ()
    """The layers whose output gradient it closes."""
    opens_at_step: int = 1
    """1: its own gradient is non-zero at init; 2: it is zero at init and non-zero once the gates in
    front of it have taken their first step (a chain of two gains); 0: stuck."""
    size: int = 0
    """Its number of elements (the channels of a BatchNorm gain): gates of one stage share it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LeftOutOutputs:
    """Float outputs the loss does not use, and the modules that feed only them (read off the graph)."""

    outputs: tuple[str, ...]
    """Their names in the output: 'aux', 'output[1]'."""
    modules: tuple[str, ...]
    """Modules whose parameters reach those outputs and not the loss: no gradient, by the loss's choice."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeResult:
    model: ModelInfo
    run: RunInfo
    layers: tuple[LayerStats, ...]
    activations: tuple[ActivationStats, ...] = ()
    through_time: tuple[ThroughTime, ...] = ()
    has_normalization: bool = False
    """The model contains BatchNorm/LayerNorm/GroupNorm-style layers."""
    loss_value: float = float("nan")
    fp16_underflow: Fp16Underflow | None = None
    """Only under --dtype float16."""
    precision: PrecisionHeadroom | None = None
    """--precision: each layer's headroom in each number format asked for."""
    nonfinite_op: str | None = None
    """The forward operation whose backward first turned a gradient non-finite (anomaly re-run)."""
    nonfinite_source: SourceRef | None = None
    """Where the user's code called that operation."""
    training: TrainingHistory | None = None
    """Set when --steps trained the model before the measured passes."""
    gates: tuple[ZeroGainStats, ...] = ()
    """Zero-initialised parameters closing gradient paths (see gradcheck_cli/measure/zero_gains.py)."""
    has_residual: bool | None = None
    """The autograd graph holds a skip connection (x + f(x)); None when not looked at."""
    history: History | None = None
    """The measured steps of a training run up to and including this one (GradientMonitor and
    the integrations set it; `gradcheck report` reads it from a file). The trend rules need it;
    a single analysis has none, so they stay silent there."""
    checkpoint: CheckpointInfo | None = None
    """Set when --weights loaded a checkpoint before anything was measured."""
    gate_saturation: tuple[CellGateSaturation, ...] = ()
    """Gate saturation of each nn.LSTM/nn.GRU, recomputed from its weights on the first batch."""
    attention: tuple[AttentionStats, ...] = ()
    """Attention probabilities per site on the first batch (MultiheadAttention, scaled_dot_product_attention)."""
    versus: Versus | None = None
    """Set under --versus: the reference state measured with the same batches, paired layer by layer."""
    left_out: LeftOutOutputs | None = None
    """Set when the output holds float tensors the loss leaves out."""
    lr_headroom: LrHeadroom | None = None
    """Set under --lr-headroom: the runs at each learning-rate multiplier and the limit."""
