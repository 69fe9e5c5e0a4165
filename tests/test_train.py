"""gvlib.train: fit, History, Warmup, the IWAE schedule, NaN handling, checkpoints, resuming and its refusals."""
from __future__ import annotations


import pytest
import torch
from torch import nn

import gvlib
from gvlib import train
from gvlib.train import CheckpointError, History, fit, iwae_schedule, load, save

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (
    ["mps"] if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available() else [])


class TinyVAE(nn.Module):
    """A VAE-like model small enough for unit tests: Gaussian encoder, reparameterized z, Gaussian decoder."""

    def __init__(self, d=6, h=2):
        super().__init__()
        self.config = {"d": d, "h": h}
        self.enc = nn.Linear(d, 2 * h)
        self.dec = nn.Linear(h, d)

    def forward(self, x):
        mu, logvar = self.enc(x).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # uses the global RNG: resuming must restore it
        return self.dec(z), mu, logvar


def vae_loss(model, batch):
    """-ELBO of a unit-variance Gaussian decoder (up to a constant), with rec and kl terms to log."""
    x = batch[0]
    x_hat, mu, logvar = model(x)
    rec = 0.5 * ((x_hat - x) ** 2).sum(-1).mean()
    kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1).mean()
    return {"loss": rec + kl, "rec": rec, "kl": kl}


def mse_loss(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("GVLIB_QUIET", "1")


def data(n=256, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=g)
    return z @ torch.randn(2, d, generator=g) + 0.1 * torch.randn(n, d, generator=g)


@pytest.mark.parametrize("device", DEVICES)
def test_fit_decreases_loss_and_records_history(device):
    gvlib.seed_everything(0)
    x = data().to(device)
    model = TinyVAE().to(device)
    with torch.no_grad():
        initial = vae_loss(model, (x,))["loss"].item()
    h = fit(model, vae_loss, x, epochs=6, batch_size=32, lr=1e-2, valid=data(64, seed=1).to(device), seed=0)
    assert isinstance(h, History)
    assert len(h) == 6 and h.epoch == [1, 2, 3, 4, 5, 6]
    for name in ("train", "valid", "time", "lr"):
        assert len(getattr(h, name)) == 6, name
    assert h.train[-1] < 0.7 * initial, (initial, h.train)
    assert set(h.train_terms) == {"rec", "kl"} and set(h.valid_terms) == {"rec", "kl"}
    assert len(h.train_terms["kl"]) == len(h.valid_terms["rec"]) == 6
    # the terms are the loss's parts: rec + kl = loss, per epoch
    for loss, rec, kl in zip(h.valid, h.valid_terms["rec"], h.valid_terms["kl"]):
        assert abs(loss - (rec + kl)) < 1e-4 * max(1.0, abs(loss))
    assert all(lr == pytest.approx(1e-2) for lr in h.lr)
    assert not model.training  # fit returns the model in eval mode
    assert History(**h.as_dict()).as_dict() == h.as_dict()


def test_data_forms_tuple_and_reiterable_and_errors():
    gvlib.seed_everything(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    h1 = fit(nn.Linear(3, 1), mse_loss, (x, y), epochs=2, batch_size=16, seed=0)
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    h2 = fit(nn.Linear(3, 1), mse_loss, batches, epochs=2)
    assert len(h1) == len(h2) == 2 and h1.valid is None
    with pytest.raises(TypeError, match="iterator"):
        fit(nn.Linear(3, 1), mse_loss, iter(batches), epochs=2)
    with pytest.raises(KeyError, match="without 'loss'"):
        fit(nn.Linear(3, 1), lambda m, b: {"rec": mse_loss(m, b)}, (x, y), epochs=1)
    with pytest.raises(ValueError, match="scalar"):
        fit(nn.Linear(3, 1), lambda m, b: (m(b[0]) - b[1]) ** 2, (x, y), epochs=1)


def test_warmup_beta_rises_linearly_and_a_callback_can_stop_the_run():
    betas = []
    warm = train.Warmup(4, start=0.2)

    def loss(m, b):
        betas.append(warm.beta)
        return ((m(b[0]) - b[0]) ** 2).mean()

    h = fit(nn.Linear(2, 2), loss, torch.randn(8, 2), epochs=6, batch_size=8,
            callback=lambda e, m, hist: warm.step(e, m, hist) or (e == 5))
    assert betas == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])  # one batch per epoch; stopped after epoch 5
    assert h.stopped_early and len(h) == 5
    with pytest.raises(ValueError, match="start"):
        train.Warmup(3, start=1.5)


