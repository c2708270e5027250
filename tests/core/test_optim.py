"""fedlora's Adam and SGD make torch.optim's updates bit for bit."""

import pytest
import torch

from fedlora.optim import SGD, Adam


def _trajectory(make_optimizer, steps: int = 7) -> list[torch.Tensor]:
    torch.manual_seed(0)
    weights = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(4))]
    optimizer = make_optimizer(weights)
    inputs = torch.randn(8, 3)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = ((inputs @ weights[0].T).tanh().sum(1, keepdim=True) * weights[1]).pow(2).mean()
        loss.backward()
        optimizer.step()
    return [w.detach().clone() for w in weights]


@pytest.mark.parametrize(
    ("ours", "torchs"),
    [
        (lambda w: Adam(w, lr=0.05), lambda w: torch.optim.Adam(w, lr=0.05)),
        (lambda w: SGD(w, lr=0.1), lambda w: torch.optim.SGD(w, lr=0.1)),
        (lambda w: SGD(w, lr=0.1, momentum=0.9), lambda w: torch.optim.SGD(w, lr=0.1, momentum=0.9)),
    ],
    ids=["adam", "sgd", "momentum"],
)
def test_updates_equal_torch_optim_bit_for_bit(ours, torchs):
    mine, reference = _trajectory(ours), _trajectory(torchs)
    assert not torch.equal(mine[0], _trajectory(ours, steps=6)[0])  # the steps did move the weights
    for a, b in zip(mine, reference):
        assert torch.equal(a, b)


def test_adam_state_is_torchs_layout():
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = Adam([weight], lr=0.1)
    weight.sum().backward()
    optimizer.step()
    state = optimizer.state[weight]
    assert set(state) == {"step", "exp_avg", "exp_avg_sq"} and state["step"].item() == 1.0
