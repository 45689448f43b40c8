"""Hand-built Reports for renderer goldens and policy tests: fixed numbers, nothing measured."""

from __future__ import annotations

from gradcheck_cli.records.findings import Finding, LayerStatus, Severity, Suggestion
from gradcheck_cli.records.report import LayerRow, Report, summarize
from gradcheck_cli.records.stats import LayerStats, ModelInfo, RunInfo, SourceRef, ThroughTime


def layer(index: int, name: str, act: float, ratio: float, kind: str = "Linear") -> LayerStats:
    return LayerStats(
        name=name, type=kind, index=index, parameters=100, trainable=True, grad_norm=ratio * 4.0,
        weight_norm=4.0, grad_weight_ratio=ratio, act_grad_rms=act / 10, act_grad_norm=act,
        zero_grad_fraction=0.0, nonfinite=0, source=SourceRef(file="model.py", line=10 + index),
    )  # fmt: skip


def make_report(target: str, rows: list[tuple[LayerStats, LayerStatus]], findings: tuple[Finding, ...],
                through_time: tuple[ThroughTime, ...] = ()) -> Report:  # fmt: skip
    return Report(
        target=target,
        model=ModelInfo(class_name="Net", parameters=1234, trainable=1234, device="cpu", dtype="float32"),
        run=RunInfo(
            batches=3, steps=0, seed=0, loss="ce", loss_reason="class logits", inputs=("32x16",), seconds=0.5
        ),
        layers=tuple(LayerRow(stats=s, status=st) for s, st in rows),
        findings=findings,
        summary=summarize(findings),
        through_time=through_time,
    )


VANISHING = Finding(
    id="vanishing-gradients",
    severity=Severity.ERROR,
    layers=("layers.0", "layers.2"),
    message="The gradient reaching layers.0 is 1e5x smaller than at layers.6 | deep sigmoid stack.",
    evidence={"orders": 5.0, "limit_orders": 3.0},
    suggestions=(
        Suggestion(fix="residual", text="add skip connections around the blocks", where="model.py:12"),
        Suggestion(fix="activation", text="replace Sigmoid with ReLU", where="model.py:14"),
    ),
    status=LayerStatus.VANISHING,
)
SATURATED = Finding(
    id="saturated-activations",
    severity=Severity.WARNING,
    layers=("layers.1",),
    message="60% of layers.1's sigmoid outputs sit in the flat tails.",
    evidence={"fraction": 0.6},
    status=LayerStatus.SATURATED,
)


def vanishing() -> Report:
    rows = [
        (layer(0, "layers.0", 1e-6, 2e-6), LayerStatus.VANISHING),
        (layer(1, "layers.2", 1e-4, 3e-4), LayerStatus.VANISHING),
        (layer(2, "layers.4", 1e-2, 2e-2), LayerStatus.OK),
        (layer(3, "layers.6", 0.5, 0.4), LayerStatus.OK),
    ]
    return make_report("model.py", rows, (VANISHING, SATURATED))


def healthy() -> Report:
    rows = [(layer(0, "stem", 0.2, 0.1), LayerStatus.OK), (layer(1, "head", 0.3, 0.5), LayerStatus.OK)]
    return make_report("builtin:residual-mlp", rows, ())


def recurrent() -> Report:
    tt = ThroughTime(
        module="rnn", type="RNN", steps=8, curve=(1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0),
        per_step_factor=0.1, horizon=2, horizon_floor=1e-2,
    )  # fmt: skip
    rows = [(layer(0, "rnn", 0.1, 0.05, "RNN"), LayerStatus.OK), (layer(1, "head", 0.3, 0.5), LayerStatus.OK)]
    return make_report("builtin:vanilla-rnn", rows, (), (tt,))
