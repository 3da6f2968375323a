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
from util import check, gen, qkv, require, test, uniform, weights

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


@test
def test_compile_one_graph_for_every_length():
    """torch.compile(fullgraph=True) of an MTAttention layer traces the operator
    once for every batch size and sequence length: its fake keeps B and T
    symbolic (an int() of them made a graph per length, and fullgraph=True
    failed at the ninth). dynamic=True: one graph; by default PyTorch traces
    the first shape static and the second dynamic: two. (Sizes that equal H,
    Hkv or D at the first trace would be specialised with them by PyTorch's
    duck shaping: the first shape avoids them.) A counting backend runs the
    traced graphs eagerly (no inductor compile); every output is checked
    against the float64 reference."""
    g = gen("compile_lengths")
    layer = mt.MTAttention(4, 8, 2, query_kernel_size=3, key_kernel_size=5,
                           pre_sm_linear_head=True, after_sm_query_kernel_size=2,
                           after_sm_key_kernel_size=3, head_kernel_size=2, group_norm=True)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(uniform(g, p.shape, 0.3))
    sizes = [(3, 11), (2, 5), (3, 4), (2, 13), (5, 7), (3, 17), (2, 6), (2, 21), (3, 2),
             (2, 9), (6, 30)]
    for dynamic, want in ((True, 1), (None, 2)):
        graphs = []

        def backend(gm, example_inputs):
            graphs.append(gm)
            return gm.forward

        torch._dynamo.reset()
        f = torch.compile(lambda q, k, v: layer(q, k, v) * 2, backend=backend,
                          dynamic=dynamic, fullgraph=True)
        for B_, T_ in sizes:
            q, k, v = qkv(g, B_, T_, 4, 2, 8, torch.float32)
            with torch.no_grad():
                o = f(q, k, v)
            check(o, 2 * mta_forward(q, k, v, **layer.weights()), torch.float32,
                  f"dynamic={dynamic} B={B_} T={T_}")
        require(len(graphs) == want, f"dynamic={dynamic}: {len(graphs)} graphs traced for "
                f"{len(sizes)} shapes, expected {want}")


@test
def test_backward_opcheck_bf16():
    """torch.library.opcheck of the backward operator in bf16 with absent
    weights: its fake's placeholders for them are float32, as the real
    operator's (they differed in dtype)."""
    g = gen("bwd_opcheck_bf16")
    q, k, v = qkv(g, 1, 9, 4, 2, 8, torch.bfloat16)
    w = weights(g, 4, 8, kq_pre=(3, 5), gate=True)
    ws = [w.get(n) for n in mt.WEIGHTS]
    go = uniform(g, (1, 9, 4, 8))
    torch.library.opcheck(mt._mta_attention_backward_op,
                          (go, q, k, v, *ws, "both", None, None, None, None))
