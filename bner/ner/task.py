"""``python -m bner.ner.task``: the original entry point, kept; the job is :mod:`bner.cli.task`."""

from bner.cli import task
from bner.cli.task import main, run

__all__ = ["main", "run"]
__doc__ = task.__doc__  # absl's --help prints the main module's docstring: the job's own

if __name__ == "__main__":
    run()
