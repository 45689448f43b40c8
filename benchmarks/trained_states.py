"""Calibration of the trained-state rules on models trained here, healthy and broken.

Trains four small models (ReLU MLP, CNN, 2-layer LSTM, attention classifier) on learnable
synthetic tasks at a healthy learning rate and at a too-high one, saves each checkpoint, and
runs `gradcheck analyze --weights CKPT --versus init --steps K` on it, printing what the rules
compare: weight-norm ratio to init, ReLU units dead now and at init, median update/weight
ratio, gate saturation, attention entropy and collapse, and where the run diverged.

    python benchmarks/trained_states.py            # ~1-2 minutes on one core
    python benchmarks/trained_states.py --quick    # a few seconds: fewer training steps
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "trained"
sys.path.insert(0, str(FIXTURES))
sys.path.insert(0, str(ROOT))

# name -> (target, factory, optimizer, healthy lr, too-high lr)
MODELS = {
    "mlp": ("relu_mlp.py", "relu_mlp:ReluMLP", "sgd", 0.05, 5.0),
    "cnn": ("small_cnn.py", "small_cnn:SmallCNN", "sgd", 0.05, 3.0),
    "lstm": ("lstm_tagger.py", "lstm_tagger:LSTMTagger", "adam", 3e-3, 0.5),
    "attention": ("attention_block.py", "attention_block:AttentionClassifier", "adam", 3e-3, 0.3),
}


def build(factory: str) -> torch.nn.Module:
    module_name, _, cls = factory.partition(":")
    module = __import__(module_name)
    torch.manual_seed(0)  # the init gradcheck builds with --seed 0
    return getattr(module, cls)()


def train(name: str, lr: float, steps: int, path: Path) -> Path:
    target, factory, opt_name, _, _ = MODELS[name]
    model = build(factory)
    sample = __import__(factory.partition(":")[0]).sample_batch
    optimizer = (torch.optim.Adam if opt_name == "adam" else torch.optim.SGD)(model.parameters(), lr=lr)
    for i in range(steps):
        torch.manual_seed(1000 + i)
        x, y = sample()
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            break  # keep the last checkpoint that could be saved: the run is past divergence
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": i + 1}, path)
    return path


def analyze(name: str, checkpoint: Path, lr: float, steps: int) -> dict:
    from gradcheck_cli.run.cli import app

    target = str(FIXTURES / MODELS[name][0])
    args = ["analyze", target, "--weights", str(checkpoint), "--versus", "init", "--steps", str(steps)]
    args += ["--lr", str(lr), "--batches", "2", "--format", "json"]
    result = CliRunner().invoke(app, args)
    return json.loads(result.stdout)


def summary(doc: dict) -> dict[str, object]:
    versus, training = doc["versus"], doc["training"]
    norms = [v["weight_norm"][0] / v["weight_norm"][1] for v in versus["layers"] if v["weight_norm"][1]]
    dead = [
        (a["dead_fraction"][0], a["dead_fraction"][1])
        for a in versus["activations"]
        if a["dead_fraction"][0] is not None
    ]
    ratios = [statistics.median(v) for v in training["update_ratios"].values() if v]
    gates = [max(g["saturated_fraction"].values()) for g in doc.get("gate_saturation", [])]
    attention = [(a["entropy"], a["collapsed_fraction"], a["max_logit"]) for a in doc.get("attention", [])]
    div = training["divergence"]
    return {
        "ckpt_step": doc["checkpoint"]["step"],
        "norm_ratio": f"{min(norms):.2f}..{max(norms):.2f}",
        "dead(now,init)": [f"{a:.2f},{b:.2f}" for a, b in dead] or "-",
        "update_ratio": f"{min(ratios):.1e}..{max(ratios):.1e}" if ratios else "-",
        "gate_sat": [round(g, 2) for g in gates] or "-",
        "attn(H,coll,logit)": [f"{h:.2f},{c:.2f},{m:.1f}" for h, c, m in attention] or "-",
        "diverged": f"step {div['step']} at {div['forward_layer'] or (div['gradient_layers'] or div['weight_layers'] or ['loss'])[0]}"
        if div
        else "-",
        "findings": sorted({f["id"] for f in doc["findings"]}),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="20 training steps instead of 300")
    args = parser.parse_args()
    steps = 20 if args.quick else 300
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (_, _, _, healthy, high) in MODELS.items():
            for label, lr in (("healthy", healthy), ("too-high", high)):
                ckpt = train(name, lr, steps, Path(tmp) / f"{name}-{label}.pt")
                doc = analyze(name, ckpt, lr, steps=10)
                print(f"{name:10} {label:9} lr={lr:<6g}", json.dumps(summary(doc)))


if __name__ == "__main__":
    main()
