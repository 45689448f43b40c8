"""GradcheckCallback in PyTorch Lightning. Runs on CPU in seconds.

    pip install 'gradcheck-cli[lightning]'
    python examples/lightning_gradcheck.py                  # writes example-runs/lightning_run.jsonl
    gradcheck report example-runs/lightning_run.jsonl --format html --output example-runs/lightning_run.html

A ReLU regression MLP trained with SGD at lr=0.03 with momentum 0.9: too hot for it. The
first steps overshoot, pre-activations are pushed negative, and the second ReLU's units die
one after the other while the first layer's gradient decays. gradcheck reports it while it
happens (dead-units-growing, dead-units, gradient-trend) through Lightning's logging, logs
per-layer statistics to the trainer's logger (CSV here, under example-runs/lightning_logs/), and writes
JSON lines for `gradcheck report`. --lr 0.05 diverges to NaN within 50 steps.
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
import torch
from torch import nn

from gradcheck_cli import LightningCallback as GradcheckCallback

OUT = "example-runs"
"""Where this example writes (covered by .gitignore); run it from the repository root."""


class Regressor(pl.LightningModule):
    def __init__(self, lr: float) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def data(seed: int = 0) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 16, generator=g)
    y = x @ torch.randn(16, 1, generator=g)
    return torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True, generator=g
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--jsonl", default=f"{OUT}/lightning_run.jsonl")
    args = parser.parse_args()
    torch.manual_seed(0)
    callback = GradcheckCallback(every=10, jsonl=args.jsonl)  # fail_on="error" would stop the run
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=args.steps,
        logger=pl.loggers.CSVLogger(f"{OUT}/lightning_logs", name="gradcheck_example"),
        default_root_dir=OUT,
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        log_every_n_steps=10,
    )
    trainer.fit(Regressor(args.lr), data())
    ids = sorted({f.id for record in callback.monitor.history for f in record.report.findings})
    print(f"measured {len(callback.monitor.trend)} steps; findings: {', '.join(ids) or 'none'}")
    print(f"wrote {args.jsonl} and {OUT}/lightning_logs/ ({OUT}/ is in .gitignore)")


if __name__ == "__main__":
    main()
