"""Keep exporters' own chatter (progress lines, C++ warnings, IR dumps) off the user's terminal.

`captured()` sends file descriptor 2 and Python warnings to a temporary file while an exporter runs. With --debug
(the CLI sets PACK_DEBUG=1) the text is replayed on stderr afterwards; otherwise it is dropped: pack reports what
happened in one line of its own.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator


def debugging() -> bool:
    return os.environ.get("PACK_DEBUG") == "1"


@contextlib.contextmanager
def captured() -> Iterator[None]:
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (embedded use): only silence Python warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if debugging():
                sink.seek(0)
                sys.stderr.write(sink.read().decode("utf-8", "replace"))
                sys.stderr.flush()


def extension_ops() -> None:
    """Make the custom operators a model may call through a library (torchvision's `nms`, `roi_align`...) known to
    torch before a TorchScript or torch.export file is loaded: a file that uses them loads only in a process that
    imported the library, which the build's process had (the user's model imported it) and a deploy's has not."""
    with contextlib.suppress(ImportError):
        import torchvision  # noqa: F401


__all__ = ["captured", "debugging", "extension_ops"]
