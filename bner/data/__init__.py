"""Data in: CoNLL corpora and tag schemes, raw text segmented into words, word pieces and batches."""
