"""The folders bner writes, each known to one module: the run folder, the trained-model folder,
the export versions and the model card; :mod:`bner.folders.locate` finds a model in any of them."""
