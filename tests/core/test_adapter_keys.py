"""The adapter key grammar: names built and split in one place."""

import pytest

from fedlora.adapters.keys import AdapterKey, adapter_key, delta_key, is_adapter_key, layer_of, layer_of_delta, split_key


def test_a_key_splits_into_layer_adapter_and_tensor():
    key = "blocks.0.attn.q.adapters.global.lora_A"
    assert split_key(key) == AdapterKey("blocks.0.attn.q", "global", "lora_A")
    assert str(split_key(key)) == key == adapter_key("blocks.0.attn.q", "global", "lora_A")
    assert split_key(key).sibling("lora_B") == "blocks.0.attn.q.adapters.global.lora_B"
    assert layer_of(key) == "blocks.0.attn.q"


def test_adapter_keys_are_told_from_model_tensors():
    assert is_adapter_key("fc.adapters.personal.lora_B")
    assert is_adapter_key("fc.adapters.personal.lora_B", "personal") and not is_adapter_key("fc.adapters.personal.lora_B", "global")
    assert not is_adapter_key("fc.base.u") and not is_adapter_key("fc.weight")


@pytest.mark.parametrize("key", ["fc.weight", "fc.adapters.lora_A", "fc.adapters.global.weight"])
def test_other_names_do_not_split(key):
    with pytest.raises(ValueError, match="not an adapter tensor name"):
        split_key(key)


def test_aggregated_update_names():
    assert layer_of_delta(delta_key("blocks.1.ffn.fc2")) == "blocks.1.ffn.fc2"
    with pytest.raises(ValueError, match="not an aggregated update"):
        layer_of_delta("blocks.1.ffn.fc2.adapters.global.lora_A")
