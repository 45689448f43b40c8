"""Lightning's DDP strategy on CPU (gloo, 2 processes) with GradcheckCallback: run as a script,
since Lightning's DDP launcher starts the second process by re-running this command line.

    python tests/lightning_ddp_run.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gradcheck_cli.monitor.integrations.lightning import GradcheckCallback  # noqa: E402


class DeepSigmoid(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        layers: list[nn.Module] = []
        for i in range(8):
            layers += [nn.Linear(8 if i == 0 else 16, 16), nn.Sigmoid()]
        self.model = nn.Sequential(*layers, nn.Linear(16, 4))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.model(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def main(out: Path) -> None:
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(
        torch.randn(160, 8, generator=g), torch.randint(0, 4, (160,), generator=g)
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_steps=10,
        logger=pl.loggers.CSVLogger(out / "csv", name="run"),
        callbacks=[GradcheckCallback(every=4, jsonl=out / "run.jsonl")],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(DeepSigmoid(), torch.utils.data.DataLoader(data, batch_size=8))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]))
