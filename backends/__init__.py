"""Built-in backends of stochgrad, installed as ``stochgrad.backends``.

Each module adapts one framework to :class:`stochgrad.backend.Backend` and is
imported only when that backend is requested by name.
"""
