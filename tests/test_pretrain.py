"""DiRA pretraining on tiny images: every mode × variant trains, restoration overfits, D learns."""

from __future__ import annotations

import math

import pytest
import torch

from training.config import BarlowTwinsConfig, ConfigError, SimSiamConfig, load_config
from training.data import make_loader
from training.losslog import read
from training.methods import BarlowTwins, MoCo, SimSiam
from training.networks import PatchDiscriminator
from training.trainer import Trainer

from .pretrain_support import (
    MemoryImages,
    tiny_config,
    torch_globals,  # noqa: F401 (autouse fixture)
)


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


@pytest.mark.parametrize("variant", ["moco", "barlowtwins", "simsiam"])
@pytest.mark.parametrize("mode", ["di", "dir", "dira"])
def test_every_mode_and_variant_trains(tmp_path, mode: str, variant: str) -> None:
    cfg = tiny_config(tmp_path / "run", f"mode={mode}", f"method.variant={variant}", "max_steps=2")
    trainer = Trainer(cfg, {"train": MemoryImages(8)})
    before = _params(trainer.model.generator)
    assert trainer.fit() == "stopped" and trainer.step == 2

    rows = read(tmp_path / "run" / "losses.csv")
    assert [r["step"] for r in rows] == ["1", "2"]
    expected = {"di": {"dis"}, "dir": {"dis", "res"}, "dira": {"dis", "res", "adv", "d"}}[mode]
    assert {k for k in ("dis", "res", "adv", "d") if rows[-1][k]} == expected
    assert all(math.isfinite(float(r["total"])) for r in rows)
    after = _params(trainer.model.generator)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("unet.encoder."))
    decoder = [k for k in after if k.startswith("unet.decoder.")]
    assert bool(decoder) == (mode != "di")  # di has no decoder at all
    assert (trainer.disc is not None) == (mode == "dira")
    assert (tmp_path / "run" / "last.pt").is_file()


def test_fixed_batch_overfits_and_discriminator_learns(tmp_path) -> None:
    cfg = tiny_config(tmp_path / "run", "mode=dira")
    trainer = Trainer(cfg)
    loader, _ = make_loader(MemoryImages(4), cfg, train=True, batch_size=4)
    batch = next(iter(loader))
    history = [trainer.train_step(batch) for _ in range(25)]
    first, last = history[0], history[-1]
    assert last["res"] < 0.3 * first["res"], (first["res"], last["res"])
    d_losses = [h["d"] for h in history]
    assert max(d_losses) - min(d_losses) > 0.1
    assert last["d"] < first["d"]


def test_moco_updates_queue_and_key_encoder_only_in_training(tmp_path) -> None:
    cfg = tiny_config(tmp_path / "run", "mode=dir")
    trainer = Trainer(cfg)
    method: MoCo = trainer.model.method
    loader, _ = make_loader(MemoryImages(4), cfg, train=True, batch_size=4)
    batch = next(iter(loader))
    trainer.train_step(batch)
    queue, key = method.queue.clone(), _params(method.key_encoder)
    assert int(method.queue_ptr) == 4
    trainer.validate([batch])  # the official code enqueued and moved the key encoder here too
    assert torch.equal(method.queue, queue) and int(method.queue_ptr) == 4
    assert all(torch.equal(v, _params(method.key_encoder)[k]) for k, v in key.items())
    trainer.train_step(batch)
    assert int(method.queue_ptr) == 8 and not torch.equal(method.queue, queue)
    online = dict(trainer.model.generator.encoder.named_parameters())
    moved = _params(method.key_encoder)
    name = "encoder.conv1.weight"
    # θ_k ← m θ_k + (1 − m) θ_q: the key weights moved a little towards the online ones.
    assert not torch.equal(moved[name], key[name])
    assert (moved[name] - online["conv1.weight"]).norm() < (key[name] - online["conv1.weight"]).norm()


