"""Run configuration: typed dataclasses, YAML files, dotted command-line overrides.

Precedence, lowest first: the dataclass defaults, the YAML file, ``section.key=value`` overrides.
Unknown keys are rejected with the valid ones listed. A config is a YAML file or the name of a
shipped one (``dgp``, ``sgcn``, ``gcnz``: ``configs/`` of a checkout, inside the package of a wheel);
an existing file wins over a name.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Union, get_args, get_origin, get_type_hints

import yaml

from kgzsl.errors import InputError, NotFoundError
from kgzsl.utils.io import write_text
from kgzsl.utils.paths import resolve_config, shipped_names

__all__ = ["GraphConfig", "FeaturesConfig", "BackboneConfig", "ModelConfig", "TrainConfig", "RunConfig",
           "ConfigError", "load_config", "config_from_dict", "config_to_dict", "save_config", "check_config",
           "DEMO_CONFIG"]

DEMO_CONFIG = "dgp-sgcn-conse"
"""The shipped config ``kgzsl demo`` trains, and whose run the benchmarks score as what a user gets:
the DGP+SGCN+ConSE ensemble, the best on B2's validation rows (``docs/ablation.md``)."""


class ConfigError(InputError):
    """A config file or override is malformed, has unknown keys, or a value of the wrong type."""


@dataclass
class GraphConfig:
    """Which graph to use, and the wnid lists it is built from (``kgzsl build-graph --wnids``).

    ``path``: a bare name (``imagenet1k_21k``) is a folder of the graph data folder
    (``$KGZSL_GRAPH_DATA``, else ``./graph_data`` when the current directory has one, else the user
    data folder); a value with a path separator, or naming a folder of the current directory, is a
    path relative to the current directory (see :func:`kgzsl.utils.paths.resolve_graph_dir`).
    A missing graph is an error that names the ``kgzsl build-graph`` command to run.
    """

    path: str = "imagenet1k_21k"
    wnids: str = "imagenet1k,imagenet21k"


@dataclass
class FeaturesConfig:
    """Node input features: a text encoder (``minilm``, ``wordllama``, ``glove-6b-50d``, ``glove:PATH``) over lemma names."""

    encoder: str = "minilm"
    gloss: bool = False


@dataclass
class BackboneConfig:
    """The frozen CNN whose final-layer rows are the regression targets."""

    name: str = "efficientnet-lite0"
    weights: Union[str, None] = "DEFAULT"


@dataclass
class ModelConfig:
    """Propagation model and its hyper-parameters (``None``: the model's published default)."""

    name: str = "dgp"
    hidden_channels: Union[list[int], None] = None
    dropout: Union[float, None] = None
    negative_slope: Union[float, None] = None
    bias: Union[bool, None] = None
    num_groups: Union[int, None] = None
    num_bases: Union[int, None] = None
    neighbours: Union[int, None] = None
    temperature: Union[float, None] = None


@dataclass
class TrainConfig:
    """Optimisation, validation and early stopping.

    ``loss``: ``sse`` (sum of squared errors over 2·N_seen, SGCN/DGP), ``mse`` (GCNZ), ``cosine``
    (1 - mean cosine) or ``rank`` (a hinge ranking loss over the seen rows); see ``regression_loss``.
    ``holdout``: seen classes hidden from training (a list of wnids, or a fraction drawn with
    ``holdout_seed``); they count as unseen. ``val_fraction`` of the remaining seen rows is kept
    for validation; training stops ``patience`` epochs after the best validation cosine.
    ``checkpoint_every``: epochs between resumable checkpoints (``kgzsl train --resume``); 0 disables.
    ``precompute_first_layer``: compute the first layer's aggregation of the fixed features once
    (dropout then acts on the aggregate); false gives the reference's dropout on the raw features.
    ``keep``: ``best`` (the weights of the best validation epoch) or ``last`` (the last epoch's,
    as the reference protocol does).
    """

    epochs: int = 3000
    lr: float = 1e-3
    weight_decay: float = 5e-4
    loss: str = "sse"
    val_fraction: float = 0.05
    patience: int = 100
    seed: int = 0
    holdout: Union[list[str], float, None] = None
    holdout_seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 25
    precompute_first_layer: bool = True
    keep: str = "best"


@dataclass
class RunConfig:
    """Everything a training run needs."""

    name: str = "run"
    graph: GraphConfig = field(default_factory=GraphConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _check_type(value: Any, hint: Any, where: str) -> Any:
    origin = get_origin(hint)
    if origin is Union:
        errors = []
        for option in get_args(hint):
            try:
                return _check_type(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} does not fit {hint}")
    if hint is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = get_args(hint)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint in (int, str, bool) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


# values that type-check but mean nothing: dotted key -> (test a value given (not None) must pass, what it breaks)
_LIMITS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "train.epochs": (lambda v: v >= 1, " must be >= 1"),
    "train.patience": (lambda v: v >= 1, " must be >= 1"),
    "train.lr": (lambda v: math.isfinite(v) and v > 0, " must be > 0"),
    "train.weight_decay": (lambda v: math.isfinite(v) and v >= 0, " must be >= 0"),
    "train.val_fraction": (lambda v: 0 <= v < 1, " must be in [0, 1)"),
    "train.checkpoint_every": (lambda v: v >= 0, " must be >= 0 (0: no checkpoints)"),
    "model.hidden_channels": (lambda v: all(n >= 1 for n in v), ": sizes must be >= 1"),
    "model.dropout": (lambda v: 0 <= v < 1, " must be in [0, 1)"),
    "model.num_groups": (lambda v: v >= 1, " must be >= 1"),
    "model.num_bases": (lambda v: v >= 1, " must be >= 1"),
    "model.neighbours": (lambda v: v >= 1, " must be >= 1"),
    "model.temperature": (lambda v: math.isfinite(v) and v > 0, " must be > 0"),
}


