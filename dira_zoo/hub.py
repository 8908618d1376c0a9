"""Where weights come from and go to: resolve a source, fetch and verify it, build the model; export, push.

One folder format serves everything (``docs/architecture.md``, "The weights format")::

    config.json          timm keys (architecture, num_classes, num_features, label_names,
                         pretrained_cfg) + a "dira" provenance block
    model.safetensors    the timm model's state dict (encoder / classifier); never pickle
    decoder.safetensors  optional: decoder.* and segmentation_head.* of the U-Net
    README.md            a Hugging Face model card with YAML metadata and the provenance

Plain timm loads such a folder (``timm.create_model("local-dir:<folder>", pretrained=True)``) and the Hub
serves it as is (``hf-hub:org/name``). :func:`load` accepts five kinds of source, decided by the one pure
function :func:`resolve_source`: a registry name, ``hf-hub:org/name[@revision]``, an export folder, a single
``.safetensors`` file, or an official DiRA ``.pth`` checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import string
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch
from torch import nn

from . import __version__
from .errors import ChecksumError, UnknownModelError, WeightsError
from .registry import EMBEDDED_ROOT, PAPER, Weights, get_weights, list_models
from .transforms import NO_NORM_MEAN, NO_NORM_STD, Preprocess

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
DECODER_NAME = "decoder.safetensors"
CARD_NAME = "README.md"
EXPORT_FILES = (CONFIG_NAME, WEIGHTS_NAME, DECODER_NAME, CARD_NAME)

HEADS = ("classifier", "backbone", "unet")
SOURCE_KINDS = ("registry", "hf-hub", "folder", "safetensors", "official")
OFFICIAL_SUFFIXES = (".pth", ".pt", ".pth.tar", ".ckpt", ".tar")

#: What DiRA pretraining feeds the network (ToTensor only): the default for official checkpoints.
DIRA_PREPROCESS = Preprocess(input_size=(3, 224, 224), mean=NO_NORM_MEAN, std=NO_NORM_STD)

#: Seconds to wait for a TCP connection to the Hub before declaring the network down (env overrides).
CONNECT_TIMEOUT_ENV = "DIRA_ZOO_CONNECT_TIMEOUT"
_DEFAULT_CONNECT_TIMEOUT = 3.0

PAPER_TITLE = (
    "DiRA: Discriminative, Restorative, and Adversarial Learning for Self-supervised Medical Image Analysis"
)

_HEX40 = re.compile(r"[0-9a-f]{40}")
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


# --------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where a set of weights comes from, decided without touching the network or reading any file."""

    kind: str  # one of SOURCE_KINDS
    location: str  # registry name, Hub repo id, or a filesystem path
    revision: str | None = None  # Hub revision; for a registry record the pinned commit unless overridden
    weights: Weights | None = None  # the registry record, for kind == "registry"

    @property
    def repo_id(self) -> str | None:
        if self.kind == "hf-hub":
            return self.location
        if self.kind == "registry" and self.weights is not None:
            return self.weights.hub_id
        return None

    @property
    def pinned(self) -> bool:
        """True when the files are pinned by sha256 (a registry record at its own revision)."""
        w = self.weights
        return (
            self.kind == "registry"
            and w is not None
            and (w.embedded is not None or (w.revision is not None and self.revision == w.revision))
        )

    def __str__(self) -> str:
        if self.kind == "registry":
            return self.location
        if self.kind == "hf-hub":
            return f"hf-hub:{self.location}" + (f"@{self.revision}" if self.revision else "")
        return self.location


def resolve_source(source: str | os.PathLike, revision: str | None = None) -> Source:
    """Decide what kind of source ``source`` is. Pure: no I/O beyond ``Path`` existence checks.

    In order: ``hf-hub:org/name[@rev]`` · ``local-dir:<folder>`` · a registered name · an existing folder ·
    a ``.safetensors`` file · an official ``.pth``/``.pt``/``.pth.tar`` checkpoint. A bare name that is
    neither registered nor a path raises :class:`UnknownModelError` with close names (prefix a path
    with ``./`` to force the path reading).
    """
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str) or not source.strip():
        raise WeightsError(f"a weights source must be a non-empty string or path, not {source!r}")
    text = source.strip()

    if text.startswith("hf-hub:"):
        repo, _, rev = text[len("hf-hub:") :].partition("@")
        if not _REPO_ID.fullmatch(repo):
            raise WeightsError(f"{text!r}: a Hub source is written hf-hub:org/name[@revision]")
        if rev and revision and rev != revision:
            raise WeightsError(f"{text!r} names revision {rev!r} but revision={revision!r} was passed too")
        return Source("hf-hub", repo, rev or revision or "main")

    if text.startswith("local-dir:"):
        return Source("folder", text[len("local-dir:") :])

    if text in list_models():
        w = get_weights(text)
        return Source("registry", text, revision or w.revision, w)

    path = Path(text).expanduser()
    lower = path.name.lower()
    if path.is_dir():
        return Source("folder", str(path))
    if lower.endswith(".safetensors"):
        return Source("safetensors", str(path))
    if lower.endswith(OFFICIAL_SUFFIXES):
        return Source("official", str(path))
    if path.exists():
        raise WeightsError(
            f"{text}: unsupported weights file (expected an export folder, a .safetensors file "
            f"or an official DiRA .pth checkpoint)"
        )
    if os.sep in text or "/" in text or text.startswith("."):
        if _REPO_ID.fullmatch(text) and not text.startswith("."):
            raise WeightsError(f"{text}: no such folder; for a Hugging Face Hub repo write hf-hub:{text}")
        raise WeightsError(f"{text}: no such file or folder")
    get_weights(text)  # raises UnknownModelError with suggestions
    raise UnknownModelError(f"unknown model {text!r}")  # pragma: no cover - get_weights raised


