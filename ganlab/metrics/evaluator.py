"""FID during training: a callback that scores the EMA generator every `every_kimg`.

Each evaluation: real statistics of `num_real` validation images at the current stage resolution
come from memory, else from the on-disk cache, else from the images themselves (then cached; a
hit never reads a real image); `num_fake` fakes from the EMA generator with fresh latents are
generated batch by batch and fed to the one feature extractor; `val/fid` (+ counts, KID, IS) goes
to every logger at that step, with `val/fid_best` (generally `val/<name>_best`: the lowest so
far, what `optimized_metric` names for sweeps); `checkpoints/best.ckpt` follows the lowest FID.

Under DDP every rank featurises its share of reals and fakes and torchmetrics sums the states;
rank 0 alone reads or writes the cache and holds cached statistics.

Why a callback and not Lightning's validation loop: that loop fetches a batch of reals before any
hook can say the statistics are cached (evaluation_loop.reset prefetches), and its batch count is
fixed at setup, so a cache hit could not skip the real images.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader

from ganlab import lightning_api
from ganlab.data.labels import collate, images_of
from ganlab.data.transforms import to_uint8
from ganlab.logs import get_logger
from ganlab.metrics.cache import FeatureStats, entry_path, load_stats, save_stats, stats_key
from ganlab.metrics.fid import FeatureMetrics
from ganlab.metrics.inception import (
    InceptionFeatures,
    WeightsUnavailableError,
    file_digest,
    find_weights,
    module_digest,
)
from ganlab.utils import ConfigError, check_int, check_positive, next_multiple

log = get_logger(__name__)

# metric.feature_extractor names -> the extractor class ("module.Class"), besides {_target_: ...}
EXTRACTORS = {"shapes": "ganlab.metrics.shapes_features.ShapesFeatures"}

# data config keys that change how images are loaded, not which images: left out of cache keys
LOADER_KEYS = {
    "batch_size",
    "num_workers",
    "eval_batch_size",
    "pin_memory",
    "hflip",
    "cache",
    "cache_dir",
    "cache_workers",
    "download",
    "max_bad_fraction",
    "num_images",
    "train_split",
}


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _rank0_decides(flag: bool, device: torch.device) -> bool:
    """Rank 0's `flag` on every rank (one broadcast under DDP), so all ranks take the same path."""
    if _rank_world()[1] == 1:
        return flag
    value = torch.tensor([int(flag)], device=device)
    torch.distributed.broadcast(value, src=0)
    return bool(value.item())


def _named_extractor(extractor: Any, data_target: str | None) -> nn.Module | None:
    """metric.feature_extractor as a module: a name from EXTRACTORS is instantiated; an
    extractor tied to one dataset (`data_target` attribute) refuses another before training."""
    if isinstance(extractor, str):
        if extractor not in EXTRACTORS:
            raise ConfigError(
                f"metric.feature_extractor={extractor!r} is not a known extractor; use one of "
                f"{sorted(EXTRACTORS)} or {{_target_: module.Class}} (null: Inception)"
            )
        module_name, class_name = EXTRACTORS[extractor].rsplit(".", 1)
        extractor = getattr(importlib.import_module(module_name), class_name)()
    wanted = getattr(extractor, "data_target", None)
    if wanted and data_target and data_target != wanted:
        raise ConfigError(
            f"metric.feature_extractor={type(extractor).__name__} scores images of "
            f"{wanted} only, but data._target_ (metric.data_target) is {data_target}: use "
            "metric=fid for this data, or data=shapes"
        )
    return extractor


def _share(total: int, rank: int, world: int) -> int:
    """This rank's part of `total` items split over `world` ranks (parts differ by at most 1)."""
    return total // world + (rank < total % world)


