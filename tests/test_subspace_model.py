"""SubspaceModel: exact θ0 at init, what trains, BatchNorm buffers, tied weights, devices/dtypes, checkpoints."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call

from idlab.adapt.base import base_model, count_trainable
from idlab.adapt.subspace import Subspace, SubspaceModel
from idlab.data.spec import DataSpec
from idlab.models.fc import FC
from idlab.models.lenet import LeNet
from idlab.models.resnet import ResNet
from idlab.models.transformer import Transformer

MNIST = DataSpec(kind="image", input_shape=(1, 28, 28), num_classes=10)
CIFAR = DataSpec(kind="image", input_shape=(3, 32, 32), num_classes=10)


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on a 2-core machine


def small_fc() -> FC:
    """784-32-10 FC (D = 25,450)."""
    torch.manual_seed(0)
    return FC(MNIST, width=32, depth=1)


class TiedNet(nn.Module):
    """Two layers sharing one weight matrix."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(6, 6)
        self.second = nn.Linear(6, 6)
        self.second.weight = self.first.weight
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.second(torch.relu(self.first(x)))))


@pytest.mark.parametrize("projection", ["dense", "sparse", "fastfood"])
@pytest.mark.parametrize("said", [False, True])
def test_zero_theta_d_reproduces_base_model_exactly(projection, said):
    net = small_fc()
    x = torch.randn(5, 1, 28, 28)
    expected = net(x)
    wrapped = Subspace(d=64, projection=projection, said=said).apply(copy.deepcopy(net))
    assert torch.equal(wrapped(x), expected)


@pytest.mark.parametrize("said,train_head,expected",
                         [(False, False, 100), (True, False, 100), (False, True, 100 + 330)])
def test_trainable_count_is_d_plus_directly_trained_head(said, train_head, expected):
    wrapped = Subspace(d=100, said=said, train_head=train_head).apply(small_fc())
    assert count_trainable(wrapped) == expected
    if said:
        assert wrapped.said_scales.numel() == 4 and wrapped.theta_d.numel() == 96


def test_parameter_swap_matches_functional_call_and_gradients():
    wrapped = Subspace(d=50, projection="dense").apply(small_fc())
    with torch.no_grad():
        wrapped.theta_d.normal_()
    x = torch.randn(4, 1, 28, 28)
    out = wrapped(x)
    out.square().sum().backward()
    grad = wrapped.theta_d.grad.clone()
    wrapped.theta_d.grad = None
    theta = wrapped.flat_parameters()
    tensors = {n: c.view(s) for n, c, s in zip(wrapped.names, torch.split(theta, wrapped.sizes), wrapped.shapes)}
    reference = functional_call(wrapped.model, tensors, (x,))
    reference.square().sum().backward()
    torch.testing.assert_close(out, reference)
    torch.testing.assert_close(grad, wrapped.theta_d.grad)


def test_gradient_equals_projected_parameter_gradient():
    wrapped = Subspace(d=40, projection="fastfood").apply(small_fc())
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    nn.functional.cross_entropy(wrapped(x), y).backward()
    params = {n: p.detach().clone().requires_grad_() for n, p in wrapped.model.named_parameters()}
    loss = nn.functional.cross_entropy(functional_call(wrapped.model, params, (x,)), y)
    flat_grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, [params[n] for n in wrapped.names])])
    matrix = wrapped.projection.materialize()
    torch.testing.assert_close(wrapped.theta_d.grad, matrix.T @ flat_grad, rtol=1e-4, atol=1e-6)


def test_batchnorm_running_stats_update_and_hooks_fire_on_base_modules():
    torch.manual_seed(0)
    wrapped = Subspace(d=300).apply(ResNet(CIFAR, variant="resnet20"))
    bn = base_model(wrapped).stem[1]
    before = bn.running_mean.clone()
    seen = []
    base_model(wrapped).layer1.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    wrapped.train()(torch.randn(4, 3, 32, 32)).sum().backward()
    assert not torch.equal(before, bn.running_mean)
    assert seen == [torch.Size([4, 16, 32, 32])]
    assert wrapped.theta_d.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in base_model(wrapped).parameters())