# --------------------------------------------------------------------------------------------------
# The export folder, read back
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportedWeights:
    """One set of weights in memory: states + everything needed to build and feed the model."""

    architecture: str
    num_classes: int
    label_names: tuple[str, ...] = ()
    preprocess: Preprocess = DIRA_PREPROCESS
    dira: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    model_state: dict[str, torch.Tensor] | None = None
    decoder_state: dict[str, torch.Tensor] | None = None
    has_decoder: bool = False
    origin: str = ""  # human-readable: where these came from
    location: dict[str, Any] = field(default_factory=dict)  # timm pretrained_cfg source keys

    @property
    def num_features(self) -> int | None:
        return self.config.get("num_features")


def read_export(folder: str | os.PathLike, *, states: bool = True, decoder: bool = True) -> ExportedWeights:
    """Read an export folder (config + weights; the decoder only when ``decoder`` and present)."""
    folder = Path(folder)
    cfg_path = folder / CONFIG_NAME
    weights_path = folder / WEIGHTS_NAME
    if not folder.is_dir():
        raise WeightsError(f"{folder}: no such folder")
    if not cfg_path.is_file():
        raise WeightsError(
            f"{folder}: not a dira-zoo/timm export folder (no {CONFIG_NAME}); expected {CONFIG_NAME} + "
            f"{WEIGHTS_NAME} (`dira-zoo convert` turns an official .pth into one)"
        )
    if not weights_path.is_file():
        pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pth")]
        extra = f" (found {', '.join(pickled)}: pickled weights are not loaded)" if pickled else ""
        raise WeightsError(f"{folder}: no {WEIGHTS_NAME}{extra}")
    config = _read_config(cfg_path)
    decoder_path = folder / DECODER_NAME
    has_decoder = decoder_path.is_file()
    return _exported(
        config,
        cfg_path,
        model_state=_load_safetensors(weights_path) if states else None,
        decoder_state=_load_safetensors(decoder_path) if (states and decoder and has_decoder) else None,
        has_decoder=has_decoder,
        origin=str(folder),
        location={"source": "local-dir", "file": str(folder)},
    )


def _exported(config: dict[str, Any], where: object, **fields: Any) -> ExportedWeights:
    """An :class:`ExportedWeights` whose description comes from a ``config.json`` (states in ``fields``)."""
    architecture, num_classes, label_names, preprocess = _parse_config(config, where)
    dira = dict(config.get("dira") or {})
    return ExportedWeights(architecture, num_classes, label_names, preprocess, dira, config, **fields)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: unreadable config ({exc})") from None
    if not isinstance(config, dict):
        raise WeightsError(f"{path}: the config is not a JSON object")
    return config


def _parse_config(config: Mapping[str, Any], where: object) -> tuple[str, int, tuple[str, ...], Preprocess]:
    import timm

    pcfg = config.get("pretrained_cfg") or {}
    if not isinstance(pcfg, Mapping):
        raise WeightsError(f"{where}: pretrained_cfg is not a JSON object")
    architecture = config.get("architecture") or pcfg.get("architecture")
    if not isinstance(architecture, str) or not architecture:
        raise WeightsError(f"{where}: the config names no architecture")
    if not timm.is_model(architecture):
        raise WeightsError(f"{where}: unknown architecture {architecture!r} (not a timm model name)")
    num_classes = config.get("num_classes", pcfg.get("num_classes", 0))
    if not isinstance(num_classes, int) or num_classes < 0:
        raise WeightsError(f"{where}: num_classes must be a non-negative integer, not {num_classes!r}")
    labels = config.get("label_names") or pcfg.get("label_names") or ()
    if isinstance(labels, Mapping):  # timm allows {index: name}
        labels = [labels[k] for k in sorted(labels, key=int)]
    label_names = tuple(str(x) for x in labels)
    try:
        preprocess = Preprocess.from_pretrained_cfg(dict(pcfg))
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{where}: invalid preprocessing in pretrained_cfg ({exc})") from None
    return architecture, num_classes, label_names, preprocess


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable .safetensors file ({exc})") from None


def _safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable .safetensors file ({exc})") from None


# --------------------------------------------------------------------------------------------------
# Fetching: registry records, the Hub, files
# --------------------------------------------------------------------------------------------------


def fetch(
    source: str | os.PathLike | Source,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    decoder: bool = False,
    states: bool = True,
) -> ExportedWeights:
    """Resolve, download (Hub sources), verify (pinned sources) and read one set of weights."""
    src = source if isinstance(source, Source) else resolve_source(source, revision)
    if src.kind == "folder":
        return read_export(src.location, states=states, decoder=decoder)
    if src.kind == "safetensors":
        return _read_single_safetensors(Path(src.location), states=states)
    if src.kind == "official":
        return _read_official(Path(src.location))
    if src.kind == "registry":
        return _fetch_registry(src, cache_dir=cache_dir, decoder=decoder, states=states)
    if src.kind == "hf-hub":
        return _fetch_hub(src, cache_dir=cache_dir, decoder=decoder, states=states)
    raise AssertionError(f"unknown source kind {src.kind!r}")  # pragma: no cover


