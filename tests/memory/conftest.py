"""Small models with the structure of fedlora's tasks, built in milliseconds (no base bundle).

Memory does not depend on weight values, so these factorize randomly initialised models.
"""

import pytest
import torch

from fedlora.factorize import factorize_model
from fedlora.rank import RankRule
from fedlora.tasks.base import manual_seed_generator
from fedlora.tasks.char_transformer import CharTransformer
from fedlora.tasks.datasets import LabelledDataset, TokenStream
from fedlora.tasks.mlp import MLP
from fedlora.tasks.textlm import TextLMTask



@pytest.fixture(scope="session")
def small_lm():
    """A two-block char transformer (context 32, width 32), factorized like textlm, and its data."""
    torch.manual_seed(0)
    model = CharTransformer(97, context=32, d_model=32, n_layers=2, n_heads=4, d_ff=64)
    factorize_model(model, TextLMTask.default_targets, RankRule("budget", 0.5))
    model.requires_grad_(False)
    data = TokenStream(torch.randint(97, (4000,), generator=manual_seed_generator(1)), 32)
    return model, data


@pytest.fixture(scope="session")
def small_mlp():
    """MLP 8 → 16 → 16 → 4 with fc1, fc2 factorized at rank 4, and labelled data."""
    torch.manual_seed(0)
    model = MLP(8, [16, 16], 4)
    factorize_model(model, r"^fc\d+$", RankRule("fixed", 4))
    model.requires_grad_(False)
    generator = manual_seed_generator(2)
    data = LabelledDataset(torch.randn(64, 8, generator=generator), torch.randint(4, (64,), generator=generator))
    return model, data


@pytest.fixture(scope="session")
def lm_planner(small_lm):
    from fedlora.client.plan_search import Planner

    model, data = small_lm
    return Planner(model, data.sample(2, manual_seed_generator(0)))


@pytest.fixture(scope="session")
def roomy():
    """A microcontroller profile whose RAM never limits (to judge requests as they are)."""
    from fedlora.client.profiles import load_profile

    return load_profile("name=roomy,kind=mcu,ram=1GiB,ram_reserve=1MiB,flash=16MiB,weights_in_flash=true,uplink=ble")
