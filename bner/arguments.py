"""The argparse parser every bner command line uses (``bner``, ``bner-serve``, ``python -m bner.evaluate``).

It holds them to one behaviour: ``--learning-rate`` reads as ``--learning_rate``, an abbreviation
is an unknown option, and an unknown option gets the closest known ones as suggestions. It imports
the standard library only, so the server's command line can use it too.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys


class Parser(argparse.ArgumentParser):
    """argparse, held to one behaviour across bner's command lines (the absl one shares ``underscored``):

    ``--learning-rate`` reads as ``--learning_rate``; an abbreviation (``--num_train_epoch``) is
    an unknown option, not silently the one it starts; an unknown option gets the closest known
    ones as suggestions.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.children: list[argparse.ArgumentParser] = []

    def add_subparsers(self, **kwargs):
        verbs = super().add_subparsers(**kwargs)
        add_parser = verbs.add_parser

        def add_and_keep(name, **options):  # the subcommands' options, for suggestions
            child = add_parser(name, **options)
            self.children.append(child)
            return child

        verbs.add_parser = add_and_keep
        return verbs

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args([underscored(a) for a in args], namespace)

    def error(self, message: str):
        unknown = re.findall(r"(--?[\w-]+)", message.split(":", 1)[1]) if "unrecognized arguments" in message else []
        known = sorted(self.option_strings())
        hints = []
        for option in unknown:
            close = difflib.get_close_matches(option.split("=")[0], known, n=2, cutoff=0.7)
            if close:
                hints.append(f"{option}: did you mean {' or '.join(close)}?")
        super().error(message + ("; " + "; ".join(hints) if hints else ""))

    def option_strings(self) -> set[str]:
        """Every option this parser and its subcommands know, as their help lists them."""
        found = set(re.findall(r"(?<![\w-])--\w+", self.format_help()))
        for child in self.children:
            found |= child.option_strings() if isinstance(child, Parser) else set(re.findall(r"(?<![\w-])--\w+", child.format_help()))
        return found


def underscored(arg: str) -> str:
    """``--max-seq-length=5`` → ``--max_seq_length=5``; values and short options as they are."""
    if not arg.startswith("--") or len(arg) < 3:
        return arg
    name, eq, value = arg.partition("=")
    return name[:2] + name[2:].replace("-", "_") + eq + value
