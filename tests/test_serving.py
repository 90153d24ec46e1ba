"""The HTTP API on a tiny export: both backends, limits, batching, offsets, and serving = evaluation."""

import asyncio
import contextlib
import os
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.common import free_port
from bner.data import corpus
from bner.inference.loader import load
from bner.serving.app import create_app
from bner.serving.budget import COUNT_CHUNK_WORDS, count_pieces, piece_bound
from bner.serving.settings import ServingSettings
from tests.cli import run_task, tiny_training_flags
from tests.conftest import write_synthetic_data
from tests.tf_serving import running_prediction_service, stop_prediction_service


@pytest.fixture(scope="module")
def export(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    data = write_synthetic_data(root / "data", long_every=10)
    run_task(*tiny_training_flags(tiny_model, data, str(root / "out")), "--do_train", "--do_eval")
    return root, data, str(root / "out" / "export" / "bner" / "1")


@pytest.fixture(scope="module")
def tagger(export):
    return load(export[2])


def client_for(tagger, **overrides) -> TestClient:
    return TestClient(create_app(ServingSettings(**overrides), tagger=tagger))


def test_health_ready_docs_and_page(tagger):
    with client_for(tagger) as client:
        assert client.get("/api/ner/health").json() == {"status": "ok"}
        assert client.head("/api/ner/health").status_code == client.head("/api/ner/ready").status_code == 200  # load balancers' probes
        trailing = client.post("/api/ner/recognize/", json={"text": "Oslo"}, follow_redirects=False)
        assert trailing.status_code == 404  # no redirect to an address made from the client's Host header
        ready = client.get("/api/ner/ready").json()
        assert ready["status"] == "ready" and ready["entity_types"] == ["LOC", "ORG", "PER"]
        assert "/api/ner/recognize" in client.get("/openapi.json").json()["paths"]
        assert client.get("/docs").status_code == 200
        page = client.get("/")
        assert page.status_code == 200 and "<textarea" in page.text


def test_recognize_one_text_and_several(tagger):
    with client_for(tagger) as client:
        one = client.post("/api/ner/recognize", json={"text": "Anna Kowalski visited Lisbon ."}).json()
        assert [(e["text"], e["type"], e["start"], e["end"]) for e in one["entities"]] == [
            ("Anna Kowalski", "PER", 0, 13), ("Lisbon", "LOC", 22, 28)
        ]
        assert one["results"][0]["entities"] == one["entities"] and 0 < one["entities"][0]["score"] <= 1
        many = client.post("/api/ner/recognize", json={"texts": ["", "Acme works for Boris .", "   "], "include_tokens": True}).json()
        assert [r["text"] for r in many["results"]] == ["", "Acme works for Boris .", "   "]
        assert many["results"][0]["entities"] == [] and many["results"][2]["entities"] == []
        tokens = many["results"][1]["tokens"]
        assert [t["text"] for t in tokens] == ["Acme", "works", "for", "Boris", "."]
        assert "entities" not in many


def test_offsets_are_exact_for_accents_emoji_cjk_marks_and_whitespace(tagger):
    text = "Zoë\u00a0🙂  Anna\tKowalski  visited 東京 e\u0301 and   Lisbon 🇵🇹 ."
    with client_for(tagger) as client:
        body = client.post("/api/ner/recognize", json={"text": text, "include_tokens": True}).json()
    result = body["results"][0]
    for item in result["entities"] + result["tokens"]:
        assert text[item["start"] : item["end"]] == item["text"]
    assert ("Anna\tKowalski", "PER") in {(e["text"], e["type"]) for e in result["entities"]}
    assert ("Lisbon", "LOC") in {(e["text"], e["type"]) for e in result["entities"]}


def test_a_10000_character_text_gets_entities_from_its_end(tagger):
    text = ("the " * 2500)[:9980] + " Anna Kowalski visited Lisbon today ."
    assert len(text) >= 10_000
    with client_for(tagger) as client:
        entities = client.post("/api/ner/recognize", json={"text": text}).json()["entities"]
    assert [(e["text"], e["type"]) for e in entities][-2:] == [("Anna Kowalski", "PER"), ("Lisbon", "LOC")]
    assert entities[-1]["start"] > 9_900


def test_errors_and_limits(tagger):
    with client_for(tagger, max_text_chars=50, max_texts=3, max_body_bytes=5_000) as client:
        post = client.post
        assert post("/api/ner/recognize", json={"text": "x" * 51}).status_code == 413
        assert post("/api/ner/recognize", json={"texts": ["a"] * 4}).status_code == 413
        assert post("/api/ner/recognize", content=b'{"text": "' + b"a" * 6_000 + b'"}', headers={"content-type": "application/json"}).status_code == 413
        for bad in ({}, {"text": 3}, {"text": "a", "texts": ["b"]}, {"texts": "a"}, {"text": "a", "extra": 1}, {"text": "a", "include_tokens": "yes"}):
            response = post("/api/ner/recognize", json=bad)
            assert response.status_code == 422 and response.json()["detail"], bad
        response = post("/api/ner/recognize", content=b"{not json", headers={"content-type": "application/json"})
        assert response.status_code == 422
        not_utf8 = post("/api/ner/recognize", content=b'{"text": "\xff"}', headers={"content-type": "application/json"})
        assert not_utf8.status_code == 400 and not_utf8.json()["detail"]
        assert post("/api/ner/recognize", json={"text": ""}).json()["entities"] == []
        # Every refusal is counted: three too large, eight invalid (one of them not even UTF-8).
        counted = client.get("/metrics").text
        assert 'bner_errors_total{kind="too_large"} 3.0' in counted and 'bner_errors_total{kind="invalid"} 8.0' in counted


def test_api_key_and_cors(tagger):
    with client_for(tagger, api_key="s3cret") as client:
        assert client.post("/api/ner/recognize", json={"text": "Oslo"}).status_code == 401
        assert client.post("/api/ner/recognize", json={"text": "Oslo"}, headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.post("/api/ner/recognize", json={"text": "Oslo"}, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/api/ner/health").status_code == 200  # probes need no key
        assert "access-control-allow-origin" not in client.get("/api/ner/health", headers={"Origin": "https://a.example"}).headers
    with client_for(tagger, cors_origins=("https://a.example",)) as client:
        headers = client.get("/api/ner/health", headers={"Origin": "https://a.example"}).headers
        assert headers["access-control-allow-origin"] == "https://a.example"


def test_concurrent_requests_share_model_calls(tagger):
    app = create_app(ServingSettings(max_batch_size=64, max_wait_ms=50), tagger=tagger)
    texts = [f"{name} visited {city} ." for name, city in zip(["Anna", "Boris", "Chen", "Dara"] * 5, ["Oslo", "Lima", "Quito", "Perth", "Dakar"] * 4)]

    async def run_all():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = await asyncio.gather(*(client.post("/api/ner/recognize", json={"text": t}) for t in texts))
            return [r.json() for r in responses], (await client.get("/metrics")).text

    results, metrics = asyncio.run(run_all())
    assert [r["results"][0]["text"] for r in results] == texts  # each answer went to its own request
    for r, t in zip(results, texts):
        assert [e["text"] for e in r["entities"]] == [t.split()[0], t.split()[2]]
    calls = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("bner_batch_texts_count")))
    assert calls < len(texts), metrics  # grouped into fewer model calls than requests
    assert 'bner_requests_total{endpoint="/api/ner/recognize",status="200"} 20.0' in metrics
    assert "bner_request_latency_seconds_bucket" in metrics


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=300), st.lists(st.text(max_size=40), max_size=5)))
def test_no_input_produces_a_server_error(tagger, value):
    with client_for(tagger) as client:
        body = {"texts": value} if isinstance(value, list) else {"text": value}
        response = client.post("/api/ner/recognize", json=body)
        assert response.status_code == 200
        for result in response.json()["results"]:
            for e in result["entities"]:
                assert result["text"][e["start"] : e["end"]] == e["text"]


