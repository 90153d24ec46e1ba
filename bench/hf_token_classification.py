#!/usr/bin/env python3
"""Hugging Face token-classification baseline for bner's benchmarks.

Runs the standard transformers recipe for NER (the one behind
examples/pytorch/token-classification/run_ner.py): a fast AutoTokenizer over
pre-split words, the label on the first sub-token of each word only (-100 on
the others), truncation at --max_length, AutoModelForTokenClassification, and
Trainer (AdamW, linear schedule with warmup, weight decay 0.01) with
DataCollatorForTokenClassification.

With --head_init and --train_batches it starts from another system's initial head and
trains on its batches (bench/wnut17.py --paired), for a seed-by-seed comparison.

Only trainer.train() is timed. Dev and test are scored at entity level with the
same rules as conlleval (micro P/R/F1 and per type).

This runs in its own virtual environment (see requirements-hf-baseline.txt),
not in bner's.

Example:
    python bench/hf_token_classification.py --model_dir /work/minilm/model \
        --data_dir ../shared/data/wnut17 --output_json bench/results/hf.json \
        --epochs 3 --batch_size 32 --learning_rate 5e-5 --warmup_ratio 0.1 \
        --bf16 --group_by_length --seed 42
"""

import argparse
import inspect
import json
import os
import platform
import sys
import tempfile
import time

# Everything is local: never let the hub client reach for the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    Trainer,
    TrainingArguments,
)

IGNORE_INDEX = -100


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