def _fetch_registry(src: Source, *, cache_dir, decoder: bool, states: bool) -> ExportedWeights:
    w = src.weights
    assert w is not None
    if w.embedded is not None and src.pinned:
        folder = EMBEDDED_ROOT / w.embedded
        if not folder.is_dir():
            raise WeightsError(
                f"{w.name}: the embedded weights are missing from this installation ({folder}); "
                "reinstall dira-zoo"
            )
        needed = _needed_files(w, decoder)
        _verify(w, {name: folder / name for name in needed}, where=f"{w.name} (embedded)")
        exp = read_export(folder, states=states, decoder=decoder)
        return _with_origin(exp, f"{w.name} (embedded)", {"source": "local-dir", "file": str(folder)})
    if w.hub_id is None or src.revision is None:
        hub = w.hub_id or f"dira-zoo/{w.name}"
        raise WeightsError(
            f"{w.name} is not published yet (no pinned revision of {hub}): train it with "
            "`python -m training.pretrain` or convert an official checkpoint with `dira-zoo convert`, "
            f"push it with `dira-zoo push FOLDER --repo {hub}` and pin the commit in dira_zoo/registry.py; "
            "or pass a local "
            f"export folder to load() instead"
        )
    if not src.pinned:  # an explicit other revision: the record's sha256 pins do not apply
        return _fetch_hub(
            Source("hf-hub", w.hub_id, src.revision), cache_dir=cache_dir, decoder=decoder, states=states
        )
    needed = _needed_files(w, decoder)
    paths = hub_download(w.hub_id, needed, revision=src.revision, cache_dir=cache_dir)
    _verify(w, paths, where=f"{w.name} ({w.hub_id}@{src.revision[:12]})")
    folder = paths[CONFIG_NAME].parent
    exp = read_export(folder, states=states, decoder=decoder)
    return _with_origin(
        exp, f"{w.name} ({w.hub_id}@{src.revision[:12]})", _hub_location(w.hub_id, src.revision)
    )


def _needed_files(w: Weights, decoder: bool) -> list[str]:
    pinned = dict(w.files)
    needed = [CONFIG_NAME, WEIGHTS_NAME]
    if decoder:
        if DECODER_NAME not in pinned:
            raise WeightsError(f"{w.name} has no decoder ({DECODER_NAME}); head='unet' needs one")
        needed.append(DECODER_NAME)
    missing = [n for n in needed if n not in pinned]
    if missing:
        raise WeightsError(
            f"registry record {w.name} pins no sha256 for {', '.join(missing)}; it cannot be verified"
        )
    return needed


def _verify(w: Weights, paths: Mapping[str, Path], *, where: str) -> None:
    pinned = dict(w.files)
    for name, path in paths.items():
        expected = pinned[name].lower()
        if not Path(path).is_file():
            raise WeightsError(f"{where}: {name} is missing ({path})")
        actual = sha256_file(path)
        if actual != expected:
            real = Path(path).resolve()
            raise ChecksumError(
                f"{where}: sha256 mismatch for {name} (expected {expected[:16]}…, got {actual[:16]}…): "
                "the file "
                f"is corrupt or was altered; delete {real} and load again to re-download it"
            )


def _with_origin(exp: ExportedWeights, origin: str, location: dict[str, Any]) -> ExportedWeights:
    from dataclasses import replace

    return replace(exp, origin=origin, location=location)


def _hub_location(repo_id: str, revision: str | None) -> dict[str, Any]:
    rid = repo_id + (f"@{revision}" if revision and revision != "main" else "")
    return {"source": "hf-hub", "hf_hub_id": rid}


def _fetch_hub(src: Source, *, cache_dir, decoder: bool, states: bool) -> ExportedWeights:
    repo, rev = src.location, src.revision or "main"
    names = [CONFIG_NAME] + ([WEIGHTS_NAME] if states else [])
    paths = hub_download(repo, names, revision=rev, cache_dir=cache_dir)
    if states and decoder:
        dec = hub_download(repo, [DECODER_NAME], revision=rev, cache_dir=cache_dir, optional=True)
        if DECODER_NAME not in dec:
            raise WeightsError(f"hf-hub:{repo}@{rev} has no decoder ({DECODER_NAME}); head='unet' needs one")
    folder = paths[CONFIG_NAME].parent
    if not states:
        return _exported(
            _read_config(paths[CONFIG_NAME]),
            f"hf-hub:{repo}",
            origin=f"hf-hub:{repo}@{rev}",
            location=_hub_location(repo, rev),
        )
    exp = read_export(folder, states=True, decoder=decoder)
    return _with_origin(exp, f"hf-hub:{repo}@{rev}", _hub_location(repo, rev))


def _read_single_safetensors(path: Path, *, states: bool) -> ExportedWeights:
    from .convert import convert_state_dict, infer_resnet_architecture

    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    meta = _safetensors_metadata(path)
    config: dict[str, Any] = {}
    if meta.get("config"):
        with contextlib.suppress(json.JSONDecodeError):
            config = json.loads(meta["config"])
    state = _load_safetensors(path)
    decoder_state = None
    if "conv1.weight" not in state:  # a U-Net or training layout saved as safetensors
        converted = convert_state_dict(state)
        state, decoder_state = converted.encoder, converted.decoder
    architecture = config.get("architecture") or meta.get("architecture") or infer_resnet_architecture(state)
    fc = state.get("fc.weight")
    num_classes = int(fc.shape[0]) if fc is not None else 0
    if config:
        config = {**config, "architecture": architecture, "num_classes": num_classes}
        arch, nc, labels, pre = _parse_config(config, path)
    else:
        arch, nc, labels, pre = architecture, num_classes, (), DIRA_PREPROCESS
        _parse_config({"architecture": arch, "num_classes": nc}, path)  # validates the architecture name
    if len(labels) != nc:
        labels = ()
    return ExportedWeights(
        arch,
        nc,
        labels,
        pre,
        dict(config.get("dira") or {}),
        config,
        model_state=state if states else None,
        decoder_state=decoder_state,
        has_decoder=decoder_state is not None,
        origin=str(path),
        location={"source": "file", "file": str(path)},
    )


