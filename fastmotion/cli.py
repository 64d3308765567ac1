"""The ``fastmotion`` command.

Each subcommand lives in its own module of :mod:`fastmotion.commands` and exposes
``add_parser(subparsers)`` (which sets ``func`` on its parser); this file only finds them and
turns failures into one line on stderr and a non-zero exit code. ``FASTMOTION_TRACEBACK=1``
shows the full traceback instead, for bug reports.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A failure the user can act on: its message is printed as one line, without a traceback."""


def _commands():
    import fastmotion.commands as package

    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))
    return [importlib.import_module(f"{package.__name__}.{name}") for name in names]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastmotion", description="fastmotion: fused Monkey-Net kernels and tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _commands():
        module.add_parser(sub)
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, CommandError) else f"{type(exc).__name__}: {text}"


def _silence_stdout() -> None:
    # The reader went away (`fastmotion info | head -1`): point stdout at /dev/null so the
    # interpreter's final flush does not raise again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()
        return 0 if code is None else int(code)
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        print(f"fastmotion {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the command line shows one line, not a traceback
        if os.environ.get("FASTMOTION_TRACEBACK", "").lower() in ("1", "true", "yes", "on"):
            raise
        print(f"fastmotion {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
