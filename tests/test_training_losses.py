"""Losses that match training: auxiliary heads, reconstruction, independent random streams."""

from __future__ import annotations

import math
from collections import namedtuple

import torch
from torch import nn
from torch.nn import functional as F

from gradcheck_cli.measure.batches import stream
from gradcheck_cli.measure.losses import compute_loss
from gradcheck_cli.measure.outputs import AUX_WEIGHT, split_output
from gradcheck_cli.records.findings import Severity
from gradcheck_cli.run.api import analyze

Outputs = namedtuple("Outputs", ["logits", "aux_logits2", "aux_logits1"])


class AuxNet(nn.Module):
    """GoogLeNet-style: two auxiliary classifiers off the trunk, returned only in training mode."""

    def __init__(self, with_aux: bool = True) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(12, 32), nn.ReLU())
        self.mid = nn.Sequential(nn.Linear(32, 32), nn.ReLU())
        self.aux1 = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 5))
        self.aux2 = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 5))
        self.head = nn.Linear(32, 5)
        self.with_aux = with_aux

    def forward(self, x):
        a = self.stem(x)
        b = self.mid(a)
        if self.training and self.with_aux:
            return Outputs(self.head(b), self.aux2(b), self.aux1(a))
        return self.head(b)


class TwoHeads(nn.Module):
    """A second output of another shape (a box regressor) that the auto loss does not use."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(12, 32), nn.ReLU())
        self.classes = nn.Linear(32, 5)
        self.boxes = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4 * 3))

    def forward(self, x):
        h = self.trunk(x)
        return self.classes(h), self.boxes(h).view(-1, 3, 4)


def errors(report) -> list[str]:
    return [f.id for f in report.findings if f.severity is Severity.ERROR]


def test_googlenet_aux_heads_are_in_the_loss_weighted_as_in_training() -> None:
    torch.manual_seed(0)
    model = AuxNet()
    x = torch.randn(6, 12)
    out = model(x)
    choice = compute_loss(out, "auto", None, None, torch.Generator().manual_seed(3))
    labels = torch.randint(0, 5, (6,), generator=torch.Generator().manual_seed(3))
    expected = F.cross_entropy(out.logits, labels) + AUX_WEIGHT * (
        F.cross_entropy(out.aux_logits2, labels) + F.cross_entropy(out.aux_logits1, labels)
    )
    assert torch.allclose(choice.value, expected)
    assert "aux_logits2, aux_logits1 weighted 0.3 each" in choice.reason and choice.left_out == ()


def test_aux_heads_get_gradient_and_no_error() -> None:
    report = analyze(AuxNet(), "8x12", device="cpu", batches=1)
    assert errors(report) == []
    rows = {row.stats.name: row.stats for row in report.layers}
    assert rows["aux1.0"].has_grad and rows["aux2.2"].grad_norm > 0
    assert "auxiliary outputs aux_logits2, aux_logits1" in report.run.loss_reason


def test_plain_tuple_of_same_shape_outputs_is_deep_supervision() -> None:
    main, side = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    parts = split_output([main, side])
    assert parts.main is not None and parts.main.tensor is main
    assert [h.name for h in parts.aux] == ["output[1]"] and parts.left_out == ()


def test_segmentation_aux_key_weighted_half() -> None:
    out, aux = torch.randn(2, 4, 5, 5, requires_grad=True), torch.randn(2, 4, 5, 5, requires_grad=True)
    parts = split_output({"out": out, "aux": aux})
    assert parts.main is not None and parts.main.name == "out"
    assert [(h.name, h.weight) for h in parts.aux] == [("aux", 0.5)]


def test_output_the_loss_leaves_out_is_an_info_naming_it_not_an_error() -> None:
    report = analyze(TwoHeads(), "8x12", device="cpu", batches=1)
    assert errors(report) == []
    infos = [f for f in report.findings if f.id == "no-gradient" and "leaves out" in f.message]
    assert len(infos) == 1 and infos[0].severity is Severity.INFO
    assert infos[0].evidence["left_out_outputs"] == ["output[1]"]
    assert set(infos[0].evidence["layers"]) == {"boxes.0", "boxes.2"}
    assert "detach" not in " ".join(s.text for f in report.findings for s in f.suggestions)


def test_a_real_cut_stays_an_error_beside_a_left_out_output() -> None:
    class Cut(TwoHeads):
        def forward(self, x):
            h = self.trunk(x).detach()
            return self.classes(h), self.boxes(h).view(-1, 3, 4)

    report = analyze(Cut(), "8x12", device="cpu", batches=1)
    finding = next(f for f in report.findings if f.id == "no-gradient" and f.severity is Severity.ERROR)
    assert finding.layers == ("trunk.0",)


class AutoEncoder(nn.Module):
    def __init__(self, sigmoid: bool) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 16))
        self.decoder = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 784))
        self.sigmoid = sigmoid

    def forward(self, x):
        y = self.decoder(self.encoder(x))
        return torch.sigmoid(y) if self.sigmoid else y


def test_autoencoder_is_judged_by_reconstruction_mse_against_its_input() -> None:
    model = AutoEncoder(sigmoid=False)
    x = torch.randn(4, 784)
    out = model(x)
    choice = compute_loss(out, "auto", None, None, torch.Generator(), reference=x)
    assert choice.name == "mse" and "reconstruction MSE against the input" in choice.reason
    assert torch.allclose(choice.value, F.mse_loss(out, x))


def test_sigmoid_autoencoder_on_pixels_in_0_1_gets_bce() -> None:
    report = analyze(AutoEncoder(sigmoid=True), "float:4x784:0..1", device="cpu", batches=1)
    assert report.run.loss == "bce" and "reconstruction BCE" in report.run.loss_reason
    assert "4x784" in report.run.loss_reason


def test_vae_tuple_reconstructs_and_leaves_mu_logvar_without_a_finding() -> None:
    class VAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc, self.mu, self.logvar = nn.Linear(20, 16), nn.Linear(16, 4), nn.Linear(16, 4)
            self.dec = nn.Linear(4, 20)

        def forward(self, x):
            h = torch.relu(self.enc(x))
            mu, logvar = self.mu(h), self.logvar(h)
            return self.dec(mu + torch.randn_like(mu) * (0.5 * logvar).exp()), mu, logvar

    report = analyze(VAE(), "8x20", device="cpu", batches=1)
    assert report.run.loss == "mse" and "reconstruction" in report.run.loss_reason
    assert [f.id for f in report.findings if f.severity is not Severity.INFO] == []


class IdentityChain(nn.Module):
    """Three bias-free Linear layers at a = 1 (identity weights): the output equals the input."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.layers = nn.Sequential(*(nn.Linear(width, width, bias=False) for _ in range(3)))
        for layer in self.layers:
            nn.init.eye_(layer.weight)

    def forward(self, x):
        return self.layers(x)


