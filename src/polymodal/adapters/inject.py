"""Put adapters into any ``nn.Module`` by module-name pattern, switch them, save and load them.

The adapter methods (LoRA, MoR) each have a config dataclass and a layer module; this file is the
PEFT-like "model" part shared by both::

    from polymodal.adapters import MoRConfig, inject_adapters, freeze_except_adapters

    inject_adapters(vit, MoRConfig(), adapter_name="first")   # ['blocks.0.mlp.fc1', ...]
    inject_adapters(vit, MoRConfig(), adapter_name="second")  # same modules, second adapter set
    freeze_except_adapters(vit)
    set_active_adapter(vit, "first")    # every adapted layer now runs its "first" adapter
    save_adapters(vit, folder, "first")  # adapter_config.json + adapter.safetensors

A module matches a pattern when its dotted name equals the pattern or ends with ``"." + pattern``
(PEFT's rule for a list of ``target_modules``). Adapted layers keep the frozen linear layer once,
as ``<name>.base_layer``, and hold every named adapter beside it; one adapter (or none) is active
at a time, so several passes through one backbone share all frozen weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from types import ModuleType

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from polymodal.adapters.lora import layer as lora_layer
from polymodal.adapters.lora.config import LoRAConfig
from polymodal.adapters.mor import layer as mor_layer
from polymodal.adapters.mor.config import MoRConfig
from polymodal.errors import ModelError
from polymodal.freezing import keep_frozen_parts_in_eval

AdapterConfig = LoRAConfig | MoRConfig

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter.safetensors"

_CONFIGS: dict[str, type[LoRAConfig] | type[MoRConfig]] = {"lora": LoRAConfig, "mor": MoRConfig}
_BACKENDS: dict[str, ModuleType] = {"lora": lora_layer, "mor": mor_layer}
# Like PEFT's ``model.peft_config``: the configs live on the module the adapters were injected into.
_CONFIG_ATTRIBUTE = "polymodal_adapter_configs"


def _adapter_layers(model: nn.Module) -> list[tuple[str, nn.Module, ModuleType]]:
    """(name, layer, backend) for every adapted layer in ``model``."""
    found = []
    for name, module in model.named_modules():
        for backend in _BACKENDS.values():
            if backend.is_adapter_layer(module):
                found.append((name, module, backend))
    return found


def _match_targets(model: nn.Module, patterns: tuple[str, ...]) -> list[str]:
    adapted = [name for name, _, _ in _adapter_layers(model)]
    matched = []
    for name, _ in model.named_modules():
        # Modules inside an adapted layer (its base_layer, its experts) are never targets.
        if any(name.startswith(prefix + ".") for prefix in adapted):
            continue
        if any(name == pattern or name.endswith("." + pattern) for pattern in patterns):
            matched.append(name)
    if not matched:
        linear_names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise ModelError(
            f"no module of the model matches target_modules {list(patterns)}; linear layers "
            f"there include {linear_names[:6]}. Give name suffixes such as 'mlp.fc1'"
        )
    return matched


def _adapted_module_names(model: nn.Module, adapter_name: str) -> list[str]:
    return [
        name
        for name, layer, backend in _adapter_layers(model)
        if adapter_name in backend.adapter_names(layer)
    ]


def _record_config(model: nn.Module, adapter_name: str, config: AdapterConfig) -> None:
    for module in model.modules():
        recorded = getattr(module, _CONFIG_ATTRIBUTE, {})
        if adapter_name in recorded:
            recorded[adapter_name] = config
            return
    if not hasattr(model, _CONFIG_ATTRIBUTE):
        setattr(model, _CONFIG_ATTRIBUTE, {})
    getattr(model, _CONFIG_ATTRIBUTE)[adapter_name] = config


def _check_adapter_name(adapter_name: str) -> None:
    if not adapter_name or "." in adapter_name:
        raise ModelError(
            f"adapter name {adapter_name!r} is not usable: give a non-empty name without dots"
        )


def list_adapters(model: nn.Module) -> list[str]:
    """Names of the adapters present in ``model``, in the order they were first added."""
    names: dict[str, None] = {}
    for _, layer, backend in _adapter_layers(model):
        names.update(dict.fromkeys(backend.adapter_names(layer)))
    return list(names)


def inject_adapters(
    model: nn.Module, config: AdapterConfig, adapter_name: str = "default"
) -> list[str]:
    """Add adapter ``adapter_name`` to every module of ``model`` matching ``config.target_modules``.

    The model is changed in place; a module adapted before (under another name, same method) gets
    one more adapter beside its first. The new adapter becomes the active one everywhere (see
    :func:`set_active_adapter`). Trainability of the model's own parameters is left as it was; the
    new adapter's parameters are trainable. Call :func:`freeze_except_adapters` to freeze the rest.

    Returns:
        The dotted names of the adapted modules.

    Raises:
        ModelError: no module matches, a match is not an ``nn.Linear``, a module already carries
            the other method's adapters, or the adapter name is taken.
    """
    _check_adapter_name(adapter_name)
    if adapter_name in list_adapters(model):
        raise ModelError(
            f"the model already has an adapter named {adapter_name!r}; pick another name "
            "or load weights into it with load_adapters"
        )
    backend = _BACKENDS[config.method]
    module_names = _match_targets(model, config.target_modules)
    for name in module_names:
        module = model.get_submodule(name)
        if backend.is_adapter_layer(module):
            continue
        other = [m for m, b in _BACKENDS.items() if b is not backend and b.is_adapter_layer(module)]
        if other:
            raise ModelError(
                f"module {name!r} already carries {other[0]} adapters; one adapter method per "
                f"module, so leave {name!r} out of the {config.method} target_modules"
            )
        if not isinstance(module, nn.Linear):
            raise ModelError(
                f"module {name!r} matches target_modules but is a {type(module).__name__}, not "
                "nn.Linear; adapters wrap linear layers only, so use a more specific pattern"
            )
    backend.inject(model, module_names, config, adapter_name)
    _record_config(model, adapter_name, config)
    set_active_adapter(model, adapter_name)
    return module_names


def set_active_adapter(model: nn.Module, adapter_name: str | None) -> None:
    """Run ``adapter_name`` in every adapted layer of ``model``; None runs the frozen model.

    Layers that lack ``adapter_name`` run their frozen base layer only. Trainability flags do not
    change, so adapters used in earlier passes of the same step still receive gradients.
    """
    layers = _adapter_layers(model)
    if adapter_name is not None and adapter_name not in list_adapters(model):
        raise ModelError(
            f"the model has no adapter named {adapter_name!r}; it has {list_adapters(model)}"
        )
    for _, layer, backend in layers:
        present = adapter_name in backend.adapter_names(layer)
        backend.select_adapter(layer, adapter_name if present else None)


def freeze_except_adapters(model: nn.Module) -> None:
    """Make every adapter parameter (of every adapter name) trainable and everything else frozen.

    Frozen parts (every submodule without an adapter parameter, e.g. a CNN stage's BatchNorm)
    also stay in eval mode whatever the trainer does (:mod:`polymodal.freezing`). Heads and other
    modules added to the model are frozen too: unfreeze them afterwards with
    :func:`polymodal.freezing.unfreeze`.
    """
    layers = _adapter_layers(model)
    if not layers:
        raise ModelError("the model has no adapters; call inject_adapters before freezing")
    adapter_parameters = {
        id(p) for _, layer, backend in layers for p in backend.adapter_parameters(layer)
    }
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in adapter_parameters)
    keep_frozen_parts_in_eval(model)


def count_trainable_parameters(model: nn.Module) -> int:
    """Number of scalar parameters with ``requires_grad`` (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def adapter_state_dict(model: nn.Module, adapter_name: str) -> dict[str, Tensor]:
    """Tensors of adapter ``adapter_name`` only, keyed ``<module name>.<tensor>`` without the name.

    The keys do not contain the adapter name, so the weights can be loaded under another name.
    The tensors are detached views of the live parameters.
    """
    state = {}
    for module_name, layer, backend in _adapter_layers(model):
        if adapter_name in backend.adapter_names(layer):
            for key, tensor in backend.adapter_state(layer, adapter_name).items():
                state[f"{module_name}.{key}"] = tensor
    if not state:
        raise ModelError(
            f"the model has no adapter named {adapter_name!r}; it has {list_adapters(model)}"
        )
    return state


def _recorded_configs(model: nn.Module) -> dict[str, AdapterConfig]:
    """Configs of the adapters in ``model`` or in any submodule they were injected into."""
    configs: dict[str, AdapterConfig] = {}
    for module in model.modules():
        configs.update(getattr(module, _CONFIG_ATTRIBUTE, {}))
    return configs


def save_adapters(model: nn.Module, folder: str | Path, adapter_name: str = "default") -> Path:
    """Write adapter ``adapter_name`` alone to ``folder``: ``adapter_config.json`` (the config
    dataclass with its ``method``) and ``adapter.safetensors`` (its tensors, no backbone weight).

    Returns:
        The folder.
    """
    state = adapter_state_dict(model, adapter_name)
    config = _recorded_configs(model).get(adapter_name)
    if config is None:
        raise ModelError(
            f"adapter {adapter_name!r} has no recorded config; add adapters with inject_adapters "
            "or load_adapters so that they can be saved"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"method": config.method, **asdict(config)}
    (folder / CONFIG_FILE).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    save_file(
        {key: tensor.cpu().contiguous() for key, tensor in state.items()},
        str(folder / WEIGHTS_FILE),
        metadata={"method": config.method},
    )
    return folder


def read_adapter_config(folder: str | Path) -> AdapterConfig:
    """The config saved in ``folder/adapter_config.json``.

    Raises:
        ModelError: the file is missing or unreadable, or names an unknown method or field.
    """
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise ModelError(f"{path} not found; save adapters with save_adapters(model, folder, name)")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"{path}: cannot read the adapter config ({error})") from error
    if not isinstance(payload, dict):
        raise ModelError(f"{path}: expected a JSON object with a 'method' key")
    method = payload.pop("method", None)
    if method not in _CONFIGS:
        raise ModelError(f"{path}: 'method' is {method!r}; expected one of {sorted(_CONFIGS)}")
    config_class = _CONFIGS[method]
    known = {f.name for f in fields(config_class)}
    unknown = sorted(set(payload) - known)
    if unknown:
        raise ModelError(
            f"{path}: unknown {method} config fields {unknown}; known fields: {sorted(known)}"
        )
    return config_class(**payload)


def load_adapters(model: nn.Module, folder: str | Path, adapter_name: str = "default") -> list[str]:
    """Load adapters saved by :func:`save_adapters` into ``model`` as ``adapter_name``.

    The adapter is injected from the saved config unless ``model`` already has one of that name
    (then its weights are overwritten). Every tensor must match by name and shape. The loaded
    adapter becomes the active one. When the weights do not fit, the freshly injected adapter
    stays in the model with its initial (identity) weights.

    Returns:
        The dotted names of the adapted modules.

    Raises:
        ModelError: missing or unreadable files, or weights that do not fit the model (the message
            names the first offending tensors).
    """
    folder = Path(folder)
    config = read_adapter_config(folder)
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ModelError(f"{weights_path} not found; save adapters with save_adapters")
    try:
        saved = load_file(str(weights_path))
    except (OSError, SafetensorError) as error:
        raise ModelError(f"{weights_path}: cannot read the adapter weights ({error})") from error
    if adapter_name not in list_adapters(model):
        inject_adapters(model, config, adapter_name)
    own = adapter_state_dict(model, adapter_name)
    missing = sorted(set(own) - set(saved))
    unexpected = sorted(set(saved) - set(own))
    if missing or unexpected:
        raise ModelError(
            f"{weights_path} does not fit the model's adapter {adapter_name!r}: missing "
            f"{missing[:4]}, unexpected {unexpected[:4]}; load it into the architecture it was "
            "saved from"
        )
    for key, tensor in own.items():
        if saved[key].shape != tensor.shape:
            raise ModelError(
                f"{weights_path}: tensor {key} has shape {tuple(saved[key].shape)} but the model "
                f"expects {tuple(tensor.shape)}; load it into the architecture it was saved from"
            )
    with torch.no_grad():
        for key, tensor in own.items():
            tensor.copy_(saved[key])
    _record_config(model, adapter_name, config)
    set_active_adapter(model, adapter_name)
    return _adapted_module_names(model, adapter_name)