def test_tied_weights_are_swapped_everywhere():
    torch.manual_seed(0)
    net = TiedNet()
    wrapped = SubspaceModel(copy.deepcopy(net), [n for n, _ in net.named_parameters()], 20, "dense", 0)
    with torch.no_grad():
        wrapped.theta_d.normal_()
    x = torch.randn(3, 6)
    theta = wrapped.flat_parameters()
    tensors = {n: c.view(s) for n, c, s in zip(wrapped.names, torch.split(theta, wrapped.sizes), wrapped.shapes)}
    torch.testing.assert_close(wrapped(x), functional_call(net, tensors, (x,), tie_weights=True))
    assert "second.weight" not in wrapped.names


def test_moving_dtype_keeps_parameters_views_of_theta0():
    wrapped = Subspace(d=30).apply(small_fc()).double()
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    assert wrapped(x).dtype == torch.float64
    first = base_model(wrapped).blocks[0][0].weight
    assert first.dtype == torch.float64 and first.data_ptr() == wrapped._theta0.data_ptr()


def test_state_dict_restores_theta0_and_theta_d_and_refuses_other_seed():
    wrapped = Subspace(d=30, seed=1).apply(small_fc())
    with torch.no_grad():
        wrapped.theta_d.normal_()
    x = torch.randn(2, 1, 28, 28)
    state = copy.deepcopy(wrapped.state_dict())
    assert set(state) == {"theta_d", "subspace_signature"} | {f"model.{n}" for n in wrapped.names}
    torch.manual_seed(123)  # a different θ0 before loading
    fresh = Subspace(d=30, seed=1).apply(FC(MNIST, width=32, depth=1))
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh(x), wrapped(x))
    other = Subspace(d=30, seed=2).apply(small_fc())
    with pytest.raises(RuntimeError, match="adapt"):
        other.load_state_dict(state)


def test_merged_state_dict_gives_the_trained_network():
    wrapped = Subspace(d=30, projection="sparse").apply(small_fc())
    with torch.no_grad():
        wrapped.theta_d.normal_()
    plain = FC(MNIST, width=32, depth=1)
    plain.load_state_dict(wrapped.merged_state_dict())
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(plain(x), wrapped(x))


def test_said_scales_get_gradients_once_theta_d_moved():
    wrapped = Subspace(d=50, said=True).apply(small_fc())
    x = torch.randn(4, 1, 28, 28)
    wrapped(x).sum().backward()
    assert torch.count_nonzero(wrapped.said_scales.grad) == 0  # Δθ = 0 at init
    with torch.no_grad():
        wrapped.theta_d.normal_()
    wrapped.said_scales.grad = None
    wrapped(x).sum().backward()
    assert torch.count_nonzero(wrapped.said_scales.grad) == 4


def test_exclude_and_train_head_leave_parameters_out_of_the_projection():
    wrapped = Subspace(d=20, exclude=["*.bias"], train_head=True).apply(small_fc())
    assert wrapped.names == ["blocks.0.0.weight"]
    head = base_model(wrapped).head
    assert head.weight.requires_grad and not base_model(wrapped).blocks[0][0].bias.requires_grad


@pytest.mark.parametrize("build,x", [
    (lambda: LeNet(MNIST), torch.randn(3, 1, 28, 28)),
    (lambda: ResNet(CIFAR, variant="resnet20"), torch.randn(3, 3, 32, 32)),
    (lambda: Transformer(DataSpec("tokens", (4,), 23, vocab_size=27), width=32, depth=1, heads=2),
     torch.randint(0, 27, (3, 4))),
])
def test_every_architecture_runs_in_a_subspace(build, x):
    torch.manual_seed(0)
    net = build().eval()
    expected = net(x)
    wrapped = Subspace(d=64).apply(net).eval()
    assert torch.equal(wrapped(x), expected)
    wrapped(x).sum().backward()
    assert wrapped.theta_d.grad.abs().sum() > 0 and count_trainable(wrapped) == 64
