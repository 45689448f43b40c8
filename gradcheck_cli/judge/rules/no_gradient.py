"""no-gradient: trainable parameters that receive no gradient."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_cli.judge.rules.base import rule
from gradcheck_cli.judge.rules.profile import where as where_of
from gradcheck_cli.records.findings import Finding, LayerStatus, Severity, Suggestion
from gradcheck_cli.records.stats import LayerStats, ProbeResult
from gradcheck_cli.records.text import count, verb


@dataclass(frozen=True, slots=True)
class NoGradientLimits:
    max_layers: float = 0
    """Fire when more than this many layers have trainable parameters without a gradient."""


@rule(id="no-gradient", severity=Severity.ERROR, fixes=("graph",), limits=NoGradientLimits)
def no_gradient(probe: ProbeResult, limits: NoGradientLimits) -> Iterator[Finding]:
    """Trainable parameters that receive no gradient at all.

    ## What it detects
    Modules whose parameters have `requires_grad=True` but whose `.grad` is still None
    after backward: either the module never ran in forward (unused), or its output was
    cut off from the loss (`detach()`, `torch.no_grad()`, `.data`, a numpy round trip).
    Parameters with `requires_grad=False` are reported as `frozen`, never as this: they
    get one info finding listing them (`frozen`), and are left out of every depth
    comparison. The same info lists modules whose hooks never fired although their
    parameters got a gradient (`not_measured`: parameters used outside the module's
    forward, or scripted/compiled submodules): their output gradients are unknown, and
    the report shows them empty, not as zeros.

    ## Why it matters
    These weights never change: a silently dead branch, or a bug in the graph.

    ## Evidence
    `never_called` (modules whose forward hook never fired), `cut_off` (ran, but no
    gradient reached them), `parameters` (how many trainable parameters are affected),
    `threshold`; on the info finding `frozen`, `frozen_parameters` and `not_measured`.
    Layers that feed only outputs the loss leaves out (a second head the auto loss does not
    use, found by walking the autograd graph) get an info of their own with
    `left_out_outputs` and `layers`, not this error: the loss chose not to train them.

    ## Thresholds
    `max_layers` = 0: any such layer is an error.

    ## Fixes
    graph: use the module in forward, or remove it; look for detach()/no_grad()/.data
    between it and the loss.

    ## Example
    A model that computes `self.head(x.detach())` fires for everything before `head`, and
    lists a layer defined but never called separately
    (`tests/fixtures/faults/no_gradient.py`). A frozen backbone gets only the info.
    """
    left_out = set(probe.left_out.modules) if probe.left_out else set()
    without = [layer for layer in probe.layers if layer.trainable and not layer.has_grad]
    missing = [layer for layer in without if layer.name not in left_out]
    by_choice = [layer for layer in without if layer.name in left_out]
    frozen = [layer for layer in probe.layers if not layer.trainable and layer.shared_with is None]
    unhooked = [layer for layer in probe.layers if not layer.hooked and layer.has_grad and layer.trainable]
    if frozen or unhooked:
        yield _info(frozen, unhooked)
    if by_choice and probe.left_out:
        yield _left_out_info(by_choice, probe.left_out.outputs)
    if len(missing) <= limits.max_layers:
        return
    never = [layer.name for layer in missing if not layer.hooked]
    cut = [layer.name for layer in missing if layer.hooked]
    # The suggestion names the never-called module first, so `where` points at it.
    named = next(layer for layer in missing if layer.name == (never[0] if never else cut[0]))
    where = where_of(named.source, probe)
    cause = []
    if never:
        cause.append(f"{len(never)} never ran in forward")  # "1 never ran" / "3 never ran"
    if cut:
        cause.append(f"{len(cut)} ran but {verb('were', len(cut))} cut off from the loss (detach/no_grad?)")
    yield Finding(
        id="no-gradient",
        severity=Severity.ERROR,
        layers=tuple(layer.name for layer in missing),
        status=LayerStatus.NO_GRAD,
        message=(
            f"{count(len(missing), 'layer')} with trainable parameters {verb('get', len(missing))} "
            f"no gradient: {'; '.join(cause)}."
        ),
        evidence={
            "never_called": list(never),
            "cut_off": list(cut),
            "parameters": sum(layer.parameters for layer in missing),
            "threshold": limits.max_layers,
        },
        suggestions=(
            Suggestion(
                fix="graph",
                text=(
                    f"call {never[0]} in forward or delete it"
                    if never
                    else f"remove the detach()/no_grad() between {cut[0]} and the loss"
                ),
                where=where,
            ),
        ),
    )


def _left_out_info(layers: list[LayerStats], outputs: tuple[str, ...]) -> Finding:
    names = ", ".join(outputs)
    return Finding(
        id="no-gradient",
        severity=Severity.INFO,
        layers=tuple(layer.name for layer in layers),
        status=LayerStatus.NO_GRAD,
        message=(
            f"{len(layers)} layers feed only outputs the loss leaves out ({names}), so they get no "
            "gradient here; define loss_fn(output, target) in the file to include those outputs."
        ),
        evidence={"left_out_outputs": list(outputs), "layers": [layer.name for layer in layers]},
    )


def _info(frozen: list[LayerStats], unhooked: list[LayerStats]) -> Finding:
    parts = []
    if frozen:
        parts.append(
            f"{count(len(frozen), 'layer')} {verb('are', len(frozen))} frozen (requires_grad=False) "
            "and left out of the verdicts"
        )
    if unhooked:
        parts.append(
            f"{count(len(unhooked), 'layer')} got gradients but {'its' if len(unhooked) == 1 else 'their'} "
            "forward hooks never fired (parameters used outside forward, or scripted), so "
            f"{'its output gradient is' if len(unhooked) == 1 else 'their output gradients are'} not measured"
        )
    return Finding(
        id="no-gradient",
        severity=Severity.INFO,
        layers=tuple(layer.name for layer in frozen),
        status=LayerStatus.FROZEN,
        message="; ".join(parts) + ".",
        evidence={
            "frozen": [layer.name for layer in frozen],
            "frozen_parameters": sum(layer.parameters for layer in frozen),
            "not_measured": [layer.name for layer in unhooked],
        },
    )
