"""bner: BERT named-entity recognition, from CoNLL files to an HTTPS API.

    import bner
    tagger = bner.load("runs/sample/export/bner")      # or a trained-model folder, a run folder, gs://...
    tagger("Angela Merkel flew to Paris.")             # entities with character offsets

    config = bner.TrainConfig.from_settings(pretrained_model="path/to/bert", output_dir="runs/x")
    result = bner.train(config)                        # steps, scores, paths

Importing bner is cheap: TensorFlow and Keras load only when a model does.
"""

from bner.config import TrainConfig
from bner.environment import use_onednn

use_onednn()  # before anything loads TensorFlow

__version__ = "0.1.0"
__all__ = ["Tagger", "TrainConfig", "TrainResult", "load", "train"]


def __getattr__(name: str):
    # The heavy parts load on first use (PEP 562), so `import bner` stays fast.
    if name == "load":
        from bner.inference.loader import load

        return load
    if name == "Tagger":
        from bner.inference.tagger import Tagger

        return Tagger
    if name in ("train", "TrainResult"):
        from bner.training import recipe as training

        return getattr(training, name)
    raise AttributeError(f"module 'bner' has no attribute {name!r}")
