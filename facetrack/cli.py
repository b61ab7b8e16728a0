"""The ``facetrack`` command. Each sub-command lives in ``facetrack/commands/<name>.py`` and exposes
``register(subparsers)``; importing a command module must stay cheap (heavy imports go inside ``run``)."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from facetrack.errors import FacetrackError

COMMANDS = ("detect", "track", "demo", "models", "train", "evaluate", "export", "calibrate", "quantize", "report",
            "meanface")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facetrack", description="Facial landmark detection and tracking.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"facetrack.commands.{name}").register(sub)
    for command in sub.choices.values():
        plain_text(command)
    return parser


def plain_text(parser: argparse.ArgumentParser) -> None:
    """Help as plain text: the commands' docstrings are also read as reST (``literal`` markup), --help is not."""
    parser.description = _plain(parser.description)
    for action in parser._actions:
        action.help = _plain(action.help)


def _plain(text: str | None) -> str | None:
    return text if text is None else text.replace("``", "")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except FacetrackError as exc:
        print(f"facetrack {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"facetrack {args.command}: interrupted; results written so far are kept", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (facetrack models | head): quiet, like other command-line tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _version() -> str:
    from facetrack import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
