"""Write the two checkpoints the README's "A trained model" section analyses.

    python examples/train_checkpoints.py OUTDIR

healthy.pt: the ReLU MLP of tests/fixtures/trained/relu_mlp.py, 200 SGD steps at lr 0.05,
saved as a training-loop dict with its optimizer state. killed.pt: the same model, 40 SGD
steps at lr 5 (a learning rate that kills ReLU units), saved as a plain state_dict.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "trained"))
from relu_mlp import ReluMLP, sample_batch


def train(lr: float, steps: int) -> tuple[ReluMLP, torch.optim.Optimizer]:
    torch.manual_seed(0)  # the init gradcheck builds with --seed 0
    model = ReluMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for i in range(steps):
        torch.manual_seed(1000 + i)
        x, y = sample_batch()
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model, optimizer


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "example-runs")  # example-runs/ is in .gitignore
    out.mkdir(parents=True, exist_ok=True)
    model, optimizer = train(lr=0.05, steps=200)
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": 200}, out / "healthy.pt"
    )
    model, _ = train(lr=5.0, steps=40)
    torch.save(model.state_dict(), out / "killed.pt")
    print(f"wrote {out / 'healthy.pt'} and {out / 'killed.pt'}")


if __name__ == "__main__":
    main()
