# Start-up hook for scripts/minuet-run: with MINUET_HOOK=spconv, spconv's convolutions run
# through Minuet once the program imports spconv.pytorch (minuet/_autohook.py).
import os

if os.environ.get("MINUET_HOOK", "") not in ("", "off"):
    import minuet._autohook  # noqa: F401
