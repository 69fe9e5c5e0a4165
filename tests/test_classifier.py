"""gvlib.classifier: the judge classifier learns digits, and its probabilities are a softmax of its logits."""
from __future__ import annotations

import pytest
import torch

from gvlib import classifier, data


@pytest.mark.slow
def test_classifier_learns_the_digits_and_reports_probabilities():
    x, y = data.load_digits("train")
    x_test, y_test = data.load_digits("test")
    net = classifier.train_classifier(x, y, epochs=15, seed=0)
    acc = classifier.accuracy(net, x_test, y_test)
    assert acc > 0.85, f"held-out accuracy {acc:.3f}"  # 10 classes: chance is 0.1
    p = classifier.predict_proba(net, x_test[:5])
    assert p.shape == (5, 10) and torch.allclose(p.sum(-1), torch.ones(5, dtype=p.dtype))
    assert torch.allclose(p, torch.softmax(net(x_test[:5]), -1))
    with pytest.raises(ValueError, match="int labels"):
        classifier.train_classifier(x, y.float(), epochs=1)


def test_few_labels_keeps_per_class_labels_of_each_class_drawn_by_the_seed(monkeypatch):
    y = torch.arange(10).repeat(7)                       # 7 examples of each of 10 classes
    keep = classifier.few_labels(y, 3, seed=0)
    assert keep.dtype == torch.bool and keep.shape == y.shape
    assert torch.equal(torch.bincount(y[keep], minlength=10), torch.full((10,), 3))
    assert torch.equal(keep, classifier.few_labels(y, 3, seed=0)), "the same seed gives the same labelled set"
    assert not torch.equal(keep, classifier.few_labels(y, 3, seed=1)), "another seed, another labelled set"
    shifted_by_one = classifier.few_labels(y, 3, seed=1)
    monkeypatch.setenv("GVLIB_SEED_OFFSET", "1")
    assert torch.equal(classifier.few_labels(y, 3, seed=0), shifted_by_one), "$GVLIB_SEED_OFFSET shifts the seed"
    with pytest.raises(ValueError, match="class 0 has 7 examples"):
        classifier.few_labels(y, 8)
    with pytest.raises(ValueError, match="int labels"):
        classifier.few_labels(y.float(), 1)


class _TableModel(torch.nn.Module):
    """A stand-in conditional model whose ELBO is a known table: elbo(x, y) = x[:, 0] * (y + 1) + noise * 0."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.calls = 0

    def elbo(self, x, y):
        self.calls += 1
        assert not self.training, "elbo_per_class must evaluate in eval mode"
        return x[:, 0] * (y.to(x.dtype) + 1) * self.w


def test_elbo_per_class_evaluates_every_class_in_batches_and_restores_the_mode():
    model = _TableModel().train()
    x = torch.arange(7, dtype=torch.float32).unsqueeze(-1).repeat(1, 3)    # x[:, 0] = 0..6
    out = classifier.elbo_per_class(model, x, n_classes=4, draws=2, batch_size=3)
    expected = x[:, :1] * torch.arange(1, 5, dtype=torch.float32)           # (7, 4): row i, class c -> i (c + 1)
    assert out.shape == (7, 4) and torch.allclose(out, expected)
    assert model.training, "the model's mode is restored"
    assert model.calls == 3 * 2, "one call per batch of 3 inputs (all classes at once) and draw"
    assert not out.requires_grad
    with pytest.raises(ValueError, match="n_classes"):
        classifier.elbo_per_class(model, x, n_classes=0)


@pytest.mark.slow
def test_a_trained_conditional_vae_is_a_generative_classifier():
    from gvlib.models import ConditionalVAE
    from gvlib.train import fit

    x, y = data.load_digits("train")
    x_test, y_test = data.load_digits("test", binarize="fixed")
    torch.manual_seed(0)
    cvae = ConditionalVAE(64, 10, 4, (64,))
    fit(cvae, lambda m, b: -m.elbo(b[0], b[1]).mean(), (x, y), epochs=15, lr=3e-3, dynamic_binarize=True, seed=0,
        progress=False)
    acc = (classifier.elbo_per_class(cvae, x_test, 10).argmax(-1) == y_test).float().mean().item()
    assert acc > 0.6, f"argmax_y L(x | y) labels {acc:.2f} of the test images correctly (chance 0.1)"
