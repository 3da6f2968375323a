"""test_compile.py: torch.compile(fullgraph=True) traces through the custom
operator on the CPU (one small case: a first compile takes ~20 s here).

The compiled model is a whole attention layer: projections, views that
split the heads (strided, not contiguous), MTAttention, the output
projection; its parameters require grad, as a training model's do, so
AOTAutograd also traces the joint forward-backward graph (the forward-only
op must not break that). Running the compiled backward is not tried here:
inductor would compile the backward graph first (~100 s on this machine)
only to raise the no-backward error that test_forward checks eagerly."""
import torch
from torch import nn

import mtatune.torch as mt
from mta_reference import mta_forward
from util import check, gen, require, test, uniform

B, T, H, D = 2, 37, 4, 16
# The f32_all problem of test_forward (its kernel is cached by then).
FULL = dict(query_kernel_size=6, key_kernel_size=11, pre_sm_linear_head=True,
            after_sm_query_kernel_size=6, after_sm_key_kernel_size=11, head_kernel_size=4,
            group_norm=True, add_gating=True)


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.wqkv = nn.Linear(H * D, 3 * H * D, bias=False)
        self.mta = mt.MTAttention(H, D, **FULL)
        self.wo = nn.Linear(H * D, H * D, bias=False)

    def forward(self, x):
        q, k, v = self.wqkv(x).view(B, T, 3, H, D).unbind(2)  # strided views
        return self.wo(self.mta(q, k, v).reshape(B, T, H * D))


@test
def test_compile_fullgraph_cpu():
    g = gen("compile")
    layer = Layer()
    with torch.no_grad():
        for name, p in layer.named_parameters():
            p.copy_(uniform(g, p.shape, 0.3 if name.startswith("mta.") else (H * D) ** -0.5))
    compiled = torch.compile(layer, fullgraph=True)
    with torch._inductor.config.patch(compile_threads=1):  # no worker pool: faster here
        run(compiled, layer, g)


def run(compiled, layer, g):
    for rep in range(2):  # the second call runs the cached graph on new inputs
        x = uniform(g, (B, T, H * D))
        o = compiled(x)
        require(o.requires_grad, "compiled output does not require grad")
        with torch.no_grad():
            q, k, v = layer.wqkv(x).view(B, T, 3, H, D).unbind(2)
            eager = layer(x)
            m = layer.mta
            e = mta_forward(q, k, v, **m.weights()).reshape(B, T, H * D) @ \
                layer.wo.weight.double().T
        check(o, e, torch.float32, f"compiled, call {rep + 1}")
        require(torch.allclose(o, eager, rtol=1e-5, atol=1e-6),
                f"compiled and eager differ by {float((o - eager).detach().abs().max()):.3g}")
