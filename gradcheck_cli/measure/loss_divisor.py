"""What the loss divided by, read off the gradient at the model's output (softmax cross-entropy).

For a cross-entropy over the last dimension, averaged over its rows and multiplied by c (c = 1/K
when the user divides a micro-batch's loss by K accumulation steps), the gradient at the logits
of row r is exactly c * (softmax(z_r) - onehot(y_r)) / R, R the rows the mean ran over. So for
any entry that is not the target (gradient > 0) softmax / gradient = R / c: one division gives
the loss's denominator D = R / c. D over the rows this backward saw is 1 for a plain mean over
one micro-batch, K when that mean was divided by K, 1/R for a sum. Any other loss (label
smoothing, MSE, a mean over another dimension) leaves a residual: the reading is then unknown.

Everything stays on the device (the monitor moves it to the host with the step's other
numbers): a softmax over the output, on measured steps only.
"""

from __future__ import annotations

import torch

MAX_RESIDUAL = 1e-3
"""||gradient - c (softmax - onehot) / R|| / ||gradient|| above this: not a softmax cross-entropy."""


def divisor_sums(output: torch.Tensor, grad: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """(D, rows, residual) for one backward through `output`, as one float64 device tensor.

    `scale`: the GradScaler's scale the backward ran under (the gradient seen here is scaled).
    """
    wide = torch.float32 if output.device.type == "mps" else torch.float64  # MPS has no float64
    z = output.detach().reshape(-1, output.shape[-1]).to(wide)
    g = grad.detach().reshape(-1, grad.shape[-1]).to(wide)
    if scale is not None:
        g = g / scale.to(wide)
    active = g.abs().sum(dim=-1) > 0  # rows an ignore_index left out carry no gradient
    z, g = z[active], g[active]
    p = torch.softmax(z, dim=-1)
    positive = g > 0
    denominator = (p * positive).sum() / (g * positive).sum()
    target = torch.nn.functional.one_hot(g.argmin(dim=-1), z.shape[-1]).to(wide)
    residual = torch.linalg.vector_norm(g - (p - target) / denominator) / torch.linalg.vector_norm(g)
    rows = active.sum().to(wide)
    return torch.stack([denominator, rows, residual])


def loss_divisor(sums: list[list[float]]) -> float:
    """The loss's denominator over the rows one backward saw, from each backward's
    (D, rows, residual); NaN when a backward's gradient was not a softmax cross-entropy's."""
    if not sums:
        return float("nan")
    values = []
    for denominator, rows, residual in sums:
        if not (residual <= MAX_RESIDUAL and rows > 0 and denominator > 0):
            return float("nan")
        values.append(denominator / rows)
    return sum(values) / len(values)
