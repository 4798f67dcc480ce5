"""The hand-written GRU recurrence that CPU training uses, against `nn.GRU` itself."""

import pytest
import torch
from torch import nn

from popray.training.gru import CpuTrainedGru
from popray.training.models import create_model


@pytest.mark.parametrize(
    ("width", "units", "batch", "steps"), [(40, 8, 5, 15), (8, 6, 3, 15), (12, 8, 1, 1)]
)
def test_the_cpu_recurrence_gives_nn_grus_outputs_and_gradients(width, units, batch, steps):
    torch.manual_seed(0)
    mine = CpuTrainedGru(width, units).double().train()
    reference = nn.GRU(width, units, batch_first=True).double()
    reference.load_state_dict(mine.state_dict())  # the same parameters, the same names
    x = torch.randn(batch, steps, width, dtype=torch.double, requires_grad=True)
    out, last = mine(x)
    out_ref, last_ref = reference(x)
    assert torch.allclose(out, out_ref, atol=1e-12) and torch.allclose(last, last_ref, atol=1e-12)
    weights = torch.randn_like(out)  # a loss that reaches every step's output, and h_n
    loss, loss_ref = ((o * weights).sum() + h.sum() for o, h in ((out, last), (out_ref, last_ref)))
    grads = torch.autograd.grad(loss, [x, *mine.parameters()])
    grads_ref = torch.autograd.grad(loss_ref, [x, *reference.parameters()])
    for name, g, g_ref in zip(["x", "w_ih", "w_hh", "b_ih", "b_hh"], grads, grads_ref, strict=True):
        assert torch.allclose(g, g_ref, atol=1e-10), name


def test_evaluation_and_an_initial_state_take_nn_grus_own_path():
    torch.manual_seed(1)
    gru = CpuTrainedGru(6, 4)
    x = torch.randn(2, 5, 6)
    trained, _ = gru(x)
    assert trained.grad_fn.name().startswith("_Recurrence")
    with torch.no_grad():
        assert gru(x)[0].grad_fn is None
    evaluated, _ = gru.eval()(x)
    assert torch.allclose(evaluated, trained, atol=1e-6)
    assert "Recurrence" not in gru.train()(x, torch.zeros(1, 2, 4))[0].grad_fn.name()


def test_a_video_model_trains_with_the_recurrence_to_nn_grus_weights():
    """One Adam step of the whole CNN-RNN: its parameters move as with nn.GRU."""
    torch.manual_seed(2)
    x, y = torch.randn(8, 15, 32), torch.randint(0, 2, (8,))
    nets = [create_model("video", 2, width=32) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    for net, gru in zip(nets, (CpuTrainedGru, nn.GRU), strict=True):
        if gru is nn.GRU:  # the reference: plain nn.GRU layers with the same weights
            for name in ("gru1", "gru2"):
                old = getattr(net, name)
                plain = nn.GRU(old.input_size, old.hidden_size, batch_first=True)
                plain.load_state_dict(old.state_dict())
                setattr(net, name, plain)
        for layer in (net.in_dropout1, net.in_dropout2, net.dropout):
            layer.p = 0.0  # no random masks: the two must match exactly
        optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
        nn.functional.cross_entropy(net.train()(x), y).backward()
        optimiser.step()
    for (name, a), b in zip(
        nets[0].state_dict().items(), nets[1].state_dict().values(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-6), name