def test_served_entities_equal_word_level_evaluation(export, tagger):
    """Raw text in (words joined by spaces) → the same entities as --do_eval's predictions."""
    root, data, _ = export
    gold = corpus.read_conll(os.path.join(data, "test.conll"))
    evaluated = corpus.parse_conll((root / "out" / "test_results.tsv").read_text())
    texts = [" ".join(s.words) for s in gold]
    with client_for(tagger) as client:
        results = client.post("/api/ner/recognize", json={"texts": texts}).json()["results"]
    for sentence, text, result in zip(evaluated, texts, results):
        starts = {}
        position = 0
        for i, word in enumerate(sentence.words):
            starts[position] = i
            position += len(word) + 1
        served = {(e["type"], starts[e["start"]], starts[e["start"]] + len(e["text"].split())) for e in result["entities"]}
        # test_results.tsv rows are "word gold predicted"; the parser keeps the last column as the tag.
        predicted = {(s.type, s.start, s.end) for s in corpus.entity_spans(sentence.tags)}
        assert served == predicted, text


def test_grpc_backend_gives_identical_entities_and_recovers(export, tagger):
    _, _, model_dir = export
    texts = ["Anna Kowalski visited Lisbon .", "Acme  works for\tBoris in Oslo today", "", "the " * 200 + "Chen Rossi from Lima ."]
    with client_for(tagger) as client:
        expected = client.post("/api/ner/recognize", json={"texts": texts}).json()["results"]
    base = os.path.dirname(model_dir)
    with running_prediction_service(base) as (host, port, process):
        grpc_tagger = load(model_dir, host=host, port=port, model_name="bner", timeout_seconds=5)
        with client_for(grpc_tagger) as client:
            assert client.get("/api/ner/ready").json()["backend"] == "tf-serving"
            assert client.post("/api/ner/recognize", json={"texts": texts}).json()["results"] == expected
            stop_prediction_service(process)
            down = client.post("/api/ner/recognize", json={"text": "Oslo"})
            assert down.status_code == 503 and "not answering" in down.json()["detail"]
            # /ready shares one probe's answer for a second, so it may still say ready just after the stop.
            for _ in range(50):
                if client.get("/api/ner/ready").status_code == 503:
                    break
                asyncio.run(asyncio.sleep(0.1))
            assert client.get("/api/ner/ready").status_code == 503
            with running_prediction_service(base, port=port):
                for _ in range(50):
                    if client.get("/api/ner/ready").status_code == 200:
                        break
                    asyncio.run(asyncio.sleep(0.2))
                assert client.post("/api/ner/recognize", json={"texts": texts}).json()["results"] == expected


