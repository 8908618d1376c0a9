"""The DiRA training loop: one :class:`Trainer` for CPU, one GPU and DDP (``torchrun``).

Per step (§2.1): forward the generator, one SGD step on ``dis·L_dis + res·L_res + adv·L_adv``, then
in ``dira`` one Adam step of the discriminator on the same (detached) restorations. Each epoch ends
with the cosine schedule step, a validation pass (best → ``best.pt``) and ``last.pt``. Everything a
run needs to continue bit-for-bit (models, optimizers, schedule, MoCo queue, RNG, epoch, step and
position inside the epoch) is in the checkpoint, and SIGTERM finishes the step, saves and stops.
"""

from __future__ import annotations

import math
import os
import random
import signal
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from dira_zoo.models import load_checked

from . import distributed as dist
from .checkpoint import BEST, LAST, CheckpointError, code_version, load, rng_state, save_atomic, set_rng_state
from .config import RunConfig
from .data import make_loader, open_readers
from .dira import DiRAModel, lsgan
from .losslog import LossLog
from .networks import PatchDiscriminator


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and dist.world_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # CUDA has kernels (e.g. nearest-upsampling backward) with no deterministic version: warn there.
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = device.type == "cuda"


class Trainer:
    """Builds the models and optimizers of a run; ``train_step`` is one DiRA update, ``fit`` the loop.

    ``readers`` (``{"train": ..., "val": ...}``, objects with ``len`` and ``[i] -> (grey, labels)``)
    default to what the config's ``data`` section names. ``resume=True`` continues ``out_dir/last.pt``.
    """

    def __init__(self, cfg: RunConfig, readers: Mapping[str, object] | None = None, *, resume: bool = False):
        self.world, self.rank = dist.world_size(), dist.rank()
        self.cfg = cfg.validate(self.world)
        self.device = pick_device(cfg.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.out_dir = Path(cfg.out_dir)
        self.readers = readers
        self.version = code_version()
        seed_everything(cfg.seed, cfg.deterministic, self.device)

        self.model = DiRAModel(cfg)
        self.disc = PatchDiscriminator() if cfg.mode == "dira" else None
        if cfg.init_from and not resume:
            self._init_from(Path(cfg.init_from))
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model.to(self.device, memory_format=self.memory_format)
        if self.disc is not None:
            self.disc.to(self.device)
        self.forward_model, self.forward_disc = self._wrap()

        self.opt_g, self.sched = self._generator_optimizer()
        self.opt_d = (
            torch.optim.Adam(self.disc.parameters(), lr=cfg.optim.d_lr, betas=tuple(cfg.optim.d_betas))
            if self.disc is not None
            else None
        )
        self.weights = {"dis": cfg.loss.dis, "res": cfg.loss.res, "adv": cfg.loss.adv}
        self.epoch = self.step = self.epoch_step = 0
        self.best_loss = math.inf
        self._stop_requested = False
        self.resumed = resume
        if resume:
            self.load_state_dict(load(self.out_dir / LAST, map_location=self.device))

    # --- construction -------------------------------------------------------------------------------
    def _init_from(self, run_dir: Path) -> None:
        """The staged schedule: start from a finished run's last state (generator + method), fresh D."""
        state = load(run_dir / LAST)
        load_checked(self.model, state["model"], what=f"{run_dir / LAST}")

    def _wrap(self):
        model, disc = self.model, self.disc
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            if self.cfg.method.sync_bn and self.device.type == "cuda":
                self.model = model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            model = DistributedDataParallel(model, device_ids=ids)
            disc = DistributedDataParallel(disc, device_ids=ids) if disc is not None else None
        if self.cfg.compile:
            model = torch.compile(model)
            disc = torch.compile(disc) if disc is not None else None
        return model, disc

    def _generator_optimizer(self):
        optim = self.cfg.optim
        predictor = getattr(self.model.method, "predictor", None)
        fixed = (
            set(predictor.parameters())
            if predictor is not None and self.cfg.method.simsiam.fix_pred_lr
            else set()
        )
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in trainable if p not in fixed]}]
        if fixed:
            groups.append({"params": [p for p in trainable if p in fixed]})
        opt = torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
        epochs = optim.epochs

        def cosine(epoch: int) -> float:
            return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))

        lambdas = [cosine] + [lambda _: 1.0] * (len(groups) - 1)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambdas)

    # --- one step -----------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bf16")

    def _inputs(self, batch: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        view1, view2, target = (t.to(self.device, non_blocking=True) for t in batch)
        # One grey channel from the loader → the three identical channels the network takes.
        x1, x2 = (
            v.expand(-1, 3, -1, -1).contiguous(memory_format=self.memory_format) for v in (view1, view2)
        )
        return x1, x2, target

    def _generator_losses(self, x1, x2, target) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        losses, restored = self.forward_model(x1, x2, target)
        if self.disc is not None:
            self.disc.requires_grad_(False)  # G's adversarial term must not touch D's gradients
            losses["adv"] = lsgan(self.disc(restored), real=True)
            self.disc.requires_grad_(True)
        losses["total"] = sum(self.weights[k] * v for k, v in losses.items())
        return losses, restored

    def train_step(self, batch: Iterable[torch.Tensor]) -> dict[str, float]:
        """One generator update (and in ``dira`` one discriminator update); returns the losses."""
        self.model.train()
        x1, x2, target = self._inputs(batch)
        with self._autocast():
            losses, restored = self._generator_losses(x1, x2, target)
        self.opt_g.zero_grad(set_to_none=True)
        losses["total"].backward()
        self.opt_g.step()
        if self.disc is not None:
            self.disc.train()
            with self._autocast():
                real, fake = self.forward_disc(torch.cat([target, restored.detach()])).chunk(2)
                losses["d"] = 0.5 * (lsgan(real, True) + lsgan(fake, False))
            self.opt_d.zero_grad(set_to_none=True)
            losses["d"].backward()
            self.opt_d.step()
        values = torch.stack([v.detach().float() for v in losses.values()]).tolist()
        return dict(zip(losses, values, strict=True))

    @torch.no_grad()
    def validate(self, loader) -> dict[str, float]:
        """Mean losses over the validation loader (all processes), in eval mode: nothing is updated."""
        self.model.eval()
        if self.disc is not None:
            self.disc.eval()
        sums: dict[str, torch.Tensor] = {}
        count = 0
        for batch in loader:
            x1, x2, target = self._inputs(batch)
            with self._autocast():
                losses, _ = self._generator_losses(x1, x2, target)
            count += len(x1)
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value.float() * len(x1)
        names = list(sums)
        totals = dist.all_reduce_sum(
            torch.stack([*(sums[k] for k in names), torch.tensor(float(count), device=self.device)])
        )
        self.model.train()
        return dict(zip(names, (totals[:-1] / totals[-1]).tolist(), strict=True))

    # --- state --------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {
            "model": self.model.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "sched": self.sched.state_dict(),
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "step": self.step,
            "best_loss": self.best_loss,
            "rng": rng_state(),
            "config": self.cfg.to_dict(),
            "code_version": self.version,
            "world_size": self.world,
        }
        if self.disc is not None:
            state["disc"] = self.disc.state_dict()
            state["opt_d"] = self.opt_d.state_dict()
        return state

    def load_state_dict(self, state: Mapping) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.sched.load_state_dict(state["sched"])
            if self.disc is not None:
                self.disc.load_state_dict(state["disc"])
                self.opt_d.load_state_dict(state["opt_d"])
        except (KeyError, RuntimeError, ValueError) as exc:
            msg = str(exc).splitlines()[0]
            raise CheckpointError(f"{self.out_dir / LAST}: does not fit this config ({msg})") from None
        self.epoch, self.epoch_step, self.step = state["epoch"], state["epoch_step"], state["step"]
        self.best_loss = state["best_loss"]
        set_rng_state(state["rng"])

    def sync_buffers(self) -> None:
        """Give every process rank 0's buffers (BN running statistics drift apart after each forward).

        DDP already does this at the start of each forward; doing it before validating and saving makes
        every process hold exactly the state that is evaluated and written.
        """
        if self.world == 1:
            return
        modules = [self.model] + ([self.disc] if self.disc is not None else [])
        for module in modules:
            for buffer in module.buffers():
                dist.broadcast(buffer)

    def save(self, name: str = LAST) -> Path | None:
        """Write a checkpoint from rank 0 (every process must call this: buffers are synchronised first)."""
        self.sync_buffers()
        if self.rank != 0:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return save_atomic(self.state_dict(), self.out_dir / name)

    # --- the loop -----------------------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        """Finish the current step, save ``last.pt`` and return from :meth:`fit` (the SIGTERM handler)."""
        self._stop_requested = True

    def _should_stop(self) -> bool:
        flag = torch.tensor([float(self._stop_requested)], device=self.device)
        if self.world > 1:  # every process must leave at the same step
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        limit = self.cfg.max_steps
        return bool(flag.item()) or (limit is not None and self.step >= limit)

    def fit(self) -> str:
        """Train to the last epoch (or ``max_steps``, or SIGTERM); returns ``"done"`` or ``"stopped"``."""
        cfg = self.cfg
        if not self.resumed and (self.out_dir / LAST).exists():
            raise CheckpointError(
                f"{self.out_dir}: holds a run already; pass --resume or pick another out_dir"
            )
        readers = self.readers if self.readers is not None else open_readers(cfg.data)
        batch = cfg.optim.batch_size // self.world
        common = {
            "batch_size": batch,
            "rank": self.rank,
            "world": self.world,
            "pin_memory": self.device.type == "cuda",
        }
        train_loader, sampler = make_loader(readers["train"], cfg, train=True, **common)
        val_loader = make_loader(readers["val"], cfg, train=False, **common)[0] if "val" in readers else None

        log = LossLog(self.out_dir / "losses.csv", keep_until_step=self.step) if self.rank == 0 else None
        total = sampler.batches * cfg.optim.epochs if cfg.max_steps is None else cfg.max_steps
        bar = tqdm(total=total, initial=self.step, disable=self.rank != 0, unit="step", dynamic_ncols=True)
        previous = signal.signal(signal.SIGTERM, self.request_stop)
        try:
            while self.epoch < cfg.optim.epochs:
                sampler.set_epoch(self.epoch, start=self.epoch_step)
                for batch_data in train_loader:
                    lr = self.opt_g.param_groups[0]["lr"]
                    losses = self.train_step(batch_data)
                    self.step += 1
                    self.epoch_step += 1
                    if log:
                        log.write("train", self.epoch, self.step, lr, losses)
                    bar.update()
                    bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()}, refresh=False)
                    if self._should_stop():
                        self.save(LAST)
                        return "stopped"
                    if cfg.save_every and self.step % cfg.save_every == 0:
                        self.save(LAST)
                self._end_epoch(val_loader, log)
            return "done"
        finally:
            signal.signal(signal.SIGTERM, previous)
            bar.close()
            if log:
                log.close()

    def _end_epoch(self, val_loader, log: LossLog | None) -> None:
        lr = self.opt_g.param_groups[0]["lr"]
        self.epoch += 1
        self.epoch_step = 0
        self.sched.step()
        if val_loader is not None:
            self.sync_buffers()
            losses = self.validate(val_loader)
            if log:
                log.write("val", self.epoch, self.step, lr, losses)
            if losses["total"] < self.best_loss:
                self.best_loss = losses["total"]
                self.save(BEST)
        self.save(LAST)
