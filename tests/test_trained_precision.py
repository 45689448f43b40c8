"""A checkpoint is analysed in the precision it was trained in (its tensors' dtype, or the
GradScaler state saved with it) unless --dtype says otherwise; the report says which and why."""

from __future__ import annotations

import json

import torch

from tests.conftest import ROOT, run_cli

MODEL = ROOT / "tests" / "fixtures" / "corpus" / "models.py"


def _analyze(ck, *extra: str) -> dict:
    result = run_cli("analyze", f"{MODEL}:MLP", "--weights", str(ck), "--format", "json", *extra)
    assert result.exit_code in (0, 1), result
    return json.loads(result.stdout)["model"]


def _state(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    import sys

    sys.path.insert(0, str(MODEL.parent))
    from models import MLP

    torch.manual_seed(0)
    return {k: v.to(dtype) for k, v in MLP().state_dict().items()}


def test_a_grad_scaler_state_in_the_checkpoint_means_float16(tmp_path):
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    ck = tmp_path / "amp.pt"
    torch.save({"model": _state(torch.float32), "scaler": scaler.state_dict(), "step": 10}, ck)
    assert torch.load(ck)["scaler"]["scale"] == 4096.0  # plain PyTorch: what the loop saved
    model = _analyze(ck)
    assert model["dtype"] == "float16"
    assert "GradScaler" in model["dtype_reason"] and "4096" in model["dtype_reason"]
    overridden = _analyze(ck, "--dtype", "float32")
    assert overridden["dtype"] == "float32" and "dtype_reason" not in overridden


def test_the_tensors_dtype_decides_and_float32_is_said(tmp_path):
    ck = tmp_path / "bf16.pt"
    torch.save(_state(torch.bfloat16), ck)
    saved = torch.load(ck)
    assert {v.dtype for v in saved.values()} == {torch.bfloat16}
    model = _analyze(ck)
    assert model["dtype"] == "bfloat16" and "bfloat16" in model["dtype_reason"]

    plain = tmp_path / "fp32.pt"
    torch.save(_state(torch.float32), plain)
    model = _analyze(plain)
    assert model["dtype"] == "float32" and "float32" in model["dtype_reason"]