def _read_official(path: Path) -> ExportedWeights:
    from .convert import convert_official

    converted = convert_official(path)
    arch = converted.architecture
    dira = {"source": f"official DiRA checkpoint {path.name}", "layout": converted.layout}
    return ExportedWeights(
        arch,
        0,
        (),
        DIRA_PREPROCESS,
        dira,
        {"architecture": arch, "num_classes": 0, "dira": dira},
        model_state=converted.encoder,
        decoder_state=converted.decoder,
        has_decoder=converted.decoder is not None,
        origin=str(path),
        location={"source": "file", "file": str(path)},
    )


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


# --- the Hub ----------------------------------------------------------------------------------------


def hub_endpoint() -> str:
    """The Hub endpoint, read at call time (``HF_ENDPOINT`` or huggingface_hub's default)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE")
    if env is not None:  # read at call time, like the endpoint
        return env.strip().upper() in {"1", "ON", "YES", "TRUE"}
    return bool(constants.is_offline_mode())


def check_connection(endpoint: str | None = None, timeout: float | None = None) -> str | None:
    """``None`` when a TCP connection to the Hub (or the HTTPS proxy) opens in time, else why not.

    huggingface_hub retries a failed request for about half a minute before it gives up; one short probe
    first turns "no network" into an immediate, clear error.
    """
    endpoint = endpoint or hub_endpoint()
    if timeout is None:
        try:
            timeout = float(os.environ.get(CONNECT_TIMEOUT_ENV, _DEFAULT_CONNECT_TIMEOUT))
        except ValueError:
            timeout = _DEFAULT_CONNECT_TIMEOUT
    url = urlsplit(endpoint)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    proxy = _proxy_for(url.scheme, host)
    if proxy:
        purl = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = purl.hostname or host, purl.port or 3128
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"{host}:{port}: no answer in {timeout:g} s"
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or type(exc).__name__}"


def _proxy_for(scheme: str, host: str) -> str | None:
    no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
    if any(
        host == p.strip().lstrip(".") or host.endswith("." + p.strip().lstrip("."))
        for p in no_proxy.split(",")
        if p.strip()
    ):
        return None
    names = ("HTTPS_PROXY", "https_proxy") if scheme == "https" else ("HTTP_PROXY", "http_proxy")
    for name in (*names, "ALL_PROXY", "all_proxy"):
        if os.environ.get(name):
            return os.environ[name]
    return None


def _cache_location(cache_dir) -> str:
    if cache_dir:
        return str(cache_dir)
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def hub_download(
    repo_id: str,
    filenames: Iterable[str],
    *,
    revision: str = "main",
    cache_dir: str | os.PathLike | None = None,
    optional: bool = False,
) -> dict[str, Path]:
    """Download (or find in the HF cache) files of ``repo_id`` at ``revision``; fast, one-line errors.

    The cache is tried first without any network access; only missing files go online, after a quick
    connectivity probe. ``optional``: files the repo does not have are left out instead of raising.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cache = str(cache_dir) if cache_dir is not None else None
    paths: dict[str, Path] = {}
    missing: list[str] = []
    for name in filenames:
        try:
            paths[name] = Path(
                hf_hub_download(repo_id, name, revision=revision, cache_dir=cache, local_files_only=True)
            )
        except (LocalEntryNotFoundError, EntryNotFoundError, FileNotFoundError):
            missing.append(name)
    if not missing:
        return paths

    where = f"{repo_id}@{revision}"
    how = (
        f"fetch it on a machine with network (`hf download {repo_id} --revision {revision}`, same cache), "
        f"or pass a local export folder"
    )
    if _offline():
        raise WeightsError(
            f"{missing[0]} of {where} is not in the Hugging Face cache ({_cache_location(cache_dir)}) and "
            f"HF_HUB_OFFLINE is set: unset it to download, or {how}"
        )
    endpoint = hub_endpoint()
    problem = check_connection(endpoint)
    if problem:
        raise WeightsError(
            f"cannot reach the Hub at {endpoint} ({problem}) and {missing[0]} of {where} is not in the "
            f"Hugging Face cache ({_cache_location(cache_dir)}): connect to the network, set HF_ENDPOINT "
            f"to a mirror, or {how}"
        )
    for name in missing:
        try:
            paths[name] = Path(
                hf_hub_download(repo_id, name, revision=revision, cache_dir=cache, endpoint=endpoint)
            )
        except GatedRepoError:
            raise WeightsError(
                f"{where} is gated: accept its terms on the Hub and log in (`hf auth login`)"
            ) from None
        except RepositoryNotFoundError:
            raise WeightsError(
                f"{repo_id}: no such model repository on {endpoint} (or it is private: log in with "
                "`hf auth login` "
                f"or set HF_TOKEN)"
            ) from None
        except RevisionNotFoundError:
            raise WeightsError(f"{repo_id} has no revision {revision!r}") from None
        except LocalEntryNotFoundError:
            raise WeightsError(
                f"the Hub at {endpoint} did not answer for {name} of {where} and it is not cached: {how}"
            ) from None
        except EntryNotFoundError:
            if optional:
                continue
            raise WeightsError(f"{where} has no {name}: not a dira-zoo/timm export") from None
        except HfHubHTTPError as exc:
            raise WeightsError(f"downloading {name} of {where} failed: {_first_line(exc)}") from None
    return paths


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def load(
    source: str | os.PathLike,
    *,
    num_classes: int | None = None,
    head: str = "classifier",
    pretrained: bool = True,
    device: str | torch.device | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> nn.Module:
    """Build the model a set of weights fits and load them, in eval mode.

    ``source``: a registry name (``dira_zoo.list_models()``), ``hf-hub:org/name[@revision]``, an export
    folder, a ``.safetensors`` file or an official DiRA ``.pth``. ``head``:

    - ``"classifier"``: a timm ResNet with a head of ``num_classes`` (default: the export's); a head of
      another size is re-initialised. Only the head may be missing, unexpected or resized.
    - ``"backbone"``: the same without a head (``num_classes=0``): pooled features.
    - ``"unet"``: :class:`~dira_zoo.models.UNet` (encoder + the exported decoder) for segmentation
      transfer, ``num_classes`` output channels (default 1; another count re-initialises the 3×3 head).

    ``model.pretrained_cfg`` carries the preprocessing and ``label_names`` (see :func:`preprocess_for`,
    :func:`label_names_for`).
    """
    from .models import UNet, create_classifier

    if head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}, not {head!r}")
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 0):
        raise ValueError(f"num_classes must be a non-negative integer, not {num_classes!r}")
    if head == "backbone":
        if num_classes:
            raise ValueError("head='backbone' has no classifier: leave num_classes unset (or 0)")
        num_classes = 0

    src = resolve_source(source, revision)
    if pretrained:
        w = fetch(src, cache_dir=cache_dir, decoder=head == "unet")
    elif src.kind == "registry" and src.weights is not None:
        r = src.weights
        w = ExportedWeights(r.architecture, r.num_classes, r.label_names, r.preprocess, origin=r.name)
    else:
        w = fetch(src, cache_dir=cache_dir, states=False)

    what = f"weights from {w.origin}"
    if head == "unet":
        out_channels = num_classes or 1
        if not pretrained:
            model = UNet(w.architecture, out_channels=out_channels)
        else:
            if w.decoder_state is None:
                raise WeightsError(
                    f"{w.origin} has no decoder ({DECODER_NAME}): head='unet' needs an export of a U-Net "
                    f"(DiRA pretraining or an official U-Net checkpoint); use head='classifier' or 'backbone'"
                )
            classifier = _classifier_name(w.architecture)
            state = {f"encoder.{k}": v for k, v in w.model_state.items() if not _under(k, classifier)}
            state.update(w.decoder_state)
            model, _ = _build_loaded(
                lambda: UNet(w.architecture, out_channels=out_channels),
                state,
                allowed_prefixes=("segmentation_head.",),
                what=what,
            )
        label_names: tuple[str, ...] = ()
        final_classes = out_channels
    else:
        final_classes = w.num_classes if num_classes is None else num_classes
        classifier = _classifier_name(w.architecture)
        if not pretrained:
            model = create_classifier(w.architecture, final_classes)
        else:
            model, fresh = _build_loaded(
                lambda: create_classifier(w.architecture, final_classes),
                w.model_state,
                allowed_prefixes=(f"{classifier}.",),
                what=what,
            )
            if final_classes and final_classes == w.num_classes and any(_under(k, classifier) for k in fresh):
                raise WeightsError(
                    f"{what}: the config says {w.num_classes} classes but the head ({classifier}) is "
                    "missing or has another shape; the export is inconsistent"
                )
        label_names = (
            w.label_names if final_classes == w.num_classes and len(w.label_names) == final_classes else ()
        )

    cfg = _runtime_pretrained_cfg(model, w, final_classes, label_names)
    model.pretrained_cfg = cfg
    with contextlib.suppress(AttributeError):
        model.default_cfg = cfg
    model.dira_meta = {**w.dira, "origin": w.origin, "head": head}
    if device is not None:
        model.to(device)
    return model.eval()


