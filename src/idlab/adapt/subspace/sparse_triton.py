"""Triton kernels for the hashed very sparse projection: gathers along a tensor's long or short side."""
from __future__ import annotations

import os

import torch

from idlab.adapt.subspace.sparse import UNIT_TABLE, SparseTensorPlan

assert UNIT_TABLE == 64, "the kernels index unit tables with a literal 64"

try:
    import triton
    import triton.language as tl

    from idlab.adapt.subspace import triton_hash as th
except ImportError:  # pragma: no cover - Triton ships with CUDA builds of torch
    triton = None

BLOCK = 128
CHUNK = 256
FIELDS = 11  # offset, long, short, blocks, floor, max, threshold, key_count, key_unit, key_shift, key_sign


def available() -> bool:
    """Triton importable and a GPU (or the CPU interpreter, TRITON_INTERPRET=1) to run it."""
    return triton is not None and (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1")


def param_row(p: SparseTensorPlan) -> list[int]:
    """The kernel's per-tensor parameter row."""
    return [p.offset, p.long, p.short, p.blocks, int(p.mean_count), p.max_count, p.threshold,
            p.key_count, p.key_unit, p.key_shift, p.key_sign]


# Kernel arguments must not be named `params`, `specialization`, `options` or `backend`: Triton's generated
# argument binder uses those names as locals (a `params` argument gets replaced by a dict).
if triton is not None:

    @triton.jit
    def _tensor_params(layout, tensor):
        """Load one tensor's parameter row."""
        row = layout + tensor * 11
        return (tl.load(row), tl.load(row + 1), tl.load(row + 2), tl.load(row + 3), tl.load(row + 4),
                tl.load(row + 5), tl.load(row + 6), tl.load(row + 7).to(tl.uint32), tl.load(row + 8).to(tl.uint32),
                tl.load(row + 9).to(tl.uint32), tl.load(row + 10).to(tl.uint32))

    @triton.jit
    def _store(dst, base, tensor, offset, index, acc, valid, d, TO_OUTPUT: tl.constexpr, HAS_BASE: tl.constexpr):
        """Write θ rows (offset + index, plus θ0) or a per-tensor partial Pᵀg row (tensor·d + index)."""
        if TO_OUTPUT:
            if HAS_BASE:
                acc = acc + tl.load(base + offset + index, mask=valid, other=0.0).to(tl.float32)
            tl.store(dst + offset + index, acc.to(dst.dtype.element_ty), mask=valid)
        else:
            tl.store(dst + tensor * d + index, acc, mask=valid)

    @triton.jit
    def _long_walk(src, dst, base, layout, units, prog_tensor, prog_start, d,
                   SRC_AT_OFFSET: tl.constexpr, TO_OUTPUT: tl.constexpr, HAS_BASE: tl.constexpr,
                   BLOCK: tl.constexpr):
        """For BLOCK long indices x: Σ_{t<c_x} sign·src[(a_{t,q}·p + b_{t,q}) mod s]."""
        pid = tl.program_id(0)
        tensor = tl.load(prog_tensor + pid).to(tl.int64)
        offset, long, short, blocks, floor, cmax, thr, kc, ku, kb, ks = _tensor_params(layout, tensor)
        x = tl.load(prog_start + pid) + tl.arange(0, BLOCK).to(tl.int64)
        valid = x < long
        q = x // short
        p = x % short
        count = floor + (th.hash32(kc, x.to(tl.uint32)).to(tl.int64) < thr).to(tl.int64)
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for t in range(cmax):
            slot = (t * blocks + q).to(tl.uint32)
            a = tl.load(units + tensor * 64 + (th.hash32(ku, slot) % 64).to(tl.int64))
            b = (th.hash32(kb, slot) % short.to(tl.uint32)).to(tl.int64)
            y = (a * p + b) % short
            sg = th.sign(ks, (x * cmax + t).to(tl.uint32))
            if SRC_AT_OFFSET:
                y = y + offset
            acc += sg * tl.load(src + y, mask=valid & (t < count), other=0.0).to(tl.float32)
        _store(dst, base, tensor, offset, x, acc, valid, d, TO_OUTPUT, HAS_BASE)

    @triton.jit
    def _short_walk(src, dst, base, layout, inverses, prog_tensor, prog_start, prog_begin, d,
                    SRC_AT_OFFSET: tl.constexpr, TO_OUTPUT: tl.constexpr, HAS_BASE: tl.constexpr,
                    BLOCK: tl.constexpr, CHUNK: tl.constexpr):
        """For BLOCK short indices y: Σ_{t,q} sign·src[x], long index x = q·s + a⁻¹(y − b) mod s, t < c_x.

        The (t, q) loop is cut into CHUNK-iteration pieces run by separate programs that add atomically
        into a zeroed destination (the first piece adds θ0), so a small tensor's long walk stays parallel.
        """
        pid = tl.program_id(0)
        tensor = tl.load(prog_tensor + pid).to(tl.int64)
        offset, long, short, blocks, floor, cmax, thr, kc, ku, kb, ks = _tensor_params(layout, tensor)
        y = tl.load(prog_start + pid) + tl.arange(0, BLOCK).to(tl.int64)
        valid = y < short
        begin = tl.load(prog_begin + pid)
        end = tl.minimum(begin + CHUNK, cmax * blocks)
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for it in range(begin, end):
            t = it // blocks
            q = it - t * blocks
            slot = (t * blocks + q).to(tl.uint32)
            inv = tl.load(inverses + tensor * 64 + (th.hash32(ku, slot) % 64).to(tl.int64))
            b = (th.hash32(kb, slot) % short.to(tl.uint32)).to(tl.int64)
            x = q * short + (inv * ((y - b + short) % short)) % short
            count = floor + (th.hash32(kc, x.to(tl.uint32)).to(tl.int64) < thr).to(tl.int64)
            keep = valid & (x < long) & (t < count)
            sg = th.sign(ks, (x * cmax + t).to(tl.uint32))
            if SRC_AT_OFFSET:
                x = x + offset
            acc += sg * tl.load(src + x, mask=keep, other=0.0).to(tl.float32)
        if TO_OUTPUT:
            if HAS_BASE:
                acc += tl.load(base + offset + y, mask=valid & (begin == 0), other=0.0).to(tl.float32)
            tl.atomic_add(dst + offset + y, acc, mask=valid)
        else:
            tl.atomic_add(dst + tensor * d + y, acc, mask=valid)


def _programs(plans: list[SparseTensorPlan], lengths: list[int], device, chunked: bool = False):
    """(tensor index, start, first (t, q) iteration) per program: BLOCK indices and ≤ CHUNK iterations each."""
    tensors, starts, begins = [], [], []
    for plan, length in zip(plans, lengths):
        iterations = plan.max_count * plan.blocks if chunked else 1
        for start in range(0, length, BLOCK):
            for begin in range(0, iterations, CHUNK):
                tensors.append(plan.index)
                starts.append(start)
                begins.append(begin)
    return (torch.tensor(tensors, dtype=torch.int32, device=device),
            torch.tensor(starts, dtype=torch.int64, device=device),
            torch.tensor(begins, dtype=torch.int64, device=device))


def _tables(proj, device) -> dict:
    """Parameter rows and program tables of a projection on `device` (cached on the projection)."""
    cache = proj.__dict__.setdefault("_triton_tables", {})
    key = str(device)
    if key not in cache:
        long_side = [p for p in proj.plans if p.rows_are_long]
        short_side = [p for p in proj.plans if not p.rows_are_long]
        cache[key] = {
            "params": torch.tensor([param_row(p) for p in proj.plans], dtype=torch.int64, device=device),
            "fwd_long": _programs(long_side, [p.rows for p in long_side], device),
            "fwd_short": _programs(short_side, [p.rows for p in short_side], device, chunked=True),
            "bwd_short": _programs(long_side, [proj.d] * len(long_side), device, chunked=True),
            "bwd_long": _programs(short_side, [proj.d] * len(short_side), device),
        }
    return cache[key]


def _walk(kernel, table, programs, src, dst, base, proj, at_offset: bool, to_output: bool) -> None:
    """Launch one walk kernel over its programs (no-op when empty)."""
    tensors, starts, begins = programs
    if tensors.numel() == 0:
        return
    extra = {"CHUNK": CHUNK} if kernel is _short_walk else {}
    args = (begins,) if kernel is _short_walk else ()
    kernel[(tensors.numel(),)](src, dst, base if base is not None else dst, table["params"], table["lookup"],
                               tensors, starts, *args, proj.d, SRC_AT_OFFSET=at_offset, TO_OUTPUT=to_output,
                               HAS_BASE=base is not None, BLOCK=BLOCK, num_warps=4, **extra)


def forward(theta_d: torch.Tensor, base: torch.Tensor | None, proj) -> torch.Tensor:
    """base + P·θ_d on the device of θ_d (rows of tensors smaller than d are summed with atomics)."""
    device = theta_d.device
    tables = _tables(proj, device)
    scaled = (theta_d.float() * proj.inv_norms(device)).contiguous()
    dtype = base.dtype if base is not None else torch.float32
    short = tables["fwd_short"][0].numel() > 0
    out = (torch.zeros if short else torch.empty)(proj.total, device=device, dtype=dtype)
    _walk(_long_walk, dict(tables, lookup=proj.units), tables["fwd_long"], scaled, out, base, proj, False, True)
    _walk(_short_walk, dict(tables, lookup=proj.inverses), tables["fwd_short"], scaled, out, base, proj, False, True)
    return out


def backward(grad: torch.Tensor, proj) -> torch.Tensor:
    """Pᵀ·grad (float32, length d), the exact transpose of `forward`."""
    device = grad.device
    tables = _tables(proj, device)
    partial = torch.zeros(len(proj.plans), proj.d, device=device, dtype=torch.float32)
    _walk(_short_walk, dict(tables, lookup=proj.inverses), tables["bwd_short"], grad, partial, None, proj, True, False)
    _walk(_long_walk, dict(tables, lookup=proj.units), tables["bwd_long"], grad, partial, None, proj, True, False)
    return partial.sum(0) * proj.inv_norms(device)