def test_settings_from_the_original_environment_variables():
    s = ServingSettings.from_env({"METADATA_FILE": "/m/metadata.json", "MODEL_NAME": "ner", "HOST_NAME": "tfs", "GRPC_SERVER_PORT": "9000"})
    assert (s.metadata_file, s.model_name, s.host_name, s.grpc_port) == ("/m/metadata.json", "ner", "tfs", 9000)
    assert ServingSettings.from_env({}).grpc_port == 8500 and ServingSettings.from_env({}).host_name is None


def test_decoding_and_consistency_are_settings_and_the_model_endpoint_says_which(export, tagger):
    from bner.serving.__main__ import parse_args, settings_from_args

    assert (ServingSettings.from_env({}).decoding, ServingSettings.from_env({}).consistent) == ("constrained", True)
    chosen = ServingSettings.from_env({"MODEL_DIR": export[2], "BNER_DECODING": "argmax", "BNER_CONSISTENT": "False"})
    assert (chosen.decoding, chosen.consistent) == ("argmax", False)
    flags = settings_from_args(parse_args(["--model_dir", export[2], "--consistent", "false"]))
    assert (flags.decoding, flags.consistent) == ("constrained", False)
    with TestClient(create_app(chosen)) as client:  # the app loads the export as the settings say
        model = client.get("/api/ner/model").json()
        assert (model["decoding"], model["consistent"]) == ("argmax", False)
        assert model["test_f1"] is None  # measured with training's decoding, not this one
        text = "Anna Kowalski visited Lisbon ."
        entities = client.post("/api/ner/recognize", json={"text": text}).json()["entities"]
    argmax = load(export[2], decoding="argmax", consistent=False)
    assert [(e["text"], e["start"]) for e in entities] == [(e.text, e.start) for e in argmax(text)]
    with client_for(tagger) as client:
        model = client.get("/api/ner/model").json()
        assert model["decoding"] == "constrained" and model["test_f1"] == tagger.metadata.evaluation["test"]["f1"]


def test_worker_processes_get_the_decoding_settings(export, monkeypatch):
    from bner.serving import __main__ as serve
    from bner.serving.settings import fields

    for f in fields():  # main() exports every setting for its workers; each is restored after the test
        monkeypatch.setenv(f.metadata["env"], "")  # (empty reads as unset)
    started = []
    monkeypatch.setattr(serve, "run_workers", lambda host, port, workers: started.append(ServingSettings.from_env()))
    assert serve.main(["--model_dir", export[2], "--workers", "2", "--decoding", "argmax", "--consistent", "false",
                       "--threshold", "0.3", "--combine_with", export[2], "--combine", "confirm"]) == 0
    assert (started[0].model_dir, started[0].decoding, started[0].consistent) == (export[2], "argmax", False)
    assert (started[0].threshold, started[0].combine_with, started[0].combine) == (0.3, export[2], "confirm")


def test_model_dir_may_be_the_folder_of_versions(tmp_path):
    from bner.folders.locate import locate

    for name in ("1", "3", ".tmp-ab12-4"):
        (tmp_path / "bner" / name).mkdir(parents=True)
        (tmp_path / "bner" / name / "metadata.json").write_text("{}")
        (tmp_path / "bner" / name / "saved_model.pb").write_bytes(b"")
    assert locate(str(tmp_path / "bner")) == ("export", str(tmp_path / "bner" / "3"))
    assert locate(str(tmp_path / "bner" / "1")) == ("export", str(tmp_path / "bner" / "1"))
    assert locate(str(tmp_path / "bner" / "1" / "metadata.json")) == ("export", str(tmp_path / "bner" / "1"))
    (tmp_path / "run" / "export").mkdir(parents=True)
    (tmp_path / "bner").rename(tmp_path / "run" / "export" / "bner")
    assert locate(str(tmp_path / "run")) == ("export", str(tmp_path / "run" / "export" / "bner" / "3"))
    with pytest.raises(FileNotFoundError, match="not a bner model"):
        locate(str(tmp_path))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="notes.txt: a file, not a bner model"):
        locate(str(tmp_path / "notes.txt"))


