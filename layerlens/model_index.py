"""One walk over the traced model, shared by everything that needs its structure:
qualified names and depths, and parameter counts per module."""

from __future__ import annotations

from torch import nn


class ModelIndex:
    """Names, depths and (unique) parameter counts of a model's modules."""

    def __init__(self, root: nn.Module) -> None:
        self.named: list[tuple[str, nn.Module]] = list(root.named_modules())
        self._counts: dict[int, tuple[int, int]] | None = None
        slots = [p for _, m in self.named for p in m._parameters.values() if p is not None]
        self.unique_params = list({id(p): p for p in slots}.values())
        children = sum(len(m._modules) for _, m in self.named)
        # a parameter in two slots, or a module under two parents, would be counted twice by plain sums
        self._shared = len(slots) != len(self.unique_params) or children != len(self.named) - 1

    def param_counts(self, module: nn.Module) -> tuple[int, int]:
        """(all, trainable) parameters of `module` and its children, tied ones once."""
        if self._counts is None:
            self._counts = self._subtree_counts()
        found = self._counts.get(id(module))
        if found is None:  # a module outside the model (called but not registered)
            ps = list(module.parameters())
            found = (sum(p.numel() for p in ps), sum(p.numel() for p in ps if p.requires_grad))
        return found

    def _subtree_counts(self) -> dict[int, tuple[int, int]]:
        """Children's sums added bottom-up: linear in the model's size. Where a
        parameter or module is shared, plain sums would count it twice, so
        those models sum over each module's set of distinct parameters instead
        (built bottom-up too: one entry per parameter per level above it)."""
        if self._shared:
            return self._distinct_counts()
        counts: dict[int, tuple[int, int]] = {}
        for _, m in reversed(self.named):  # children before their parents
            total = trainable = 0
            for p in m._parameters.values():
                if p is not None:
                    total += p.numel()
                    trainable += p.numel() if p.requires_grad else 0
            for child in m._modules.values():
                if child is not None:
                    c_total, c_trainable = counts.get(id(child)) or _direct(child)
                    total += c_total
                    trainable += c_trainable
            counts[id(m)] = (total, trainable)
        return counts

    def _distinct_counts(self) -> dict[int, tuple[int, int]]:
        """`_subtree_counts` for a model with tied parameters or shared modules."""
        below: dict[int, dict[int, nn.Parameter]] = {}
        counts: dict[int, tuple[int, int]] = {}
        for _, m in reversed(self.named):  # children before their parents
            params = {id(p): p for p in m._parameters.values() if p is not None}
            for child in m._modules.values():
                if child is not None:
                    params.update(below.get(id(child)) or {id(p): p for p in child.parameters()})
            below[id(m)] = params
            total = sum(p.numel() for p in params.values())
            counts[id(m)] = (total, sum(p.numel() for p in params.values() if p.requires_grad))
        return counts


def _direct(module: nn.Module) -> tuple[int, int]:
    ps = list(module.parameters())
    return sum(p.numel() for p in ps), sum(p.numel() for p in ps if p.requires_grad)
