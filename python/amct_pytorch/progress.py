"""Progress of the long steps (export, calibration, save, auto calibration
trials) on stderr: a bar redrawn in place on a terminal, nothing otherwise.

AMCT_PROGRESS=0 silences it, AMCT_PROGRESS=1 forces it on even when stderr
is not a terminal (a log file, a notebook); set_progress() overrides both
from code (True, False, or None for automatic)."""

import os
import sys
import time

_forced = None
_OFF = ("0", "false", "no", "off")
_ON = ("1", "true", "yes", "on")
# Redraws of a bar are at least this far apart, so that frequent updates
# (one per calibrated layer and batch) cost next to nothing.
_REDRAW_S = 0.1
_BAR_WIDTH = 24


def set_progress(enabled):
    """True shows progress, False hides it, None restores the default
    (AMCT_PROGRESS, else whether stderr is a terminal)."""
    global _forced
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"set_progress(): enabled must be True, False or None, got {enabled!r}")
    _forced = enabled


def progress_enabled(stream):
    if _forced is not None:
        return _forced
    setting = os.environ.get("AMCT_PROGRESS", "").strip().lower()
    if setting in _OFF:
        return False
    if setting in _ON:
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """One step's line: `label |#####     | done/total elapsed`, or for a
    step without measurable parts (total None) `label ...` and, when it
    ends, the time it took. Use as a context manager or call close()."""

    def __init__(self, label, total=None):
        self._stream = sys.stderr
        self._active = progress_enabled(self._stream)
        self._label = label
        self._total = total
        self._done = 0
        self._note = ""
        self._start = time.monotonic()
        self._drawn_at = None
        if self._active:
            self._draw()

    def update(self, done, total=None, note=None):
        if total is not None:
            self._total = total
        if note is not None:
            self._note = note
        self._done = done
        if self._active and (self._drawn_at is None or time.monotonic() - self._drawn_at >= _REDRAW_S
                             or (self._total is not None and done >= self._total)):
            self._draw()

    def close(self, note=None):
        if not self._active:
            return
        if note is not None:
            self._note = note
        self._draw(final=True)
        self._stream.write("\n")
        self._stream.flush()
        self._active = False

    def __enter__(self):
        return self

    def __exit__(self, error_type, _error, _traceback):
        self.close("failed" if error_type is not None else None)

    def _draw(self, final=False):
        elapsed = time.monotonic() - self._start
        if self._total:
            filled = min(_BAR_WIDTH, _BAR_WIDTH * self._done // self._total)
            text = (f"{self._label} |{'#' * filled}{' ' * (_BAR_WIDTH - filled)}| {self._done}/{self._total} "
                    f"{elapsed:.1f}s")
        else:
            text = f"{self._label} {'done' if final else '...'} {elapsed:.1f}s"
        if self._note:
            text += f" {self._note}"
        self._stream.write("\r\x1b[K" + text)
        self._stream.flush()
        self._drawn_at = time.monotonic()
