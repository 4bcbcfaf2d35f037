"""Random projections P of adapt=subspace: exactness at θ_d = 0, backward = transpose, unit columns, seeding."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from scipy.linalg import hadamard

from idlab.adapt.subspace import hashing
from idlab.adapt.subspace.dense import DenseProjection
from idlab.adapt.subspace.fastfood import FastfoodProjection
from idlab.adapt.subspace.fwht import fwht, hadamard_rows
from idlab.adapt.subspace.sparse import SparseProjection, plan_entries

SIZES = [60 * 40, 40, 40 * 20, 20, 7, 1]  # tensors of a small MLP-like model, D = 3268
TOTAL = sum(SIZES)
KINDS = ["dense", "sparse", "fastfood"]


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on a 2-core machine


def make(kind: str, d: int = 48, seed: int = 0):
    """A projection over SIZES."""
    if kind == "dense":
        return DenseProjection(TOTAL, d, seed)
    if kind == "sparse":
        return SparseProjection(SIZES, d, seed)
    return FastfoodProjection(TOTAL, d, seed)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_theta_d_returns_base_exactly(kind):
    base = torch.randn(TOTAL)
    out = make(kind)(torch.zeros(48), base)
    assert torch.equal(out, base)


def explicit_matrix(proj) -> torch.Tensor:
    """P as a dense D×d matrix built from the projection's definition, not from its forward pass."""
    if isinstance(proj, DenseProjection):  # N(0, 1) from the seed, columns scaled to unit norm
        g = torch.randn(proj.total, proj.d, generator=torch.Generator().manual_seed(proj.seed), dtype=torch.float32)
        return (g / g.norm(dim=0, keepdim=True)).double()
    if isinstance(proj, SparseProjection):  # ±1 at the hashed entries, columns divided by √(entry count)
        matrix = torch.zeros(proj.total, proj.d, dtype=torch.float64)
        counts = torch.zeros(proj.d, dtype=torch.float64)
        for plan in proj.plans:
            rows, cols, signs = plan_entries(plan, proj.units[plan.index], 0, plan.long)
            matrix.index_put_((rows, cols), signs.double(), accumulate=True)
            counts += torch.bincount(cols, minlength=proj.d).double()
        return matrix / counts.clamp_min(1).sqrt()
    # Fastfood: block j of rows is scale · H · diag(G_j) · Π_j · H · diag(B), restricted to the first d columns.
    plan, n = proj.plan, proj.plan.n
    tables = proj.tables(torch.device("cpu"), torch.float64)
    h = torch.tensor(hadamard(n), dtype=torch.float64)
    right = h[:, : plan.d] * tables["sign"][: plan.d]
    blocks = []
    for j in range(plan.blocks):
        gathered = right[tables["perm"][j]]  # row i of Π_j·x is x[Π_j(i)]
        blocks.append(h @ (tables["gauss"].view(plan.blocks, n)[j, :, None] * gathered))
    return torch.cat(blocks)[: plan.total] * proj.scale(torch.device("cpu"))


