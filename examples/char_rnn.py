"""A character-level language model with a vanilla RNN over 200 steps.

gradcheck analyze examples/char_rnn.py
"""

import torch
from torch import nn


class CharRNN(nn.Module):
    def __init__(self, vocab: int = 96, embed: int = 32, hidden: int = 128) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = nn.RNN(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(tokens))
        return self.head(out)


def sample_batch() -> torch.Tensor:
    return torch.randint(0, 96, (8, 200))
