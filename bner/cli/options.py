"""Command-line options more than one command takes."""

from __future__ import annotations

import argparse

from bner.config import boolean
from bner.inference.backends import RUNTIME_HELP, RUNTIMES
from bner.inference.decoding import COMBINE_HELP, COMBINE_MODES, CONSISTENT_HELP, DECODING_HELP, DECODINGS, THRESHOLD_HELP


def flag_type(kind: type):
    """The argparse ``type`` of a setting: strict true/false for booleans."""
    return boolean if kind is bool else kind


def add_decoding_options(parser: argparse.ArgumentParser) -> None:
    """``--runtime``, ``--decoding``, ``--consistent``, ``--threshold``, ``--combine_with`` and
    ``--combine``, as :func:`bner.load` takes them (the defaults are its own); :func:`load_options` reads them back."""
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto", help=f"{RUNTIME_HELP} (default: auto)")
    parser.add_argument("--decoding", choices=DECODINGS, default="constrained", help=f"{DECODING_HELP} (default: constrained)")
    parser.add_argument("--consistent", type=boolean, nargs="?", const=True, metavar="true|false", default=True,
                        help=f"{CONSISTENT_HELP} (default: true)")
    parser.add_argument("--threshold", type=float, help=f"{THRESHOLD_HELP} (default: 0.5)")
    parser.add_argument("--combine_with", metavar="MODEL", help="a second model: a token tagger and a dictionary model with its "
                                                                "span classifier (either order) give one answer, as --combine says")
    parser.add_argument("--combine", default="union", choices=COMBINE_MODES, help=f"{COMBINE_HELP} (default: union)")


def load_options(args: argparse.Namespace) -> dict:
    """The :func:`bner.load` keywords :func:`add_decoding_options` gave."""
    return {name: getattr(args, name) for name in ("runtime", "decoding", "consistent", "threshold", "combine_with", "combine")}