def test_worker_listener_gives_connections_tcp_nodelay():
    """Multi-worker mode's socket: without IPPROTO_TCP, asyncio leaves Nagle on (+40 ms per keep-alive request)."""
    import asyncio
    import socket

    from bner.serving.__main__ import tcp_listener

    async def accepted_nodelay() -> int:
        listener = tcp_listener("127.0.0.1", 0)
        listener.listen()
        seen = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                sock = transport.get_extra_info("socket")
                seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        _, writer = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
        try:
            return await asyncio.wait_for(seen, 5)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accepted_nodelay()) == 1


def test_a_lone_surrogate_is_read_as_a_replacement_character_and_harms_no_neighbour(tagger):
    """A lone surrogate is valid JSON but no text the tokenizer takes: it reads as U+FFFD, offsets intact."""
    app = create_app(ServingSettings(max_batch_size=64, max_wait_ms=50), tagger=tagger)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            bodies = [b'{"text": "Anna \\ud800 Kowalski visited Lisbon ."}'] + [b'{"text": "Hana Silva met Chen in Quito ."}'] * 20
            return await asyncio.gather(*(
                client.post("/api/ner/recognize", content=b, headers={"content-type": "application/json"}) for b in bodies
            ))

    with TestClient(app):
        responses = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200] * 21
    first = responses[0].json()["entities"]
    assert ("Lisbon", 24) in {(e["text"], e["start"]) for e in first}  # "Anna " + one U+FFFD + " Kowalski visited "
    assert all(r.json()["entities"] == responses[1].json()["entities"] for r in responses[1:])


def test_a_failing_request_does_not_fail_the_requests_batched_with_it():
    from bner.serving.batching import MicroBatcher

    def process(texts):
        yield  # one model call
        if "boom" in texts:
            raise RuntimeError("boom")
        return [t.upper() for t in texts]

    batcher = MicroBatcher(process, max_batch_size=64, max_wait_ms=100)

    async def scenario():
        return await asyncio.gather(*(batcher.submit([t]) for t in ["a", "boom", "b", "c"]), return_exceptions=True)

    try:
        results = asyncio.run(scenario())
    finally:
        batcher.close()
    assert results[0] == ["A"] and results[2] == ["B"] and results[3] == ["C"]
    assert isinstance(results[1], RuntimeError)


def test_work_is_bounded_by_word_pieces_not_characters(tagger):
    with client_for(tagger, max_pieces=500) as client:
        dots = client.post("/api/ner/recognize", json={"text": "." * 2_000})  # 2,000 characters, 2,000 words
        assert dots.status_code == 413 and "word pieces" in dots.json()["detail"]
        assert client.post("/api/ner/recognize", json={"text": "Anna visited Lisbon . " * 20}).status_code == 200


def test_counting_a_request_stops_past_the_limit(tagger):
    huge = [", " * 20_000, "Anna"]
    assert count_pieces(tagger, huge) == 20_001
    assert 100 < count_pieces(tagger, huge, limit=100) <= 100 + COUNT_CHUNK_WORDS
    assert count_pieces(tagger, ["Anna\x00 \u200b visited"], limit=100) == count_pieces(tagger, ["Anna visited"])
    assert piece_bound(["한국"]) == 6  # three jamo each under NFD, as an uncased BERT sees them


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=40), max_size=4))
def test_the_cheap_bound_is_never_below_the_count(tagger, texts):
    assert piece_bound(texts) >= count_pieces(tagger, texts)


