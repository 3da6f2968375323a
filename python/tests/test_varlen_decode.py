"""test_varlen_decode.py: packed documents (mta_attention(cu_seqlens=...))
equal the reference run document by document (their autograd gradients too,
against torch.autograd of the reference per document), and DecodeCache equals the
reference forward of the whole sequence, row by row, on fresh random inputs
with outputs poisoned; bad cu_seqlens and bad appends are refused."""
import torch

import mtatune.torch as mt
from mta_reference import mta_forward
from util import check, gen, qkv, require, test, weights

mt._poison_output = True

PARTS = {"kq_pre": (3, 5), "head_pre": True, "kq_post": (2, 3), "head_post": 2,
         "gn": True, "gate": True}


def _docs(g, total):
    """Offsets with lengths 1, 0, 2 and random ones up to 9, ending at total."""
    cu, at = [0], 0
    for n in [1, 0, 2] + [int(x) for x in torch.randint(0, 10, (64,), generator=g)]:
        n = min(n, total - at)
        at += n
        cu.append(at)
        if at == total:
            break
    if at < total:
        cu[-1] = total
    return cu


def _per_document(q, k, v, w, cu, taps=None, **kw):
    """The reference on each document alone; taps (a list, optional) gets
    each document's (start, end, mta_forward's taps)."""
    out = torch.zeros(q.shape, dtype=torch.float64)
    for a, b in zip(cu[:-1], cu[1:]):
        if b > a:
            t = {}
            out[:, a:b] = mta_forward(q[:, a:b], k[:, a:b], v[:, a:b], **w, **kw, taps=t)
            if taps is not None:
                taps.append((a, b, t))
    return out


@test
def test_cu_seqlens_equals_per_document():
    for dtype, idt in ((torch.float32, torch.int32), (torch.bfloat16, torch.int64)):
        g = gen(f"varlen{dtype}")
        q, k, v = qkv(g, 1, 45, 4, 2, 8, dtype)
        w = weights(g, 4, 8, **PARTS)
        cu = _docs(g, 45)
        o = mt.mta_attention(q, k, v, **w, layer_id=2, cu_seqlens=torch.tensor(cu, dtype=idt))
        require(o.dtype == dtype and tuple(o.shape) == (1, 45, 4, 8), f"{o.dtype} {o.shape}")
        e = _per_document(q, k, v, w, cu, layer_id=2)
        check(o, e, dtype, f"packed {dtype} {cu}")
        # the boundaries matter: the unpacked forward is another function
        whole = mta_forward(q, k, v, **w, layer_id=2)
        require(not torch.allclose(whole, e, atol=1e-3), "packing changed nothing")


@test
def test_cu_seqlens_refused():
    q, k, v = qkv(gen("varlen_bad"), 1, 10, 2, 2, 4, torch.float32)
    cases = [
        (torch.tensor([0, 6, 5, 10]), "decreases at index 2"),
        (torch.tensor([1, 5, 10]), "cu_seqlens[0] is 1, expected 0"),
        (torch.tensor([0, 5, 9]), "expected total_T = 10"),
        (torch.tensor([0.0, 10.0]), "expected torch.int32 or torch.int64"),
        (torch.tensor([[0, 10]]), "expected [ndocs+1] offsets"),
    ]
    for cu, says in cases:
        try:
            mt.mta_attention(q, k, v, cu_seqlens=cu)
        except ValueError as err:
            require(says in str(err), f"{cu}: message {err}")
        else:
            raise AssertionError(f"{cu} was accepted")
    q2, k2, v2 = qkv(gen("varlen_b2"), 2, 10, 2, 2, 4, torch.float32)
    try:
        mt.mta_attention(q2, k2, v2, cu_seqlens=torch.tensor([0, 10]))
    except ValueError as err:
        require("[1,total_T,H,D]" in str(err), str(err))
    else:
        raise AssertionError("B=2 was accepted")


@test
def test_cu_seqlens_backward_equals_per_document():
    """torch.autograd through the packed operator (mta_forward_train_varlen,
    mta_backward_varlen) against torch.autograd of the float64 reference run
    on each document alone (one loss over all documents, so each weight's
    gradient is the sum over documents): every gradient under the library's
    gradient bounds. Documents of length 1, 0, 2 (shorter than cq=3, ck=5)
    and random ones; int32 and int64 offsets; f32 and bf16."""
    from util import compare, gate_magnitudes
    for dtype, idt in ((torch.float32, torch.int64), (torch.bfloat16, torch.int32)):
        g = gen(f"varlen_bwd{dtype}")
        q, k, v = qkv(g, 1, 40, 4, 2, 8, dtype)
        w = weights(g, 4, 8, **PARTS)
        cu = _docs(g, 40)
        dout = torch.randn(1, 40, 4, 8, generator=g, dtype=torch.float64).to(dtype)
        ins = {"q": q, "k": k, "v": v, **w}
        ours = {n: t.detach().clone().requires_grad_(True) for n, t in ins.items()}
        o = mt.mta_attention(ours["q"], ours["k"], ours["v"], layer_id=2,
                             cu_seqlens=torch.tensor(cu, dtype=idt),
                             **{n: ours[n] for n in w})
        o.backward(dout.to(o.dtype))
        ref = {n: t.detach().to(torch.float64).requires_grad_(True) for n, t in ins.items()}
        taps = []
        e = _per_document(ref["q"], ref["k"], ref["v"], {n: ref[n] for n in w}, cu, taps=taps,
                          layer_id=2)
        e.backward(dout.to(torch.float64))
        mags = {}  # the gate's terms' magnitudes, summed over documents as its gradient is
        for a, b, t in taps:
            for n, m in gate_magnitudes(t, dout.to(torch.float64)[:, a:b]).items():
                mags[n] = mags[n] + m if n in mags else m
        for n in ins:
            got = ours[n].grad
            require(got is not None and got.shape == ins[n].shape and got.dtype == ins[n].dtype,
                    f"packed {dtype}: d{n} is {None if got is None else (got.shape, got.dtype)}")
            ok, msg = compare(got, ref[n].grad, dtype, grad=True, mag=mags.get(n))
            require(ok, f"packed {dtype} {cu}: d{n}: {msg}")
        # the boundaries matter: the whole sequence's dq is another gradient
        whole = {n: t.detach().to(torch.float64).requires_grad_(True) for n, t in ins.items()}
        mta_forward(whole["q"], whole["k"], whole["v"], layer_id=2,
                    **{n: whole[n] for n in w}).backward(dout.to(torch.float64))
        require(not torch.allclose(whole["q"].grad, ref["q"].grad, atol=1e-3),
                "packing changed nothing in dq")


