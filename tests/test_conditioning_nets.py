"""Conditioning in the networks: the thesis's cDCGAN input layout, the projection discriminator's
decomposition, conditional batch norm and the AC-GAN head (ganlab.nets.conditioning)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ganlab.nets import dcgan, progressive, sagan
from ganlab.nets.conditioning import ConditionalBatchNorm2d, label_planes
from ganlab.utils import ConfigError

K = 4


def labels(n: int = 6) -> torch.Tensor:
    return F.one_hot(torch.arange(n) % K, K).float()


def first_input(module: torch.nn.Module, run) -> torch.Tensor:
    """The input tensor `module` received during run()."""
    seen = []
    hook = module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    try:
        run()
    finally:
        hook.remove()
    return seen[0]


def test_concat_generator_input_is_z_then_one_hot():
    g = dcgan.Generator(z_dim=10, resolution=16, width=8, conditioning="concat", num_classes=K)
    z, y = torch.randn(6, 10), labels()
    seen = first_input(g.net[0], lambda: g(z, y))
    assert g.net[0].in_channels == 10 + K
    torch.testing.assert_close(seen, torch.cat([z, y], 1)[:, :, None, None], rtol=0, atol=0)


def test_concat_discriminator_input_is_image_then_one_constant_plane_per_class():
    d = dcgan.Discriminator(resolution=16, width=8, conditioning="concat", num_classes=K)
    x, y = torch.randn(6, 3, 16, 16), labels()
    seen = first_input(d.net[0], lambda: d(x, y))
    assert seen.shape == (6, 3 + K, 16, 16)
    torch.testing.assert_close(seen[:, :3], x, rtol=0, atol=0)
    for i in range(6):
        for k in range(K):  # ones in the plane of the image's class, zeros elsewhere
            assert torch.all(seen[i, 3 + k] == float(k == i % K))


def test_concat_planes_carry_multi_hot_attributes():
    y = torch.tensor([[1.0, 0.0, 1.0]])
    out = label_planes(torch.zeros(1, 3, 4, 4), y, 3)
    assert out[0, 3].eq(1).all() and out[0, 4].eq(0).all() and out[0, 5].eq(1).all()


@pytest.mark.parametrize("net", ["dcgan", "sagan", "pggan"])
def test_projection_output_is_unconditional_output_plus_inner_product(net):
    if net == "dcgan":
        d = dcgan.Discriminator(resolution=16, width=8, conditioning="projection", num_classes=K)
        last = d.net[-1]
    elif net == "sagan":
        d = sagan.Discriminator(resolution=16, width=8, attention=[8],
                                conditioning="projection", num_classes=K)
        last = d.out
    else:
        d = progressive.Discriminator(resolution=16, width=8, minibatch_stddev=0,
                                      conditioning="projection", num_classes=K)
        last = d.output.dense[2]
    d.eval()
    x, y = torch.randn(6, 3, 16, 16), labels()
    with torch.no_grad():
        conditional, unconditional = d(x, y), d(x)
        features = first_input(last, lambda: d(x))
    if net != "pggan":
        features = features.sum((2, 3))  # the 4x4 map the last conv reads, summed
    inner = (d.projection.embed(y) * features).sum(1)
    torch.testing.assert_close(conditional, unconditional + inner)
    assert not torch.allclose(inner, torch.zeros_like(inner))


def test_bound_labels_are_what_d_reads_without_y():
    d = dcgan.Discriminator(resolution=16, width=8, conditioning="projection", num_classes=K).eval()
    x, y = torch.randn(6, 3, 16, 16), labels()
    d.bound_labels = y
    with torch.no_grad():
        torch.testing.assert_close(d(x), d(x, y))


def test_conditional_batch_norm_gain_and_bias_per_class():
    layer = ConditionalBatchNorm2d(5, K).train()
    x, y = torch.randn(8, 5, 3, 3), F.one_hot(torch.arange(8) % K, K).float()
    plain = F.batch_norm(x, None, None, training=True)
    torch.testing.assert_close(layer(x, y), plain)  # starts as plain batch norm
    with torch.no_grad():
        layer.gain.weight.copy_(torch.randn(5, K))
        layer.bias.weight.copy_(torch.randn(5, K))
    out = layer(x, y)
    gain = 1 + layer.gain.weight.T[torch.arange(8) % K]  # the row of each image's class
    bias = layer.bias.weight.T[torch.arange(8) % K]
    torch.testing.assert_close(out, plain * gain[:, :, None, None] + bias[:, :, None, None])


def test_projection_generator_uses_conditional_batch_norm():
    g = dcgan.Generator(z_dim=10, resolution=16, width=8, conditioning="projection",
                        num_classes=K).eval()
    assert any(isinstance(m, ConditionalBatchNorm2d) for m in g.modules())
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, ConditionalBatchNorm2d):
                m.bias.weight.normal_()
        z = torch.randn(2, 10).repeat(K, 1)
        y = F.one_hot(torch.arange(K).repeat_interleave(2), K).float()
        images = g(z, y)
    assert not torch.allclose(images[:2], images[2:4])  # same latents, other class: other image


def test_acgan_records_class_logits_only_while_bound():
    d = progressive.Discriminator(resolution=8, width=8, conditioning="acgan", num_classes=K)
    x = torch.randn(4, 3, 8, 8)
    d(x)
    assert d.class_logits == []
    d.bound_labels = labels(4)
    d(x)
    assert len(d.class_logits) == 1 and d.class_logits[0].shape == (4, K)


def test_pggan_generator_appends_labels_to_the_latent_before_pixel_norm():
    g = progressive.Generator(z_dim=6, resolution=8, width=8, conditioning="acgan", num_classes=K)
    z, y = torch.randn(3, 6), labels(3)
    seen = first_input(g.input.normalize_z, lambda: g(z, y))
    torch.testing.assert_close(seen, torch.cat([z, y], 1), rtol=0, atol=0)


def test_pggan_concat_planes_reach_every_from_rgb_while_fading():
    d = progressive.Discriminator(resolution=16, width=8, conditioning="concat", num_classes=K)
    d.set_stage(2, 0.5)
    x, y = torch.randn(4, 3, 16, 16), labels(4)
    new = first_input(d.from_rgb["16"], lambda: d(x, y))
    old = first_input(d.from_rgb["8"], lambda: d(x, y))
    assert new.shape[1] == old.shape[1] == 3 + K
    assert torch.all(old[:, 3:] == y[:, :, None, None])


@pytest.mark.parametrize("mode", ["concat", "projection", "acgan"])
def test_conditioning_without_labels_is_a_config_error(mode):
    with pytest.raises(ConfigError, match="needs labels"):
        dcgan.Generator(resolution=16, width=8, conditioning=mode, num_classes=0)


def test_unknown_conditioning_is_a_config_error():
    with pytest.raises(ConfigError, match="concat"):
        dcgan.Discriminator(resolution=16, width=8, conditioning="cbn", num_classes=K)


def test_sagan_projection_generator_conditions_its_batch_norms_without_spectral_norm_on_them():
    g = sagan.Generator(z_dim=8, resolution=16, width=8, attention=[8],
                        conditioning="projection", num_classes=K)
    norms = [m for m in g.modules() if isinstance(m, ConditionalBatchNorm2d)]
    assert len(norms) == 3  # stem, 8 px and 16 px blocks
    assert not any(hasattr(m.gain, "parametrizations") for m in norms)
    assert hasattr(g.stem, "parametrizations")  # spectral norm elsewhere as before
    g.train()
    out = g(torch.randn(4, 8), labels(4))
    assert out.shape == (4, 3, 16, 16) and torch.isfinite(out).all()


def test_sagan_projection_needs_batch_norm_in_g():
    with pytest.raises(ConfigError, match="batch_norm=true"):
        sagan.Generator(resolution=16, width=8, batch_norm=False, conditioning="projection",
                        num_classes=K)


@pytest.mark.parametrize("model", ["dcgan", "sagan", "pggan"])
def test_auto_without_labels_builds_an_unconditional_model_outside_a_run(model, tmp_path):
    """`model.conditioning=auto` is resolved from the data by the run; a model instantiated from
    its config directly (notebooks, tools) has no labels and builds unconditional."""
    from hydra.utils import instantiate

    from tests.conftest import compose_config

    cfg = compose_config([f"model={model}", "model.generator.width=8",
                          "model.discriminator.width=8", "data.resolution=16"], tmp_path / "run")
    assert cfg.model.conditioning == "auto"
    module = instantiate(cfg.model)
    assert module.labels is None
    assert module.generator.conditioning == module.discriminator.conditioning == "none"
