#!/usr/bin/env python3
"""Run bner's training and record its random draws for a paired comparison.

Writes ``<record_to>_head.npz`` (the classification head's initial kernel, bias and the
label names of its rows) and ``<record_to>_batches.json`` (the training-sentence indices
of every batch, per epoch). ``bench/hf_token_classification.py --head_init --train_batches``
then trains Hugging Face's recipe from the same head on the same batches, so two runs of one
seed differ only in the training itself (numerics, optimizer, dropout masks), not in draws
that move WNUT-17 F1 by points from seed to seed. Used by ``bench/wnut17.py --paired``.

    python bench/bner_recorded.py --record_to /tmp/seed7 -- --pretrained_model=... --do_train ...

The flags are ``python -m bner.ner.task``'s; the run is ``bner.train`` with one more callback
(the loop's hook points), and it records a fresh run, not a resumed one.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def recorder(record_to: str):
    import keras

    class RecordDraws(keras.callbacks.Callback):
        """The initial head at the start, and each epoch's planned batches as sentence indices."""

        def on_train_begin(self, logs=None):
            if self.params["initial_step"]:
                sys.exit("the output folder holds a started run: record a fresh one")
            self.sentences = [example.window.sentence for example in self.params["examples"]]
            if len(set(self.sentences)) != len(self.sentences):
                sys.exit("a training sentence spans several windows: its batches cannot be replayed by sentence")
            self.head = [np.asarray(w) for w in self.model.get_layer("logits").get_weights()]
            self.epochs = []

        def on_epoch_begin(self, epoch, logs=None):
            plan = self.params["plan"].epoch(epoch)
            self.epochs.append([[self.sentences[i] for i in indices] for indices, _ in plan])

        def on_train_end(self, logs=None):
            steps = self.params["state"].step
            per_epoch = self.params["steps_per_epoch"]
            if steps % per_epoch:  # a fractional last epoch stops early
                self.epochs[-1] = self.epochs[-1][: steps % per_epoch]
            with open(f"{record_to}_batches.json", "w", encoding="utf-8") as f:
                json.dump({"epochs": self.epochs}, f)

    return RecordDraws()


def record_and_run(record_to: str, task_argv: list[str]) -> None:
    from bner.environment import configure_environment, import_tensorflow_quietly

    configure_environment()
    from bner.cli.flags import FLAGS, config_from_flags

    FLAGS([sys.argv[0], *task_argv])
    config = config_from_flags()
    import_tensorflow_quietly()
    from bner.training.recipe import train

    callback = recorder(record_to)
    train(config, callbacks=[callback])
    from bner.model.metadata import read_metadata

    labels = read_metadata(f"{config.output.output_dir}/model").labels
    kernel, bias = callback.head
    np.savez(f"{record_to}_head.npz", kernel=kernel, bias=bias, labels=np.asarray(labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--record_to", required=True, help="path prefix of the two record files")
    parser.add_argument("task_flags", nargs=argparse.REMAINDER, help="-- then bner.ner.task's flags")
    args = parser.parse_args()
    flags = args.task_flags[1:] if args.task_flags[:1] == ["--"] else args.task_flags
    record_and_run(args.record_to, flags)


if __name__ == "__main__":
    main()
