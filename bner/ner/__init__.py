"""The original project's entry point, kept: ``python -m bner.ner.task`` (implemented in :mod:`bner.cli.task`)."""
