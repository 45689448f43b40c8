"""The fix vocabulary of the contract (`fix` values), each with a one-line title."""

from __future__ import annotations

from gradcheck_cli.findings import FixId

FIX_TITLES: dict[FixId, str] = {
    "residual": "add residual (skip) connections around the blocks",
    "batchnorm": "normalise with BatchNorm after each Linear/Conv",
    "layernorm": "normalise with LayerNorm (pre-norm blocks)",
    "activation": "use a non-saturating activation (ReLU, GELU)",
    "init": "initialise so each layer's gain is near 1 (He for ReLU, Xavier for tanh)",
    "clip": "clip the gradient norm (torch.nn.utils.clip_grad_norm_)",
    "lr": "lower the learning rate",
    "gru": "replace the vanilla RNN with a GRU",
    "lstm": "replace the vanilla RNN with an LSTM",
    "leaky-relu": "use LeakyReLU or GELU so units cannot die",
    "grad-scaler": "scale the loss with torch.amp.GradScaler",
    "eps": "add an epsilon inside log/sqrt/division",
    "graph": "connect the parameters to the loss (check detach/no_grad/unused modules)",
    "warmup": "warm the learning rate up over the first steps (LinearLR)",
    "weight-decay": "adjust weight decay (AdamW weight_decay) to hold the weight norms",
}
