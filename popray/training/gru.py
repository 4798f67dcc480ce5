"""`CpuTrainedGru`: `nn.GRU` whose training passes on CPU run a hand-written recurrence.

The paper's GRUs are tiny (8 and 6 units) over 15 steps, so on CPU a training step is
not arithmetic but operator dispatch: `nn.GRU`'s forward and its autograd backward are a
few hundred small tensor operations, ~3-5 us each. Here the recurrence runs in NumPy on
the (batch, 3 x units) gate arrays (~1 us an operation) and the backward pass is the
GRU's own derivative through time, written out; the input projections (the only
sizeable arithmetic) stay one torch matmul each way. Same equations, same parameters
(the state dict is `nn.GRU`'s), the same results to float rounding (tests/test_gru.py
checks outputs and every gradient against `nn.GRU`); evaluation, inference and CUDA
use `nn.GRU` itself. PyTorch's gate order (reset, update, new) and biases:

    r = s(x W_ir + b_ir + h W_hr + b_hr)     z = s(x W_iz + b_iz + h W_hz + b_hz)
    n = tanh(x W_in + b_in + r * (h W_hn + b_hn))     h' = n + z * (h - n)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


class _Recurrence(torch.autograd.Function):
    """One GRU layer over (B, T, D) from h0 = 0: every hidden state, (B, T, H)."""

    @staticmethod
    def forward(ctx, x, w_ih, w_hh, b_ih, b_hh):
        batch, steps, _ = x.shape
        units = w_hh.shape[1]
        gi = torch.addmm(b_ih, x.reshape(batch * steps, -1), w_ih.t())
        gi = gi.view(batch, steps, 3 * units).numpy()
        w_hh_t, b = w_hh.detach().numpy().T.copy(), b_hh.detach().numpy()
        hs = np.zeros((batch, steps + 1, units), gi.dtype)  # hs[:, 0]: h0
        rz = np.empty((batch, steps, 2 * units), gi.dtype)
        new = np.empty((batch, steps, units), gi.dtype)
        gh_new = np.empty((batch, steps, units), gi.dtype)  # h W_hn + b_hn, for dr
        h = hs[:, 0]
        for t in range(steps):
            gh = h @ w_hh_t + b
            g = gi[:, t]
            rz[:, t] = _sigmoid(g[:, : 2 * units] + gh[:, : 2 * units])
            gh_new[:, t] = gh[:, 2 * units :]
            new[:, t] = np.tanh(g[:, 2 * units :] + rz[:, t, :units] * gh_new[:, t])
            h = new[:, t] + rz[:, t, units:] * (h - new[:, t])
            hs[:, t + 1] = h
        saved = [torch.from_numpy(a) for a in (hs, rz, new, gh_new)]
        ctx.save_for_backward(x, w_ih, w_hh, *saved)
        return saved[0][:, 1:].clone()

    @staticmethod
    def backward(ctx, grad):
        x, w_ih, w_hh, hs, rz, new, gh_new = ctx.saved_tensors
        batch, steps, units = grad.shape
        g = grad.contiguous().numpy()
        hs, rz, new, gh_new = hs.numpy(), rz.numpy(), new.numpy(), gh_new.numpy()
        r, z, before = rz[..., :units], rz[..., units:], hs[:, :-1]
        # what does not depend on dh, for every step at once
        to_z = (before - new) * z * (1 - z)  # dL/d(z's pre-activation) = dh * to_z
        to_n = (1 - z) * (1 - new * new)  # ... of n's = dh * to_n
        to_r = gh_new * r * (1 - r)  # ... of r's = (n's) * to_r
        d_gi = np.empty((batch, steps, 3 * units), g.dtype)
        d_gh = np.empty((batch, steps, 3 * units), g.dtype)
        w = w_hh.detach().numpy()
        dh = np.zeros((batch, units), g.dtype)
        for t in range(steps - 1, -1, -1):
            dh = dh + g[:, t]
            dn = dh * to_n[:, t]
            d_gi[:, t, :units] = dn * to_r[:, t]
            d_gi[:, t, units : 2 * units] = dh * to_z[:, t]
            d_gi[:, t, 2 * units :] = dn
            d_gh[:, t, : 2 * units] = d_gi[:, t, : 2 * units]
            d_gh[:, t, 2 * units :] = dn * r[:, t]
            dh = dh * z[:, t] + d_gh[:, t] @ w
        d_gi = torch.from_numpy(d_gi.reshape(batch * steps, 3 * units))
        d_gh = d_gh.reshape(batch * steps, 3 * units)
        d_x = (d_gi @ w_ih).view_as(x) if ctx.needs_input_grad[0] else None
        d_w_ih = d_gi.t() @ x.reshape(batch * steps, -1)
        d_w_hh = torch.from_numpy(d_gh.T @ before.reshape(batch * steps, units))
        return d_x, d_w_ih, d_w_hh, d_gi.sum(0), torch.from_numpy(d_gh.sum(0))


class CpuTrainedGru(nn.GRU):
    """`nn.GRU(input_size, hidden_size, batch_first=True)` (one layer, one direction,
    h0 = 0) whose training passes on CPU run `_Recurrence` (see the module docstring)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size, batch_first=True)

    def forward(self, x: torch.Tensor, hx: torch.Tensor | None = None):
        if hx is not None or x.is_cuda or not (self.training and torch.is_grad_enabled()):
            return super().forward(x, hx)
        params = (self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0)
        out = _Recurrence.apply(x.contiguous(), *params)
        return out, out[:, -1].unsqueeze(0)
