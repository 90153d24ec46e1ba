"""The command lines: ``bner <verb>`` (main; ``bner serve`` hands over to :mod:`bner.serving.__main__`),
``python -m bner.ner.task`` (task, flags), ``python -m bner.evaluate`` (conlleval), and the steps and
options they share (steps, options). Each is a shell over the library."""