def _build_loaded(
    factory, state: Mapping[str, torch.Tensor], *, allowed_prefixes: tuple[str, ...], what: str
) -> tuple[nn.Module, list[str]]:
    """Build a model and load ``state`` with the "only the head" rule; returns it and the re-initialised keys.

    When ``state`` fits the model exactly (same keys, shapes and dtypes, no other buffers: nothing to
    initialise) the model is built on the meta device and only allocated, not randomly initialised
    (half of load()'s own time for a ResNet-50 on a CPU). The tensors are copied, not adopted: the
    copies are aligned as timm's are, so outputs stay bit-identical to timm's.
    """
    from .models import load_checked

    with torch.device("meta"):
        skeleton = factory()
    own = skeleton.state_dict()
    exact = (
        own.keys() == state.keys()
        and all(own[k].shape == state[k].shape and own[k].dtype == state[k].dtype for k in own)
        and all(name in own for name, _ in skeleton.named_buffers())
    )
    if exact:
        skeleton.to_empty(device="cpu")
        skeleton.load_state_dict(state, strict=True)
        return skeleton, []
    model = factory()
    return model, load_checked(model, state, allowed_prefixes=allowed_prefixes, what=what)


def _under(key: str, module_name: str) -> bool:
    return key == module_name or key.startswith(module_name + ".")


def _classifier_name(architecture: str) -> str:
    try:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(architecture)
        return (cfg.classifier if cfg is not None else None) or "fc"
    except Exception:  # noqa: BLE001 - any timm hiccup: ResNets use fc
        return "fc"


def _runtime_pretrained_cfg(
    model: nn.Module, w: ExportedWeights, num_classes: int, labels: tuple[str, ...]
) -> dict:
    base = dict(getattr(model, "pretrained_cfg", None) or {})
    for key in ("url", "hf_hub_id", "file", "source", "tag", "origin_url", "license", "description"):
        base.pop(key, None)
    pcfg = dict(w.config.get("pretrained_cfg") or {})
    base.update(
        {k: v for k, v in pcfg.items() if k not in ("url", "hf_hub_id", "file", "source", "state_dict")}
    )
    base.update(w.preprocess.as_dict())
    base.update(w.location)
    base["architecture"] = w.architecture
    base["num_classes"] = num_classes
    base["label_names"] = list(labels)
    return base


