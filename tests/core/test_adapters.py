import pytest
import torch
from torch import nn

from fedlora.adapters import AdapterConfig, adapter_state, attach_adapters, load_adapter_state, set_merged
from fedlora.adapters.model import adapted_layers
from fedlora.errors import FedloraError
from fedlora.factorize import factorize_model
from fedlora.metrics import cross_entropy
from fedlora.quantize import quantize_base
from fedlora.rank import RankRule


def base_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 12), nn.GELU(), nn.Linear(12, 10), nn.GELU(), nn.Linear(10, 4))
    factorize_model(model, r"^(0|2)$", RankRule("fixed", 5))
    quantize_base(model)
    return model


def trained(variant: str, steps: int = 3) -> nn.Module:
    model = base_model()
    attach_adapters(model, AdapterConfig(variant=variant, rank=3, seed=1))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randn(8, 16, generator=generator)
        y = torch.randint(4, (8,), generator=generator)
        optimizer.zero_grad()
        cross_entropy(model(x), y).backward()
        optimizer.step()
    return model


def keys(*names: str) -> set[str]:
    return {f"{layer}.adapters.global.lora_{name}" for layer in ("0", "2") for name in names}


TRAINABLE = {"lora": keys("A", "B"), "lora-fa": keys("B"), "core": keys("R")}


@pytest.mark.parametrize("variant", ["lora", "lora-fa", "core"])
def test_only_adapter_parameters_require_grad_and_change(variant):
    before = base_model().state_dict()
    model = trained(variant)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == TRAINABLE[variant]
    after = model.state_dict()
    for key, value in before.items():
        wrapped = key.replace("0.", "0.base.", 1).replace("2.", "2.base.", 1) if key[0] in "02" else key
        assert torch.equal(after[wrapped], value), f"frozen tensor {key} changed"
    for key in TRAINABLE[variant]:
        if key.endswith(("lora_B", "lora_R")):
            assert after[key].abs().sum() > 0, f"{key} did not train"


@pytest.mark.parametrize("variant", ["lora", "lora-fa", "core"])
def test_new_adapters_start_as_the_identity(variant):
    plain = base_model()
    adapted = base_model()
    attach_adapters(adapted, AdapterConfig(variant=variant, rank=3))
    x = torch.randn(5, 16)
    assert torch.equal(adapted(x), plain(x))


def test_lora_fa_shares_its_frozen_a_by_seed():
    first, second, other = base_model(), base_model(), base_model()
    attach_adapters(first, AdapterConfig(variant="lora-fa", rank=3, seed=7))
    attach_adapters(second, AdapterConfig(variant="lora-fa", rank=3, seed=7))
    attach_adapters(other, AdapterConfig(variant="lora-fa", rank=3, seed=8))
    a = lambda model: model[0].adapters["global"].lora_A  # noqa: E731
    assert torch.equal(a(first), a(second))
    assert not torch.equal(a(first), a(other))


def test_core_uses_the_layers_own_singular_subspaces():
    model = base_model()
    attach_adapters(model, AdapterConfig(variant="core", rank=3))
    layer, update = model[0], model[0].adapters["global"]
    left, _, right = torch.linalg.svd(layer.base.dense_weight().double(), full_matrices=False)
    torch.testing.assert_close(update.lora_A.double(), right[:3], rtol=0, atol=1e-6)
    torch.testing.assert_close(update.lora_B.double(), left[:, :3], rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant", ["lora", "lora-fa", "core"])
def test_adapter_state_round_trips_exactly(variant):
    source = trained(variant)
    state = adapter_state(source)
    assert all(key.rpartition(".")[2].startswith("lora_") for key in state)
    target = base_model()
    attach_adapters(target, AdapterConfig(variant=variant, rank=3, seed=1))
    load_adapter_state(target, state)
    x = torch.randn(6, 16)
    assert torch.equal(target(x), source(x))
    assert all(torch.equal(adapter_state(target)[k], v) for k, v in state.items())


def test_trainable_only_state_is_what_trains():
    assert set(adapter_state(trained("lora-fa"), trainable_only=True)) == TRAINABLE["lora-fa"]


def test_loading_wrong_keys_or_shapes_is_refused():
    model = trained("lora")
    state = adapter_state(model)
    with pytest.raises(FedloraError, match="keys this model does not have: 9.lora_A"):
        load_adapter_state(model, {**state, "9.lora_A": torch.zeros(1)})
    key = "0.adapters.global.lora_B"
    with pytest.raises(FedloraError, match=rf"{key}: got \(12, 2\), expected \(12, 3\)"):
        load_adapter_state(model, {**state, key: torch.zeros(12, 2)})


@pytest.mark.parametrize("variant", ["lora", "lora-fa", "core"])
def test_merge_equals_adapter_forward_and_unmerge_restores_the_base(variant):
    model = trained(variant)
    x = torch.randn(9, 16)
    adapter_output = model(x)
    base_u = {name: layer.base.u.clone() for name, layer in adapted_layers(model).items()}
    set_merged(model, True)
    for name, layer in adapted_layers(model).items():
        assert layer.base.rank == 5 + 3, name  # rank-(k+r) factorization, never a dense matrix
    torch.testing.assert_close(model(x), adapter_output, rtol=1e-5, atol=1e-5)
    set_merged(model, False)
    for name, layer in adapted_layers(model).items():
        assert torch.equal(layer.base.u, base_u[name])
    torch.testing.assert_close(model(x), adapter_output, rtol=1e-6, atol=1e-6)


def test_adapter_rank_larger_than_the_layer_is_refused():
    model = base_model()
    with pytest.raises(FedloraError, match=r"adapter rank 11 is larger than layer '2' allows \(10×12, at most 10\)"):
        attach_adapters(model, AdapterConfig(rank=11))
    assert not adapted_layers(model), "a refused rank must leave the model untouched"
    with pytest.raises(FedloraError, match="unknown adapter variant"):
        AdapterConfig(variant="dora")


def test_a_personal_adapter_adds_to_the_global_one_and_merges_with_it():
    model = trained("lora")
    attach_adapters(model, AdapterConfig(variant="lora", rank=2, seed=3), adapter="personal")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == TRAINABLE["lora"] | {f"{l}.adapters.personal.lora_{x}" for l in "02" for x in "AB"}
    with torch.no_grad():
        model[0].adapters["personal"].lora_B.normal_()
    assert set(adapter_state(model, "personal")) == {f"{l}.adapters.personal.lora_{x}" for l in "02" for x in "AB"}
    x = torch.randn(4, 16)
    expected = model(x)
    set_merged(model, True)
    assert model[0].base.rank == 5 + 3 + 2
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(FedloraError, match="already has an adapter called 'personal'"):
        set_merged(model, False)
        attach_adapters(model, AdapterConfig(rank=2), adapter="personal")
