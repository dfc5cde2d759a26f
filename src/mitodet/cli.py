"""The ``mitodet`` command line. Thin subcommands over library calls; heavy imports happen
inside each command so ``mitodet --help`` stays fast."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module exposes ``register(subparsers)`` which adds its subcommand and sets
# ``func`` to a callable ``run(args) -> int``.
COMMAND_MODULES = (
    "mitodet.commands.presets",
    "mitodet.commands.detect",
    "mitodet.commands.train",
    "mitodet.commands.rescorer",
    "mitodet.commands.atypical",
    "mitodet.commands.validate",
    "mitodet.commands.evaluate",
    "mitodet.commands.readout",
    "mitodet.commands.view",
    "mitodet.commands.report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mitodet",
        description="Find mitotic figures in H&E breast-cancer histology (RDLM detector).",
    )
    from mitodet import __version__

    parser.add_argument("--version", action="version", version=f"mitodet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from mitodet.commands._common import EXIT_INTERRUPTED

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
