"""GradcheckCallback in the Hugging Face Trainer, driving a model of our own. CPU, seconds.

    pip install 'gradcheck-cli[transformers,tensorboard]'
    python examples/trainer_gradcheck.py          # writes example-runs/trainer_out/, example-runs/trainer_run.jsonl
    tensorboard --logdir example-runs/trainer_out/runs  # gradcheck/* scalars beside the Trainer's
    gradcheck report example-runs/trainer_run.jsonl

The Trainer calls forward(**batch) and uses the "loss" the model returns. This model is a
12-layer sigmoid MLP: each sigmoid passes at most a quarter of the gradient back, so the
gradient reaching the first layers is orders of magnitude below the last. gradcheck says so
at step 0 through transformers' logging (it measures before the Trainer clips gradients), and
with fail_on="error" (--stop) ends training there. --activation relu trains cleanly.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from transformers import Trainer, TrainingArguments

from gradcheck_cli import TransformersCallback as GradcheckCallback

OUT = "example-runs"
"""Where this example writes (covered by .gitignore); run it from the repository root."""


class Classifier(nn.Module):
    def __init__(self, activation: type[nn.Module], depth: int = 12, width: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(16 if i == 0 else width, width), activation()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.head(self.body(x))
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


class Points(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, n: int = 1024) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 16, generator=g)
        self.y = (self.x[:, :2] > 0).long() @ torch.tensor([1, 2])  # four quadrants

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--activation", choices=["sigmoid", "relu"], default="sigmoid")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--stop", action="store_true", help="stop training on an error finding")
    args = parser.parse_args()
    torch.manual_seed(0)
    callback = GradcheckCallback(
        every=10, jsonl=f"{OUT}/trainer_run.jsonl", fail_on="error" if args.stop else None
    )
    training = TrainingArguments(
        output_dir=f"{OUT}/trainer_out",
        max_steps=args.steps,
        per_device_train_batch_size=32,
        learning_rate=1e-3,
        save_strategy="no",
        logging_steps=50,
        report_to=["tensorboard"],
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=Classifier(nn.Sigmoid if args.activation == "sigmoid" else nn.ReLU),
        args=training,
        train_dataset=Points(),
        callbacks=[callback],
    )
    trainer.train()
    ids = sorted({f.id for record in callback.monitor.history for f in record.report.findings})
    print(f"stopped at step {trainer.state.global_step}; findings: {', '.join(ids) or 'none'}")
    print(f"wrote {OUT}/trainer_out/ and {OUT}/trainer_run.jsonl ({OUT}/ is in .gitignore)")


if __name__ == "__main__":
    main()