def test_the_key_is_checked_before_the_body_and_any_key_bytes_are_just_wrong(tagger):
    with client_for(tagger, api_key="s3cret") as client:
        invalid = client.post("/api/ner/recognize", content=b"{not json", headers={"content-type": "application/json"})
        assert invalid.status_code == 401  # not 422: no schema is shown to unauthenticated clients
        assert client.post("/api/ner/recognize", json={"text": "Oslo"}, headers={"X-API-Key": "ключ".encode()}).status_code == 401
        assert client.get("/metrics").status_code == 200  # open unless BNER_PROTECT_ALL
    with client_for(tagger, api_key="ключ-s3cret") as client:  # a non-ASCII key works too
        ok = client.post("/api/ner/recognize", json={"text": "Oslo"}, headers={"X-API-Key": "ключ-s3cret".encode()})
        assert ok.status_code == 200
    with client_for(tagger, api_key="s3cret", protect_all=True) as client:
        assert client.get("/metrics").status_code == 401 and client.get("/api/ner/ready").status_code == 401
        assert client.get("/metrics", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/api/ner/health").status_code == 200  # liveness never needs the key


def test_metrics_label_unknown_paths_as_other(tagger):
    with client_for(tagger) as client:
        for i in range(50):
            assert client.get(f"/random/{i}").status_code == 404
        text = client.get("/metrics").text
    assert 'endpoint="other"' in text and "/random/" not in text


SHORT_LIMITS = {"BNER_MAX_BODY_BYTES": "10000", "BNER_HEADER_TIMEOUT": "1", "BNER_BODY_TIMEOUT": "1", "BNER_KEEP_ALIVE": "1"}


@contextlib.contextmanager
def running_server(model_dir: str, *flags: str, **env: str):
    """``python -m bner.serving`` in its own process on a free loopback port, until it is ready; yields the port."""
    import subprocess
    import sys
    import time

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bner.serving", "--model_dir", model_dir, "--host", "127.0.0.1", "--port", str(port), *flags],
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/ner/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, f"server exited: {process.stderr.read().decode()[-2000:]}"
            assert time.time() < deadline, "server did not start"
            time.sleep(0.3)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(export):
    """A real server process on loopback with short limits, for connection-level cases."""
    with running_server(export[2], **SHORT_LIMITS) as port:
        yield port


def closed_within(sock, seconds: float) -> bool:
    """Whether the server closes the connection within ``seconds`` (reads until EOF)."""
    import time

    sock.settimeout(0.2)
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True
    return False


def test_idle_slow_and_stalled_connections_are_closed(server):
    import socket

    silent = socket.create_connection(("127.0.0.1", server))  # never sends a byte
    slowloris = socket.create_connection(("127.0.0.1", server))
    slowloris.sendall(b"POST /api/ner/recognize HTTP/1.1\r\nHost: x\r\n")  # headers never finish
    stalled = socket.create_connection(("127.0.0.1", server))
    stalled.sendall(b"POST /api/ner/recognize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"te")
    kept = socket.create_connection(("127.0.0.1", server))
    kept.sendall(b"GET /api/ner/health HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert closed_within(silent, 5) and closed_within(slowloris, 5)
        assert closed_within(stalled, 5)  # 408 after the body timeout, then closed
        assert closed_within(kept, 5)  # answered, then idle past the keep-alive
        assert httpx.get(f"http://127.0.0.1:{server}/api/ner/health", timeout=5).status_code == 200
    finally:
        for sock in (silent, slowloris, stalled, kept):
            sock.close()


def test_aborted_downloads_are_not_server_errors(server):
    """Clients that pipeline requests for the Swagger bundle and hang up are no internal errors."""
    import socket
    import time

    def errors() -> str:
        text = httpx.get(f"http://127.0.0.1:{server}/metrics", timeout=5).text
        return "\n".join(line for line in text.splitlines() if line.startswith('bner_errors_total{kind="internal"}'))

    before = errors()
    for _ in range(10):
        sock = socket.create_connection(("127.0.0.1", server))
        sock.sendall(b"GET /docs/assets/swagger-ui-bundle.js HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        sock.recv(1000)
        sock.close()
    time.sleep(1)
    assert errors() == before
    assert httpx.get(f"http://127.0.0.1:{server}/api/ner/health", timeout=5).status_code == 200


def test_worker_processes_start_and_keep_the_settings_and_the_header_deadline(export):
    """--workers 2: uvicorn sends its config to each worker process, so everything in it must travel."""
    import socket

    with running_server(export[2], "--workers", "2", "--consistent", "false", **SHORT_LIMITS) as port:
        for _ in range(4):  # whichever worker answers
            model = httpx.get(f"http://127.0.0.1:{port}/api/ner/model", timeout=10).json()
            assert (model["decoding"], model["consistent"]) == ("constrained", False)
        answer = httpx.post(f"http://127.0.0.1:{port}/api/ner/recognize", json={"text": "Anna Kowalski visited Lisbon ."}, timeout=30)
        assert answer.status_code == 200 and [e["text"] for e in answer.json()["entities"]] == ["Anna Kowalski", "Lisbon"]
        with socket.create_connection(("127.0.0.1", port)) as silent:
            assert closed_within(silent, 5)  # BNER_HEADER_TIMEOUT=1 reached the workers


def test_a_chunked_body_over_the_limit_is_refused_without_reading_it_whole(server):
    """Against a real server: the limit holds for a body sent without Content-Length."""
    import time

    def chunks():
        yield b'{"text": "'
        for _ in range(2_000):  # 2 MB in all, sent chunked
            yield b"a" * 1_000
        yield b'"}'

    started = time.time()
    reply = httpx.post(f"http://127.0.0.1:{server}/api/ner/recognize", content=chunks(), headers={"content-type": "application/json"}, timeout=30)
    assert reply.status_code == 413 and time.time() - started < 10
    assert httpx.post(f"http://127.0.0.1:{server}/api/ner/recognize", json={"text": "Oslo"}, timeout=30).status_code == 200


def test_a_full_queue_answers_503_with_retry_after(tagger):
    with client_for(tagger, max_queued_texts=2) as client:
        full = client.post("/api/ner/recognize", json={"texts": ["Oslo", "Lima", "Perth"]})
        assert full.status_code == 503 and full.headers["retry-after"] == "1"
        assert client.post("/api/ner/recognize", json={"texts": ["Oslo", "Lima"]}).status_code == 200


def test_a_large_request_does_not_starve_small_ones():
    """Groups take turns one model call at a time: a small request that arrives while a large one
    works through its 50 calls finishes first, within a few calls."""
    import time

    from bner.serving.batching import MicroBatcher

    finished, calls = [], []

    def process(texts):
        for _ in range(50 if texts == ["large"] else 1):
            time.sleep(0.01)
            calls.append(texts[0])
            yield
        finished.append(texts[0])
        return texts

    batcher = MicroBatcher(process, max_batch_size=1, max_wait_ms=0)

    async def scenario():
        large = asyncio.ensure_future(batcher.submit(["large"]))
        await asyncio.sleep(0.1)
        assert await batcher.submit(["small"]) == ["small"]
        return await large

    try:
        assert asyncio.run(scenario()) == ["large"]
    finally:
        batcher.close()
    assert finished == ["small", "large"]
    # It arrived after about ten of the large request's calls and ran at the next turn.
    assert calls.count("large") == 50 and calls.index("small") <= 15


def test_a_request_of_a_few_calls_is_not_held_behind_every_heavy_one():
    """Eight heavy requests in flight: a request of five calls still finishes within about twice
    its own calls, since the lightest group gets a call every turn beside the oldest."""
    import time

    from bner.serving.batching import MicroBatcher

    calls = []

    def process(texts):
        for _ in range(5 if texts == ["medium"] else 40):
            time.sleep(0.002)
            calls.append(texts[0])
            yield
        return texts

    batcher = MicroBatcher(process, max_batch_size=1, max_wait_ms=0, call_pieces=100)

    async def scenario():
        heavy = [asyncio.ensure_future(batcher.submit([f"heavy{i}"], cost=5000)) for i in range(8)]
        await asyncio.sleep(0.05)
        arrived = len(calls)
        assert await batcher.submit(["medium"], cost=500) == ["medium"]
        done = len(calls)
        await asyncio.gather(*heavy)
        return arrived, done

    try:
        arrived, done = asyncio.run(scenario())
    finally:
        batcher.close()
    assert calls.count("medium") == 5 and done - arrived <= 2 * 5 + 2, calls[arrived:done]


def test_the_queue_is_bounded_in_word_pieces():
    """Past max_queued_pieces waiting, a request gets 503; alone, one within the per-request budget is always taken."""
    import threading

    from bner.serving.batching import MicroBatcher, Overloaded

    gate = threading.Event()

    def process(texts):
        gate.wait(10)
        return texts
        yield

    batcher = MicroBatcher(process, max_batch_size=1, max_wait_ms=0, max_queued_pieces=1000)

    async def scenario():
        first = asyncio.ensure_future(batcher.submit(["a"], cost=1000))
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded, match="word pieces are waiting"):
            await batcher.submit(["b"], cost=10)
        gate.set()
        await first
        return await batcher.submit(["c"], cost=1000)

    try:
        assert asyncio.run(scenario()) == ["c"]
    finally:
        batcher.close()
    with pytest.raises(ValueError, match="BNER_MAX_QUEUED_PIECES=100: must be at least BNER_MAX_PIECES"):
        ServingSettings.from_env({"BNER_MAX_QUEUED_PIECES": "100"})


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(["text", "texts", "include_tokens", "x"]), children, max_size=3),
    max_leaves=8,
)
ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=200)  # lone surrogates included


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(JSON_VALUES, st.fixed_dictionaries({"text": ANY_TEXT}), st.fixed_dictionaries({"texts": st.lists(ANY_TEXT, max_size=4)})))
def test_no_payload_produces_a_server_error(tagger, payload):
    import json

    with client_for(tagger) as client:
        response = client.post("/api/ner/recognize", content=json.dumps(payload).encode(), headers={"content-type": "application/json"})
    assert response.status_code in (200, 413, 422), response.text
    if response.status_code == 200:
        for result in response.json()["results"]:
            for e in result["entities"]:
                assert result["text"][e["start"] : e["end"]] == e["text"]


