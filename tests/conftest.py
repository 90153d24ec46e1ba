"""Shared test data: a learnable synthetic NER task and a tiny BERT that covers its words."""

from __future__ import annotations

import os
import random

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

from tests import bert_fixtures  # noqa: E402

FIRST_NAMES = ["anna", "boris", "chen", "dara", "emil", "fatima", "goran", "hana"]
SURNAMES = ["kowalski", "moreau", "nakamura", "okafor", "petrov", "quint", "rossi", "silva"]
CITIES = ["lisbon", "oslo", "lagos", "lima", "hanoi", "quito", "dakar", "perth"]
COMPANIES = ["acme", "globex", "initech", "umbrella", "hooli", "vandelay"]
FILLER = ["the", "a", "met", "in", "visited", "said", "today", "with", "and", "of", "from", "works", "for", "at", "yesterday", "."]
VOCAB_WORDS = sorted(set(FIRST_NAMES + SURNAMES + CITIES + COMPANIES + FILLER))
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def synthetic_sentences(count: int, seed: int, long_every: int = 0) -> list[tuple[list[str], list[str]]]:
    """Sentences whose entities are learnable from the words themselves (IOB2 tags).

    PER = first name [+ surname], LOC = city, ORG = company; everything else is filler.
    With ``long_every`` every n-th sentence has 100+ words, over 3× a 32-piece window.
    """
    rng = random.Random(seed)
    out = []
    for i in range(count):
        words, tags = [], []
        parts = rng.randint(3, 6) if not (long_every and i % long_every == 0) else 50
        for _ in range(parts):
            kind = rng.choice(["PER", "LOC", "ORG", "O", "O"])
            if kind == "PER":
                words.append(rng.choice(FIRST_NAMES))
                tags.append("B-PER")
                if rng.random() < 0.6:
                    words.append(rng.choice(SURNAMES))
                    tags.append("I-PER")
            elif kind == "LOC":
                words.append(rng.choice(CITIES))
                tags.append("B-LOC")
            elif kind == "ORG":
                words.append(rng.choice(COMPANIES))
                tags.append("B-ORG")
            else:
                words.append(rng.choice(FILLER))
                tags.append("O")
            words.append(rng.choice(FILLER))
            tags.append("O")
        # Capitalise names as real text would be; the model is uncased.
        words = [w.capitalize() if t != "O" else w for w, t in zip(words, tags)]
        out.append((words, tags))
    return out


def to_iob1(tags: list[str]) -> list[str]:
    from bner.data import corpus

    return corpus.convert_tags(tags, "IOB1")


def write_conll(path, sentences, columns: int = 4, scheme: str = "IOB2", docstart: bool = True) -> None:
    lines = ["-DOCSTART- -X- -X- O", ""] if docstart else []
    for words, tags in sentences:
        if scheme == "IOB1":
            tags = to_iob1(tags)
        for w, t in zip(words, tags):
            lines.append(f"{w} NN B-NP {t}" if columns == 4 else f"{w}\t{t}")
        lines.append("")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def write_synthetic_data(folder, train=300, dev=60, test=60, scheme="IOB2", long_every=0) -> str:
    os.makedirs(folder, exist_ok=True)
    write_conll(os.path.join(folder, "train.conll"), synthetic_sentences(train, 1, long_every), scheme=scheme)
    write_conll(os.path.join(folder, "dev.conll"), synthetic_sentences(dev, 2, long_every), scheme=scheme)
    write_conll(os.path.join(folder, "test.conll"), synthetic_sentences(test, 3, long_every), scheme=scheme)
    return str(folder)


TINY = bert_fixtures.TinyBertConfig(
    vocab_size=len(SPECIAL_TOKENS) + len(VOCAB_WORDS) + 8,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=128,
)


def write_tiny_model(folder, seed: int = 0) -> str:
    """A tiny Hugging Face BERT whose vocabulary holds every synthetic word."""
    weights = bert_fixtures.random_bert_weights(TINY, seed=seed)
    # Pretrained-like scale: the fixture's large weights make a from-scratch start hard to train.
    weights = {k: (v * 0.1 if v.ndim == 2 else v) for k, v in weights.items()}
    bert_fixtures.write_hf_folder(folder, TINY, weights)
    vocab = SPECIAL_TOKENS + VOCAB_WORDS + ["##s", "##ed", "##ing", "##a", "##o", "x", "y", "z"]
    assert len(vocab) == TINY.vocab_size
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    return str(folder)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return write_tiny_model(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> str:
    return write_synthetic_data(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture
def unused_port() -> int:
    """A free TCP port on 127.0.0.1."""
    from bench.common import free_port

    return free_port()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A word-piece tokenizer of a few pieces (a…e, ##x, ##y), for tests of windows and packing."""
    from bner.data import features

    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b", "c", "d", "e", "##x", "##y"]) + "\n")
    return features.build_tokenizer(vocab_file=str(path), lowercase=True)
