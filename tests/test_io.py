import os

import pytest

from bner import io


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = str(tmp_path / "sub" / "result.txt")
    io.write_text(path, "first")
    io.write_text(path, "second")
    assert io.read_text(path) == "second"
    assert os.listdir(tmp_path / "sub") == ["result.txt"]


def test_staged_directory_appears_only_when_complete(tmp_path):
    final = str(tmp_path / "export" / "1")
    with pytest.raises(RuntimeError):
        with io.staged_directory(final) as staging:
            with open(os.path.join(staging, "half"), "w") as f:
                f.write("x")
            raise RuntimeError("interrupted")
    assert not os.path.exists(final)
    assert os.listdir(tmp_path / "export") == []
    with io.staged_directory(final) as staging:
        with open(os.path.join(staging, "saved_model.pb"), "w") as f:
            f.write("x")
    assert os.listdir(final) == ["saved_model.pb"]


def test_fsspec_urls_work_through_the_same_functions():
    base = "memory://bner-test"
    io.write_text(io.join(base, "a.txt"), "hello")
    assert io.exists(io.join(base, "a.txt")) and io.read_text(io.join(base, "a.txt")) == "hello"
    assert io.listdir(base) == ["a.txt"]
    with io.local_copy(io.join(base, "a.txt")) as local:
        assert open(local).read() == "hello"
    with io.staged_directory(io.join(base, "export", "1")) as staging:
        with open(os.path.join(staging, "m.pb"), "w") as f:
            f.write("x")
    assert io.listdir(io.join(base, "export", "1")) == ["m.pb"]
    assert io.listdir(io.join(base, "export")) == ["1"]


def test_a_url_whose_file_system_is_not_installed_is_a_clear_error():
    with pytest.raises(ValueError, match="needs an extra package"):
        io.exists("oci://bucket@namespace/file")  # a known protocol whose package (ocifs) is not installed


def test_staging_left_by_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (tmp_path / f".tmp-{dead}-0123abcd-3").mkdir()  # a killed exporter's half-written version
    (tmp_path / f".tmp-{os.getpid()}-89abcdef-4").mkdir()  # a writer that still runs (this one)
    (tmp_path / ".tmp-deadbeef-5").mkdir()  # not bner's pattern: left alone
    with io.staged_directory(str(tmp_path / "6")) as staging:
        open(os.path.join(staging, "f"), "w").close()
    assert sorted(os.listdir(tmp_path)) == [f".tmp-{os.getpid()}-89abcdef-4", ".tmp-deadbeef-5", "6"]
