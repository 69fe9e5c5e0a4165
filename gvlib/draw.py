"""DRAW (Gregor et al. 2015) and alignDRAW (Mansimov et al. 2016): a sequence of VAEs that write an image on a
canvas in T steps through Gaussian attention, optionally conditioned on a caption read through an alignment.

One step t = 1..T of the recurrence (h^dec_0 = 0, canvas c_0 = 0, x^_t = x - sigmoid(c_{t-1})):

    r_t       = read(x, x^_t, h^dec_{t-1})                  # an N x N glimpse of x and of the error image
    h^enc_t   = LSTM_enc(h^enc_{t-1}, [r_t, h^dec_{t-1}])
    z_t       ~ q(z_t | x, z_<t) = N(mu(h^enc_t), diag sigma^2(h^enc_t))
    s_t       = align(h^dec_{t-1}, h^lang)                  # alignDRAW only: a weighted sum of the caption's words
    h^dec_t   = LSTM_dec(h^dec_{t-1}, [z_t, s_t])
    c_t       = c_{t-1} + write(h^dec_t)                    # the canvas is the sum of the writes

and p(x | z_1..T) = Bernoulli(sigmoid(c_T)). The prior is N(0, I) at every step (DRAW) or, with
`learned_prior=True`, p(z_t | z_<t) = N(tanh(W h^dec_{t-1}), exp(tanh(W' h^dec_{t-1}))^2) (alignDRAW). So

    log w = log p(x | c_T) + sum_t [log p(z_t | z_<t) - log q(z_t | x, z_<t)],

which `DRAW.log_weights(x, k)` returns with the layout of `gvlib.models` ((k, batch)), so `gvlib.bounds` and
`gvlib.train.fit` use a DRAW model unchanged. With a caption (`vocab_size > 0`), every method takes `y=`, a
(batch, L) tensor of word ids, 0 = padding; log_weights then bounds log p(x | y).

The attention (section 3.2 of Gregor et al.) uses 1-based coordinates as the paper does: pixel columns a = 1..A,
filter rows i = 1..N, grid centre g_X = (A + 1)/2 (g~_X + 1), stride delta = (max(A, B) - 1)/(N - 1) delta~,
filter centres mu_X^i = g_X + (i - N/2 - 0.5) delta, and F_X[i, a] proportional to exp(-(a - mu_X^i)^2 / 2 sigma^2),
each row normalised to sum 1.

The captioned-digits data set of the chapter (two 14x14 digits on a 28x28 canvas, "the 3 is above the 7") is
`captioned_digits`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._validate import positive_int
from .distributions import kl_normal_normal, log_bernoulli_logits, log_normal_diag

__all__ = ["attention_params", "filterbank", "read", "write", "DRAWConfig", "DRAW", "VOCAB", "encode_caption",
           "decode_caption", "captioned_digits", "CANVAS", "SLOTS", "slot_crops"]


# ============================================================================================== attention
def attention_params(raw: torch.Tensor, height: int, width: int, n: int):
    """(g_X, g_Y, delta, sigma^2, gamma) from the 5 raw outputs (g~_X, g~_Y, log sigma^2, log delta~, log gamma): (..., 5) -> 5 x (...)."""
    if raw.shape[-1] != 5:
        raise ValueError(f"raw attention parameters must have 5 entries in the last dim, got shape {tuple(raw.shape)}")
    n = positive_int("n", n)
    if n < 2:
        raise ValueError("the filterbank needs n >= 2 filters (the stride divides by n - 1)")
    gx_, gy_, log_var, log_delta, log_gamma = raw.unbind(-1)
    gx = (width + 1) / 2 * (gx_ + 1)
    gy = (height + 1) / 2 * (gy_ + 1)
    delta = (max(height, width) - 1) / (n - 1) * torch.exp(log_delta)
    return gx, gy, delta, torch.exp(log_var), torch.exp(log_gamma)


def filterbank(g: torch.Tensor, delta: torch.Tensor, var: torch.Tensor, n: int, size: int) -> torch.Tensor:
    """F[i, a] = exp(-(a - mu_i)^2 / 2 var) / Z_i, mu_i = g + (i - n/2 - 0.5) delta, i = 1..n, a = 1..size: (...) -> (..., n, size)."""
    n, size = positive_int("n", n), positive_int("size", size)
    i = torch.arange(1, n + 1, dtype=g.dtype, device=g.device)
    a = torch.arange(1, size + 1, dtype=g.dtype, device=g.device)
    mu = g[..., None] + (i - n / 2 - 0.5) * delta[..., None]                    # (..., n): the filters' centres
    logits = -(a - mu[..., None]).pow(2) / (2 * var[..., None, None])           # (..., n, size)
    return torch.softmax(logits, -1)   # = exp(.) / sum_a exp(.): normalised in log space, never 0/0


def read(image: torch.Tensor, fy: torch.Tensor, fx: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """The glimpse gamma F_Y image F_X^T: image (..., B, A), fy (..., N, B), fx (..., N, A), gamma (...) -> (..., N, N)."""
    return gamma[..., None, None] * (fy @ image @ fx.transpose(-1, -2))


def write(patch: torch.Tensor, fy: torch.Tensor, fx: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """The write (1/gamma) F_Y^T patch F_X: patch (..., N, N), fy (..., N, B), fx (..., N, A), gamma (...) -> (..., B, A)."""
    return (fy.transpose(-1, -2) @ patch @ fx) / gamma[..., None, None]


# ============================================================================================== model
@dataclass(frozen=True)
class DRAWConfig:
    """Settings of `DRAW`. read_n / write_n: the glimpse sizes N, or None for no attention (read the whole image and
    the whole error image; write the whole canvas from a linear layer). vocab_size > 0 makes it alignDRAW."""

    height: int = 14
    width: int = 14
    steps: int = 8                 # T
    z_dim: int = 10
    enc_hidden: int = 64
    dec_hidden: int = 64
    read_n: int | None = 2
    write_n: int | None = 5
    learned_prior: bool = False    # p(z_t | z_<t) from h^dec_{t-1} (alignDRAW) instead of N(0, I) (DRAW)
    vocab_size: int = 0            # > 0: a caption y conditions the model (alignDRAW)
    embed_dim: int = 16
    lang_hidden: int = 32          # per direction of the bidirectional LSTM
    align_hidden: int = 32


class DRAW(nn.Module):
    """DRAW and alignDRAW with the protocol of gvlib.models: log_weights(x, k, y=None) -> (k, batch), elbo, sample."""

    def __init__(self, config: DRAWConfig | None = None, **overrides):
        super().__init__()
        config = DRAWConfig(**overrides) if config is None else config
        self.config = c = config
        self.x_dim = positive_int("height", c.height) * positive_int("width", c.width)
        self.latent_dims = [positive_int("z_dim", c.z_dim)] * positive_int("steps", c.steps)
        self.likelihood = "bernoulli"
        read_dim = 2 * (c.read_n ** 2 if c.read_n else self.x_dim)
        ctx = 2 * c.lang_hidden if c.vocab_size else 0
        self.enc = nn.LSTMCell(read_dim + c.dec_hidden, c.enc_hidden)
        self.q_params = nn.Linear(c.enc_hidden, 2 * c.z_dim)                  # -> (mu, log sigma^2) of q(z_t | .)
        self.dec = nn.LSTMCell(c.z_dim + ctx, c.dec_hidden)
        self.read_attn = nn.Linear(c.dec_hidden, 5) if c.read_n else None
        self.write_attn = nn.Linear(c.dec_hidden, 5) if c.write_n else None
        self.write_patch = nn.Linear(c.dec_hidden, c.write_n ** 2 if c.write_n else self.x_dim)
        self.prior_params = nn.Linear(c.dec_hidden, 2 * c.z_dim) if c.learned_prior else None
        if c.vocab_size:
            self.embed = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=0)
            self.lang = nn.LSTM(c.embed_dim, c.lang_hidden, batch_first=True, bidirectional=True)
            self.align_u = nn.Linear(2 * c.lang_hidden, c.align_hidden, bias=False)   # U h^lang_n
            self.align_w = nn.Linear(c.dec_hidden, c.align_hidden)                    # W h^dec_{t-1} + b
            self.align_v = nn.Linear(c.align_hidden, 1, bias=False)                   # v^T tanh(.)

    # ------------------------------------------------------------------ the pieces of one step
    def _glimpse(self, x, x_hat, h_dec):
        """read(x, x^, h^dec): (n, D) twice, (n, H) -> (n, 2 N^2), and the window (g_X, g_Y, delta, var, gamma)."""
        c = self.config
        if not c.read_n:
            return torch.cat([x, x_hat], -1), None
        win = attention_params(self.read_attn(h_dec), c.height, c.width, c.read_n)
        gx, gy, delta, var, gamma = win
        fx = filterbank(gx, delta, var, c.read_n, c.width)                   # (n, N, A)
        fy = filterbank(gy, delta, var, c.read_n, c.height)                  # (n, N, B)
        imgs = torch.stack([x, x_hat], 1).view(-1, 2, c.height, c.width)     # (n, 2, B, A)
        glimpse = read(imgs, fy[:, None], fx[:, None], gamma[:, None])       # (n, 2, N, N)
        return glimpse.flatten(1), win

    def _write(self, h_dec):
        """write(h^dec): (n, H) -> (n, D), and the window (g_X, g_Y, delta, var, gamma) or None."""
        c = self.config
        patch = self.write_patch(h_dec)
        if not c.write_n:
            return patch, None
        win = attention_params(self.write_attn(h_dec), c.height, c.width, c.write_n)
        gx, gy, delta, var, gamma = win
        fx = filterbank(gx, delta, var, c.write_n, c.width)
        fy = filterbank(gy, delta, var, c.write_n, c.height)
        return write(patch.view(-1, c.write_n, c.write_n), fy, fx, gamma).flatten(1), win

    def _prior(self, h_dec):
        """(mu, logvar) of p(z_t | z_<t): N(0, I), or alignDRAW's N(tanh(W h), exp(tanh(W' h))^2): (n, H) -> 2 x (n, d)."""
        if self.prior_params is None:
            zero = h_dec.new_zeros(h_dec.shape[0], self.config.z_dim)
            return zero, zero
        mu, log_sigma = torch.tanh(self.prior_params(h_dec)).chunk(2, -1)
        return mu, 2 * log_sigma

    def encode_caption(self, y: torch.Tensor):
        """h^lang = [forward; backward] LSTM states per word, and the mask of real words: y (b, L) ids -> (b, L, 2 H_lang), (b, L)."""
        mask = y != 0
        lengths = mask.sum(1)
        if bool((lengths == 0).any()):
            raise ValueError("every caption needs at least one word (id > 0)")
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(y), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lang(packed)
        h_lang, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=y.shape[1])
        return h_lang, mask

    def align(self, h_dec, h_lang, mask):
        """alpha_n = softmax_n v^T tanh(U h^lang_n + W h^dec + b) over real words; s = sum_n alpha_n h^lang_n: -> (n, 2 H_lang), (n, L)."""
        scores = self.align_v(torch.tanh(self.align_u(h_lang) + self.align_w(h_dec)[:, None])).squeeze(-1)  # (n, L)
        alpha = torch.softmax(scores.masked_fill(~mask, -math.inf), -1)
        return (alpha[..., None] * h_lang).sum(1), alpha

    def _check(self, x, y):
        p = self.q_params.weight
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.x_dim or x.shape[0] < 1:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (batch, {self.x_dim}) (flattened {self.config.height}x"
                             f"{self.config.width} images), got {got}")
        x = x.to(p.dtype) if not torch.is_floating_point(x) else x
        if x.dtype != p.dtype or x.device != p.device:
            raise TypeError(f"x is {x.dtype} on {x.device}, the model's parameters {p.dtype} on {p.device}")
        return x, self._check_y(y, x.shape[0])

    def _check_y(self, y, n):
        if not self.config.vocab_size:
            if y is not None:
                raise ValueError("this DRAW has no caption input (vocab_size=0): pass y=None")
            return None
        if not isinstance(y, torch.Tensor) or y.dim() != 2 or y.shape[0] != n or torch.is_floating_point(y):
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"alignDRAW needs y: word ids of shape ({n}, L), 0 = padding; got {got}")
        return y.to(self.q_params.weight.device)

    # ------------------------------------------------------------------ the recurrence
    def run(self, x: torch.Tensor | None, k: int = 1, y: torch.Tensor | None = None, n: int | None = None,
            z: torch.Tensor | None = None, keep: bool = False):
        """The T steps on k copies of each input; with x=None, generation from the prior (n per caption or n in all).

        Returns a dict: "logits" (k, b, D) = c_T, "log_p_z" / "log_q_z" (T, k, b) the per-step log-densities of the
        drawn z_t (log_q_z absent when generating), "kl" (T, k, b) the closed-form KL(q(z_t | .) || p(z_t | z_<t)),
        and with keep=True "canvases" (T, k, b, D) = c_1..c_T, "read"/"write" windows per step (5-tuples of (k, b)),
        "alpha" (T, k, b, L). z (T, k, b, d), if given, replaces the draws (to test causality).
        """
        c = self.config
        k = positive_int("k", k)
        if x is not None:
            x, y = self._check(x, y)
            b = x.shape[0]
            xs = x.repeat(k, 1)                                                # (k b, D): copy j of row i at j b + i
        else:
            b = positive_int("n", n) if y is None else y.shape[0]
            y = self._check_y(y, b)
        p = self.q_params.weight
        m = k * b
        h_enc = p.new_zeros(m, c.enc_hidden)
        s_enc = p.new_zeros(m, c.enc_hidden)
        h_dec = p.new_zeros(m, c.dec_hidden)
        s_dec = p.new_zeros(m, c.dec_hidden)
        canvas = p.new_zeros(m, self.x_dim)
        if y is not None:
            h_lang, mask = self.encode_caption(y)                              # (b, L, 2 H_lang): once per caption
            h_lang, mask = h_lang.repeat(k, 1, 1), mask.repeat(k, 1)           # (k b, L, .)
        out = {"log_p_z": [], "log_q_z": [], "kl": []}
        kept = {"canvases": [], "read": [], "write": [], "alpha": []}
        for t in range(c.steps):
            mu_p, logvar_p = self._prior(h_dec)                                # (k b, d) each
            if x is not None:
                x_hat = xs - torch.sigmoid(canvas)                            # the error image
                r, win_r = self._glimpse(xs, x_hat, h_dec)                   # (k b, 2 N^2)
                h_enc, s_enc = self.enc(torch.cat([r, h_dec], -1), (h_enc, s_enc))
                mu_q, logvar_q = self.q_params(h_enc).chunk(2, -1)           # (k b, d) each
                z_t = mu_q + torch.exp(0.5 * logvar_q) * torch.randn_like(mu_q) if z is None else z[t].reshape(m, -1)
                out["log_q_z"].append(log_normal_diag(z_t, mu_q, logvar_q))
                out["kl"].append(kl_normal_normal(mu_q, logvar_q, mu_p, logvar_p))
                kept["read"].append(win_r)
            else:
                z_t = mu_p + torch.exp(0.5 * logvar_p) * torch.randn_like(mu_p) if z is None else z[t].reshape(m, -1)
            out["log_p_z"].append(log_normal_diag(z_t, mu_p, logvar_p))
            dec_in = z_t
            if y is not None:
                s_t, alpha = self.align(h_dec, h_lang, mask)                  # (k b, 2 H_lang), (k b, L)
                dec_in = torch.cat([z_t, s_t], -1)
                kept["alpha"].append(alpha)
            h_dec, s_dec = self.dec(dec_in, (h_dec, s_dec))
            w, win_w = self._write(h_dec)
            canvas = canvas + w                                                # c_t = c_{t-1} + write(h^dec_t)
            if keep:
                kept["canvases"].append(canvas)
                kept["write"].append(win_w)
        res = {"logits": canvas.view(k, b, -1)}
        for name, v in out.items():
            if v:
                res[name] = torch.stack(v).view(c.steps, k, b)
        if keep:
            res["canvases"] = torch.stack(kept["canvases"]).view(c.steps, k, b, -1)
            for name in ("read", "write"):
                if kept[name] and kept[name][0] is not None:
                    res[name] = [tuple(v.view(k, b) for v in win) for win in kept[name]]
            if kept["alpha"]:
                res["alpha"] = torch.stack(kept["alpha"]).view(c.steps, k, b, -1)
        return res

    # ------------------------------------------------------------------ the protocol of gvlib.models
    def log_weights(self, x: torch.Tensor, k: int = 1, y: torch.Tensor | None = None) -> torch.Tensor:
        """log w = log p(x | c_T) + sum_t [log p(z_t | z_<t) - log q(z_t | x, z_<t)], k trajectories: x (b, D) -> (k, b)."""
        r = self.run(x, k, y)
        log_lik = log_bernoulli_logits(x.to(r["logits"].dtype), r["logits"])  # (k, b)
        return log_lik + (r["log_p_z"] - r["log_q_z"]).sum(0)

    def elbo(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """One-trajectory ELBO log p(x | c_T) - sum_t KL(q(z_t | x, z_<t) || p(z_t | z_<t)), KLs in closed form: -> (b,)."""
        r = self.run(x, 1, y)
        return log_bernoulli_logits(x.to(r["logits"].dtype), r["logits"][0]) - r["kl"][:, 0].sum(0)

    def elbo_terms(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict:
        """{"log_lik": (b,), "kl": (T, b)}: the reconstruction term and the KL of each step (one trajectory)."""
        r = self.run(x, 1, y)
        return {"log_lik": log_bernoulli_logits(x.to(r["logits"].dtype), r["logits"][0]), "kl": r["kl"][:, 0]}

    @torch.no_grad()
    def sample(self, n: int = 1, y: torch.Tensor | None = None, keep: bool = False):
        """Pixel means sigmoid(c_T) of n draws from the prior, or one per caption in y: -> (n, D) (and the run dict with keep)."""
        r = self.run(None, 1, y, n=n, keep=keep)
        probs = torch.sigmoid(r["logits"][0])
        return (probs, r) if keep else probs


# ============================================================================================== captioned digits
#: the words of the captions; id 0 is padding
VOCAB = ("<pad>", "the", "is", "above", "below", "left", "right", "of") + tuple(str(d) for d in range(10))
_ID = {w: i for i, w in enumerate(VOCAB)}
CANVAS = (28, 28)
#: where a 14x14 digit goes on the 28x28 canvas: (top row, left column)
SLOTS = {"top": (0, 7), "bottom": (14, 7), "left": (7, 0), "right": (7, 14)}
#: layout -> (slot of the first digit, slot of the second), and the two phrasings of each arrangement
LAYOUTS = {"vertical": ("top", "bottom"), "horizontal": ("left", "right")}
_PHRASES = {"vertical": ("the {a} is above the {b}", "the {b} is below the {a}"),
            "horizontal": ("the {a} is left of the {b}", "the {b} is right of the {a}")}


def encode_caption(text: str, length: int = 7) -> torch.Tensor:
    """Word ids of a caption, padded with 0 to `length`: "the 3 is above the 7" -> (length,) int64."""
    words = text.split()
    if len(words) > length or any(w not in _ID for w in words):
        raise ValueError(f"caption {text!r} must have at most {length} words from {VOCAB[1:]}")
    return torch.tensor([_ID[w] for w in words] + [0] * (length - len(words)))


def decode_caption(ids) -> str:
    """The caption of a row of word ids (padding dropped): (L,) -> str."""
    return " ".join(VOCAB[int(i)] for i in ids if int(i) != 0)


def caption_for(a: int, b: int, layout: str, phrasing: int = 0) -> str:
    """The caption of digit a in the first slot of `layout` and b in the second; phrasing 1 names b first."""
    return _PHRASES[layout][phrasing].format(a=a, b=b)


def place(digit_a: torch.Tensor, digit_b: torch.Tensor, layout: str) -> torch.Tensor:
    """A 28x28 canvas (n, 784) with 14x14 digits a (n, 196) and b in the two slots of `layout` (pixelwise max where they overlap)."""
    n = digit_a.shape[0]
    canvas = digit_a.new_zeros(n, *CANVAS)
    for d, slot in zip((digit_a, digit_b), LAYOUTS[layout]):
        r, c = SLOTS[slot]
        region = canvas[:, r:r + 14, c:c + 14]
        canvas[:, r:r + 14, c:c + 14] = torch.maximum(region, d.view(n, 14, 14))
    return canvas.flatten(1)


def slot_crops(canvases: torch.Tensor, slot: str) -> torch.Tensor:
    """The 14x14 region of a slot ("top", "bottom", "left", "right"): (n, 784) -> (n, 196)."""
    r, c = SLOTS[slot]
    return canvases.view(-1, *CANVAS)[:, r:r + 14, c:c + 14].flatten(1)


def captioned_digits(x: torch.Tensor, labels: torch.Tensor, n: int, held_out=(), seed: int = 0,
                     exclude_held_out: bool = True):
    """n canvases of two 14x14 digits from (x (m, 196), labels (m,)), with captions.

    Each example draws two digits, a layout ("vertical": a above b; "horizontal": a left of b) and one of its two
    phrasings ("the a is above the b" or "the b is below the a"). `held_out` lists arrangements (a, b, layout) that
    are left out (exclude_held_out=True, a training set) or the only ones drawn (False, a test set of unseen
    captions). Seeded by `seed` (+ $GVLIB_SEED_OFFSET). Returns (canvases (n, 784), captions (n, 7) word ids,
    arrangements (n, 3) int64: a, b, layout 0 vertical / 1 horizontal).
    """
    from . import generator

    g = generator(seed)
    n = positive_int("n", n)
    held = {(int(a), int(b), str(l)) for a, b, l in held_out}
    names = tuple(LAYOUTS)
    by_class = [torch.nonzero(labels == d).flatten() for d in range(10)]
    rows_a, rows_b, arr, caps = [], [], [], []
    while len(arr) < n:
        if exclude_held_out:
            a, b = torch.randint(0, 10, (2,), generator=g).tolist()
            lay = names[int(torch.randint(0, 2, (1,), generator=g))]
            if (a, b, lay) in held:
                continue
        else:
            a, b, lay = sorted(held)[int(torch.randint(0, len(held), (1,), generator=g))]
        ia = by_class[a][torch.randint(0, len(by_class[a]), (1,), generator=g)]
        ib = by_class[b][torch.randint(0, len(by_class[b]), (1,), generator=g)]
        phr = int(torch.randint(0, 2, (1,), generator=g))
        rows_a.append(ia)
        rows_b.append(ib)
        arr.append((a, b, names.index(lay)))
        caps.append(encode_caption(caption_for(a, b, lay, phr)))
    arr_t = torch.tensor(arr)
    rows_a, rows_b = torch.cat(rows_a).to(x.device), torch.cat(rows_b).to(x.device)
    canv = torch.empty(n, CANVAS[0] * CANVAS[1], dtype=x.dtype, device=x.device)
    for li, lay in enumerate(names):
        sel = (arr_t[:, 2] == li).to(x.device)
        if sel.any():
            canv[sel] = place(x[rows_a[sel]], x[rows_b[sel]], lay)
    return canv, torch.stack(caps).to(x.device), arr_t.to(x.device)
