"""SAGAN (Zhang et al. 2019): the shared loop plus attention logging and attention-map images.

The networks come from nets/sagan.py; hinge loss, TTUR and Adam betas (0, 0.9) from
conf/model/sagan.yaml. What differs from GANModule: `train/attn_gamma_{g,d}{side}` scalars, an
attention-map image next to each sample grid, and twice-differentiable attention in D when the
loss takes gradients of D (WGAN-GP, R1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.utils import make_grid, save_image

from ganlab.loggers import log_image
from ganlab.models.base import GANModule
from ganlab.nets.layers import SelfAttention, enable_double_backward
from ganlab.utils import ConfigError, check_positive, next_multiple


def attention_layers(net: nn.Module) -> dict[str, SelfAttention]:
    """The attention blocks of a SAGAN network by feature-map side ("32": layer)."""
    return dict(getattr(net, "attention", {}).items())


class SAGAN(GANModule):
    """GANModule with SAGAN networks.

    Args:
        attention_query: (row, col) of the query pixel of the attention-map images, as fractions
            of the side in [0, 1).
        attention_dir: folder of the attention-map images (None: none are written); the config
            passes the sample grids' folder.
        attention_every_kimg: their interval, kimg (None: none); the config passes the sample
            grids' interval, so each image sits beside the grid of the same nimg.
        **kwargs: GANModule's arguments (generator, discriminator, loss, lr_g, lr_d, ...).
    """

    default_conditioning = "projection"  # model.conditioning=auto with data.labels set

    def __init__(
        self,
        attention_query: Sequence[float] = (0.5, 0.5),
        attention_dir: str | None = None,
        attention_every_kimg: float | None = None,
        **kwargs,
    ) -> None:
        attention_query = tuple(float(v) for v in attention_query)  # plain floats: weights_only
        if len(attention_query) != 2 or not all(0 <= v < 1 for v in attention_query):
            raise ConfigError(
                f"model.attention_query={list(attention_query)} must be [row, col] fractions in "
                "[0, 1), e.g. [0.5, 0.5] for the centre pixel"
            )
        if attention_every_kimg is not None:
            check_positive(attention_every_kimg, "model.attention_every_kimg")
        super().__init__(**kwargs)
        if self.loss.needs_double_backward:
            enable_double_backward(self.discriminator)

    def extra_train_logs(self) -> dict[str, Tensor]:
        """gamma of every attention block: `attn_gamma_g32`, `attn_gamma_d32`, ..."""
        logs = {}
        for prefix, net in (("g", self.generator), ("d", self.discriminator)):
            for side, layer in attention_layers(net).items():
                logs[f"attn_gamma_{prefix}{side}"] = layer.gamma.detach()
        return logs

    def configure_callbacks(self) -> list[pl.Callback]:
        dirpath, every_kimg = self.hparams.attention_dir, self.hparams.attention_every_kimg
        if dirpath is None or every_kimg is None:
            return []
        return [AttentionMaps(self.hparams.attention_query, dirpath=dirpath, every_kimg=every_kimg)]


# --------------------------------------------------------------------------- attention images
@contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put modules in eval mode (no batch statistics, no power iterations), then restore."""
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


@torch.no_grad()
def capture_attention(net: nn.Module, run: Callable[[], object]) -> dict[str, Tensor]:
    """Call `run()` and return the attention map [N, HW, HW] of each of `net`'s attention
    blocks, by side."""
    maps: dict[str, Tensor] = {}
    hooks = [
        layer.register_forward_hook(
            lambda m, args, out, side=side: maps.__setitem__(side, m.attention_map(args[0]))
        )
        for side, layer in attention_layers(net).items()
    ]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return maps


def heat_colours(heat: Tensor) -> Tensor:
    """[H, W] in [0, 1] -> [3, H, W] black-red-yellow."""
    return torch.stack([(2 * heat).clamp(0, 1), (2 * heat - 1).clamp(0, 1), torch.zeros_like(heat)])


