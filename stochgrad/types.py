"""The type aliases the core and the backends share.

``Array`` is the native array of a backend: a ``torch.Tensor`` on the torch backend, a numpy
ndarray on the autograd backend (an autograd ``ArrayBox`` wrapping one while a gradient is
traced).  It is ``Any``, at runtime and for the type checker, on purpose: the core never imports
a framework (a backend module is imported only when asked for by name, see
:mod:`stochgrad.backend`), and no one static type covers tensors, ndarrays and autograd's boxes.
What the core may do with an ``Array`` is written down once, in the docstring of
:class:`stochgrad.backend.Backend`: the arithmetic operators with numpy broadcasting, and the
leading sample axis.  The alias names that contract where a plain ``Any`` would not.
"""

from __future__ import annotations

from typing import Any, TypeAlias

#: a backend-native array (``torch.Tensor``, numpy/autograd ndarray); see the module docstring
Array: TypeAlias = Any

#: the logical shape of a value, without the leading sample axis
Shape: TypeAlias = tuple[int, ...]
