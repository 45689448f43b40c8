"""Measure a changed copy of the model exactly as the analysis measured the original.

The same batches, loss, seed, device, dtype and --steps, through the pipeline's own stages
(the prepared batches, train_steps, probe, diagnose, the config's policy), so before and after
differ only by the fix.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from torch import nn

from gradcheck_cli.judge.diagnose import diagnose
from gradcheck_cli.judge.policy import policy_findings
from gradcheck_cli.measure.collect import probe
from gradcheck_cli.measure.device import model_dtype, seed_everything
from gradcheck_cli.measure.passes import Prepared, StageRecords, forward, loss_of
from gradcheck_cli.measure.train_stage import train_steps
from gradcheck_cli.records.findings import Finding
from gradcheck_cli.records.stats import ProbeResult


def pristine_copy(model: nn.Module) -> nn.Module | None:
    """A deep copy taken before the analysis trains the model (--steps); None if it cannot be copied."""
    try:
        return copy.deepcopy(model)
    except Exception:  # a model holding handles or generators: the runner reports it per fix
        return None


class CopyMeasurer:
    """Deep copies of the model, and the analysis's measurement of them."""

    def __init__(self, prepared: Prepared, pristine: nn.Module | None = None) -> None:
        self.prepared = prepared
        self.pristine = pristine if pristine is not None else prepared.model

    def fresh_copy(self) -> nn.Module:
        return copy.deepcopy(self.pristine)

    def run_forward(self, model: nn.Module) -> Any:
        return forward(self.prepared.with_model(model), self.prepared.batches[0])

    def run_backward(self, model: nn.Module) -> None:
        prepared, batch = self.prepared.with_model(model), self.prepared.batches[0]
        model.train()
        loss_of(prepared, batch, forward(prepared, batch), 0).value.backward()

    def measure(self, model: nn.Module) -> tuple[ProbeResult, tuple[Finding, ...]]:
        """The copy trained (--steps) and measured as the original was, without loss scaling."""
        config = self.prepared.config
        model.to(device=self.prepared.device, dtype=model_dtype(config.dtype))
        prepared = self.prepared.with_model(model)
        seed_everything(config.seed)
        training = train_steps(prepared) if config.steps else None
        result = probe(prepared, time.perf_counter(), StageRecords(training=training))
        findings = diagnose(result, config.thresholds).findings
        return result, policy_findings(findings, config.severity, config.ignore, config.select)
