"""Measure a changed copy of the model exactly as the analysis measured the original.

The same batches, loss, seed, device, dtype and --steps, through the pipeline's own stages
(prepare's batches, train_steps, probe, diagnose, the config's policy), so before and after differ only by the fix.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any

from torch import nn

from gradcheck_cli.judge.diagnose import diagnose
from gradcheck_cli.judge.policy import policy_findings
from gradcheck_cli.measure import collect
from gradcheck_cli.measure import session as stages
from gradcheck_cli.measure.device import model_dtype, seed_everything
from gradcheck_cli.records.findings import Finding
from gradcheck_cli.records.stats import ProbeResult


def snapshot(model: nn.Module) -> nn.Module | None:
    """A deep copy taken before the analysis trains the model (--steps); None if it cannot be copied."""
    try:
        return copy.deepcopy(model)
    except Exception:  # a model holding handles or generators: the runner reports it per fix
        return None


class CopyMeasurer:
    """Deep copies of the model, and the analysis's measurement of them."""

    def __init__(self, session: stages.Session, pristine: nn.Module | None = None) -> None:
        self.session = session
        self.pristine = pristine if pristine is not None else session.loaded.module

    def fresh_copy(self) -> nn.Module:
        return copy.deepcopy(self.pristine)

    def _session_for(self, model: nn.Module) -> stages.Session:
        s = self.session
        loaded = dataclasses.replace(s.loaded, module=model)
        return stages.Session(config=s.config, loaded=loaded, device=s.device, batches=s.batches, plan=s.plan)

    def run_forward(self, model: nn.Module) -> Any:
        return stages.forward(self._session_for(model), self.session.batches[0])

    def run_backward(self, model: nn.Module) -> None:
        session, batch = self._session_for(model), self.session.batches[0]
        model.train()
        stages.loss_of(session, batch, stages.forward(session, batch), 0).value.backward()

    def measure(self, model: nn.Module) -> tuple[ProbeResult, tuple[Finding, ...]]:
        config = self.session.config
        model.to(device=self.session.device, dtype=model_dtype(config.dtype))
        session = self._session_for(model)
        seed_everything(config.seed)
        if config.steps:
            stages.train_steps(session)
        result = collect.probe(session, time.perf_counter())
        findings = diagnose(result, config.thresholds).findings
        return result, policy_findings(findings, config.severity, config.ignore, config.select)
