"""Benchmark outputs are written whole or not at all."""

import os


def write_text_atomically(path, text):
    """Writes a temporary file beside `path` and renames it, so that an
    interrupted run leaves the previous file intact."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
