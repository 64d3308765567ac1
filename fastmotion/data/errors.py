"""The one error type of :mod:`fastmotion.data`: a dataset or a video in it that cannot be used."""
from __future__ import annotations

_WORKER_PREFIX = "Caught DataError in DataLoader worker"


class DataError(ValueError):
    """A dataset that cannot be used (missing or empty folder, bad config) or a video that cannot be read;
    the message names the folder or file.

    A DataLoader worker re-raises a worker's exception in the main process as
    ``DataError("Caught DataError in DataLoader worker process N. Original Traceback ...")``; the
    constructor keeps only the original one-line message (plus which worker), so a command line still
    prints one line that names the file. The full worker traceback stays in ``worker_traceback``.
    """

    def __init__(self, message: str = ""):
        self.worker_traceback = None
        text = str(message)
        if text.startswith(_WORKER_PREFIX):
            self.worker_traceback = text
            where = text.split(".", 1)[0][len("Caught DataError "):]
            for line in reversed(text.strip().splitlines()):
                if "DataError: " in line:
                    text = f"{line.split('DataError: ', 1)[1]} ({where})"
                    break
        super().__init__(text)