def test_steady_arrivals_do_not_starve_a_group_in_progress():
    """New work takes a call at once, and the oldest group still gets a call every turn."""
    import time

    from bner.serving.batching import MicroBatcher

    def process(texts):
        for _ in range(20 if texts == ["large"] else 1):
            time.sleep(0.005)
            yield
        return texts

    batcher = MicroBatcher(process, max_batch_size=1, max_wait_ms=0)

    async def scenario():
        large = asyncio.ensure_future(batcher.submit(["large"]))
        small = 0
        while not large.done():  # a new one-call request at every turn, for as long as it takes
            await batcher.submit(["small"])
            small += 1
            assert small < 200, "the large request made no progress"
        return await large

    try:
        assert asyncio.run(scenario()) == ["large"]
    finally:
        batcher.close()


@pytest.mark.parametrize("variable, value", [("BNER_MAX_BATCH_SIZE", "0"), ("BNER_MAX_QUEUED_TEXTS", "-1"), ("BNER_HEADER_TIMEOUT", "abc"),
                                             ("BNER_DECODING", "viterbi"), ("BNER_CONSISTENT", "maybe"),
                                             ("BNER_PROTECT_ALL", "ture")])  # a typo must not leave the endpoints open
def test_limits_that_cannot_work_are_refused(variable, value):
    with pytest.raises(ValueError, match=variable):
        ServingSettings.from_env({variable: value})