def test_iwae_schedule_has_the_papers_stages():
    s = iwae_schedule()
    assert train.IWAE_EPOCHS == sum(3 ** i for i in range(8)) == 3280
    assert [(start, n) for start, n, _ in s.stages] == [(sum(3 ** j for j in range(i)), 3 ** i) for i in range(8)]
    for i, (start, n, factor) in enumerate(s.stages):
        assert factor == pytest.approx(10 ** (-i / 7))
        assert s(start) == s(start + n - 1) == pytest.approx(10 ** (-i / 7))
    assert s(0) == 1.0 and s(1) == pytest.approx(10 ** (-1 / 7)) and s(3279) == pytest.approx(0.1)
    # compressed: same proportions, every epoch in some stage, multipliers non-increasing
    short = iwae_schedule(328)
    assert sum(n for _, n, _ in short.stages) == 328
    assert [n for _, n, _ in short.stages][-1] == round(2187 / 10)
    values = [short(e) for e in range(328)]
    assert all(a >= b for a, b in zip(values, values[1:])) and values[-1] == pytest.approx(0.1)
    with pytest.raises(ValueError):
        iwae_schedule(0)


def test_schedule_sets_the_learning_rate():
    x = torch.randn(32, 2)
    h = fit(nn.Linear(2, 2), lambda m, b: ((m(b[0]) - b[0]) ** 2).mean(), x, epochs=4, lr=1e-3,
            schedule=lambda e: 0.5 ** e)
    assert h.lr == pytest.approx([1e-3, 5e-4, 2.5e-4, 1.25e-4])


def test_step_schedule_follows_optimisation_steps_across_a_resume(tmp_path):
    # 32 rows in batches of 8: 4 steps per epoch; a step schedule halves the lr at every step
    x = torch.randn(32, 2)
    seen = []

    def loss(m, b):
        return ((m(b[0]) - b[0]) ** 2).mean()

    def record(epoch, m, h):
        seen.append(h.lr[-1])

    kw = dict(batch_size=8, lr=1.0, schedule=lambda t: 0.5 ** t, schedule_every="step", seed=0)
    fit(nn.Linear(2, 2), loss, x, epochs=3, callback=record, **kw)
    assert seen == pytest.approx([0.5 ** 3, 0.5 ** 7, 0.5 ** 11])  # the lr of each epoch's last step

    # interrupted after epoch 1 and resumed: the step count continues where it stopped
    path, resumed = tmp_path / "steps.pt", []
    fit(nn.Linear(2, 2), loss, x, epochs=1, checkpoint=path, **kw)
    fit(nn.Linear(2, 2), loss, x, epochs=3, checkpoint=path, callback=lambda e, m, h: resumed.append(h.lr[-1]), **kw)
    assert resumed == pytest.approx([0.5 ** 7, 0.5 ** 11])
    with pytest.raises(ValueError, match="schedule_every must be 'epoch' or 'step'"):
        fit(nn.Linear(2, 2), loss, x, epochs=1, schedule_every="batch")


def test_nan_loss_raises_naming_epoch_and_batch():
    calls = {"n": 0}

    def loss_fn(model, batch):
        calls["n"] += 1
        loss = ((model(batch[0]) - batch[0]) ** 2).mean()
        return loss * float("nan") if calls["n"] == 7 else loss  # 4 batches per epoch: epoch 2, batch 3

    model = nn.Linear(2, 2)
    with pytest.raises(FloatingPointError, match=r"epoch 2, batch 3 of 4"):
        fit(model, loss_fn, torch.randn(64, 2), epochs=3, batch_size=16)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_save_load_round_trip(tmp_path):
    gvlib.seed_everything(0)
    a, b = TinyVAE(), TinyVAE()
    path = save(a, tmp_path / "sub" / "model.pt", note="hello", epochs=3)
    assert not list((tmp_path / "sub").glob(".*tmp"))  # no temporary file left behind
    info = load(b, path)
    assert info["class"] == "TinyVAE" and info["config"] == {"d": 6, "h": 2}
    assert info["note"] == "hello" and info["epochs"] == 3 and info["gvlib_version"] == gvlib.__version__
    x = data(8)
    assert torch.equal(a.dec(a.enc(x)[:, :2]), b.dec(b.enc(x)[:, :2]))


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load(TinyVAE(), tmp_path / "missing.pt")
    good = save(TinyVAE(), tmp_path / "good.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupted"):
        load(TinyVAE(), truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="corrupted"):
        load(TinyVAE(), garbage)
    with pytest.raises(CheckpointError, match=r"enc\.weight: checkpoint \(4, 6\) vs model \(6, 6\)"):
        load(TinyVAE(h=3), good)
    with pytest.raises(CheckpointError, match="keys missing from the checkpoint: weight, bias"):
        load(nn.Linear(6, 6), good)
    with pytest.raises(TypeError, match="only tensors"):
        save(TinyVAE(), tmp_path / "bad.pt", fn=print)


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path):
    x, v = data(96), data(32, seed=1)
    kw = dict(epochs=4, batch_size=32, lr=1e-2, valid=v, seed=3, dynamic_binarize=False)

    gvlib.seed_everything(0)
    model = TinyVAE()
    full = fit(model, vae_loss, x, **kw)

    class Interrupt(Exception):
        pass

    def stop_at_2(epoch, m, h):
        if epoch == 2:
            raise Interrupt  # like a KeyboardInterrupt: epoch 2's checkpoint is never written

    path = tmp_path / "run.pt"
    gvlib.seed_everything(0)
    with pytest.raises(Interrupt):
        fit(TinyVAE(), vae_loss, x, checkpoint=path, callback=stop_at_2, **kw)
    torch.manual_seed(123)  # the resumed run must not depend on the global RNG or the fresh weights
    resumed_model = TinyVAE()
    resumed = fit(resumed_model, vae_loss, x, checkpoint=path, **kw)
    assert resumed.epoch == [1, 2, 3, 4]
    assert resumed.train == pytest.approx(full.train, rel=1e-6)
    assert resumed.valid == pytest.approx(full.valid, rel=1e-6)
    for p, q in zip(model.parameters(), resumed_model.parameters()):
        torch.testing.assert_close(p, q)
    # a finished checkpoint loads like a saved model, and fit on it has nothing left to do
    again = TinyVAE()
    assert load(again, path)["class"] == "TinyVAE"
    assert fit(again, vae_loss, x, checkpoint=path, **kw).train == resumed.train


