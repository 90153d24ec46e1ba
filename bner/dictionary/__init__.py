"""Dictionary NER: names from a vocabulary (TSV) found in text, each match a candidate entity."""
