#!/usr/bin/env python3
"""Run ``python -m bner.ner.task`` and record its random draws for a paired comparison.

Writes ``<record_to>_head.npz`` (the classification head's initial kernel, bias and the
label names of its rows) and ``<record_to>_batches.json`` (the training-sentence indices
of every batch, per epoch). ``bench/hf_token_classification.py --head_init --train_batches``
then trains Hugging Face's recipe from the same head on the same batches, so two runs of one
seed differ only in the training itself (numerics, optimizer, dropout masks), not in draws
that move WNUT-17 F1 by points from seed to seed. Used by ``bench/wnut17.py --paired``.

    python bench/bner_recorded.py --record_to /tmp/seed7 -- --pretrained_model=... --do_train ...

Only for benchmarks: it wraps three library functions (``corpus.label_list``,
``features.iterate_batches``, ``train.run_training``) and records a fresh run, not a resumed one.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def record_and_run(record_to: str, task_argv: list[str]) -> None:
    from absl import app

    from bner.settings import configure_environment, import_tensorflow_quietly

    configure_environment()
    import_tensorflow_quietly()
    from bner import corpus, features, train
    from bner.ner import task

    labels: list[str] = []
    epochs: list[list[np.ndarray]] = []
    label_list, iterate_batches, run_training = corpus.label_list, features.iterate_batches, train.run_training

    def recording_label_list(*args, **kwargs):
        labels[:] = label_list(*args, **kwargs)
        return labels[:]

    def recording_iterate_batches(*args, shuffle_seed=None, **kwargs):
        """Training batches (the shuffled ones) as they are handed to the step."""
        if shuffle_seed is not None:
            epochs.append([])
        for batch in iterate_batches(*args, shuffle_seed=shuffle_seed, **kwargs):
            if shuffle_seed is not None:
                epochs[-1].append(batch.indices)
            yield batch

    def recording_run_training(model, optimizer, step_fn, examples, *args, **kwargs):
        sentences = [example.window.sentence for example in examples]
        if len(set(sentences)) != len(sentences):
            sys.exit("a training sentence spans several windows: its batches cannot be replayed by sentence")
        kernel, bias = model.get_layer("logits").get_weights()
        np.savez(f"{record_to}_head.npz", kernel=np.asarray(kernel), bias=np.asarray(bias), labels=np.asarray(labels))
        state = run_training(model, optimizer, step_fn, examples, *args, **kwargs)
        batches = [[[sentences[i] for i in indices] for indices in epoch] for epoch in epochs]
        with open(f"{record_to}_batches.json", "w", encoding="utf-8") as f:
            json.dump({"epochs": batches}, f)
        return state

    corpus.label_list, features.iterate_batches, train.run_training = (
        recording_label_list, recording_iterate_batches, recording_run_training
    )
    app.run(task.main, argv=[sys.argv[0], *task_argv])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--record_to", required=True, help="path prefix of the two record files")
    parser.add_argument("task_flags", nargs=argparse.REMAINDER, help="-- then bner.ner.task's flags")
    args = parser.parse_args()
    flags = args.task_flags[1:] if args.task_flags[:1] == ["--"] else args.task_flags
    record_and_run(args.record_to, flags)


if __name__ == "__main__":
    main()
