"""Fine-tuning: the recipe (:mod:`bner.training.recipe`), its loop, step, optimizer, checkpoints,
callbacks, hardware choices, pictures, and hyperparameter search over runs."""