def preprocess_for(model: nn.Module) -> Preprocess:
    """The preprocessing a model expects, from its ``pretrained_cfg`` (set by :func:`load`, or timm's)."""
    cfg = getattr(model, "pretrained_cfg", None)
    if not cfg:
        raise WeightsError(f"{type(model).__name__} carries no pretrained_cfg; load it with dira_zoo.load()")
    try:
        return Preprocess.from_pretrained_cfg(dict(cfg))
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"the model's pretrained_cfg has invalid preprocessing ({exc})") from None


def label_names_for(model: nn.Module) -> tuple[str, ...]:
    """Class names in head order; ``class_0``… when the weights carry none (or another count)."""
    n = int(getattr(model, "num_classes", 0) or 0)
    if n == 0:
        head = getattr(getattr(model, "segmentation_head", None), "0", None)
        n = int(getattr(head, "out_channels", 0) or 0)
    names = tuple((getattr(model, "pretrained_cfg", None) or {}).get("label_names") or ())
    if len(names) == n:
        return tuple(str(x) for x in names)
    return tuple(f"class_{i}" for i in range(n))


# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------

#: The model card written into every export (``string.Template``; ``card=`` overrides the body).
CARD_TEMPLATE = """\
# ${title}

${description}

DiRA (Discriminative, Restorative and Adversarial learning, CVPR 2022). This export was written by
dira-zoo ${code_version}, a clean re-implementation of the method.

## Provenance

| | |
|---|---|
${provenance}

## Use

```python
import dira_zoo
${classifier_line}
backbone = dira_zoo.load("${load_name}", head="backbone")${unet_line}
```

or with plain timm (no dira-zoo needed):

```python
import timm
model = timm.create_model("${timm_name}", pretrained=True)
```

Preprocessing: ${preprocessing}.
Labels: ${labels}.

## Citation

${paper}

## Licence

Weights: ${license}. The official DiRA code is under a non-commercial licence; these weights come from
dira-zoo's re-implementation${official_note}.
"""

CARD_TAGS = ("dira", "self-supervised", "chest-x-ray", "medical-imaging", "image-classification")


