"""--steps K: train the model K optimizer steps on the sample batches before measuring, recording
the loss and each layer's gradient norm at every step (the history the report shows)."""

from __future__ import annotations

import math

import torch
from torch import nn

from gradcheck_cli.session import Session, forward, loss_of
from gradcheck_cli.stats import TrainingHistory


def train_steps(session: Session) -> None:
    model = session.loaded.module
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer: torch.optim.Optimizer
    if session.config.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=session.config.lr)
    else:
        optimizer = torch.optim.SGD(params, lr=session.config.lr)
    # float16 trains as a script would: with a GradScaler (a pass-through for other dtypes).
    scaler = torch.amp.GradScaler(session.device.split(":")[0], enabled=session.config.dtype == "float16")
    model.train()
    owners = [(name, list(m.parameters(recurse=False))) for name, m in model.named_modules()]
    owners = [(name, ps) for name, ps in owners if any(p.requires_grad for p in ps)]
    losses, norms = [], []
    for step in range(session.config.steps):
        batch = session.batches[step % len(session.batches)]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(session, batch, forward(session, batch), step % len(session.batches)).value
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # the history and the step see the true gradients
        losses.append(loss.detach().float())
        norms.append(_layer_grad_norms(owners, loss.device))
        scaler.step(optimizer)
        scaler.update()
    optimizer.zero_grad(set_to_none=True)
    session.training = _history(session, [name for name, _ in owners], losses, norms)


def _history(
    session: Session, names: list[str], losses: list[torch.Tensor], norms: list[torch.Tensor]
) -> TrainingHistory:
    # One host transfer for the whole history.
    host = torch.stack([torch.stack(losses), *torch.stack(norms).T]).tolist() if losses else []
    return TrainingHistory(
        optimizer=session.config.optimizer,
        lr=session.config.lr,
        loss=tuple(host[0]) if host else (),
        grad_norms={name: tuple(row) for name, row in zip(names, host[1:], strict=True)},
    )


def _layer_grad_norms(owners: list[tuple[str, list[nn.Parameter]]], device: torch.device) -> torch.Tensor:
    """Each module's own parameter-gradient L2 norm (NaN when none got a gradient), on the device."""
    out = []
    for _, params in owners:
        grads = [p.grad.detach().float().square().sum() for p in params if p.grad is not None]
        out.append(torch.stack(grads).sum().sqrt() if grads else torch.tensor(math.nan, device=device))
    return torch.stack(out) if out else torch.zeros(0, device=device)