def test_quiet_mode_prints_nothing(capsys, monkeypatch):
    x = torch.randn(32, 2)
    fit(nn.Linear(2, 2), lambda m, b: ((m(b[0]) - b[0]) ** 2).mean(), x, epochs=2, valid=x)
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    monkeypatch.delenv("GVLIB_QUIET")
    fit(nn.Linear(2, 2), lambda m, b: ((m(b[0]) - b[0]) ** 2).mean(), x, epochs=2, progress=False)
    assert capsys.readouterr() == ("", "")
    fit(nn.Linear(2, 2), lambda m, b: ((m(b[0]) - b[0]) ** 2).mean(), x, epochs=3, batch_size=4, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "3/3" in err  # one bar over epochs on stderr, no line per batch


def test_resume_with_other_settings_is_refused_naming_what_differs(tmp_path):
    x = data(64)
    path = tmp_path / "run.pt"
    gvlib.seed_everything(0)
    fit(TinyVAE(), vae_loss, x, epochs=1, batch_size=16, lr=1e-2, seed=0, checkpoint=path)
    cases = [
        (dict(model=TinyVAE(h=3)), "config"),                        # another model configuration
        (dict(lr=1e-3), "optimizer"),                                # another learning rate
        (dict(optimizer=lambda p: torch.optim.SGD(p, lr=1e-2)), "optimizer"),
        (dict(data=data(80)), "train_examples"),                     # another data set size
        (dict(batch_size=32), "batch_size"),
        (dict(seed=1), "seed"),
        (dict(valid=data(16, seed=1)), "with_valid"),
    ]
    for change, what in cases:
        kw = dict(model=TinyVAE(), loss_fn=vae_loss, data=x, epochs=2, batch_size=16, lr=1e-2, seed=0, checkpoint=path)
        kw.update(change)
        with pytest.raises(CheckpointError, match=f"other settings.*{what}"):
            fit(**kw)
    # the same settings resume
    assert len(fit(TinyVAE(), vae_loss, x, epochs=2, batch_size=16, lr=1e-2, seed=0, checkpoint=path)) == 2


def _relocate_storages(path, location):
    """Rewrite a torch.save zip so that every storage says it was saved on `location` (e.g. 'cuda:0')."""
    import io
    import zipfile

    with zipfile.ZipFile(path) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    name = next(n for n in entries if n.endswith("/data.pkl"))

    # torch.save pickles with protocol 2: the location is a BINUNICODE string, b"X" + 4-byte length + text
    raw = entries[name]
    old = b"X\x03\x00\x00\x00cpu"
    new = b"X" + len(location).to_bytes(4, "little") + location.encode()
    assert old in raw, "unexpected pickle layout"
    entries[name] = raw.replace(old, new)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for n, b in entries.items():
            z.writestr(n, b)
    path.write_bytes(buf.getvalue())


def test_checkpoint_saved_on_a_gpu_loads_on_cpu(tmp_path):
    gvlib.seed_everything(0)
    a = TinyVAE()
    path = save(a, tmp_path / "gpu.pt")
    _relocate_storages(path, "cuda:0")
    if not torch.cuda.is_available():  # the file really asks for CUDA: a plain load cannot restore it here
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)
    b = TinyVAE()
    load(b, path)  # maps every tensor to the model's device (the CPU here)
    for p, q in zip(a.parameters(), b.parameters()):
        assert q.device.type == "cpu" and torch.equal(p, q)


def test_saved_files_follow_the_umask(tmp_path):
    import os
    old = os.umask(0o027)
    try:
        path = save(TinyVAE(), tmp_path / "m.pt")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640
