"""A device's trainer runs without importing torch._dynamo, and trains the same."""

import subprocess
import sys

TRAIN = r"""
import sys, torch
if sys.argv[1] == "light":
    from fedlora.client.light_torch import skip_dynamo_import
    assert skip_dynamo_import() > 0
from fedlora.optim import Adam
torch.manual_seed(0)
layer = torch.nn.Linear(6, 6)
optimizer = Adam(list(layer.parameters()), lr=0.01)
for _ in range(3):
    optimizer.zero_grad(set_to_none=True)
    layer(torch.randn(4, 6)).pow(2).mean().backward()
    torch.nn.utils.clip_grad_norm_(list(layer.parameters()), 1.0)
    optimizer.step()
print("dynamo" if "torch._dynamo" in sys.modules else "no-dynamo", layer.weight.sum().item().hex())
"""


def _train(mode: str) -> tuple[str, str]:
    out = subprocess.run([sys.executable, "-c", TRAIN, mode], capture_output=True, text=True, check=True).stdout.split()
    return out[0], out[1]


def test_training_without_dynamo_gives_the_same_weights():
    light, heavy = _train("light"), _train("plain")
    assert light[0] == "no-dynamo"
    assert heavy[0] == "dynamo"  # what skip_dynamo_import saves: the check can tell the difference
    assert light[1] == heavy[1]


PLAN = r"""
import sys
if sys.argv[1] == "light":
    from fedlora.client.light_torch import skip_dynamo_import
    skip_dynamo_import()
from fedlora.client.device_plan import plan_for
from fedlora.client.profiles import load_profile
from fedlora.settings import FederationSettings
plan = plan_for(load_profile("rpi4"), FederationSettings(task="textlm", clients=2))
print("dynamo" if "torch._dynamo" in sys.modules else "no-dynamo", plan.breakdown.host_bytes, plan.describe())
"""


def test_the_device_planner_plans_the_same_without_dynamo():
    def plan(mode: str) -> list[str]:
        return subprocess.run([sys.executable, "-c", PLAN, mode], capture_output=True, text=True, check=True).stdout.split(maxsplit=1)

    light, heavy = plan("light"), plan("plain")
    assert (light[0], heavy[0]) == ("no-dynamo", "dynamo")
    assert light[1] == heavy[1]
