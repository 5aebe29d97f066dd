"""Where bertfit writes: outputs checked against inputs and old outputs, staged beside, renamed when whole."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from bertfit.errors import DataError, OutputError
from bertfit.staging import check_file, check_folder, refuse_inputs, shown, staged_file, staged_folder, write_failure

# -- check_folder -----------------------------------------------------------------------------------


def test_check_folder_accepts_new_and_empty_folders(tmp_path):
    assert check_folder(tmp_path / "new" / "model", overwrite=False) is None
    (tmp_path / "empty").mkdir()
    assert check_folder(tmp_path / "empty", overwrite=False) is None
    assert not (tmp_path / "new").exists()  # checking writes nothing


def test_check_folder_refuses_a_file(tmp_path):
    target = tmp_path / "model"
    target.write_text("not a folder")
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="is a file"):
            check_folder(target, overwrite=overwrite)
    assert target.read_text() == "not a folder"


@pytest.mark.parametrize("marker", ["bertfit.json", "config.json", "model.onnx", "audit.csv"])
def test_overwrite_replaces_an_earlier_output_but_never_a_folder_of_other_files(tmp_path, marker):
    earlier = tmp_path / "model"
    earlier.mkdir()
    (earlier / marker).write_text("{}")
    assert check_folder(earlier, overwrite=True) is None
    home = tmp_path / "home"
    (home / "src").mkdir(parents=True)
    for name in ("notes.txt", "thesis.tex", "b.py", "a.py"):
        (home / name).write_text("mine")
    with pytest.raises(OutputError, match=r"holds files bertfit did not write \(a.py, b.py, notes.txt, ...\)"):
        check_folder(home, overwrite=True)
    assert sorted(p.name for p in home.iterdir()) == ["a.py", "b.py", "notes.txt", "src", "thesis.tex"]


def test_the_current_folder_and_those_above_it_are_never_an_output(tmp_path, monkeypatch):
    inside = tmp_path / "project" / "work"
    inside.mkdir(parents=True)
    (inside / "bertfit.json").write_text("{}")  # even an earlier model: replacing it would pull the floor away
    monkeypatch.chdir(inside)
    for out, where in ((Path("."), "is the current folder"), (Path(".."), "above the current folder"),
                       (inside, "is the current folder")):
        for overwrite in (False, True):
            with pytest.raises(OutputError, match=where):
                check_folder(out, overwrite=overwrite)
    assert (inside / "bertfit.json").exists()


def test_check_folder_refuses_an_unwritable_parent(tmp_path, monkeypatch):
    # Tests run as root, which ignores permission bits, so os.access stands in for chmod 0o500.
    seen = []

    def no_access(path, mode, *args, **kwargs):
        seen.append(Path(path))
        return False

    monkeypatch.setattr(os, "access", no_access)
    with pytest.raises(OutputError, match="permission denied") as caught:
        check_folder(tmp_path / "missing" / "model", overwrite=False)
    assert seen == [tmp_path]  # the nearest existing ancestor is the one probed
    assert str(tmp_path) in str(caught.value)


# -- refuse_inputs -----------------------------------------------------------------------------------


def test_an_output_may_not_be_an_input_a_link_to_one_or_a_folder_holding_one(tmp_path):
    data = tmp_path / "data" / "train.csv"
    data.parent.mkdir()
    data.write_text("text,label\n")
    link = tmp_path / "link.csv"
    link.symlink_to(data)
    hard = tmp_path / "hard.csv"
    os.link(data, hard)
    for out, how in ((data, "is the data"), (link, "is the data"), (hard, "is the data"),
                     (data.parent, "holds the data"), (tmp_path, "holds the data"),
                     (tmp_path / "data" / ".." / "data", "holds the data")):
        with pytest.raises(OutputError, match=how) as caught:
            refuse_inputs(out, "--out", {"the data": data})
        assert "pass another --out" in str(caught.value)
    assert data.read_text() == "text,label\n"


def test_outputs_inside_a_model_folder_are_refused_and_inside_a_data_folder_fine(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    inputs = {"the model folder": model, "a hub name": "org/name", "none": None, "stdin": "-"}
    sealed = ("the model folder",)
    refuse_inputs(tmp_path / "other", "--out", inputs, sealed=sealed)
    refuse_inputs(model / "report.html", "--out", inputs, sealed=sealed, allowed=(model / "report.html",))
    for out in (model / "report.html", model / "onnx", model / "config.json", model / "sub" / "deeper.jsonl"):
        with pytest.raises(OutputError, match="is inside the model folder") as caught:
            refuse_inputs(out, "--out", inputs, sealed=sealed)
        assert "beside it" in str(caught.value)
    (tmp_path / "data").mkdir()  # a folder of splits is read at its top only: a model folder inside it is fine
    refuse_inputs(tmp_path / "data" / "model", "--out", {"the data": tmp_path / "data"})
    assert sorted(p.name for p in model.iterdir()) == ["config.json"]


# -- check_file ------------------------------------------------------------------------------------


def test_an_existing_file_is_replaced_only_with_overwrite(tmp_path):
    target = tmp_path / "predictions.jsonl"
    target.write_text("keep")
    with pytest.raises(OutputError, match="exists; pass --overwrite"):
        check_file(target, overwrite=False)
    check_file(target, overwrite=True)
    with pytest.raises(OutputError, match="is a folder"):
        check_file(tmp_path, overwrite=True)
    with pytest.raises(OutputError, match="does not exist"):
        check_file(tmp_path / "missing" / "out.jsonl", overwrite=False)
    assert target.read_text() == "keep"


def test_a_fifo_or_a_device_is_never_an_output(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link.jsonl"
    link.symlink_to(fifo)
    for target in (fifo, link):
        for overwrite in (False, True):
            with pytest.raises(OutputError, match="is a FIFO \\(named pipe\\), not a file: give a file path, or "
                                                  "leave out --output to print to standard output"):
                check_file(target, overwrite, instead="print to standard output")
            with pytest.raises(OutputError, match="is a FIFO \\(named pipe\\), not a folder"):
                check_folder(target, overwrite)
    # Paths in /dev name devices whatever they resolve to (/dev/stdout may point at a file); only checked here.
    for device in ("/dev/stdout", "/dev/null", "/dev/bertfit-no-such-device"):
        with pytest.raises(OutputError, match="is a device, not a file"):
            check_file(Path(device), overwrite=True)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and link.is_symlink()


def test_a_path_with_a_newline_keeps_the_message_one_line(tmp_path):
    odd = tmp_path / "no\ndir" / "x.jsonl"
    with pytest.raises(OutputError) as caught:
        check_file(odd, overwrite=False)
    assert "\n" not in str(caught.value) and repr(str(odd.parent)) in str(caught.value)
    assert shown(tmp_path / "plain é.jsonl") == str(tmp_path / "plain é.jsonl")  # printable: as it is


# -- staged writing ----------------------------------------------------------------------------------


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_writing_a_folder_keeps_the_old_one(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "weights").write_text("old")
    with pytest.raises(OutputError, match="No space left on device") as caught:
        with staged_folder(target) as staging:
            (staging / "weights").write_text("new, half")
            _full_disk()
    assert "free some space" in str(caught.value) and "\n" not in str(caught.value)
    assert (target / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging folder left


def test_a_full_disk_while_writing_a_file_keeps_the_old_one(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old")
    with pytest.raises(OutputError, match="No space left on device"):
        with staged_file(target) as handle:
            handle.write("new")
            _full_disk()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_other_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(KeyError):
        with staged_folder(tmp_path / "model"):
            raise KeyError("not a write error")
    assert list(tmp_path.iterdir()) == []


def test_staged_files_get_the_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        with staged_folder(tmp_path / "model") as staging:
            secret = staging / "model.safetensors"
            secret.write_bytes(b"weights")
            secret.chmod(0o600)  # what the safetensors writer does
            (staging / "sub").mkdir(mode=0o700)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "model").rglob("*")}
    assert modes == {"model.safetensors": 0o644, "sub": 0o755}


def test_a_full_disk_is_found_under_the_writers_own_errors(tmp_path):
    target = tmp_path / "model"
    wrapped = RuntimeError("the exporter failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    torch_zip = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 9664 vs 9556")
    rust = Exception("Error while serializing: I/O error: No space left on device (os error 28)")
    for err in (wrapped, torch_zip, rust, OSError(errno.EROFS, "Read-only file system")):
        said, fix = write_failure(err, target)
        assert fix in ("free some space, or write elsewhere", "the filesystem is read-only: write elsewhere"), said
    with pytest.raises(OutputError, match=r"cannot write .*model \(PyTorch could not finish writing"):
        with staged_folder(target):
            raise torch_zip
    assert list(tmp_path.iterdir()) == []
    # No rights counts only at the output: an input that cannot be read is another problem.
    denied = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "data.csv"))
    assert write_failure(denied, target) is None
    assert write_failure(PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".model.tmp-1")), target)
    explained = DataError("the data is bad")
    explained.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert write_failure(explained, target) is None and write_failure(KeyError("x"), target) is None