def export(
    model_or_state: nn.Module | Mapping[str, torch.Tensor],
    out_dir: str | os.PathLike,
    *,
    architecture: str | None = None,
    label_names: Iterable[str] | None = None,
    preprocess: Preprocess | None = None,
    dira: Mapping[str, Any] | None = None,
    decoder_state: Mapping[str, torch.Tensor] | None = None,
    card: str | None = None,
    license: str = "apache-2.0",
    repo_id: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the one weights folder (config.json, model.safetensors, [decoder.safetensors], README.md).

    ``model_or_state``: a timm classifier/backbone, a :class:`~dira_zoo.models.UNet` (its encoder becomes
    ``model.safetensors``, its decoder and head ``decoder.safetensors``), or a timm-keyed state dict
    (then ``architecture`` names it, else it is inferred for ResNets). ``dira``: provenance (variant,
    stage, pretraining_data, epochs, …) written to ``config.json["dira"]`` and the card; ``card``: the
    model card body (YAML metadata is added if it has none); ``repo_id``: used in the card's examples.
    Returns the folder. The state is checked to load into ``architecture`` before anything is written.
    """
    from .convert import infer_resnet_architecture
    from .models import UNet

    out = Path(out_dir)
    model = model_or_state if isinstance(model_or_state, nn.Module) else None
    if isinstance(model, UNet):
        full = model.state_dict()
        state = {k[len("encoder.") :]: v for k, v in full.items() if k.startswith("encoder.")}
        if decoder_state is None:
            decoder_state = {k: v for k, v in full.items() if not k.startswith("encoder.")}
        architecture = architecture or model.architecture
    elif model is not None:
        state = model.state_dict()
        architecture = architecture or (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
        if not architecture:
            raise ValueError("architecture is required: the model carries no pretrained_cfg['architecture']")
    elif isinstance(model_or_state, Mapping):
        state = dict(model_or_state)
        architecture = architecture or infer_resnet_architecture(state)
    else:
        raise TypeError(f"export needs an nn.Module or a state dict, not {type(model_or_state).__name__}")

    skeleton = _skeleton(architecture, state)
    num_classes = int(skeleton.num_classes)
    if label_names is None:  # keep the names a loaded model carries, when they fit its head
        carried = (
            (getattr(model, "pretrained_cfg", None) or {}).get("label_names") if model is not None else None
        )
        label_names = carried if carried and len(carried) == num_classes else ()
    labels = tuple(str(x) for x in label_names)
    if labels and len(labels) != num_classes:
        raise ValueError(f"{len(labels)} label names for a head of {num_classes} classes")
    if preprocess is None:
        cfg = getattr(model, "pretrained_cfg", None) if model is not None else None
        preprocess = preprocess_for(model) if cfg and cfg.get("source") else DIRA_PREPROCESS
    if decoder_state is not None:
        decoder_state = _check_decoder(architecture, decoder_state)

    info = {"code_version": __version__, "format": "dira-zoo/1"}
    info.update({k: v for k, v in (dira or {}).items() if v is not None})
    info["decoder"] = decoder_state is not None
    config = _config(skeleton, architecture, num_classes, labels, preprocess, license, info)

    _prepare_dir(out, overwrite)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    meta = {"format": "pt", "architecture": architecture, "config": json.dumps(config)}
    _atomic_write(out / WEIGHTS_NAME, lambda p: _save_safetensors(tensors, p, meta))
    if decoder_state is not None:
        dec = {k: v.detach().to("cpu").contiguous() for k, v in decoder_state.items()}
        dec_meta = {"format": "pt", "architecture": architecture}
        _atomic_write(out / DECODER_NAME, lambda p: _save_safetensors(dec, p, dec_meta))
    else:
        (out / DECODER_NAME).unlink(missing_ok=True)
    _atomic_write(
        out / CONFIG_NAME, lambda p: p.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    )
    text = model_card(config, repo_id=repo_id, body=card)
    _atomic_write(out / CARD_NAME, lambda p: p.write_text(text, encoding="utf-8"))
    return out


def _skeleton(architecture: str, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """A model of ``architecture`` (meta device: no memory, no init) that ``state`` must fit exactly."""
    import timm

    from .models import create_classifier

    if not timm.is_model(architecture):
        raise WeightsError(f"unknown architecture {architecture!r} (not a timm model name)")
    classifier = _classifier_name(architecture)
    head_w = state.get(f"{classifier}.weight")
    num_classes = int(head_w.shape[0]) if head_w is not None else 0
    with torch.device("meta"):
        skeleton = create_classifier(architecture, num_classes)
    own = skeleton.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        detail = f"{len(missing)} missing (e.g. {', '.join(missing[:3]) or 'none'}), "
        detail += f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3]) or 'none'})"
        if shapes:
            detail += f", {len(shapes)} of another shape (e.g. {shapes[0]})"
        raise WeightsError(f"the weights do not fit {architecture}: {detail}; wrong architecture?")
    return skeleton


def _check_decoder(architecture: str, decoder_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from .models import UNet

    with torch.device("meta"):
        unet = UNet(architecture)
    own = {k: v for k, v in unet.state_dict().items() if not k.startswith("encoder.")}
    state = dict(decoder_state)
    missing = [k for k in own if k not in state and not k.startswith("segmentation_head.")]
    unexpected = [k for k in state if k not in own]
    shapes = [
        k
        for k in own
        if k in state
        and not k.startswith("segmentation_head.")
        and tuple(own[k].shape) != tuple(state[k].shape)
    ]
    if missing or unexpected or shapes:
        raise WeightsError(
            f"the decoder does not fit a {architecture} U-Net: {len(missing)} missing "
            f"(e.g. {', '.join(missing[:3]) or 'none'}), {len(unexpected)} unexpected "
            f"(e.g. {', '.join(unexpected[:3]) or 'none'}), {len(shapes)} of another shape"
        )
    return state


def _config(
    skeleton: nn.Module,
    architecture: str,
    num_classes: int,
    labels: tuple[str, ...],
    preprocess: Preprocess,
    license: str,
    info: dict[str, Any],
) -> dict[str, Any]:
    default = dict(getattr(skeleton, "pretrained_cfg", None) or {})
    pool = default.get("pool_size")
    if pool and tuple(default.get("input_size", (3, 224, 224))[1:]) != tuple(preprocess.input_size[1:]):
        pool = None
    description = info.get("description") or (
        f"DiRA {info.get('variant', '')} {architecture} ({info.get('stage', 'dira')})".replace("  ", " ")
    )
    pcfg: dict[str, Any] = {
        "custom_load": False,
        **preprocess.as_dict(),
        "fixed_input_size": False,
        "crop_mode": "center",
        "num_classes": num_classes,
        "pool_size": list(pool) if pool else None,
        "first_conv": default.get("first_conv", "conv1"),
        "classifier": default.get("classifier", "fc"),
        "license": license,
        "description": description,
        "paper_name": PAPER_TITLE,
        "paper_ids": "arXiv:2204.10437",
    }
    return {
        "architecture": architecture,
        "num_classes": num_classes,
        "num_features": int(getattr(skeleton, "num_features", 0) or 0),
        "global_pool": "avg",
        "label_names": list(labels),
        "pretrained_cfg": pcfg,
        "dira": info,
    }


def model_card(config: Mapping[str, Any], *, repo_id: str | None = None, body: str | None = None) -> str:
    """An export's README.md: YAML metadata (license, library_name, tags, datasets, pipeline_tag) + body."""
    import yaml

    info = dict(config.get("dira") or {})
    pcfg = dict(config.get("pretrained_cfg") or {})
    license = pcfg.get("license") or "apache-2.0"
    data = info.get("pretraining_data") or "NIH ChestX-ray14"
    datasets = [data] if isinstance(data, str) else list(data)
    for extra in info.get("finetuning_data") or ():
        if extra not in datasets:
            datasets.append(extra)
    front = {
        "license": license,
        "library_name": "timm",
        "tags": list(CARD_TAGS) + [t for t in (info.get("variant"), info.get("stage")) if t],
        "datasets": datasets,
        "pipeline_tag": "image-classification",
    }
    meta = "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n\n"
    if body is not None:
        if body.lstrip().startswith("---"):
            return body if body.endswith("\n") else body + "\n"
        return meta + body.strip() + "\n"

    arch = config.get("architecture", "resnet50")
    num_classes = int(config.get("num_classes") or 0)
    labels = config.get("label_names") or []
    prov_keys = (
        "variant",
        "stage",
        "pretraining_data",
        "epochs",
        "finetuning_data",
        "source",
        "layout",
        "code_version",
        "git_commit",
        "seed",
        "notes",
    )
    rows = [(k, info[k]) for k in prov_keys if info.get(k) not in (None, "", [])]
    rows += [
        (k, v)
        for k, v in info.items()
        if k not in prov_keys and k not in ("format", "decoder", "description")
    ]
    rows.append(("decoder (U-Net)", "included" if info.get("decoder") else "not included"))
    provenance = "\n".join(f"| {k} | {_cell(v)} |" for k, v in rows)
    kind = f"{num_classes}-class classifier" if num_classes else "backbone (no classification head)"
    title = repo_id.split("/")[-1] if repo_id else f"DiRA {arch}"
    pre = Preprocess.from_pretrained_cfg(pcfg)
    norm = (
        "no normalisation ([0, 1] input)"
        if pre.mean == NO_NORM_MEAN and pre.std == NO_NORM_STD
        else (f"mean {list(pre.mean)}, std {list(pre.std)}")
    )
    values = {
        "title": title,
        "description": info.get("description") or f"A DiRA-pretrained {arch} {kind} for chest X-rays.",
        "code_version": info.get("code_version", __version__),
        "provenance": provenance,
        "load_name": _load_name(repo_id),
        "classifier_line": (
            f'model = dira_zoo.load("{_load_name(repo_id)}")   # the {num_classes}-class classifier'
            if num_classes
            else f'model = dira_zoo.load("{_load_name(repo_id)}", num_classes=14)   # a new 14-class head'
        ),
        "timm_name": f"hf-hub:{repo_id}" if repo_id else "local-dir:path/to/this/folder",
        "unet_line": (
            f'\nunet = dira_zoo.load("{_load_name(repo_id)}", head="unet")   # encoder + decoder'
            if info.get("decoder")
            else ""
        ),
        "preprocessing": (
            f"grey image → {pre.input_size[0]} channels, resize to {pre.resize_size[0]}×{pre.resize_size[1]} "
            f"({pre.interpolation}), centre-crop {pre.input_size[1]}×{pre.input_size[2]}, {norm}"
        ),
        "labels": ", ".join(labels) if labels else "none (backbone)",
        "paper": PAPER,
        "license": license,
        "official_note": (
            f" (converted from {info['source']})" if "official" in str(info.get("source", "")) else ""
        ),
    }
    return meta + string.Template(CARD_TEMPLATE).substitute(values)


def _load_name(repo_id: str | None) -> str:
    return f"hf-hub:{repo_id}" if repo_id else "path/to/this/folder"


def _cell(value: Any) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _prepare_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise WeightsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise WeightsError(
                f"{out} exists and is not empty; choose another folder or overwrite it (--force)"
            )
        foreign = [p.name for p in out.iterdir() if p.name not in EXPORT_FILES and not p.name.startswith(".")]
        if foreign:
            raise WeightsError(
                f"{out} holds other files ({', '.join(foreign[:3])}); refusing to overwrite it"
            )
    out.mkdir(parents=True, exist_ok=True)


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _save_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)


