"""Command-line options more than one command takes."""

from __future__ import annotations

import argparse

from bner.config import boolean
from bner.inference.backends import RUNTIME_HELP, RUNTIMES
from bner.inference.decoding import CONSISTENT_HELP, DECODING_HELP, DECODINGS


def flag_type(kind: type):
    """The argparse ``type`` of a setting: strict true/false for booleans."""
    return boolean if kind is bool else kind


def add_decoding_options(parser: argparse.ArgumentParser) -> None:
    """``--decoding``, ``--consistent`` and ``--runtime``, as :func:`bner.load` takes them (the defaults are its own)."""
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto", help=f"{RUNTIME_HELP} (default: auto)")
    parser.add_argument("--decoding", choices=DECODINGS, default="constrained", help=f"{DECODING_HELP} (default: constrained)")
    parser.add_argument("--consistent", type=boolean, nargs="?", const=True, metavar="true|false", default=True,
                        help=f"{CONSISTENT_HELP} (default: true)")