class FIDEvaluator(pl.Callback):
    """`metric=fid`: FID (+ KID, IS) of the EMA generator, the real-statistics cache, best.ckpt.
    `metric=shapes`: the same with the shapes feature net, logged as val/fd_shapes (`name`).

    Args:
        every_kimg: evaluation interval in thousands of real images shown (None: only at the end).
        num_real: real validation images (capped at the split's size); at least 2.
        num_fake: generated images per evaluation (None: as many as the reals used).
        batch_size: images per generator / extractor forward, per device.
        weights_path: InceptionV3 weights file (None: look in the torch hub cache only).
        download: fetch the weights into the torch hub cache if they are missing (opt-in).
        download_timeout: socket timeout of that download, seconds.
        required: without loadable weights, raise ConfigError (True) or warn once and train
            without FID (False).
        cache_dir: folder of the real-statistics cache (None: no disk cache).
        kid, kid_subsets, kid_subset_size: also KID, with these subsets.
        prdc: also precision / recall (k = 3) and density / coverage (k = 5); caches the real
            features as KID does.
        inception_score: also IS of the fakes.
        feature_extractor: a module mapping uint8 [N, 3, r, r] to [N, d], replacing Inception,
            or the name of one (EXTRACTORS: 'shapes').
        checkpoint_dir: where best.ckpt goes (None: no best.ckpt).
        stop_kimg: the run's length in kimg; the run is also evaluated when it gets there.
        seed: seed of the fake latents (with kimg and rank) and of KID / IS subsets.
        name: the distance's logged name (val/<name>) and what best.ckpt follows ('fid';
            metric=shapes: 'fd_shapes').
        data_target: the data config's _target_; an extractor with a `data_target` attribute
            (the shapes features) refuses other data.
        classifier: for a conditional generator, what classifies its fakes for val/cond_acc
            (and val/fd_intra): 'shapes' (the shapes network's kind head; class labels on
            data=shapes), a TorchScript file (images in [-1, 1] -> logits [N, K]), or None
            (ganlab.metrics.conditional). Unconditional generators: unused.
        cond_per_class: fakes per class for those scores.
    """

    def __init__(
        self,
        every_kimg: float | None = 100.0,
        num_real: int = 10000,
        num_fake: int | None = None,
        batch_size: int = 64,
        weights_path: str | None = None,
        download: bool = False,
        download_timeout: float = 30.0,
        required: bool = False,
        cache_dir: str | None = None,
        kid: bool = False,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        inception_score: bool = False,
        feature_extractor: nn.Module | str | None = None,
        checkpoint_dir: str | None = None,
        stop_kimg: float | None = None,
        seed: int = 0,
        name: str = "fid",
        data_target: str | None = None,
        prdc: bool = False,
        classifier: str | None = None,
        cond_per_class: int = 250,
    ) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"metric.name={name!r} must be a word such as fid or fd_shapes")
        self.name = name
        if every_kimg is not None:
            check_positive(every_kimg, "metric.every_kimg")
        check_int(num_real, "metric.num_real", 2)
        check_int(num_fake, "metric.num_fake", 2, allow_none=True)
        check_int(batch_size, "metric.batch_size", 1)
        check_int(kid_subsets, "metric.kid_subsets", 1)
        check_int(kid_subset_size, "metric.kid_subset_size", 2)
        check_positive(download_timeout, "metric.download_timeout")
        self.every_nimg = None if every_kimg is None else int(every_kimg * 1000)
        self.stop_nimg = None if stop_kimg is None else int(stop_kimg * 1000)
        self.num_real, self.num_fake, self.batch_size = num_real, num_fake, batch_size
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.seed = seed
        check_int(cond_per_class, "metric.cond_per_class", 2)
        self.classifier, self.cond_per_class = self._classifier(classifier), cond_per_class
        self.memory: dict[str, FeatureStats] = {}  # rank 0's statistics by key, this process
        self.best_fid: float | None = None
        self.best_nimg: int | None = None
        self.last_nimg = -1
        self.next_nimg = 0
        feature_extractor = _named_extractor(feature_extractor, data_target)
        self.metrics, self.extractor_id = self._build(
            feature_extractor,
            weights_path,
            download,
            download_timeout,
            required,
            kid=kid,
            inception_score=inception_score,
            kid_subsets=kid_subsets,
            kid_subset_size=kid_subset_size,
            prdc=prdc,
        )

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _classifier(classifier: str | None) -> nn.Module | None:
        """metric.classifier as a module: (logits, features or None) of images."""
        if classifier is None:
            return None
        from ganlab.metrics.conditional import ScriptedClassifier, ShapesKindClassifier

        return ShapesKindClassifier() if classifier == "shapes" else ScriptedClassifier(classifier)

    @staticmethod
    def _build(
        feature_extractor: nn.Module | None,
        weights_path: str | None,
        download: bool,
        timeout: float,
        required: bool,
        **options: Any,
    ) -> tuple[FeatureMetrics | None, dict[str, str]]:
        """The metrics on the chosen extractor, or (None, {}) when the weights are unavailable
        and not required (after one warning)."""
        if feature_extractor is not None:
            if not isinstance(feature_extractor, nn.Module):
                raise ConfigError("metric.feature_extractor must instantiate an nn.Module")
            identity = {
                "extractor": type(feature_extractor).__qualname__,
                "digest": module_digest(feature_extractor),
            }
            return FeatureMetrics(feature_extractor, **options), identity
        try:
            path = find_weights(weights_path, download, timeout)
            extractor = InceptionFeatures.from_file(path)
        except WeightsUnavailableError as error:
            if required:
                raise ConfigError(str(error)) from None
            log.warning("FID is off for this run: %s", error)
            return None, {}
        identity = {"extractor": "torch-fidelity-inception-v3", "weights": file_digest(path)}
        return FeatureMetrics(extractor, **options), identity

    @property
    def enabled(self) -> bool:
        return self.metrics is not None

    def state_dict(self) -> dict[str, Any]:
        return {"best_fid": self.best_fid, "best_nimg": self.best_nimg, "last_nimg": self.last_nimg}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_fid = state_dict.get("best_fid")
        self.best_nimg = state_dict.get("best_nimg")
        self.last_nimg = state_dict.get("last_nimg", -1)

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.enabled:
            return
        self.next_nimg = self._next(pl_module.nimg)
        if self.best_fid is not None:  # resumed: what run.train returns, even if none runs now
            best = torch.tensor(self.best_fid, dtype=torch.float64)
            trainer.callback_metrics[f"val/{self.name}_best"] = best

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        nimg = pl_module.nimg
        if not self.enabled or not self._due(nimg):
            return
        values = self.evaluate(pl_module, trainer.datamodule, nimg)
        self.last_nimg = nimg
        self.next_nimg = self._next(nimg)
        self._track_best(trainer, pl_module, values[self.name])
        best = {} if self.best_fid is None else {f"{self.name}_best": self.best_fid}
        self._log(trainer, {"kimg": nimg / 1000, **values, **best})

    def _next(self, nimg: int) -> float:
        return math.inf if self.every_nimg is None else next_multiple(nimg, self.every_nimg)

    def _due(self, nimg: int) -> bool:
        """At every `every_kimg` and when the run reaches its length (`stop_kimg`)."""
        at_end = self.stop_nimg is not None and nimg >= self.stop_nimg
        return nimg != self.last_nimg and (nimg >= self.next_nimg or at_end)

    @staticmethod
    def _log(trainer: pl.Trainer, values: dict[str, float]) -> None:
        """val/* to every logger at this step, once, and into `trainer.callback_metrics` (what
        `run.train` returns). (`self.log` from a callback would repeat the value in every later
        logged step: Lightning keeps step values until the epoch ends.)"""
        lightning_api.log_out_of_band(
            trainer, {f"val/{name}": value for name, value in values.items()}
        )

    def _track_best(self, trainer: pl.Trainer, pl_module: pl.LightningModule, fid: float) -> None:
        if not math.isfinite(fid) or (self.best_fid is not None and fid >= self.best_fid):
            return
        self.best_fid, self.best_nimg = fid, pl_module.nimg
        if self.checkpoint_dir is not None and pl_module.weights_are_finite():
            trainer.save_checkpoint(self.checkpoint_dir / "best.ckpt")  # all ranks; rank 0 writes

    # ------------------------------------------------------------------ one evaluation
    def evaluate(
        self, module: pl.LightningModule, datamodule: pl.LightningDataModule, nimg: int = 0
    ) -> dict[str, float]:
        """Score `module`'s EMA generator against `datamodule`'s validation split at its current
        resolution. A collective under DDP: every rank calls it. Returns {'fid', 'num_real',
        'num_fake', 'resolution', 'seconds'} (+ 'kid_mean', 'kid_std', 'is_mean', 'is_std')."""
        start = time.perf_counter()
        rank, world = _rank_world()
        self.metrics.to(module.device).reset()
        if datamodule.val_set is None:
            raise RuntimeError("the datamodule has no validation split (call setup('fit') first)")
        num_real = min(self.num_real, len(datamodule.val_set))
        if num_real < 2:
            raise ConfigError(f"FID needs >= 2 validation images, the split has {num_real}")
        num_fake = self.num_fake or num_real
        resolution = datamodule.resolution
        log.info(
            "FID at kimg %g: %d fakes vs %d reals at %d px on %s ...",
            nimg / 1000,
            num_fake,
            num_real,
            resolution,
            module.device,
        )
        source = self._add_reals(module, datamodule, num_real, rank, world)
        seed = int(np.random.SeedSequence([self.seed, nimg, rank]).generate_state(1)[0])
        fakes = self.fake_batches(module, _share(num_fake, rank, world), seed, resolution)
        for images in fakes:
            self.metrics.update(images, real=False)
        values = self.metrics.compute(seed=self.seed)
        values[self.name] = values.pop("fid")  # 'fid', or e.g. 'fd_shapes' for other features
        values |= self.conditional(module, datamodule, num_real)
        values |= {
            "num_real": num_real,
            "num_fake": num_fake,
            "resolution": resolution,
            "seconds": time.perf_counter() - start,
        }
        log.info(
            "%s at kimg %g: %.3f (real statistics %s; %.1f s)",
            self.name,
            nimg / 1000,
            values[self.name],
            source,
            values["seconds"],
        )
        return values

    def _add_reals(
        self, module: nn.Module, datamodule: pl.LightningDataModule, num: int, rank: int, world: int
    ) -> str:
        """The real side: cached statistics (rank 0 loads them, no image is read) or, on a miss,
        every rank's share of the images, then cached. Returns 'cached' or 'computed'."""
        key = self.stats_key(module, datamodule, num)
        cached = self._lookup(key) if rank == 0 else None
        if _rank0_decides(cached is not None, self.metrics.device):
            if cached is not None:
                self.metrics.load_stats(cached, real=True)
            return "cached"
        for images in self.real_batches(datamodule, num, rank, world, module.device):
            self.metrics.update(images, real=True)
        self._store(key, self.metrics.stats(real=True), rank)
        return "computed"

    def real_batches(
        self,
        datamodule: pl.LightningDataModule,
        num: int,
        rank: int,
        world: int,
        device: torch.device,
    ) -> Iterator[Tensor]:
        """This rank's share (every world-th) of the first `num` validation images, as uint8
        [B, 3, r, r] at the current stage resolution (the datamodule's own eval transform)."""
        for images in self.labelled_real_batches(datamodule, num, rank, world, device):
            yield images_of(images)

    def labelled_real_batches(
        self, datamodule: pl.LightningDataModule, num: int, rank: int, world: int,
        device: torch.device,
    ) -> Iterator[Tensor | tuple[Tensor, Tensor]]:
        """`real_batches` with their labels when the split has them: (images, labels [B, K])."""
        sampler = BatchSampler(range(rank, num, world), self.batch_size, drop_last=False)
        loader = DataLoader(
            datamodule.val_set,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=getattr(datamodule, "num_workers", 0),
        )
        for batch in loader:
            images = datamodule.prepare_eval(images_of(batch).to(device, non_blocking=True))
            yield images if isinstance(batch, Tensor) else (images, batch[1])

    def conditional(
        self, module: pl.LightningModule, datamodule: pl.LightningDataModule, num_real: int
    ) -> dict[str, float]:
        """val/cond_acc, val/real_acc (+ per class) and val/fd_intra of a conditional EMA
        generator (ganlab.metrics.conditional; every rank computes them alike); {} when the
        generator is unconditional, no classifier is set or the split has no labels."""
        labels = getattr(module, "labels", None)
        if labels is None or self.classifier is None:
            return {}
        reals = list(self.labelled_real_batches(datamodule, num_real, 0, 1, module.device))
        if not reals or isinstance(reals[0], Tensor):
            return {}
        from ganlab.metrics.conditional import conditional_scores

        generator = module.generator_ema
        was_training = generator.training
        generator.eval()
        try:
            with torch.autocast(module.device.type, enabled=False):
                return conditional_scores(
                    lambda z, y: module.sample(z, labels=y), module.generator.z_dim, reals,
                    self.classifier, labels.names, labels.multi_label, self.cond_per_class,
                    self.batch_size, self.seed, module.device,
                )
        finally:
            generator.train(was_training)

    @torch.no_grad()
    def fake_batches(
        self, module: pl.LightningModule, num: int, seed: int, resolution: int
    ) -> Iterator[Tensor]:
        """`num` fakes from the EMA generator in eval mode, latents from `seed`, as uint8 batches
        [B, 3, r, r] quantised like saved PNGs; never all in memory at once."""
        generator = module.generator_ema
        was_training = generator.training
        generator.eval()
        dtype = next(generator.parameters()).dtype
        rng = torch.Generator(device=module.device).manual_seed(seed)
        label_rng = torch.Generator().manual_seed(seed)  # conditional: labels of the fakes
        labels = getattr(module, "labels", None)
        try:
            for start in range(0, num, self.batch_size):
                count = min(self.batch_size, num - start)
                z = torch.randn(count, module.generator.z_dim, generator=rng, device=module.device)
                z = z.to(dtype)  # the generator's parameter dtype (float32 unless *-true precision)
                with torch.autocast(module.device.type, enabled=False):
                    if labels is None:
                        images = module.sample(z)
                    else:  # drawn at the data's label frequencies
                        y = labels.random(count, module.device, generator=label_rng)
                        images = module.sample(z, labels=y)
                expected = (count, 3, resolution, resolution)
                assert tuple(images.shape) == expected, (
                    f"the EMA generator made {tuple(images.shape)}, the reals are {expected}"
                )
                yield to_uint8(images)
        finally:
            generator.train(was_training)

    # ------------------------------------------------------------------ the cache
    def stats_key(
        self, module: nn.Module, datamodule: pl.LightningDataModule, num_real: int
    ) -> dict[str, Any]:
        """What the real statistics depend on: the dataset (its config without loader-only keys,
        or its class and size; and the fingerprint of its files: names, sizes, mtimes), split,
        stage resolution, image count and feature extractor."""
        config = getattr(module, "run_config", None) or {}
        data = config.get("data")
        if data:
            dataset = {k: v for k, v in data.items() if k not in LOADER_KEYS}
        else:
            dataset = {
                "class": type(datamodule).__qualname__,
                "resolution": datamodule.max_resolution,
                "num_val_images": len(datamodule.val_set),
            }
        fingerprint = getattr(datamodule, "source_fingerprint", None)  # images on disk
        if fingerprint is not None:
            dataset = {**dataset, "images": fingerprint("val")}
        name = type(datamodule).__name__.lower().removesuffix("datamodule") or "data"
        return stats_key(
            dataset_name=name,
            dataset=dataset,
            split="val",
            resolution=datamodule.resolution,
            num_real=num_real,
            kid=self.metrics.kid is not None,
            prdc=self.metrics.prdc is not None,
            **self.extractor_id,
        )

    def _lookup(self, key: dict[str, Any]) -> FeatureStats | None:
        """Rank 0: statistics for `key` from memory, else from the disk cache."""
        name = str(entry_path("", key))
        if name not in self.memory and self.cache_dir is not None:
            path = entry_path(self.cache_dir, key)
            try:
                stats = load_stats(path, key)
            except Exception as error:  # noqa: BLE001 - an unreadable entry is a miss
                log.warning("ignoring unreadable FID cache entry %s (%s)", path, error)
                stats = None
            if stats is not None:
                self.memory[name] = stats
        return self.memory.get(name)

    def _store(self, key: dict[str, Any], stats: FeatureStats, rank: int) -> None:
        """Rank 0 keeps the (all-rank) statistics in memory and writes the cache entry."""
        if rank != 0:
            return
        self.memory[str(entry_path("", key))] = stats
        if self.cache_dir is not None:
            path = entry_path(self.cache_dir, key)
            try:
                save_stats(path, stats, key)
            except OSError as error:  # a read-only cache costs time, not the run
                log.warning("could not write the FID cache entry %s (%s)", path, error)
                return
            log.info("cached real statistics (%d images) in %s", stats.num, path)
