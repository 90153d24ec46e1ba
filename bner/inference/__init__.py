"""A trained model at work: the Tagger, where it runs, decoding, consistency, scores and file prediction."""
