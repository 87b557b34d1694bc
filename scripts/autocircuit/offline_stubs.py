"""Inert stand-ins for packages that AutoCircuit and TransformerLens import but never call on
the path time_autocircuit.py times, for GPU nodes that lack them (the offline GPU bundle,
docs/gpu.md). They are large: `datasets` needs pyarrow (55 MB), `plotly` is 10 MB, `blobfile`
needs lxml; the bundle must stay under 20 MiB. What they serve is dataset downloads, plots and
cloud storage, none of which mask_gradient_prune_scores or patchable_model touches, so the
timing is that of the real library.

`install()` adds a stand-in only for a name that cannot be imported, and returns those names,
which time_autocircuit.py prints with its versions line.
"""
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

STUBBED = ("datasets", "plotly", "blobfile")


class _Inert:
    """Any attribute, call or index gives another inert value; it can be a base class."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert()

    def __call__(self, *args, **kwargs):
        return _Inert()

    def __getitem__(self, key):
        return _Inert()

    def __iter__(self):
        return iter(())

    def __mro_entries__(self, bases):
        return (object,)


class _InertModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert()


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots):
        self.roots = set(roots)

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _InertModule(spec.name)

    def exec_module(self, module):
        module.__path__ = []


def install():
    missing = [name for name in STUBBED if importlib.util.find_spec(name) is None]
    if missing:
        # Last on the path: an installed package of the same name always wins.
        sys.meta_path.append(_Finder(missing))
    return missing