@pytest.mark.parametrize("kind", KINDS)
def test_forward_and_gradient_match_an_independently_built_projection_matrix(kind):
    proj = make(kind)
    matrix = explicit_matrix(proj).float()
    theta = torch.randn(48, requires_grad=True)
    upstream = torch.randn(TOTAL)
    out = proj(theta, torch.zeros(TOTAL))
    torch.testing.assert_close(out, matrix @ theta.detach(), rtol=1e-4, atol=1e-5)
    (out * upstream).sum().backward()
    torch.testing.assert_close(theta.grad, matrix.T @ upstream, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(proj.materialize(), matrix, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_columns_have_unit_norm_and_are_nearly_orthogonal(kind):
    matrix = make(kind, d=64).materialize()
    norms = matrix.norm(dim=0)
    assert (norms - 1).abs().max() < 0.05, norms
    gram = matrix.T @ matrix - torch.diag(norms**2)
    gaussian = torch.randn(TOTAL, 64, generator=torch.Generator().manual_seed(1))
    gaussian = gaussian / gaussian.norm(dim=0)
    reference = (gaussian.T @ gaussian - torch.eye(64)).abs().max()
    assert gram.abs().max() < 2 * reference  # as orthogonal as unstructured random directions


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_projection_other_seed_other(kind):
    theta = torch.randn(48)
    first, again, other = make(kind, seed=3)(theta), make(kind, seed=3)(theta), make(kind, seed=4)(theta)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_global_projection_spans_all_tensors():
    delta = make("fastfood")(torch.randn(48))
    offsets = torch.tensor([0, *SIZES]).cumsum(0)
    for start, stop in zip(offsets[:-1], offsets[1:]):
        assert delta[start:stop].abs().sum() > 0


def test_sparse_density_per_tensor_is_one_over_sqrt_n():
    proj = SparseProjection([4096, 100 * 100], 200, 0)
    matrix = proj.materialize()
    for plan in proj.plans:
        block = matrix[plan.offset: plan.offset + plan.rows]
        density = (block != 0).float().mean().item()
        assert density == pytest.approx(1 / plan.rows**0.5, rel=0.1)


def test_hadamard_matches_scipy_and_is_self_inverse_up_to_n():
    for n in (2, 16, 512, 2048):
        x = torch.randn(3, n, dtype=torch.float64)
        torch.testing.assert_close(hadamard_rows(x), x @ torch.tensor(hadamard(n), dtype=torch.float64))
    x = torch.randn(2, 2**15, dtype=torch.float64)
    torch.testing.assert_close(hadamard_rows(hadamard_rows(x)), 2**15 * x)


def test_fwht_passes_gradcheck():
    x = torch.randn(3, 64, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fwht, (x,))


def test_fastfood_projection_passes_gradcheck():
    proj = FastfoodProjection(700, 20, seed=5)
    theta = torch.randn(20, dtype=torch.float64, requires_grad=True)
    base = torch.randn(700, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: proj(t, base), (theta,))


def test_sparse_projection_passes_gradcheck():
    proj = SparseProjection([300, 30, 1], 20, seed=5)
    theta = torch.randn(20, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: proj(t), (theta,))


def test_tensor_hash_matches_host_hash():
    index = torch.tensor([0, 1, 2**31 + 5, 2**32 - 1])
    key = hashing.stream_key(7, 3)
    assert hashing.hash32(key, index).tolist() == [hashing.hash_int(key, int(i)) for i in index]


def test_fastfood_block_layout_covers_d_and_all_rows():
    proj = FastfoodProjection(100_000, 3000, 0)
    assert proj.plan.n == 4096 and proj.plan.padded >= 100_000 > proj.plan.padded - proj.plan.n


TRITON_CHECK = textwrap.dedent("""
    import torch
    from idlab.adapt.subspace import sparse_triton
    from idlab.adapt.subspace.fastfood import FastfoodProjection
    from idlab.adapt.subspace.sparse import SparseProjection, plan_entries
    sparse_triton.CHUNK = 16  # several programs per small tensor's long walk (atomic adds)
    torch.manual_seed(0)
    cases = [(FastfoodProjection, (3000, 100)),  # one pass, block sum fused into the small pass
             (FastfoodProjection, (6000, 100)),  # 24 blocks: block sum in PyTorch
             (FastfoodProjection, (20000, 5000)),  # two Kronecker passes
             (SparseProjection, ([900, 20, 400, 20, 7, 1], 50)), (SparseProjection, ([3000, 10, 64], 600))]
    for cls, (size, d) in cases:
        ref, fused = cls(size, d, 3, backend="torch"), cls(size, d, 3, backend="triton")
        theta, base = torch.randn(d), torch.randn(ref.total)
        out_ref, out = ref(theta, base), fused(theta, base)
        assert (out - out_ref).abs().max() < 1e-5 * out_ref.abs().max(), (cls, size, d)
        grad = torch.randn(ref.total)
        g_ref, g = ref.apply_backward(grad), fused.apply_backward(grad)
        assert (g - g_ref).abs().max() < 1e-5 * g_ref.abs().max(), (cls, size, d)
    print("ok")
""")


def test_triton_kernels_match_pytorch_path_in_interpreter():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run([sys.executable, "-c", TRITON_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]
