"""A stand-in for the `modal` package: enough surface for the apps to import and define their classes."""

import sys
import types


class _Chain:
    """Image/Volume/Secret builders: every call returns another builder that remembers the calls made so far."""

    def __init__(self, calls=()):
        self.calls = list(calls)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: _Chain([*self.calls, (name, args, kwargs)])

    def env_vars(self) -> dict:
        """Everything passed to `.env(...)` along the chain."""
        merged = {}
        for name, args, _kwargs in self.calls:
            if name == "env":
                merged.update(args[0])
        return merged

    def commit(self):
        return None


class App:
    def __init__(self, name):
        self.name = name
        self.classes = {}

    def cls(self, **options):
        def register(cls):
            cls.modal_options = options
            self.classes[cls.__name__] = cls
            return cls

        return register


def _concurrent(**options):
    def mark(cls):
        cls.modal_concurrent = options
        return cls

    return mark


def install():
    module = types.ModuleType("modal")
    module.App = App
    module.Image = _Chain()
    module.Volume = _Chain()
    module.Secret = _Chain()
    module.enter = lambda **_kw: (lambda fn: fn)
    module.method = lambda **_kw: (lambda fn: fn)
    module.concurrent = _concurrent
    sys.modules["modal"] = module
    return module
