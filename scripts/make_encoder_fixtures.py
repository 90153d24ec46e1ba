"""Writes tests/fixtures/encoders/: a tiny random Hugging Face folder per encoder family, with
the reference encoder output that bner's own encoder must reproduce (tests/test_encoders.py).

Runs in the Hugging Face baseline's virtual environment (bench/requirements-hf-baseline.txt,
plus sentencepiece and protobuf for the SentencePiece tokenizers), never in bner's:

    /work/hfvenv/bin/pip install sentencepiece protobuf
    /work/hfvenv/bin/python scripts/make_encoder_fixtures.py

Each folder holds what a user's download holds: ``config.json``, ``model.safetensors``,
``tokenizer.json`` and ``tokenizer_config.json``, written by ``transformers`` itself, with
tokenizers trained on the bundled sample. ``expected.npz`` holds a batch of input ids of
different lengths (one longer than 128 pieces), its attention mask, and the PyTorch
encoder's last hidden state in float32.

Weights are drawn so that the test can tell a wrong activation or LayerNorm epsilon from a
right one: embeddings small (their LayerNorm's epsilon then matters), dense kernels large
(the feed-forward inputs then reach where the GELU forms differ), LayerNorm scales and all
biases away from 1 and 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile

import numpy as np
import torch
import transformers
from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "bner", "data", "sample", "train.conll")  # what the tokenizers are trained on
OUT = os.path.join(ROOT, "tests", "fixtures", "encoders")
VOCAB = 400
RANDOMISE = True
LENGTHS = (140, 37, 5)  # one longer than 128; padded to the longest
SMALL = dict(hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=2,
             max_position_embeddings=192, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def corpus() -> list[str]:
    words = [line.split()[0] for line in open(CORPUS, encoding="utf-8") if line.strip() and not line.startswith("-DOCSTART-")]
    extra = ["naïve café Zürich São Paulo", "東京 北京 ソニー", "emoji 😀 👍🏽 text", "don't won't U.S. e-mail", "COVID-19 IL-2 p53"]
    return [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)] + extra * 20


def wordpiece(folder: str, cls, lowercase: bool) -> None:
    trainer = BertWordPieceTokenizer(lowercase=lowercase, strip_accents=lowercase)
    trainer.train_from_iterator(corpus(), vocab_size=VOCAB, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer.save_model(tmp)
        cls.from_pretrained(tmp, do_lower_case=lowercase).save_pretrained(folder)


def byte_level_bpe(folder: str) -> None:
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(corpus(), vocab_size=VOCAB, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer.save_model(tmp)
        transformers.RobertaTokenizer.from_pretrained(tmp).save_pretrained(folder)


def sentencepiece(folder: str, cls, file_name: str, **options) -> None:
    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as tmp:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus()), model_prefix=os.path.join(tmp, "sp"), vocab_size=VOCAB,
                                       model_type="unigram", character_coverage=1.0, minloglevel=2, **options)
        shutil.copy(os.path.join(tmp, "sp.model"), os.path.join(tmp, file_name))
        cls.from_pretrained(tmp).save_pretrained(folder)


def families() -> dict:
    """Each family's config (of the SMALL shape) and how to write its tokenizer."""
    return {
        "bert": (transformers.BertConfig(**SMALL, hidden_act="gelu", layer_norm_eps=1e-12),
                 lambda d: wordpiece(d, transformers.BertTokenizer, False)),
        "roberta": (transformers.RobertaConfig(**SMALL, hidden_act="gelu", layer_norm_eps=1e-5, type_vocab_size=1, pad_token_id=1,
                                               bos_token_id=0, eos_token_id=2),
                    byte_level_bpe),
        "xlm-roberta": (transformers.XLMRobertaConfig(**SMALL, hidden_act="gelu", layer_norm_eps=1e-5, type_vocab_size=1,
                                                      pad_token_id=1, bos_token_id=0, eos_token_id=2),
                        lambda d: sentencepiece(d, transformers.XLMRobertaTokenizer, "sentencepiece.bpe.model")),
        # DeBERTa-v3's shape: relative attention in log buckets, shared keys, no absolute positions, no segments.
        "deberta-v3": (transformers.DebertaV2Config(**SMALL, hidden_act="gelu", layer_norm_eps=1e-7, type_vocab_size=0,
                                                    relative_attention=True, position_buckets=16, max_relative_positions=64,
                                                    pos_att_type=["p2c", "c2p"], position_biased_input=False, share_att_key=True,
                                                    norm_rel_ebd="layer_norm", pad_token_id=0),
                       lambda d: sentencepiece(d, transformers.DebertaV2Tokenizer, "spm.model", pad_id=0, pad_piece="[PAD]", bos_id=1,
                                               bos_piece="[CLS]", eos_id=2, eos_piece="[SEP]", unk_id=3, unk_piece="[UNK]",
                                               user_defined_symbols=["[MASK]"])),
        # DeBERTa-v2's: its convolution after the first layer, separate position projections, absolute positions too.
        "deberta-v2": (transformers.DebertaV2Config(**SMALL, hidden_act="gelu", layer_norm_eps=1e-7, type_vocab_size=0,
                                                    relative_attention=True, position_buckets=-1, max_relative_positions=48,
                                                    pos_att_type=["p2c", "c2p"], position_biased_input=True, share_att_key=False,
                                                    norm_rel_ebd="none", conv_kernel_size=3, conv_act="gelu", embedding_size=SMALL["hidden_size"] * 3 // 4,
                                                    pad_token_id=0),
                       lambda d: sentencepiece(d, transformers.DebertaV2Tokenizer, "spm.model", pad_id=0, pad_piece="[PAD]", bos_id=1,
                                               bos_piece="[CLS]", eos_id=2, eos_piece="[SEP]", unk_id=3, unk_piece="[UNK]",
                                               user_defined_symbols=["[MASK]"])),
        "distilbert": (transformers.DistilBertConfig(dim=SMALL["hidden_size"], n_heads=SMALL["num_attention_heads"],
                                                     hidden_dim=SMALL["intermediate_size"], n_layers=2, max_position_embeddings=192,
                                                     dropout=0.0, attention_dropout=0.0, activation="gelu"),
                       lambda d: wordpiece(d, transformers.DistilBertTokenizer, True)),
        "electra": (transformers.ElectraConfig(**SMALL, embedding_size=SMALL["hidden_size"] // 2, hidden_act="gelu", layer_norm_eps=1e-12),
                    lambda d: wordpiece(d, transformers.ElectraTokenizer, True)),
        "albert": (transformers.AlbertConfig(**{**SMALL, "num_hidden_layers": 3}, embedding_size=SMALL["hidden_size"] // 2, hidden_act="gelu_new",
                                             layer_norm_eps=1e-12, classifier_dropout_prob=0.0, pad_token_id=0),
                   lambda d: sentencepiece(d, transformers.AlbertTokenizer, "spiece.model", pad_id=0, pad_piece="<pad>", unk_id=1,
                                           bos_id=-1, eos_id=-1, user_defined_symbols=["[CLS]", "[SEP]", "[MASK]"])),
    }


def randomise(model: torch.nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn(p.shape, generator=generator))
            elif "embeddings" in name and p.ndim == 2:
                p.copy_(0.02 * torch.randn(p.shape, generator=generator))
            elif p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=generator) / p.shape[1] ** 0.5 * 1.5)
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=generator))


