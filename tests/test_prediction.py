"""Prediction over files: formats, pass-through, bounded memory, atomic output (a stand-in tagger, no model)."""

import dataclasses
import io as text_io
import json

import pytest

from bner.data import corpus
from bner.inference import evaluate, prediction


@dataclasses.dataclass
class FakeEntity:
    text: str
    start: int

    def as_dict(self):
        return {"text": self.text, "type": "CAP", "start": self.start, "end": self.start + len(self.text), "score": 1.0}


class CapitalTagger:
    """Tags every capitalised word as one entity; records the size of each call."""

    batch_size = 2

    def __init__(self):
        self.calls = []

    def predict(self, texts, batch_size=None):
        self.calls.append(len(texts))
        out = []
        for text in texts:
            found, at = [], 0
            for word in text.split(" "):
                if word[:1].isupper():
                    found.append(FakeEntity(word, at))
                at += len(word) + 1
            out.append(found)
        return out

    def tag(self, sentences, documents=None):
        self.calls.append(len(sentences))
        return [["B-CAP" if w[:1].isupper() else "O" for w in words] for words in sentences]


def test_format_follows_the_extension_unless_given():
    assert prediction.input_format("a/b.conll") == "conll"
    assert prediction.input_format("gs://x/b.JSONL") == "jsonl"
    assert prediction.input_format("b.ndjson") == "jsonl"
    assert prediction.input_format("b.txt") == "text" and prediction.input_format("-") == "text"
    assert prediction.input_format("b.txt", "jsonl") == "jsonl"
    with pytest.raises(ValueError, match="expected one of"):
        prediction.input_format("b.txt", "csv")


def test_jsonl_fields_pass_through_and_entities_are_added(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": 1, "text": "Ann met Bo", "lang": "en"}\n\n{"id": 2, "text": ""}\n', encoding="utf-8")
    done = prediction.predict_file(CapitalTagger(), str(source), str(tmp_path / "out.jsonl"))
    written, count = done.written, done.count
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert count == 2 and written == str(tmp_path / "out.jsonl")
    assert records[0] == {"id": 1, "text": "Ann met Bo", "lang": "en", "entities": [
        {"text": "Ann", "type": "CAP", "start": 0, "end": 3, "score": 1.0}, {"text": "Bo", "type": "CAP", "start": 8, "end": 10, "score": 1.0}]}
    assert records[1] == {"id": 2, "text": "", "entities": []}


def test_text_keeps_one_output_line_per_input_line(tmp_path):
    source = tmp_path / "in.txt"
    source.write_bytes("\ufeffAnn here\n\nZoë there\r\n".encode())
    prediction.predict_file(CapitalTagger(), str(source), str(tmp_path / "out.jsonl"))
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in records] == ["Ann here", "", "Zoë there"]


def test_conll_output_keeps_words_and_document_boundaries(tmp_path):
    source = tmp_path / "in.conll"
    source.write_text("-DOCSTART- -X- O\n\nAnn NNP B-PER\nran VBD O\n\nBo NNP\n\n-DOCSTART-\n\nCy\n", encoding="utf-8")
    prediction.predict_file(CapitalTagger(), str(source), str(tmp_path / "out.conll"), chunk_size=1)
    text = (tmp_path / "out.conll").read_text()
    assert text == "-DOCSTART- O\n\nAnn B-CAP\nran O\n\nBo B-CAP\n\n-DOCSTART- O\n\nCy B-CAP\n\n"
    assert [s.words for s in corpus.parse_conll(text)] == [("Ann", "ran"), ("Bo",), ("Cy",)]