def test_work_for_a_client_that_left_is_dropped_before_the_model_call():
    """until_disconnected cancels the request's future; the batcher then skips it."""
    import threading

    from bner.serving.app import until_disconnected
    from bner.serving.batching import MicroBatcher

    gate, seen = threading.Event(), []

    def process(texts):
        seen.append(list(texts))
        if texts == ["first"]:
            gate.wait(5)  # the worker is busy while the second request waits in the queue
        yield
        return texts

    class GoneRequest:
        async def is_disconnected(self):
            return True

    batcher = MicroBatcher(process, max_batch_size=1, max_wait_ms=0)

    async def scenario():
        first = asyncio.ensure_future(batcher.submit(["first"]))
        await asyncio.sleep(0.1)
        gone = await until_disconnected(batcher.submit(["left"]), GoneRequest(), poll_seconds=0.05)
        gate.set()
        return gone, await first

    try:
        gone, first = asyncio.run(scenario())
    finally:
        batcher.close()
    assert gone is None and first == ["first"]
    assert ["left"] not in seen  # never reached the model


@contextlib.contextmanager
def uvicorn_in_a_thread(app, **config):
    """``app`` served by uvicorn in a thread of this process on a free loopback port, until the block ends."""
    import threading
    import time

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 10
        while not server.started:
            assert time.time() < deadline
            time.sleep(0.05)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_headers_deadline_holds_with_either_http_parser(parser):
    """The header deadline works on uvicorn's C parser (used when httptools is installed) and on
    its pure-Python fallback alike."""
    import socket

    from bner.serving.connections import protocol_with_limits

    if parser == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    async def app(scope, receive, send):
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

    with uvicorn_in_a_thread(app, http=protocol_with_limits(0.5, base=base)) as port:
        slowloris = socket.create_connection(("127.0.0.1", port))
        slowloris.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # headers never finish
        assert closed_within(slowloris, 3)
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "ok"
        slowloris.close()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as huge:  # headers of 1 MB
            with contextlib.suppress(OSError):  # the server may close before all is sent
                huge.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000)
            # h11 has a limit of its own (16 KiB) and answers 400 before this one would.
            assert huge.recv(100).startswith(b"HTTP/1.1 431" if parser == "httptools" else b"HTTP/1.1 400")
        # A body is no header, even one that arrives after its response (this app never reads it):
        # the next request on the connection is answered as usual.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n" + b"b" * 500_000
                           + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            replies = b""
            while chunk := client.recv(65536):
                replies += chunk
        assert replies.count(b"HTTP/1.1 200") == 2 and b"431" not in replies, replies


def test_an_unread_answer_is_dropped_and_probes_pass_the_connection_cap():
    """A client that never reads holds its connection only ``write_timeout`` seconds; with the
    connection cap full of idle sockets, other paths get 503 and the probes still answer."""
    import socket
    import time

    from bner.serving.connections import protocol_with_limits

    big = b"x" * 50_000_000  # far past the socket buffers of both ends

    async def app(scope, receive, send):
        if scope["type"] == "http":
            body = big if scope["path"] == "/big" else b"ok"
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

    with uvicorn_in_a_thread(app, limit_concurrency=3, http=protocol_with_limits(10.0, write_timeout=0.5)) as port:
        reader = socket.create_connection(("127.0.0.1", port))
        reader.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(2)  # never reading meanwhile
        reader.settimeout(5)
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := reader.recv(1 << 20):
                received += len(chunk)
        assert received < len(big)  # dropped before the whole answer went
        reader.close()

        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]  # the cap, held by sockets that send nothing
        time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 503
        assert httpx.get(f"http://127.0.0.1:{port}/api/ner/health", timeout=5).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/api/ner/ready?x=1", timeout=5).status_code == 200
        for s in idle:
            s.close()