def test_loss_mse_on_the_identity_chain_matches_the_closed_form() -> None:
    """Targets come from their own stream: dL/dy = 2 (x - t) / N at every layer, never 0."""
    report = analyze(IdentityChain(), "4x8", device="cpu", batches=1, loss="mse")
    x = torch.randn((4, 8), generator=torch.Generator().manual_seed(0))
    t = torch.randn((4, 8), generator=stream(0, "targets", 0))
    assert not torch.allclose(x, t)
    upstream = 2 * (x - t) / x.numel()
    closed_act = upstream.norm().item()
    closed_weight = (upstream.T @ x).norm().item()  # dL/dW = g^T x_in, and x_in = x at a = 1
    for row in report.layers:
        assert math.isclose(row.stats.act_grad_norm, closed_act, rel_tol=1e-4)
        assert math.isclose(row.stats.grad_norm, closed_weight, rel_tol=1e-4)
    assert closed_act > 0.1 and errors(report) == []


def test_auto_loss_on_the_identity_chain_does_not_reconstruct_to_zero() -> None:
    report = analyze(IdentityChain(), "4x8", device="cpu", batches=1)
    assert all(row.stats.act_grad_norm > 0 for row in report.layers)
    assert "reconstruction" not in report.run.loss_reason


def test_streams_are_distinct_per_purpose_and_batch() -> None:
    draws = {
        (purpose, index): torch.randn(5, generator=stream(0, purpose, index))
        for purpose in ("targets", "labels")
        for index in range(2)
    }
    inputs = torch.randn(5, generator=torch.Generator().manual_seed(0))
    values = [inputs, *draws.values()]
    for i, a in enumerate(values):
        for b in values[i + 1 :]:
            assert not torch.allclose(a, b)