def attention_panels(
    image: Tensor, maps: dict[str, Tensor], query: tuple[float, float], size: int
) -> list[Tensor]:
    """Per map: [image with the query pixel in green, attention of that query over all positions
    (scaled to its max), overlay], each [3, size, size] in [0, 1].

    image: [3, R, R] in [-1, 1]; maps: side -> [1, side*side, side*side].
    """
    picture = F.interpolate(image[None].float().add(1).div(2).clamp(0, 1), size=size)[0]
    panels = []
    for side_key, attention in maps.items():
        side = int(side_key)
        row, col = (min(int(q * side), side - 1) for q in query)
        heat = attention[0, row * side + col].view(1, 1, side, side).float()
        heat = F.interpolate(heat / heat.max().clamp_min(1e-12), size=size)[0, 0]
        marked = picture.clone()
        cell = size // side
        marked[:, row * cell:(row + 1) * cell, col * cell:(col + 1) * cell] = (
            torch.tensor([0.0, 1.0, 0.0])[:, None, None]
        )
        coloured = heat_colours(heat)
        panels += [marked, coloured, 0.5 * picture + 0.5 * coloured]
    return panels


class AttentionMaps(pl.Callback):
    """Writes `dirpath/attention_{nimg:09d}.png` every `every_kimg` and at the end (rank 0): on
    the sample grids' schedule (SampleGrid), so with their folder and interval each image sits
    beside a grid `fakes_{nimg:09d}.png`.

    For the first fixed latent: the EMA generator's image, and for each attention block of the
    EMA generator (rows `g*`) and of D applied to that image (rows `d*`), the attention of one
    query pixel over all positions. Runs in eval mode and draws no random numbers, so training
    is unaffected.

    Args:
        query: (row, col) of the query pixel, fractions of the side.
        size: side of each panel, px.
        dirpath: folder of the images (None: `save` only, e.g. tests).
        every_kimg: interval in thousands of real images shown (None: `save` only).
    """

    def __init__(
        self,
        query: tuple[float, float] = (0.5, 0.5),
        size: int = 128,
        dirpath: str | Path | None = None,
        every_kimg: float | None = None,
    ) -> None:
        self.query, self.size = query, size
        self.dirpath = None if dirpath is None else Path(dirpath)
        self.every_nimg = None if every_kimg is None else int(every_kimg * 1000)
        self.next_nimg = 0
        self.last_saved_nimg = -1

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_nimg is not None:
            self.next_nimg = next_multiple(pl_module.nimg, self.every_nimg)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_nimg is not None and pl_module.nimg >= self.next_nimg:
            self.follow(trainer, pl_module)
            self.next_nimg = next_multiple(pl_module.nimg, self.every_nimg)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_nimg is not None and pl_module.nimg != self.last_saved_nimg:
            self.follow(trainer, pl_module)

    def follow(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.last_saved_nimg = pl_module.nimg
        if trainer.is_global_zero and self.dirpath is not None:
            self.save(pl_module, self.dirpath, trainer)

    @torch.no_grad()
    def render(self, pl_module: SAGAN) -> Tensor | None:
        """The attention image [3, H, W] in [0, 1], or None without attention blocks."""
        generator, disc = pl_module.ema_generator(), pl_module.discriminator
        with eval_mode(generator, disc):
            z = pl_module.fixed_z[:1]
            # conditional: the first grid row's label (the first class), for G and D
            y = None if pl_module.labels is None else pl_module.grid_inputs()[1][:1]
            args = (z,) if y is None else (z, y)
            images: list[Tensor] = []
            g_maps = capture_attention(generator, lambda: images.append(generator(*args)))
            d_maps = capture_attention(disc, lambda: disc(images[0], *args[1:]))
        if not g_maps and not d_maps:
            return None
        image = images[0][0].cpu()
        panels = [
            panel
            for maps in (g_maps, d_maps)
            for panel in attention_panels(image, {k: v.cpu() for k, v in maps.items()},
                                          self.query, self.size)
        ]
        return make_grid(panels, nrow=3, padding=2, pad_value=1.0)

    def save(
        self, pl_module: SAGAN, dirpath: Path, trainer: pl.Trainer | None = None
    ) -> Path | None:
        """Render and write the image, and log it as `samples/attention` to the trainer's W&B /
        TensorBoard loggers; returns its path (None without attention blocks)."""
        image = self.render(pl_module)
        if image is None:
            return None
        dirpath = Path(dirpath)
        dirpath.mkdir(parents=True, exist_ok=True)
        path = dirpath / f"attention_{pl_module.nimg:09d}.png"
        save_image(image, path)
        if trainer is not None:
            log_image(trainer, "samples/attention", image)
        return path
