"""Frozen parts of a model: no gradient, and eval mode whatever the trainer does.

A frozen module must compute the same function in training as in evaluation: BatchNorm uses
(and never updates) its running statistics, dropout is off. ``requires_grad=False`` alone gives
neither, and overriding ``train()`` on the module that owns the frozen part is not enough either:

* Lightning (2.2+) never calls ``model.train()`` at the start of ``fit``; around every validation
  loop it records each submodule's ``training`` flag and writes the flags back by assignment
  (``mod.training = mode``), so no ``train()`` override runs. A frozen part that was left in
  training mode when the model was built trains its BatchNorm statistics for the whole fit.
* ``for m in model.modules(): m.train()`` calls each submodule's own ``train``, not its owner's.

So :func:`keep_in_eval` puts the module in eval mode now and registers a forward pre-hook on it
and on every module inside it that switches the module back to eval mode before it computes,
however its flag was set. The flag is usually already right (the owner's ``train()`` and
Lightning's restore keep it), so the hook costs one attribute read per call. Hooks live in the
module, so copies (``copy.deepcopy``, e.g. a weight EMA) stay frozen too.
"""

from __future__ import annotations

from torch import nn


def _stay_in_eval(module: nn.Module, args: object) -> None:
    """Forward pre-hook: a frozen module computes in eval mode (module-level, so copies keep it)."""
    if module.training:
        module.eval()


def is_kept_in_eval(module: nn.Module) -> bool:
    """True when ``module`` itself carries the eval-mode hook of :func:`keep_in_eval`."""
    return any(hook is _stay_in_eval for hook in module._forward_pre_hooks.values())


def keep_in_eval(module: nn.Module) -> nn.Module:
    """Put ``module`` and everything inside it in eval mode, for good (see the module docstring).

    Idempotent; :func:`release` undoes it. Returns ``module``.
    """
    for part in module.modules():
        if not is_kept_in_eval(part):
            part.register_forward_pre_hook(_stay_in_eval)
    return module.eval()


def release(module: nn.Module) -> nn.Module:
    """Undo :func:`keep_in_eval` on ``module`` and everything inside it (modes are left as they are)."""
    for part in module.modules():
        hooks = part._forward_pre_hooks
        for key in [k for k, hook in hooks.items() if hook is _stay_in_eval]:
            del hooks[key]
    return module


def freeze(module: nn.Module) -> nn.Module:
    """No gradient for any parameter of ``module``, and eval mode for good. Returns ``module``."""
    module.requires_grad_(False)
    return keep_in_eval(module)


def unfreeze(module: nn.Module) -> nn.Module:
    """Undo :func:`freeze`: every parameter trains and the module follows ``train()`` again."""
    module.requires_grad_(True)
    return release(module)


def frozen_parts(root: nn.Module) -> list[str]:
    """Names of the largest submodules of ``root`` that have parameters, none of them trainable.

    A module with a trainable parameter somewhere inside it is searched further; a module with
    no parameters at all (an activation, a pooling, a dropout between stages) belongs to the
    module around it and is not listed. ``""`` means ``root`` itself.
    """
    found: list[str] = []

    def visit(name: str, module: nn.Module) -> None:
        parameters = list(module.parameters())
        if not parameters:
            return
        if not any(p.requires_grad for p in parameters):
            found.append(name)
            return
        for child_name, child in module.named_children():
            visit(f"{name}.{child_name}" if name else child_name, child)

    visit("", root)
    return found


def keep_frozen_parts_in_eval(root: nn.Module) -> list[str]:
    """:func:`keep_in_eval` on every part of ``root`` whose parameters are all frozen.

    For a partly frozen module (``freeze: all_but_last``, adapters): the frozen stages keep
    their BatchNorm statistics and run without dropout, the trainable ones train normally.
    Returns the names of the frozen parts (see :func:`frozen_parts`).
    """
    names = frozen_parts(root)
    for name in names:
        keep_in_eval(root.get_submodule(name))
    return names


def settle_frozen_modes(root: nn.Module) -> nn.Module:
    """Eval mode again for every module of ``root`` held by :func:`keep_in_eval`.

    For a ``train()`` override: ``root.train()`` sets every flag, and the hooks would only
    correct a frozen module's flag at its next call; this keeps the flags truthful in between.
    """
    for module in root.modules():
        if module.training and is_kept_in_eval(module):
            module.training = False
    return root
