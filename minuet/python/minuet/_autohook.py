"""MINUET_HOOK=spconv: install the spconv hook as soon as the program imports spconv.pytorch
(imported at start-up by minuet/python/hook/sitecustomize.py, which scripts/minuet-run puts
on PYTHONPATH). The program itself is not changed."""
import importlib.abc
import importlib.util
import os
import sys

_TARGET = "spconv.pytorch"


class _Finder(importlib.abc.MetaPathFinder):
    """Finds spconv.pytorch through the other finders, then runs install() right after the
    module has executed."""

    def find_spec(self, name, path, target=None):
        if name != _TARGET:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        real_exec = loader.exec_module

        def exec_module(module):
            real_exec(module)
            sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Finder)]
            from minuet import spconv_hook
            spconv_hook.install()

        loader.exec_module = exec_module
        return spec


def enable():
    mode = os.environ.get("MINUET_HOOK", "")
    if mode in ("", "off"):
        return
    if mode != "spconv":
        print(f"MINUET_HOOK={mode!r}: accepted spconv or off", file=sys.stderr, flush=True)
        os._exit(2)  # at start-up: a SystemExit here would be reported as a crash of site
    if _TARGET in sys.modules:
        from minuet import spconv_hook
        spconv_hook.install()
    else:
        sys.meta_path.insert(0, _Finder())


enable()