class _Embeds(torch.nn.Module):
    """Stands in for the generator: the second view embeds to a given tensor."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out = out

    def embed(self, _: object) -> torch.Tensor:
        return self.out


def test_barlow_twins_is_zero_for_identical_whitened_views() -> None:
    torch.manual_seed(0)
    raw = torch.randn(32, 16)
    white = torch.linalg.qr(raw - raw.mean(0))[0] * 32**0.5  # centred, uncorrelated, unit variance
    bt = BarlowTwins(BarlowTwinsConfig(projector=(16,)))
    assert float(bt.loss(white, None, _Embeds(white))) < 1e-3
    assert float(bt.loss(white, None, _Embeds(torch.randn(32, 16)))) > 1.0


def test_simsiam_is_a_symmetric_negative_cosine() -> None:
    torch.manual_seed(0)
    simsiam = SimSiam(SimSiamConfig(dim=16, pred_dim=4), 16)
    z1, z2 = torch.randn(8, 16, requires_grad=True), torch.randn(8, 16, requires_grad=True)
    loss = simsiam.loss(z1, None, _Embeds(z2))
    assert -1.0 <= float(loss.detach()) <= 1.0
    swapped = simsiam.loss(z2, None, _Embeds(z1))
    assert torch.allclose(loss, swapped)


def test_patch_discriminator_map_is_size_over_8() -> None:
    disc = PatchDiscriminator()
    assert disc(torch.zeros(2, 1, 224, 224)).shape == (2, 1, 28, 28)
    assert disc(torch.zeros(1, 1, 64, 64)).shape == (1, 1, 8, 8)


def test_config_checks_and_overrides(tmp_path) -> None:
    cfg = load_config("training/configs/moco_dira.yaml", ["optim.lr=0.01", "data.root=/x"])
    assert (cfg.mode, cfg.optim.batch_size, cfg.optim.epochs, cfg.optim.lr) == ("dira", 16, 400, 0.01)
    assert cfg.init_from == "runs/moco_dir" and cfg.method.moco.queue_size == 65536  # from the base file
    with pytest.raises(ConfigError, match="queue_size"):
        load_config(None, ["optim.batch_size=100"]).validate()
    with pytest.raises(ConfigError, match="unknown config key optim.lrr"):
        load_config(None, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="does not divide"):
        load_config(None, ["optim.batch_size=256"]).validate(world_size=3)
    with pytest.raises(ConfigError, match="mode"):
        load_config(None, ["mode=dr"]).validate()


def test_refuses_to_overwrite_a_run(tmp_path) -> None:
    cfg = tiny_config(tmp_path / "run", "mode=di", "max_steps=1")
    Trainer(cfg, {"train": MemoryImages(4)}).fit()
    from training.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="--resume"):
        Trainer(cfg, {"train": MemoryImages(4)}).fit()


def test_gpu_flags_run_on_cpu(tmp_path) -> None:
    # bf16 autocast and channels_last are the GPU settings; they must also work (slowly) on a CPU.
    cfg = tiny_config(
        tmp_path / "run", "mode=dira", "precision=bf16", "channels_last=true", "optim.batch_size=2"
    )
    trainer = Trainer(cfg)
    loader, _ = make_loader(MemoryImages(2), cfg, train=True, batch_size=2)
    losses = trainer.train_step(next(iter(loader)))
    assert all(math.isfinite(v) for v in losses.values())
    conv = trainer.model.generator.encoder.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_paper_size_resnet50_dira_step(tmp_path) -> None:
    # The paper's networks at 224²: ResNet-50 U-Net, 2048-2048-128 projector, 28×28 PatchGAN map.
    cfg = load_config(
        "training/configs/moco_dira.yaml",
        [
            f"out_dir={tmp_path}",
            "init_from=null",
            "optim.batch_size=2",
            "method.moco.queue_size=64",
            "data.workers=0",
        ],
    )
    trainer = Trainer(cfg)
    x = torch.rand(2, 3, 224, 224)
    _, restored = trainer.model.generator(x)
    assert restored.shape == (2, 1, 224, 224) and trainer.disc(restored).shape == (2, 1, 28, 28)
    assert trainer.model.generator.projector(torch.zeros(2, 2048)).shape == (2, 128)
    loader, _ = make_loader(MemoryImages(2, size=256), cfg, train=True, batch_size=2)
    losses = trainer.train_step(next(iter(loader)))
    assert {"dis", "res", "adv", "d"} <= losses.keys() and all(math.isfinite(v) for v in losses.values())
