"""Argument checks shared by gvlib's public functions: each raises an error that says what was expected and what came."""
from __future__ import annotations

import math
import numbers

import torch

__all__ = ["positive_int", "nonnegative_int", "positive_number", "nonnegative_number", "probability", "choice",
           "tensor", "floating_tensor"]


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(name: str, value) -> int:
    """`value` as an int if it is an integer >= 1 (not a bool), else ValueError naming `name`."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def nonnegative_int(name: str, value) -> int:
    """`value` as an int if it is an integer >= 0 (not a bool), else ValueError."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return int(value)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def positive_number(name: str, value) -> float:
    """`value` as a float if it is a finite number > 0, else ValueError."""
    if not _is_number(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def nonnegative_number(name: str, value) -> float:
    """`value` as a float if it is a finite number >= 0, else ValueError."""
    if not _is_number(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def probability(name: str, value, open_interval: bool = True) -> float:
    """`value` as a float in (0, 1) (or [0, 1] with open_interval=False), else ValueError."""
    if not _is_number(value) or not (0 < value < 1 if open_interval else 0 <= value <= 1):
        where = "(0, 1)" if open_interval else "[0, 1]"
        raise ValueError(f"{name} must be a number in {where}, got {value!r}")
    return float(value)


def choice(name: str, value, choices):
    """`value` if it is one of `choices`, else ValueError listing them."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}: expected one of {', '.join(repr(c) for c in choices)}")
    return value


def tensor(name: str, value, min_dim: int = 0) -> torch.Tensor:
    """`value` if it is a torch.Tensor with at least `min_dim` dims, else TypeError/ValueError."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dim(s), got shape {tuple(value.shape)}")
    return value


def floating_tensor(name: str, value, min_dim: int = 0) -> torch.Tensor:
    """`value` if it is a floating-point torch.Tensor with at least `min_dim` dims."""
    value = tensor(name, value, min_dim)
    if not torch.is_floating_point(value):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    return value
