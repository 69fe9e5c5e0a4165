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