# --------------------------------------------------------------------------------------------------
# Push
# --------------------------------------------------------------------------------------------------


def push(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    revision: str | None = None,
    commit_message: str | None = None,
    private: bool = False,
    token: str | None = None,
) -> str:
    """Upload an export folder to a Hub model repo (created if needed); returns the commit sha to pin.

    Uses the usual HF token (``HF_TOKEN`` or ``hf auth login``) unless ``token`` is given. Offline or
    unreachable Hub: a :class:`WeightsError` at once.
    """
    folder = Path(folder)
    exp = read_export(folder, states=False)  # refuses anything that is not a complete export
    if not _REPO_ID.fullmatch(repo_id or ""):
        raise WeightsError(f"{repo_id!r}: a Hub repository is named org/name")
    if _offline():
        raise WeightsError(f"cannot push {folder} to {repo_id}: HF_HUB_OFFLINE is set (unset it to upload)")
    endpoint = hub_endpoint()
    problem = check_connection(endpoint)
    if problem:
        raise WeightsError(
            f"cannot push {folder} to {repo_id}: the Hub at {endpoint} is unreachable ({problem})"
        )

    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=endpoint, token=token)
    files = [name for name in EXPORT_FILES if (folder / name).is_file()]
    message = commit_message or f"Upload {exp.architecture} DiRA weights (dira-zoo {__version__})"
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type="model",
            revision=revision,
            commit_message=message,
            allow_patterns=files,
        )
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            raise WeightsError(
                f"the Hub refused the upload to {repo_id} ({status}): log in with `hf auth login`, "
                "set HF_TOKEN "
                f"or pass a token with write access"
            ) from None
        raise WeightsError(f"pushing {folder} to {repo_id} failed: {_first_line(exc)}") from None
    return str(getattr(info, "oid", None) or info)


def weights_record(
    folder: str | os.PathLike, *, name: str, repo_id: str, revision: str, description: str = "", **fields: Any
) -> Weights:
    """The registry record that pins an export pushed to ``repo_id`` at commit ``revision``."""
    folder = Path(folder)
    exp = read_export(folder, states=False)
    if not _HEX40.fullmatch(revision):
        raise WeightsError(f"a registry record pins a 40-hex commit, not {revision!r}")
    files = tuple((n, sha256_file(folder / n)) for n in EXPORT_FILES if (folder / n).is_file())
    defaults: dict[str, Any] = {
        "num_classes": exp.num_classes,
        "label_names": exp.label_names,
        "preprocess": exp.preprocess,
    }
    for key in ("variant", "stage", "pretraining_data"):
        if exp.dira.get(key):
            defaults[key] = exp.dira[key]
    defaults.update(fields)
    return Weights(
        name=name,
        architecture=exp.architecture,
        description=description or exp.dira.get("description", name),
        hub_id=repo_id,
        revision=revision,
        files=files,
        **defaults,
    )


__all__ = [
    "CARD_TEMPLATE",
    "CONFIG_NAME",
    "DECODER_NAME",
    "DIRA_PREPROCESS",
    "HEADS",
    "WEIGHTS_NAME",
    "ExportedWeights",
    "Source",
    "check_connection",
    "export",
    "fetch",
    "hub_download",
    "label_names_for",
    "load",
    "model_card",
    "preprocess_for",
    "push",
    "read_export",
    "resolve_source",
    "sha256_file",
    "weights_record",
]