def test_standard_input_to_standard_output(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", text_io.TextIOWrapper(text_io.BytesIO(b"Ann here\nno one\n")))
    done = prediction.predict_file(CapitalTagger(), "-", "-")
    lines = capsys.readouterr().out.splitlines()
    assert done.written == "standard output" and done.count == 2
    assert [len(json.loads(line)["entities"]) for line in lines] == [1, 0]


def test_memory_stays_bounded_to_one_chunk(monkeypatch, tmp_path):
    """Lines are read only as chunks are tagged: a huge input is never held whole."""
    read = []

    def endless_lines():
        for n in range(10_000):
            read.append(n)
            yield f"Text {n}\n".encode()

    tagger = CapitalTagger()
    original = tagger.predict

    def predict(texts, batch_size=None):
        # When a chunk is tagged, at most one line beyond it has been read.
        assert len(read) <= sum(tagger.calls) + len(texts) + 1
        return original(texts, batch_size)

    tagger.predict = predict
    monkeypatch.setattr(prediction, "open_input", lambda path: _as_context(endless_lines()))
    count = prediction.predict_file(tagger, "big.txt", str(tmp_path / "out.jsonl"), chunk_size=100).count
    assert count == 10_000 and max(tagger.calls) == 100 and len(tagger.calls) == 100


class _as_context:
    def __init__(self, value):
        self.value = value

    def __enter__(self):
        return self.value

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("content, line, reason", [
    (b'{"text": "Ann"}\n[1, 2]\n{"text": "Bo"}\n', 2, "expected a JSON object"),
    (b'{"text": "Ann"}\n{"text": 5}\n{"text": "Bo"}\n', 2, 'expected a "text" field holding a string'),
    (b'{"text": "Ann"\n{"text": "Ann"}\n{"text": "Bo"}\n', 1, "not a JSON object"),
    (b'{"text": "Ann"}\n{"text": "x \xff y"}\n{"text": "Bo"}\n', 2, "expected UTF-8 text"),
])
def test_a_line_that_cannot_be_read_goes_to_the_errors_file_and_the_run_goes_on(tmp_path, content, line, reason):
    (tmp_path / "in.jsonl").write_bytes(content)
    done = prediction.predict_file(CapitalTagger(), str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl"), chunk_size=1)
    labelled = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in labelled] == ["Ann", "Bo"] and done.count == 2 and done.errors == 1
    assert done.errors_file == str(tmp_path / "out.jsonl.errors.jsonl")
    [problem] = [json.loads(x) for x in (tmp_path / "out.jsonl.errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert problem["file"] == str(tmp_path / "in.jsonl") and problem["line"] == line and reason in problem["error"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


@pytest.mark.parametrize("fmt, name", [("text", "in.txt"), ("jsonl", "in.jsonl"), ("conll", "in.conll")])
def test_a_line_over_the_limit_is_reported_not_read_and_the_rest_is_labelled(tmp_path, fmt, name):
    long_line = {"text": "Ann " * 5000, "jsonl": json.dumps({"text": "Ann " * 5000}), "conll": "A" * 20000}[fmt]
    short = {"text": ["Ann", "Bo"], "jsonl": [json.dumps({"text": "Ann"}), json.dumps({"text": "Bo"})], "conll": ["Ann\n", "Bo"]}[fmt]
    (tmp_path / name).write_text(f"{short[0]}\n{long_line}\n{short[1]}\n", encoding="utf-8")
    done = prediction.predict_file(CapitalTagger(), str(tmp_path / name), str(tmp_path / "out"), fmt=fmt, chunk_size=1,
                                   max_line_bytes=1000)
    assert done.count == 2 and done.errors == 1
    [problem] = [json.loads(x) for x in (tmp_path / "out.errors.jsonl").read_text(encoding="utf-8").splitlines()]
    line = 3 if fmt == "conll" else 2
    assert problem["line"] == line and "over the limit of 1000 (--max_line_bytes)" in problem["error"]


def test_lines_are_read_in_pieces_no_longer_than_the_limit():
    import io as std_io

    handle = std_io.BytesIO(b"ab\n" + b"x" * 50 + b"\n" + b"c" * 10 + b"\r\nlast")
    assert list(prediction.bounded_lines(handle, 10)) == [b"ab\n", 51, b"c" * 10 + b"\r\n", b"last"]
    assert list(prediction.bounded_lines([b"ab\n", b"x" * 50 + b"\n"], 10)) == [b"ab\n", 51]

    # A remote file (gs://) is an fsspec file, whose readline takes no size.
    import fsspec
    from fsspec.spec import AbstractBufferedFile

    class Remote(AbstractBufferedFile):
        def __init__(self, data):
            self.data = data
            super().__init__(fs=fsspec.filesystem("memory"), path="x", mode="rb", size=len(data), block_size=5)

        def _fetch_range(self, start, end):
            return self.data[start:end]

    remote = Remote(b"ab\n" + b"x" * 50 + b"\nlast")
    assert list(prediction.bounded_lines(remote, 10)) == [b"ab\n", 51, b"last"]


def test_no_errors_file_when_every_line_is_read(tmp_path):
    (tmp_path / "in.txt").write_text("Ann met Bo\n", encoding="utf-8")
    done = prediction.predict_file(CapitalTagger(), str(tmp_path / "in.txt"), str(tmp_path / "out.jsonl"))
    assert done.errors == 0 and done.errors_file is None and not (tmp_path / "out.jsonl.errors.jsonl").exists()


def test_lone_surrogates_are_labelled_and_written_as_json_escapes(tmp_path):
    """Valid JSON, not valid UTF-8: the text is labelled (the tagger reads U+FFFD one for one, so offsets hold)
    and the record is written as given, escaped, so the output is valid UTF-8."""
    (tmp_path / "in.jsonl").write_text('{"id": "\\udc80", "text": "Paris \\ud800 London"}\n', encoding="utf-8")
    prediction.predict_file(CapitalTagger(), str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl"))
    raw = (tmp_path / "out.jsonl").read_bytes()
    record = json.loads(raw.decode("utf-8"))
    assert record["id"] == "\udc80" and record["text"] == "Paris \ud800 London"
    assert [e["text"] for e in record["entities"]] == ["Paris", "London"]


def test_bad_bytes_on_standard_input_go_to_standard_error(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", text_io.TextIOWrapper(text_io.BytesIO(b"Ann here\nx \xff y\nBo there\n")))
    done = prediction.predict_file(CapitalTagger(), "-", "-")
    captured = capsys.readouterr()
    assert [json.loads(x)["text"] for x in captured.out.splitlines()] == ["Ann here", "Bo there"]
    assert done.errors == 1 and json.loads(captured.err.splitlines()[0])["line"] == 2


def test_confusion_counts_types_misses_and_spurious_entities():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "O", "B-LOC"]]
    table = evaluate.confusion(gold, predicted)
    assert table == {"types": ["LOC", "ORG", "PER"], "matrix": {
        "LOC": {"ORG": 1}, "ORG": {"(missed)": 1}, "PER": {"PER": 1}, "(spurious)": {"LOC": 1}}}
    diagonal = sum(table["matrix"].get(t, {}).get(t, 0) for t in table["types"])
    assert diagonal == evaluate.score(gold, predicted).overall.correct


def test_the_output_may_not_be_the_input(tmp_path, monkeypatch):
    source = tmp_path / "in.txt"
    source.write_text("Ann met Bo\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for output in (str(source), "in.txt", "./in.txt"):
        with pytest.raises(prediction.ConfigError, match="that is the input file"):
            prediction.predict_file(CapitalTagger(), str(source), output)
    link = tmp_path / "link.txt"
    link.symlink_to(source)
    with pytest.raises(prediction.ConfigError, match="that is the input file"):
        prediction.predict_file(CapitalTagger(), str(link), str(source))
    assert source.read_text(encoding="utf-8") == "Ann met Bo\n"
    with pytest.raises(prediction.ConfigError, match="a folder; give a file name"):
        prediction.predict_file(CapitalTagger(), str(source), str(tmp_path))


def test_a_written_file_follows_the_umask(tmp_path, monkeypatch):
    """The process's umask (read once at start) sets a published file's mode, not a fixed 0644."""
    from bner import io

    monkeypatch.setattr(io, "_UMASK", 0o077)
    (tmp_path / "in.txt").write_text("Ann met Bo\n", encoding="utf-8")
    prediction.predict_file(CapitalTagger(), str(tmp_path / "in.txt"), str(tmp_path / "out.jsonl"))
    assert (tmp_path / "out.jsonl").stat().st_mode & 0o777 == 0o600


def test_the_errors_file_may_not_be_the_output(tmp_path):
    (tmp_path / "in.txt").write_text("Ann met Bo\n", encoding="utf-8")
    with pytest.raises(prediction.ConfigError, match="that is the output file"):
        prediction.predict_file(CapitalTagger(), str(tmp_path / "in.txt"), str(tmp_path / "out.jsonl"), errors=str(tmp_path / "out.jsonl"))