def write(family: str, seed: int) -> None:
    config, make_tokenizer = families()[family]
    folder = os.path.join(OUT, family)
    shutil.rmtree(folder, ignore_errors=True)
    make_tokenizer(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    config.vocab_size = len(tokenizer)
    generator = torch.Generator().manual_seed(seed)
    model = transformers.AutoModel.from_config(config).eval()
    if RANDOMISE:
        randomise(model, generator)
    model.save_pretrained(folder, safe_serialization=True)
    rng = np.random.default_rng(seed)
    ids = np.full((len(LENGTHS), max(LENGTHS)), config.pad_token_id or 0, dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, n in enumerate(LENGTHS):
        ids[row, :n] = rng.integers(5, config.vocab_size, n)
        ids[row, 0], ids[row, n - 1] = tokenizer.cls_token_id, tokenizer.sep_token_id
        mask[row, :n] = 1
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
    hidden = np.where(mask[..., None] == 1, hidden, 0.0).astype(np.float32)  # what padding holds is no one's business
    np.savez_compressed(os.path.join(folder, "expected.npz"), input_ids=ids.astype(np.int32), attention_mask=mask.astype(np.int32),
                        hidden=hidden)
    for extra in ("special_tokens_map.json",):
        if os.path.exists(os.path.join(folder, extra)):
            os.remove(os.path.join(folder, extra))
    with open(os.path.join(folder, "versions.json"), "w") as f:
        json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "seed": seed}, f, indent=1)
    print(family, config.model_type, "vocab", config.vocab_size, "files", sorted(os.listdir(folder)))


def main() -> None:
    global OUT, CORPUS, VOCAB, RANDOMISE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("families", nargs="*", default=list(families()))
    parser.add_argument("--out", default=OUT, help="where the folders go (default: the test fixtures)")
    parser.add_argument("--corpus", default=CORPUS, help="CoNLL file the tokenizers are trained on")
    parser.add_argument("--vocab", type=int, default=VOCAB)
    parser.add_argument("--hidden", type=int, default=SMALL["hidden_size"], help="hidden size (heads: hidden / 32)")
    parser.add_argument("--init", choices=("test", "huggingface"), default="test",
                        help="test: weights drawn to expose a wrong activation or epsilon; huggingface: the library's own init")
    args = parser.parse_args()
    OUT, CORPUS, VOCAB, RANDOMISE = args.out, args.corpus, args.vocab, args.init == "test"
    if args.hidden != SMALL["hidden_size"]:  # a larger model for bench/encoder_families.py
        SMALL.update(hidden_size=args.hidden, num_attention_heads=max(1, args.hidden // 32), intermediate_size=4 * args.hidden)
    torch.set_num_threads(1)
    for i, family in enumerate(args.families):
        write(family, seed=1000 + i)


if __name__ == "__main__":
    main()
