import json
import os
import subprocess
import sys

import pytest

from bner.inference import evaluate


def test_hand_computed_iob2_case():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "B-LOC"]]
    scores = evaluate.score(gold, pred)
    # gold: PER(0,2) LOC(3,4) ORG(0,1); predicted: PER(0,2) ORG(3,4) ORG(0,1) LOC(1,2)
    assert (scores.overall.gold, scores.overall.predicted, scores.overall.correct) == (3, 4, 2)
    assert scores.overall.precision == pytest.approx(0.5)
    assert scores.overall.recall == pytest.approx(2 / 3)
    assert scores.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert scores.per_type["LOC"].as_dict()["correct"] == 0
    assert scores.per_type["ORG"].precision == pytest.approx(0.5)
    assert scores.token_accuracy == pytest.approx(4 / 6)


def test_iob1_corner_cases_match_conlleval():
    # conlleval reads gold: PER(0,2) PER(2,3) LOC(4,5) ORG(5,7)
    gold = [["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG"]]
    # A tagger that merges the two PERs and gets the type change right.
    merged = [["I-PER", "I-PER", "I-PER", "O", "I-LOC", "I-ORG", "I-ORG"]]
    s = evaluate.score(gold, merged)
    assert (s.overall.gold, s.overall.predicted, s.overall.correct) == (4, 3, 2)
    # The same entities written in IOB2 score perfectly against IOB1 gold.
    iob2 = [["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG"]]
    assert evaluate.score(gold, iob2).f1 == 1.0


def test_boundary_errors_count_as_both_a_false_positive_and_a_false_negative():
    s = evaluate.score([["B-PER", "I-PER", "O"]], [["B-PER", "O", "O"]])
    assert (s.overall.gold, s.overall.predicted, s.overall.correct) == (1, 1, 0)
    assert s.f1 == 0.0


def test_no_entities_anywhere_scores_zero_without_dividing_by_zero():
    s = evaluate.score([["O"]], [["O"]])
    assert s.f1 == 0.0 and s.overall.precision == 0.0


def test_report_has_conlleval_layout():
    s = evaluate.score([["B-PER", "O"]], [["B-PER", "O"]])
    report = evaluate.format_report(s)
    assert report.splitlines()[0] == "processed 2 tokens with 1 phrases; found: 1 phrases; correct: 1."
    assert "precision: 100.00%; recall: 100.00%; FB1: 100.00" in report
    assert "PER: precision: 100.00%" in report


def test_cli_scores_a_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("Peter NNP I-PER I-PER\nBlackburn NNP I-PER O\n\nBonn NNP I-LOC I-LOC\n")
    result = subprocess.run([sys.executable, "-m", "bner.evaluate", str(path), "--json"], capture_output=True, text=True, check=True)
    data = json.loads(result.stdout)
    assert (data["gold"], data["predicted"], data["correct"]) == (2, 2, 1)
    result = subprocess.run([sys.executable, "-m", "bner.evaluate", str(path)], capture_output=True, text=True, check=True)
    assert "FB1:  50.00" in result.stdout


def test_cli_reports_malformed_input_in_one_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("Peter I-PER\n")
    result = subprocess.run([sys.executable, "-m", "bner.evaluate", str(path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {path}:1: expected a word, a gold tag and a predicted tag separated by a space or tab, got 'Peter I-PER'"


def test_docstart_lines_count_as_tokens_as_in_conlleval():
    import tempfile

    text = "-DOCSTART- O O\n\nPeter B-PER B-PER\nlives O O\n\n-DOCSTART- O O\nin O O\nParis B-LOC B-LOC\n"
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write(text)
    gold, predicted = evaluate.read_predictions(f.name)
    scores = evaluate.score(gold, predicted)
    assert scores.tokens == 6 and scores.correct_tokens == 6  # conlleval: "processed 6 tokens with 2 phrases"
    assert scores.overall.correct == 2
    os.remove(f.name)


@pytest.mark.parametrize(
    "content, message",
    [
        ("Peter B-PER B-PER\n".encode("utf-16"), "expected UTF-8 text"),
        (b"\x00\xff\xfe\x01binary", "expected UTF-8 text"),
        (None, "is a folder"),
        (b"Peter B-PER B-PER\nlives X O O\n", "expected 3 columns like the lines before"),
    ],
)
def test_scorer_refuses_what_conlleval_refuses_in_one_line(tmp_path, content, message):
    path = tmp_path / "predictions"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    result = subprocess.run([sys.executable, "-m", "bner.evaluate", str(path)], capture_output=True, text=True)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