def test_vertex_ai_custom_container_contract(tagger):
    """Vertex AI's variables pick the port, the model, the health and the predict routes; instances in, predictions out."""
    env = {"AIP_HTTP_PORT": "7080", "AIP_STORAGE_URI": "gs://bucket/model", "AIP_HEALTH_ROUTE": "/v1/health",
           "AIP_PREDICT_ROUTE": "/v1/endpoints/1/deployedModels/2:predict"}
    settings = ServingSettings.from_env(env)
    assert (settings.port, settings.model_dir) == (7080, "gs://bucket/model")
    assert ServingSettings.from_env({**env, "PORT": "9000", "MODEL_DIR": "/m"}).port == 9000  # ours win where set
    route = env["AIP_PREDICT_ROUTE"]
    with client_for(tagger, vertex_predict_route=route, vertex_health_route="/v1/health", api_key="k") as client:
        assert client.get("/v1/health").status_code == 200  # a health check sends no key
        body = {"instances": ["Anna Kowalski visited Lisbon .", {"text": "Lisbon", "id": 7}], "parameters": {"include_tokens": True}}
        answer = client.post(route, json=body, headers={"X-API-Key": "k"})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert [p["text"] for p in predictions] == ["Anna Kowalski visited Lisbon .", "Lisbon"]
        assert [e["text"] for e in predictions[0]["entities"]] == ["Anna Kowalski", "Lisbon"] and predictions[0]["tokens"]
        assert client.post(route, json={"instances": [5]}, headers={"X-API-Key": "k"}).status_code == 422
        assert client.post(route, json=body).status_code == 401
        too_many = client.post(route, json={"instances": ["a"] * 300}, headers={"X-API-Key": "k"})
        assert too_many.status_code == 413 and "limit" in too_many.json()["detail"]
    with pytest.raises(ValueError, match="AIP_PREDICT_ROUTE"):
        ServingSettings.from_env({"AIP_PREDICT_ROUTE": "predict"})


def test_every_setting_is_declared_once_and_documented_from_that_table():
    from bner.serving import settings as table

    docs = (Path(__file__).resolve().parents[1] / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert table.markdown_table() in docs, "docs/deploy.md's table is stale: paste `python -m bner.serving.settings` into it"
    chosen = ServingSettings.from_env({"BNER_CORS_ORIGINS": "https://a.example, https://b.example", "BNER_CONSISTENT": "no",
                                       "MODEL_VERSION": "3", "BNER_MAX_WAIT_MS": "0"})
    assert ServingSettings.from_env(chosen.environment()) == chosen  # what worker processes read back
    assert ServingSettings() == ServingSettings.from_env({})


def test_the_python_api_takes_what_the_server_takes(tagger):
    """Lone surrogates (valid in JSON) in words or texts read as U+FFFD, one for one; empty sentences get no tags."""
    assert tagger.tag(["\ud800", "Paris"]) == tagger.tag(["\ufffd", "Paris"])
    assert tagger.tag([[]]) == [[]] and tagger.tag([[], ["Paris"]])[0] == []
    assert [(e.start, e.end) for e in tagger("Paris \ud800 London")] == [(e.start, e.end) for e in tagger("Paris \ufffd London")]


def test_a_422_never_echoes_a_huge_field_name(tagger):
    with client_for(tagger) as client:
        response = client.post("/api/ner/recognize", json={"text": "a", "x" * 100_000: 1})
    assert response.status_code == 422 and len(response.content) < 500


def test_sighup_stops_the_server_with_a_line_that_says_so(export):
    import signal
    import subprocess
    import sys
    import time

    port = free_port()
    # One process: with worker processes, uvicorn's supervisor takes SIGHUP as "restart the workers".
    process = subprocess.Popen([sys.executable, "-m", "bner.serving", "--model_dir", export[2], "--host", "127.0.0.1", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "WEB_CONCURRENCY": "1"})
    try:
        deadline = time.time() + 120
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/api/ner/health", timeout=5).status_code == 200:
                    break
            assert process.poll() is None and time.time() < deadline
            time.sleep(0.3)
        process.send_signal(signal.SIGHUP)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert "SIGHUP: stopping after the requests in flight" in err and "Traceback" not in err


def test_a_port_in_use_is_reported_before_the_model_loads(export):
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        served = subprocess.run([sys.executable, "-m", "bner.serving", "--model_dir", export[2], "--host", "127.0.0.1",
                                 "--port", str(port)], capture_output=True, text=True, timeout=120)
    assert served.returncode == 2 and "Address already in use" in served.stderr and "serving" not in served.stdout


def test_the_docs_examples_succeed_and_error_bodies_match_the_schema(tagger):
    with client_for(tagger) as client:
        spec = client.get("/openapi.json").json()
        operation = spec["paths"]["/api/ner/recognize"]["post"]
        examples = operation["requestBody"]["content"]["application/json"]["examples"]
        assert examples and all(client.post("/api/ner/recognize", json=e["value"]).status_code == 200 for e in examples.values())
        for status in ("413", "422", "503"):
            schema = operation["responses"][status]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
            assert spec["components"]["schemas"][schema]["properties"]["detail"]["type"] == "string"
        invalid = client.post("/api/ner/recognize", json={"text": "a", "texts": ["b"]})
        assert invalid.status_code == 422 and isinstance(invalid.json()["detail"], str)
