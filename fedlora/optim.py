"""Adam and SGD for the local trainer, without ``torch._dynamo``.

``torch.optim.Adam.step`` and ``torch.optim.SGD.step`` import ``torch._dynamo`` on every
call (to place a graph break for ``torch.compile``): about 80 MiB of resident memory and a
second of start-up that a Raspberry Pi Zero 2 W, with 512 MB in all, cannot spare. These
are the same updates — torch 2.13's single-tensor code paths for CPU tensors, operation for
operation, so results are bit-identical (tests/core/test_optim.py) — as subclasses of
``torch.optim.Optimizer``, so optimizer hooks (the memory probe's) and ``state_dict`` work
as for torch's own. Only what fedlora uses is implemented: no weight decay, no amsgrad,
no ``maximize``, no closures.
"""

from __future__ import annotations

import torch
from torch import nn


class Adam(torch.optim.Optimizer):
    """Adam (Kingma & Ba) as ``torch.optim.Adam(params, lr, betas, eps)``."""

    def __init__(self, params: list[nn.Parameter], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:  # as torch: a float32 step counter on the CPU, zeroed moments
                    state["step"] = torch.tensor(0.0, dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                grad, exp_avg, exp_avg_sq = param.grad, state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step = state["step"].item()
                step_size = lr / (1 - beta1**step)
                denominator = (exp_avg_sq.sqrt() / (1 - beta2**step) ** 0.5).add_(eps)
                param.addcdiv_(exp_avg, denominator, value=-step_size)


class SGD(torch.optim.Optimizer):
    """Stochastic gradient descent, with heavy-ball momentum when ``momentum`` > 0, as
    ``torch.optim.SGD(params, lr, momentum)``."""

    def __init__(self, params: list[nn.Parameter], lr: float, momentum: float = 0.0):
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                update = param.grad
                if momentum != 0:
                    state = self.state[param]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = update.detach().clone()
                    else:
                        state["momentum_buffer"].mul_(momentum).add_(update)
                    update = state["momentum_buffer"]
                param.add_(update, alpha=-lr)
