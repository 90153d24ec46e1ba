"""Process-wide settings that must be in place before TensorFlow or Keras are imported."""

from __future__ import annotations

import os
import sys
import tempfile


def configure_environment() -> None:
    # Keras picks its backend at import; TensorFlow is the default (export needs it).
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and start its devices with native stderr captured.

    TensorFlow's C++ start-up lines (CUDA probing on CPU-only machines, oneDNN notes)
    are written before its logging settings take effect, so no environment variable
    hides them. They are shown after all if the import fails.
    """
    if "tensorflow" in sys.modules or os.environ.get("KERAS_BACKEND") not in (None, "tensorflow"):
        return
    # A multi-worker job configures collective ops before TensorFlow starts its devices.
    start_devices = not os.environ.get("TF_CONFIG")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            if start_devices:
                tf.config.list_logical_devices()
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