@test
def test_cu_seqlens_opcheck():
    """torch.library.opcheck of the forward operator with cu_seqlens and inputs
    that require grad (schema, autograd registration, fake tensors, AOT
    dispatch) and of the backward operator with cu_seqlens: the fake
    registrations agree with the real ones on packed documents."""
    g = gen("varlen_opcheck")
    q, k, v = qkv(g, 1, 12, 4, 2, 8, torch.float32)
    w = weights(g, 4, 8, **PARTS)
    ws = [w.get(n) for n in mt.WEIGHTS]
    cu = torch.tensor([0, 1, 5, 12])
    args = [t.clone().requires_grad_(True) if t is not None else None for t in [q, k, v] + ws]
    torch.library.opcheck(mt._mta_attention_op, tuple(args) + ("both", 2, None, None, cu))
    go = torch.randn(1, 12, 4, 8, generator=g)
    torch.library.opcheck(mt._mta_attention_backward_op,
                          (go, q, k, v, *ws, "both", 2, None, None, cu))


@test
def test_decode_cache_equals_forward():
    for dtype in (torch.float32, torch.float16):
        g = gen(f"decode{dtype}")
        B, T = 3, 21
        q, k, v = qkv(g, B, T, 4, 2, 8, dtype)
        w = weights(g, 4, 8, **PARTS)
        e = mta_forward(q, k, v, **w, layer_id=1)
        cache = mt.DecodeCache(B, **w, layer_id=1)
        out = torch.full((B, T, 4, 8), float("nan"))
        lens = [7, 0, 2]  # ragged prefill chunk
        o = cache.append(q[:, :7], k[:, :7], v[:, :7], n_new=lens)
        for b in range(B):
            out[b, :lens[b]] = o[b, :lens[b]].float()
        require(cache.seqlens() == lens, f"{cache.seqlens()}")
        while True:
            pos = cache.seqlens()
            n_new = [1 if pos[b] < T else 0 for b in range(B)]
            if not any(n_new):
                break
            idx = torch.tensor([min(p, T - 1) for p in pos])
            rows = lambda x: x[torch.arange(B), idx].unsqueeze(1)  # noqa: E731
            o = cache.append(rows(q), rows(k), rows(v), n_new=n_new)
            for b in range(B):
                if n_new[b]:
                    out[b, pos[b]] = o[b, 0].float()
        require(cache.seqlens() == [T] * B, f"{cache.seqlens()}")
        check(out, e, dtype, f"decode {dtype}")


@test
def test_decode_cache_refuses_bad_appends():
    g = gen("decode_bad")
    q, k, v = qkv(g, 2, 5, 2, 2, 4, torch.float32)
    cache = mt.DecodeCache(2)
    cache.append(q, k, v)
    for args, says in (((q[:1], k[:1], v[:1]), "the cache holds 2 sequences"),
                       ((torch.cat([q, q], dim=2), k, v), "but this cache holds")):
        try:
            cache.append(*args)
        except ValueError as err:
            require(says in str(err), str(err))
        else:
            raise AssertionError(f"accepted {says}")
    try:
        cache.append(q, k, v, n_new=[1, 9])
    except ValueError as err:
        require("n_new[1] = 9" in str(err), str(err))
    else:
        raise AssertionError("n_new beyond the tokens accepted")
    require(cache.seqlens() == [5, 5], f"{cache.seqlens()}")


@test
def test_decode_cache_refuses_bad_reset_and_batch():
    """reset(b) refuses b outside 0..batch-1 before the first append as after
    it (it was accepted silently before), and a batch beyond the library's
    2^20 sequences is refused at construction, not at the first append."""
    g = gen("decode_reset")
    q, k, v = qkv(g, 2, 3, 2, 2, 4, torch.float32)
    cache = mt.DecodeCache(2)
    for appended in (False, True):
        if appended:
            cache.append(q, k, v)
        for b in (-1, 2, 1.0, True):
            try:
                cache.reset(b)
            except ValueError as err:
                require("expected a sequence index in 0..1" in str(err), str(err))
            else:
                raise AssertionError(f"reset({b!r}) accepted (appended: {appended})")
    cache.reset(1)
    require(cache.seqlens() == [3, 0], f"{cache.seqlens()}")
    try:
        mt.DecodeCache((1 << 20) + 1)
    except ValueError as err:
        require("at most 1048576 sequences" in str(err), str(err))
    else:
        raise AssertionError("a batch of 2^20 + 1 accepted")
