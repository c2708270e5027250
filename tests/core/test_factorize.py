import numpy as np
import pytest
import torch
from torch import nn

from fedlora.errors import FedloraError
from fedlora.factorize import FactorizedLinear, factorize_model, svd_factors
from fedlora.rank import RankRule


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3))


def test_full_rank_factorization_reproduces_the_layer():
    model = mlp()
    x = torch.randn(7, 12)
    expected = model(x)
    reports = factorize_model(model, r"^(0|2|4)$", RankRule("energy", 1.0))
    assert [r.rank for r in reports] == [8, 5, 3]
    assert all(isinstance(model[i], FactorizedLinear) for i in (0, 2, 4))
    assert all(r.relative_error < 1e-6 for r in reports)
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_factors_are_balanced_and_multiply_to_the_truncation():
    weight = torch.randn(6, 9, dtype=torch.float64).float()
    u, v = svd_factors(weight, 3)
    assert u.shape == (6, 3) and v.shape == (3, 9)
    # balanced: column norms of U equal row norms of V (both sqrt of the singular values)
    torch.testing.assert_close(u.norm(dim=0), v.norm(dim=1), rtol=1e-5, atol=1e-6)
    left, s, right = torch.linalg.svd(weight.double(), full_matrices=False)
    truncated = (left[:, :3] * s[:3]) @ right[:3]
    torch.testing.assert_close((u @ v).double(), truncated, rtol=1e-5, atol=1e-5)


def test_energy_rule_picks_the_documented_rank():
    # energies 16, 9, 4, 1 of total 30: 0.5 → 1 (16/30 = .53), 0.8 → 2 (25/30 = .83), 0.9 → 3
    values = np.array([4.0, 3.0, 2.0, 1.0])
    assert RankRule("energy", 0.5).choose(values, 4, 4) == 1
    assert RankRule("energy", 0.8).choose(values, 4, 4) == 2
    assert RankRule("energy", 0.9).choose(values, 4, 4) == 3
    assert RankRule("energy", 1.0).choose(values, 4, 4) == 4


def test_budget_rule_picks_the_largest_rank_within_the_budget():
    # 64×64 at 50%: r·128 ≤ 2048 → r = 16; 256×64 at 25%: r·320 ≤ 4096 → r = 12
    assert RankRule("budget", 0.5).choose(np.ones(64), 64, 64) == 16
    assert RankRule("budget", 0.25).choose(np.ones(64), 256, 64) == 12
    assert RankRule("budget", 0.001).choose(np.ones(64), 64, 64) == 1


def test_rank_too_large_is_refused_and_leaves_the_model_untouched():
    model = mlp()
    with pytest.raises(FedloraError, match=r"rank 6 is larger than layer '2' allows.*at most 5"):
        factorize_model(model, r"^(0|2)$", RankRule("fixed", 6))
    assert isinstance(model[0], nn.Linear)


def test_bad_target_patterns_name_the_layers():
    with pytest.raises(FedloraError, match="matches no nn.Linear layer; the model's linear layers are: 0, 2, 4"):
        factorize_model(mlp(), "nothing", RankRule("fixed", 1))
    with pytest.raises(FedloraError, match="not a valid regular expression"):
        factorize_model(mlp(), "(", RankRule("fixed", 1))


@pytest.mark.parametrize("kind, value", [("fixed", 0), ("fixed", 1.5), ("energy", 0), ("energy", 1.2), ("budget", -1)])
def test_invalid_rank_rules_are_refused(kind, value):
    with pytest.raises(FedloraError):
        RankRule(kind, value)


def test_factorization_works_on_any_module_with_linears():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.ModuleDict({"proj": nn.Linear(16, 16, bias=False)})
            self.out = nn.Linear(16, 4)

        def forward(self, x):
            return self.out(torch.tanh(self.encoder["proj"](x)))

    model = Custom()
    reports = factorize_model(model, r"proj", RankRule("budget", 0.5))
    assert [(r.name, r.rank) for r in reports] == [("encoder.proj", 4)]
    assert model.encoder["proj"].bias is None
    assert model(torch.randn(2, 16)).shape == (2, 4)


def correlated_inputs(n: int = 12, count: int = 64) -> list[torch.Tensor]:
    """Inputs that live mostly in a few directions, as real activations do."""
    g = torch.Generator().manual_seed(1)
    mixing = torch.randn(3, n, generator=g) * 3
    return [torch.randn(32, 3, generator=g) @ mixing + 0.05 * torch.randn(32, n, generator=g) for _ in range(count // 32)]


def test_activation_aware_full_rank_still_reproduces_the_layer():
    model = mlp()
    x = torch.randn(7, 12)
    expected = model(x)
    factorize_model(model, r"^0$", RankRule("fixed", 8), calibration=correlated_inputs())
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)


def test_activation_aware_truncation_loses_less_on_the_inputs_it_was_calibrated_on():
    calibration = correlated_inputs()
    held_out = correlated_inputs(count=96)[-1]
    errors = {}
    for name, data in (("plain", None), ("aware", calibration)):
        model = mlp()
        dense = model[0](held_out)
        factorize_model(model, r"^0$", RankRule("fixed", 3), calibration=data)
        errors[name] = torch.linalg.norm(model[0](held_out) - dense) / torch.linalg.norm(dense)
    assert errors["aware"] < 0.5 * errors["plain"], errors
