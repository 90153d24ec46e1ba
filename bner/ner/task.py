"""``python -m bner.ner.task``: the original entry point, kept; the job is :mod:`bner.cli.task`."""

from absl import flags

from bner.cli import flags as bner_flags
from bner.cli import task
from bner.cli.task import main, run

# --help and --helpshort list the main module's key flags: bner's own, defined in bner.cli.flags.
flags.adopt_module_key_flags(bner_flags)

__all__ = ["main", "run"]
__doc__ = task.__doc__  # absl's --help prints the main module's docstring: the job's own

if __name__ == "__main__":
    run()
