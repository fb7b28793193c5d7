"""Shared layers: self-attention, minibatch discrimination, minibatch stddev."""

import pytest
import torch

from ganlab.losses import gradient_penalty
from ganlab.nets.dcgan import Discriminator as DCGANDiscriminator
from ganlab.nets.layers import (
    MinibatchDiscrimination,
    MinibatchStdDev,
    SelfAttention,
    enable_double_backward,
    minibatch_layers,
)
from ganlab.utils import ConfigError


def attention_layer(channels: int = 16, gamma: float = 0.7) -> SelfAttention:
    layer = SelfAttention(channels)
    with torch.no_grad():
        layer.gamma.fill_(gamma)
    return layer


def test_attention_keeps_the_shape_and_uses_c_over_8_keys():
    layer = attention_layer(16)
    assert layer.query.out_channels == layer.key.out_channels == 2
    assert layer.value.out_channels == 16
    assert SelfAttention(4).query.out_channels == 1  # narrow maps keep one key channel
    x = torch.randn(3, 16, 8, 4)
    assert layer(x).shape == x.shape


@pytest.mark.parametrize("kernel", ["fused", "sdpa", "explicit"])
def test_attention_is_the_identity_at_gamma_zero(kernel):
    layer = SelfAttention(16, kernel=kernel)
    assert float(layer.gamma) == 0.0
    x = torch.randn(2, 16, 4, 4)
    torch.testing.assert_close(layer(x), x)


def test_attention_rows_sum_to_one():
    layer = attention_layer(16)
    x = torch.randn(2, 16, 4, 8)
    attention = layer.attention_map(x)
    assert attention.shape == (2, 32, 32)
    assert (attention >= 0).all()
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 32))
    _, returned = layer(x, return_attention=True)
    torch.testing.assert_close(returned, attention)


@pytest.mark.parametrize("kernel", ["fused", "sdpa"])
@pytest.mark.parametrize("channels", [4, 16, 64])
def test_sdpa_kernels_equal_the_explicit_softmax_in_values_and_gradients(kernel, channels):
    """The fused (zero-padded queries and keys) and plain SDPA paths compute the explicit
    softmax(q k^T) v layer: outputs and every gradient (input and weights) agree."""
    torch.manual_seed(0)
    explicit = attention_layer(channels)
    explicit.kernel = "explicit"
    other = attention_layer(channels)
    other.load_state_dict(explicit.state_dict())
    other.kernel = kernel
    x = torch.randn(2, channels, 8, 8)
    outputs, grads = [], []
    for layer in (explicit, other):
        xi = x.clone().requires_grad_(True)
        out = layer(xi)
        out.square().sum().backward()
        outputs.append(out.detach())
        grads.append([xi.grad, *(p.grad for p in layer.parameters())])
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
    for got, want in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(outputs[0], x, atol=1e-3)  # gamma 0.7: the attention term is used
    explicit_map, returned = other(x, return_attention=True)
    torch.testing.assert_close(explicit_map, outputs[0], rtol=1e-5, atol=1e-5)


def test_unknown_attention_kernel_is_a_config_error():
    with pytest.raises(ConfigError, match="attention_kernel='flash'.*fused"):
        SelfAttention(16, kernel="flash")


def test_attention_is_twice_differentiable_for_gradient_penalties():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), attention_layer(16),
                              torch.nn.Flatten(0))
    enable_double_backward(net)
    assert net[1].double_backward
    penalty = gradient_penalty(lambda x: net(x).view(x.shape[0], -1).mean(1),
                               torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4))
    penalty.backward()
    assert net[1].query.weight.grad is not None and net[1].query.weight.grad.abs().sum() > 0
    x = torch.randn(2, 16, 4, 4)
    math_only = net[1](x)
    enable_double_backward(net, False)
    assert not net[1].double_backward
    torch.testing.assert_close(net[1](x), math_only)


def diverse_and_identical(shape=(8, 16, 4, 4)) -> tuple[torch.Tensor, torch.Tensor]:
    diverse = torch.randn(*shape)
    identical = diverse[:1].expand_as(diverse).clone()
    return diverse, identical


def test_minibatch_discrimination_shapes():
    layer = MinibatchDiscrimination(16 * 4 * 4, num_kernels=10, kernel_dim=3)
    maps = torch.randn(6, 16, 4, 4)
    out = layer(maps)
    assert out.shape == (6, 26, 4, 4)
    torch.testing.assert_close(out[:, :16], maps)
    assert (out[:, 16:] == out[:, 16:, :1, :1]).all()  # constant per map
    assert MinibatchDiscrimination(20, 10, 3)(torch.randn(6, 20)).shape == (6, 30)


def test_minibatch_discrimination_tells_identical_from_diverse_batches():
    layer = MinibatchDiscrimination(16 * 4 * 4, num_kernels=10, kernel_dim=3)
    diverse, identical = diverse_and_identical()
    same = layer.statistic(identical)
    torch.testing.assert_close(same, torch.full((8, 10), 7.0))  # sum over the 7 others of e^0
    assert layer.statistic(diverse).max() < 6.0


def test_minibatch_stddev_tells_identical_from_diverse_batches():
    layer = MinibatchStdDev(group_size=4)
    diverse, identical = diverse_and_identical()
    assert layer(diverse).shape == (8, 17, 4, 4)
    assert layer(identical)[:, -1].max() < 1e-3
    assert layer(diverse)[:, -1].min() > 0.5  # std of N(0, 1) features


def test_minibatch_layers_follow_the_switches():
    assert minibatch_layers(16, 4) == ([], 16)
    layers, channels = minibatch_layers(16, 4, stddev_group=4, discrimination_kernels=10)
    assert [type(m) for m in layers] == [MinibatchDiscrimination, MinibatchStdDev]
    assert channels == 16 + 10 + 1
    with pytest.raises(ConfigError, match=r"model.discriminator.minibatch_stddev=-1 must be"):
        minibatch_layers(16, 4, stddev_group=-1)


def test_dcgan_discriminator_takes_the_minibatch_options():
    plain = DCGANDiscriminator(resolution=16, width=4)
    assert not any(isinstance(m, (MinibatchStdDev, MinibatchDiscrimination))
                   for m in plain.modules())  # defaults unchanged
    disc = DCGANDiscriminator(resolution=16, width=4, minibatch_stddev=4,
                              minibatch_discrimination=6, minibatch_discrimination_dim=3)
    assert disc(torch.randn(8, 3, 16, 16)).shape == (8,)
    assert disc.net[-1].in_channels == plain.net[-1].in_channels + 6 + 1
