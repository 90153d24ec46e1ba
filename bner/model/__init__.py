"""The network and what describes it: the tagger's layers, pretrained checkpoints, and metadata.json."""