def read_conll(path):
    """Read a CoNLL file: token in the first column, tag in the last column.

    Blank lines separate sentences; -DOCSTART- lines are skipped. Columns are
    tab-separated when the line has a tab, whitespace-separated otherwise.
    Returns a list of (words, tags) pairs.
    """
    sentences = []
    words, tags = [], []
    with open(path, encoding="utf-8") as handle:
        for lineno, raw in enumerate(handle, 1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                if words:
                    sentences.append((words, tags))
                    words, tags = [], []
                continue
            cols = line.split("\t") if "\t" in line else line.split()
            if len(cols) < 2:
                raise ValueError(f"{path}:{lineno}: expected 2+ columns, got {line!r}")
            if cols[0] == "-DOCSTART-":
                continue
            words.append(cols[0])
            tags.append(cols[-1].strip())
    if words:
        sentences.append((words, tags))
    return sentences


def build_label_list(*splits):
    tags = set()
    for split in splits:
        for _, sent_tags in split:
            tags.update(sent_tags)
    tags.discard("O")
    # 'O' first, then entity tags grouped by type (B before I).
    return ["O"] + sorted(tags, key=lambda t: (t[2:], t[:1]) if len(t) > 2 and t[1] == "-" else (t, ""))


class TokenClassificationDataset(torch.utils.data.Dataset):
    """Tokenised sentences as dicts of python lists; the collator pads them."""

    def __init__(self, features):
        self.features = features

    def __len__(self):
        return len(self.features)

    def __getitem__(self, idx):
        return self.features[idx]


def encode(tokenizer, sentences, label2id, max_length, batch=256):
    """Tokenise sentences as the HF recipe does.

    Returns (features, word_ids per sentence, stats). Labels sit on the first
    sub-token of each word; continuation pieces and special tokens get -100.
    Words whose pieces fall past max_length are cut away ("truncated"); words
    that yield no piece at all (e.g. only control characters) are "empty".
    Neither kind gets a prediction, so both score as 'O' at evaluation.
    """
    features, all_word_ids = [], []
    stats = {"sentences": len(sentences), "words": 0, "truncated_words": 0,
             "truncated_sentences": 0, "empty_words": 0, "pieces_with_special": 0,
             "pieces_without_special": 0}
    for start in range(0, len(sentences), batch):
        chunk = sentences[start:start + batch]
        words_batch = [words for words, _ in chunk]
        enc = tokenizer(words_batch, is_split_into_words=True, truncation=True,
                        max_length=max_length, padding=False)
        # Same sentences without truncation, only to tell truncated words from
        # words that produce no piece at all.
        full = tokenizer(words_batch, is_split_into_words=True, truncation=False,
                         padding=False)
        for i, (words, tags) in enumerate(chunk):
            word_ids = enc.word_ids(i)
            present = {w for w in word_ids if w is not None}
            full_present = {w for w in full.word_ids(i) if w is not None}
            stats["words"] += len(words)
            stats["empty_words"] += len(words) - len(full_present)
            truncated = len(full_present - present)
            stats["truncated_words"] += truncated
            stats["truncated_sentences"] += int(truncated > 0)

            labels, previous = [], None
            for w in word_ids:
                if w is None or w == previous:
                    labels.append(IGNORE_INDEX)
                else:
                    labels.append(label2id[tags[w]])
                previous = w
            feature = {key: list(enc[key][i]) for key in enc.keys()}
            feature["labels"] = labels
            n_pieces = len(feature["input_ids"])
            stats["pieces_with_special"] += n_pieces
            stats["pieces_without_special"] += sum(w is not None for w in word_ids)
            features.append(feature)
            all_word_ids.append(word_ids)
    return features, all_word_ids, stats


class CountingCollator:
    """Wraps a collator and counts the padded pieces it hands out."""

    def __init__(self, inner):
        self.inner = inner
        self.reset()

    def reset(self):
        self.batches = 0
        self.padded_pieces = 0
        self.real_pieces = 0

    def __call__(self, features):
        batch = self.inner(features)
        self.batches += 1
        self.padded_pieces += int(batch["input_ids"].numel())
        if "attention_mask" in batch:
            self.real_pieces += int(batch["attention_mask"].sum())
        return batch


# ---------------------------------------------------------------------------
# conlleval-style entity scoring
# ---------------------------------------------------------------------------

def _split_tag(tag):
    if tag == "O" or not tag:
        return "O", ""
    if len(tag) > 1 and tag[1] == "-":
        return tag[0], tag[2:]
    return tag, ""


def _chunk_ends(prev_prefix, prev_type, prefix, typ):
    """True when a chunk open at the previous tag closes before this one."""
    if prev_prefix == "O":
        return False
    if prev_prefix in ("E", "S"):
        return True
    if prefix in ("B", "S", "O"):
        return True
    return prev_type != typ


def _chunk_starts(prev_prefix, prev_type, prefix, typ):
    """True when a chunk opens at this tag."""
    if prefix == "O":
        return False
    if prefix in ("B", "S"):
        return True
    # I or E: starts a chunk unless it continues one of the same type.
    if prev_prefix in ("O", "E", "S"):
        return True
    return prev_type != typ


def extract_chunks(tags):
    """Entity chunks of one sentence as a set of (start, end_exclusive, type).

    A chunk starts at B-X, or at I-X when the previous tag is O or of another
    type; it ends when the next tag does not continue it (conlleval rules).
    """
    chunks = set()
    prev_prefix, prev_type = "O", ""
    start, cur_type = None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, typ = _split_tag(tag)
        if start is not None and _chunk_ends(prev_prefix, prev_type, prefix, typ):
            chunks.add((start, i, cur_type))
            start, cur_type = None, None
        if _chunk_starts(prev_prefix, prev_type, prefix, typ):
            start, cur_type = i, typ
        prev_prefix, prev_type = prefix, typ
    return chunks


def _prf(correct, predicted, gold):
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def entity_scores(gold_sentences, pred_sentences):
    """Micro P/R/F1 over exact (boundaries + type) entity matches, and per type."""
    counts = {}
    total_correct = total_pred = total_gold = 0
    tokens = tokens_correct = 0
    for gold_tags, pred_tags in zip(gold_sentences, pred_sentences):
        assert len(gold_tags) == len(pred_tags)
        tokens += len(gold_tags)
        tokens_correct += sum(g == p for g, p in zip(gold_tags, pred_tags))
        gold_chunks = extract_chunks(gold_tags)
        pred_chunks = extract_chunks(pred_tags)
        correct_chunks = gold_chunks & pred_chunks
        total_correct += len(correct_chunks)
        total_pred += len(pred_chunks)
        total_gold += len(gold_chunks)
        for name, chunk_set in (("gold", gold_chunks), ("predicted", pred_chunks),
                                ("correct", correct_chunks)):
            for _, _, typ in chunk_set:
                counts.setdefault(typ, {"gold": 0, "predicted": 0, "correct": 0})[name] += 1
    precision, recall, f1 = _prf(total_correct, total_pred, total_gold)
    per_type = {}
    for typ in sorted(counts):
        c = counts[typ]
        p, r, f = _prf(c["correct"], c["predicted"], c["gold"])
        per_type[typ] = {"precision": p, "recall": r, "f1": f, **c}
    return {"precision": precision, "recall": recall, "f1": f1,
            "correct": total_correct, "predicted": total_pred, "gold": total_gold,
            "token_accuracy": tokens_correct / tokens if tokens else 0.0,
            "per_type": per_type}


# ---------------------------------------------------------------------------
# Environment facts
# ---------------------------------------------------------------------------

def cpu_facts():
    facts = {"platform": platform.platform(), "processor": platform.processor(),
             "cpu_count": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as handle:
            text = handle.read()
        for line in text.splitlines():
            if line.startswith("model name"):
                facts["model_name"] = line.split(":", 1)[1].strip()
                break
        flags = set()
        for line in text.splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
        for flag in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16"):
            facts[f"flag_{flag}"] = flag in flags
    except OSError:
        pass
    try:
        facts["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except Exception as exc:  # pragma: no cover - depends on torch build
        facts["torch_cpu_capability"] = f"unavailable: {exc}"
    try:
        facts["mkldnn_bf16_supported"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception as exc:  # pragma: no cover - depends on torch build
        facts["mkldnn_bf16_supported"] = f"unavailable: {exc}"
    try:  # name differs across transformers versions
        from transformers.utils import is_torch_bf16_available_on_device
        facts["transformers_bf16_cpu_available"] = bool(is_torch_bf16_available_on_device("cpu"))
    except ImportError:
        try:
            from transformers.utils import is_torch_bf16_cpu_available
            facts["transformers_bf16_cpu_available"] = bool(is_torch_bf16_cpu_available())
        except ImportError as exc:
            facts["transformers_bf16_cpu_available"] = f"unavailable: {exc}"
    return facts


def loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


# ---------------------------------------------------------------------------
# Training and evaluation
# ---------------------------------------------------------------------------

def make_training_args(args, output_dir, group_by_length=None):
    """TrainingArguments for the recipe, across transformers 4.x and 5.x names.

    group_by_length overrides args.group_by_length (prediction must not group:
    recent transformers also apply the length-grouped, shuffled sampler to
    evaluation, which would return predictions out of dataset order).
    """
    if group_by_length is None:
        group_by_length = args.group_by_length
    params = inspect.signature(TrainingArguments.__init__).parameters
    kwargs = dict(
        output_dir=output_dir,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size or args.batch_size,
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        weight_decay=0.01,
        lr_scheduler_type="linear",
        bf16=args.bf16,
        seed=args.seed,
        report_to="none",
        save_strategy="no",
        logging_strategy="steps",
        logging_steps=args.logging_steps,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    if args.optim:
        kwargs["optim"] = args.optim
    # Warmup: 4.x has warmup_ratio; 5.x takes a float in [0, 1) as warmup_steps.
    if "warmup_ratio" in params:
        kwargs["warmup_ratio"] = args.warmup_ratio
    elif args.warmup_ratio:
        kwargs["warmup_steps"] = float(args.warmup_ratio)
    # Length grouping: 4.x group_by_length; 5.x train_sampling_strategy.
    if "group_by_length" in params:
        kwargs["group_by_length"] = group_by_length
    elif group_by_length:
        kwargs["train_sampling_strategy"] = "group_by_length"
    # Evaluation strategy name changed in 4.41.
    if "eval_strategy" in params:
        kwargs["eval_strategy"] = "no"
    else:
        kwargs["evaluation_strategy"] = "no"
    # Force the CPU even if a GPU happens to be present.
    if "use_cpu" in params:
        kwargs["use_cpu"] = True
    elif "no_cuda" in params:
        kwargs["no_cuda"] = True
    return TrainingArguments(**kwargs)


def predict_tags(trainer, dataset, word_ids_list, sentences, id2label):
    """Word-level predicted tags: the argmax at each word's first sub-token.

    Words with no sub-token in the (truncated) input are predicted 'O'.
    """
    output = trainer.predict(dataset)
    logits = output.predictions
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    pred_ids = np.asarray(logits).argmax(-1)
    # The returned label ids must line up with our own features, or the
    # predictions came back in another order.
    label_ids = np.asarray(output.label_ids)
    for i in range(len(dataset)):
        expected = dataset[i]["labels"]
        if list(label_ids[i, :len(expected)]) != expected:
            raise RuntimeError(f"prediction {i} is not aligned with its sentence")
    predicted = []
    for i, (words, _) in enumerate(sentences):
        tags = ["O"] * len(words)
        previous = None
        for pos, w in enumerate(word_ids_list[i]):
            if w is not None and w != previous:
                tags[w] = id2label[int(pred_ids[i, pos])]
            previous = w
        predicted.append(tags)
    return predicted


def load_head(model, path):
    """Set the classification head to the weights of another system's initial head.

    Rows are matched by label name, so the two systems may order their labels differently.
    """
    saved = np.load(path)
    names = [str(name) for name in saved["labels"]]
    rows = [names.index(model.config.id2label[i]) for i in range(model.config.num_labels)]
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(saved["kernel"].T[rows]))
        model.classifier.bias.copy_(torch.from_numpy(saved["bias"][rows]))


class FixedBatches(torch.utils.data.Sampler):
    """Yields the given batches of dataset indices, epoch after epoch (the last epoch's repeat)."""

    def __init__(self, epochs):
        self.epochs = epochs
        self.epoch = 0

    def __len__(self):
        return len(self.epochs[min(self.epoch, len(self.epochs) - 1)])

    def __iter__(self):
        batches = self.epochs[min(self.epoch, len(self.epochs) - 1)]
        self.epoch += 1
        return iter(batches)


def trainer_on_batches(epochs):
    """A Trainer class whose training loader yields exactly ``epochs``' batches."""

    class FixedBatchTrainer(Trainer):
        def get_train_dataloader(self):
            largest = max(i for batches in epochs for batch in batches for i in batch)
            if largest >= len(self.train_dataset):
                sys.exit(f"--train_batches names sentence {largest}; the training set has {len(self.train_dataset)}")
            loader = torch.utils.data.DataLoader(self.train_dataset, batch_sampler=FixedBatches(epochs),
                                                 collate_fn=self.data_collator)
            return self.accelerator.prepare(loader)

    return FixedBatchTrainer


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", required=True, help="local pretrained BERT-style model folder")
    parser.add_argument("--data_dir", required=True, help="folder with train.conll, dev.conll, test.conll")
    parser.add_argument("--output_json", required=True)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--eval_batch_size", type=int, default=None,
                        help="prediction batch size (default: --batch_size); not timed")
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--warmup_ratio", type=float, default=0.1)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision (autocast)")
    parser.add_argument("--group_by_length", action="store_true",
                        help="batch sentences of similar length together")
    parser.add_argument("--max_train_sentences", type=int, default=None,
                        help="use only the first N training sentences (smoke tests)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: os.cpu_count())")
    parser.add_argument("--optim", default=None,
                        help="Trainer optimizer name (default: the installed transformers' AdamW default)")
    parser.add_argument("--logging_steps", type=int, default=100)
    parser.add_argument("--head_init", default=None,
                        help="start the classification head from these weights (.npz with kernel "
                             "[hidden, labels], bias and labels, as bench/bner_recorded.py writes)")
    parser.add_argument("--train_batches", default=None,
                        help="train on these batches (JSON: per epoch, lists of training-sentence "
                             "indices), instead of the Trainer's sampler")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    load_start = loadavg()
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    transformers.set_seed(args.seed)

    train_sents = read_conll(os.path.join(args.data_dir, "train.conll"))
    dev_sents = read_conll(os.path.join(args.data_dir, "dev.conll"))
    test_sents = read_conll(os.path.join(args.data_dir, "test.conll"))
    train_sents_all = len(train_sents)
    if args.max_train_sentences:
        train_sents = train_sents[:args.max_train_sentences]

    labels = build_label_list(train_sents, dev_sents, test_sents)
    label2id = {tag: i for i, tag in enumerate(labels)}
    id2label = {i: tag for tag, i in label2id.items()}

    # As run_ner.py does: byte-level BPE tokenizers take pre-split words only with a prefix space.
    model_type = transformers.AutoConfig.from_pretrained(args.model_dir).model_type
    prefix_space = {"add_prefix_space": True} if model_type in {"bloom", "gpt2", "roberta", "deberta"} else {}
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir, use_fast=True, **prefix_space)
    if not getattr(tokenizer, "is_fast", True):
        sys.exit("a fast tokenizer is required (word_ids())")

    train_feats, _, train_stats = encode(tokenizer, train_sents, label2id, args.max_length)
    dev_feats, dev_word_ids, dev_stats = encode(tokenizer, dev_sents, label2id, args.max_length)
    test_feats, test_word_ids, test_stats = encode(tokenizer, test_sents, label2id, args.max_length)

    model = AutoModelForTokenClassification.from_pretrained(
        args.model_dir, num_labels=len(labels), id2label=id2label, label2id=label2id)
    if args.head_init:
        load_head(model, args.head_init)
    trainer_class = Trainer
    if args.train_batches:
        with open(args.train_batches, encoding="utf-8") as handle:
            trainer_class = trainer_on_batches(json.load(handle)["epochs"])

    collator = CountingCollator(DataCollatorForTokenClassification(tokenizer))

    with tempfile.TemporaryDirectory(prefix="hf_tokcls_") as tmp:
        training_args = make_training_args(args, tmp)
        trainer_kwargs = dict(model=model, args=training_args, data_collator=collator,
                              train_dataset=TokenClassificationDataset(train_feats))
        if "processing_class" in inspect.signature(Trainer.__init__).parameters:
            trainer_kwargs["processing_class"] = tokenizer
        else:
            trainer_kwargs["tokenizer"] = tokenizer
        trainer = trainer_class(**trainer_kwargs)

        load_before_train = loadavg()
        collator.reset()
        start = time.perf_counter()
        train_output = trainer.train()
        train_seconds = time.perf_counter() - start
        load_after_train = loadavg()
        train_batches = collator.batches
        train_padded_pieces = collator.padded_pieces
        train_real_pieces_seen = collator.real_pieces

        # Predict with a Trainer whose evaluation sampler is sequential.
        predict_kwargs = dict(trainer_kwargs)
        predict_kwargs.pop("train_dataset")
        predict_kwargs["args"] = make_training_args(args, tmp, group_by_length=False)
        predictor = Trainer(**predict_kwargs)

        results = {}
        for name, sents, feats, word_ids in (("dev", dev_sents, dev_feats, dev_word_ids),
                                            ("test", test_sents, test_feats, test_word_ids)):
            start = time.perf_counter()
            predicted = predict_tags(predictor, TokenClassificationDataset(feats), word_ids, sents, id2label)
            scores = entity_scores([tags for _, tags in sents], predicted)
            scores["predict_seconds"] = time.perf_counter() - start
            results[name] = scores

    real_pieces_per_epoch = train_stats["pieces_with_special"]
    optim = training_args.optim
    cpu = cpu_facts()
    report = {
        "config": {
            "args": vars(args),
            "recipe": "HF token classification (run_ner.py style): first-subtoken labels, "
                      "Trainer/AdamW, linear schedule with warmup, weight_decay 0.01",
            "python": sys.version.split()[0],
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "torch_num_threads": torch.get_num_threads(),
            "torch_num_interop_threads": torch.get_num_interop_threads(),
            "cpu": cpu,
            "cpu_bf16_support": cpu.get("mkldnn_bf16_supported"),
            "optim": getattr(optim, "value", str(optim)),
            "lr_scheduler_type": getattr(training_args.lr_scheduler_type, "value",
                                         str(training_args.lr_scheduler_type)),
            "weight_decay": training_args.weight_decay,
            "model_type": model.config.model_type,
            "model_parameters": sum(p.numel() for p in model.parameters()),
            "model_dtype": str(next(model.parameters()).dtype),
            "tokenizer_class": type(tokenizer).__name__,
            "labels": labels,
            "train_sentences_available": train_sents_all,
        },
        "data": {"train": train_stats, "dev": dev_stats, "test": test_stats},
        "train_seconds": train_seconds,
        "train_steps": trainer.state.global_step,
        "train_loss": train_output.training_loss,
        "train_metrics": train_output.metrics,
        "real_pieces_per_epoch": real_pieces_per_epoch,
        "real_pieces_per_epoch_without_special": train_stats["pieces_without_special"],
        "pieces_per_second": real_pieces_per_epoch * args.epochs / train_seconds,
        "collator_during_train": {"batches": train_batches,
                                  "padded_pieces": train_padded_pieces,
                                  "real_pieces": train_real_pieces_seen,
                                  "padding_fraction": (1 - train_real_pieces_seen / train_padded_pieces)
                                  if train_padded_pieces else None},
        "dev": results["dev"],
        "test": results["test"],
        "truncated_words": {split: {"words": s["truncated_words"],
                                    "sentences": s["truncated_sentences"],
                                    "empty_words": s["empty_words"]}
                            for split, s in (("train", train_stats), ("dev", dev_stats),
                                             ("test", test_stats))},
        "loadavg": {"start": load_start, "before_train": load_before_train,
                    "after_train": load_after_train, "end": loadavg()},
    }

    out_dir = os.path.dirname(os.path.abspath(args.output_json))
    os.makedirs(out_dir, exist_ok=True)
    with open(args.output_json, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, sort_keys=False)
        handle.write("\n")

    print("=" * 72)
    print(f"HF baseline: {os.path.basename(os.path.normpath(args.model_dir))} "
          f"(transformers {transformers.__version__}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, bf16={args.bf16}, group_by_length={args.group_by_length})")
    print(f"train: {len(train_sents)} sentences, {real_pieces_per_epoch} pieces/epoch, "
          f"{args.epochs:g} epochs, {trainer.state.global_step} steps, loss {train_output.training_loss:.4f}")
    print(f"train time: {train_seconds:.1f} s  ->  {report['pieces_per_second']:.0f} pieces/s "
          f"(padding {100 * (report['collator_during_train']['padding_fraction'] or 0):.1f}% of batch pieces)")
    for name in ("dev", "test"):
        r = results[name]
        print(f"{name:5s} P {r['precision']:.4f}  R {r['recall']:.4f}  F1 {r['f1']:.4f}  "
              f"({r['correct']}/{r['predicted']} pred, {r['gold']} gold)  "
              + " ".join(f"{t}={v['f1']:.3f}" for t, v in r["per_type"].items()))
    print("truncated words: " + ", ".join(
        f"{k} {v['words']} ({v['sentences']} sent, {v['empty_words']} empty)"
        for k, v in report["truncated_words"].items()))
    print(f"loadavg start {load_start}  end {report['loadavg']['end']}")
    print(f"wrote {args.output_json}")
    return report


if __name__ == "__main__":
    main()