def _out_of_range(dotted: str, value: Any) -> str | None:
    """What is wrong with a well-typed ``value`` of the setting ``dotted`` (``train.epochs must be >= 1,
    got 0``), or None."""
    test, rule = _LIMITS.get(dotted, (None, ""))
    if test is None or value is None or test(value):
        return None
    return f"{dotted}{rule}, got {value!r}"


def check_config(config: RunConfig) -> None:
    """Check the numbers of a config built in Python, as :func:`load_config` checks those of a file.

    Args:
        config: The run config (e.g. ``RunConfig(train=TrainConfig(epochs=0))``).

    Raises:
        ConfigError: For a number outside its range (``train.epochs must be >= 1, got 0``).
    """
    for dotted in _LIMITS:
        section, key = dotted.split(".")
        problem = _out_of_range(dotted, getattr(getattr(config, section), key))
        if problem:
            raise ConfigError(problem)


def config_from_dict(data: dict[str, Any], cls: type = RunConfig, where: str = "config", section: str = "") -> Any:
    """Build a config dataclass from a nested dict, checking keys and types.

    Args:
        data: The nested dict (a YAML file's content with the overrides applied).
        cls: The config dataclass to build.
        where: What the dict came from, for messages (a file path, or ``"config"``).
        section: The dotted section ``data`` is (``"train"``), for messages; empty at the top.

    Raises:
        ConfigError: For unknown keys (the valid ones are listed), wrongly typed values, or numbers
            outside their range (``train.epochs must be >= 1``).
    """
    at = f"{where}, section {section}" if section else where
    if not isinstance(data, dict):
        raise ConfigError(f"{at}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(f"{at}: unknown key(s) {', '.join(map(str, unknown))}; valid keys: {', '.join(names)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        dotted = f"{section}.{key}" if section else key
        if dataclasses.is_dataclass(hint):
            kwargs[key] = config_from_dict(value or {}, hint, where, dotted)
        else:
            kwargs[key] = _check_type(value, hint, f"{where}: {dotted}")
            problem = _out_of_range(dotted, kwargs[key])
            if problem:
                raise ConfigError(f"{where}: {problem}")
    return cls(**kwargs)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A plain nested dict of a config (for YAML/JSON); paths set from Python (``Path``) become text."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(plain(v) for v in value)
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    return plain(dataclasses.asdict(config))


def _check_override(parts: list[str], value: Any, where: str) -> None:
    """Check one override's key and value against the config dataclasses, so that its error names it."""
    cls, section = RunConfig, ""
    for i, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(cls)]
        if part not in names:
            inside = f" in section {section}" if section else ""
            raise ConfigError(f"{where}: unknown key(s) {part}{inside}; valid keys: {', '.join(names)}")
        hint = get_type_hints(cls)[part]
        dotted = f"{section}.{part}" if section else part
        if i == len(parts) - 1:  # the key set: check its value as config_from_dict checks a file's
            config_from_dict({part: value}, cls, where, section)
        elif not dataclasses.is_dataclass(hint):
            raise ConfigError(f"{where}: {dotted} is not a section")
        cls, section = hint, dotted


def _apply_override(data: dict[str, Any], override: str, source: str) -> None:
    """Set one ``section.key=value`` override in ``data``, the content of the config ``source``."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like section.key=value (e.g. train.lr=0.01)")
    key, raw = override.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError(f"override {override!r}: value is not valid YAML ({exc})") from None
    parts = key.strip().split(".")
    try:  # an error in an override names the override, not the config file it overrides
        _check_override(parts, value, f"override {override!r}")
    except ConfigError as exc:
        raise ConfigError(str(exc), cli_message=str(exc).replace(f"override {override!r}",
                                                                 f"command-line override {override}", 1)) from None
    node = data
    for i, part in enumerate(parts[:-1]):
        if node.get(part) is None:  # absent, or an empty section of the file
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"{source}: {'.'.join(parts[:i + 1])} is not a section (got {node!r}); make it a "
                              "mapping of keys")
    node[parts[-1]] = value


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML run config and apply dotted overrides.

    Args:
        path: YAML file or shipped config name (``"dgp"``; see :func:`kgzsl.utils.paths.resolve_config`),
            or None for the defaults.
        overrides: ``section.key=value`` strings; values are parsed as YAML (``train.lr=1e-2``,
            ``model.hidden_channels=[1024]``).

    Raises:
        FileNotFoundError: If ``path`` is neither a file nor a shipped config name.
        ConfigError: For malformed YAML, unknown keys, wrong types or numbers out of range; an error
            in an override names the override, one in the file the file.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            path = resolve_config(path)
        except NotFoundError as exc:  # the command-line wording: nothing about a checkout's configs/ folder
            shipped = ", ".join(shipped_names("configs"))
            raise NotFoundError(str(exc), cli_message=f"config file not found: {path}; pass --config NAME with "
                                f"NAME a shipped config ({shipped}), or --config PATH to a YAML file") from None
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path} is not UTF-8 text ({exc}); save it as UTF-8 YAML") from None
        except (yaml.YAMLError, RecursionError) as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(loaded).__name__}")
        data = loaded or {}
        data.setdefault("name", path.stem)
    source = str(path) if path else "config"
    for override in overrides or []:
        _apply_override(data, override, source)
    return config_from_dict(data, RunConfig, source)


def save_config(config: RunConfig, path: str | os.PathLike) -> None:
    """Write a config as YAML, atomically."""
    write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
