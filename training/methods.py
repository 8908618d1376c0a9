"""The discriminative half of DiRA behind one small interface: MoCo-v2, Barlow Twins, SimSiam.

A :class:`Method` builds the projection head the generator carries (``projector``) and turns the
projection of view 1 plus the images of view 2 into ``L_dis`` (``loss``). Only view 1 is decoded;
how view 2 is embedded is the method's business: MoCo-v2 uses its momentum copy, Barlow Twins and
SimSiam the online generator itself (shared weights).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from . import distributed as dist
from .config import BarlowTwinsConfig, MethodConfig, MoCoConfig, SimSiamConfig
from .networks import Embedder, Generator, mlp


class Method(nn.Module):
    """``L_dis`` of one self-supervised method; state that must survive a resume lives in buffers."""

    def loss(self, z1: torch.Tensor, x2: torch.Tensor, generator: Generator) -> torch.Tensor:
        raise NotImplementedError

    def attach(self, generator: Generator) -> None:
        """Called once the generator exists (MoCo copies it into its key encoder)."""


class MoCo(Method):
    """MoCo-v2: InfoNCE of the query against its key and a queue of past keys, T = 0.2.

    The key encoder is a momentum (EMA, m = 0.999) copy of the generator's encoder + projector; the
    official code also keeps an EMA copy of the decoder it never runs, which is dropped here. The
    momentum update and the enqueue happen only in training mode (the official code also did them
    during validation). Under DDP, key batch norm sees a shuffled batch (shuffle-BN); in one process
    the shuffle cannot change batch statistics and is skipped.
    """

    def __init__(self, cfg: MoCoConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.key_encoder: Embedder | None = None
        queue = F.normalize(torch.randn(cfg.dim, cfg.queue_size), dim=0)
        self.register_buffer("queue", queue)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @staticmethod
    def projector(cfg: MoCoConfig, in_features: int) -> nn.Module:
        return mlp(in_features, (cfg.hidden_dim, cfg.dim), batch_norm=False)

    def attach(self, generator: Generator) -> None:
        self.key_encoder = Embedder(copy.deepcopy(generator.encoder), copy.deepcopy(generator.projector))
        self.key_encoder.requires_grad_(False)

    def loss(self, z1: torch.Tensor, x2: torch.Tensor, generator: Generator) -> torch.Tensor:
        q = F.normalize(z1.float(), dim=1)
        with torch.no_grad():
            if self.training:
                self._momentum_update(generator)
            k = F.normalize(self._keys(x2).float(), dim=1)
        positive = (q * k).sum(dim=1, keepdim=True)
        negative = q @ self.queue.clone()
        logits = torch.cat([positive, negative], dim=1) / self.cfg.temperature
        loss = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
        if self.training:
            self._enqueue(k)
        return loss

    @torch.no_grad()
    def _momentum_update(self, generator: Generator) -> None:
        m = self.cfg.momentum
        online = [*generator.encoder.parameters(), *generator.projector.parameters()]
        key = [*self.key_encoder.encoder.parameters(), *self.key_encoder.projector.parameters()]
        torch._foreach_lerp_(key, online, 1.0 - m)

    @torch.no_grad()
    def _keys(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or dist.world_size() == 1:
            return self.key_encoder(x)
        world, rank = dist.world_size(), dist.rank()
        everything = dist.gather(x)
        order = dist.broadcast(torch.randperm(len(everything), device=x.device))
        keys = dist.gather(self.key_encoder(everything[order].chunk(world)[rank]))
        return keys[torch.argsort(order)].chunk(world)[rank]

    @torch.no_grad()
    def _enqueue(self, k: torch.Tensor) -> None:
        keys = dist.gather(k)
        ptr = int(self.queue_ptr)
        self.queue[:, ptr : ptr + len(keys)] = keys.T.to(self.queue.dtype)
        self.queue_ptr.fill_((ptr + len(keys)) % self.cfg.queue_size)


class BarlowTwins(Method):
    """Barlow Twins: the cross-correlation of the two views' standardised projections → identity.

    Statistics and the correlation are over the global batch (projections gathered with gradient
    under DDP), which is what the official code gets from SyncBN plus an all-reduce of ``c``.
    """

    def __init__(self, cfg: BarlowTwinsConfig) -> None:
        super().__init__()
        self.cfg = cfg

    @staticmethod
    def projector(cfg: BarlowTwinsConfig, in_features: int) -> nn.Module:
        return mlp(in_features, cfg.projector, batch_norm=True, last_bias=False)

    def loss(self, z1: torch.Tensor, x2: torch.Tensor, generator: Generator) -> torch.Tensor:
        z2 = generator.embed(x2)
        a, b = (_standardize(dist.gather_with_grad(z.float())) for z in (z1, z2))
        c = a.T @ b / len(a)
        on_diag = (torch.diagonal(c) - 1).pow(2).sum()
        off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
        return on_diag + self.cfg.lambda_offdiag * off_diag


def _standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Affine-free batch norm of a batch of vectors (biased variance, as BatchNorm1d)."""
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)


class SimSiam(Method):
    """SimSiam: symmetric negative cosine between one view's prediction and the other's stopped projection."""

    def __init__(self, cfg: SimSiamConfig, dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.predictor = mlp(dim, (cfg.pred_dim, dim), batch_norm=True)

    @staticmethod
    def projector(cfg: SimSiamConfig, in_features: int) -> nn.Module:
        return mlp(in_features, (cfg.dim, cfg.dim, cfg.dim), batch_norm=True, last_bias=False, last_norm=True)

    def loss(self, z1: torch.Tensor, x2: torch.Tensor, generator: Generator) -> torch.Tensor:
        z2 = generator.embed(x2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        cos = F.cosine_similarity
        return -0.5 * (
            cos(p1.float(), z2.detach().float()).mean() + cos(p2.float(), z1.detach().float()).mean()
        )


def build(cfg: MethodConfig, in_features: int) -> tuple[Method, nn.Module]:
    """The method named by ``cfg.variant`` and the projection head it wants on the generator."""
    if cfg.variant == "moco":
        return MoCo(cfg.moco), MoCo.projector(cfg.moco, in_features)
    if cfg.variant == "barlowtwins":
        return BarlowTwins(cfg.barlowtwins), BarlowTwins.projector(cfg.barlowtwins, in_features)
    if cfg.variant == "simsiam":
        return SimSiam(cfg.simsiam, cfg.simsiam.dim), SimSiam.projector(cfg.simsiam, in_features)
    raise ValueError(f"unknown method variant {cfg.variant!r}")
