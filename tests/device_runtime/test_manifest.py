"""The manifest verifier both bundle kinds use: every listed file present, of its size and
SHA-256, nothing unlisted, no name that leaves the folder."""

from __future__ import annotations

import json

import pytest

from fedlora.device_runtime.manifest import (
    MANIFEST,
    ManifestError,
    WrongFormat,
    file_entries,
    parse_manifest,
    read_files,
    verify_files,
)

FILES = {"a.bin": b"abc", "b.bin": b""}


def manifest(listing: dict | None = None) -> dict:
    return {"format": "test/1", "files": file_entries(FILES) if listing is None else listing}


def test_file_entries_golden():
    assert file_entries({"a.bin": b"abc"}) == {
        "a.bin": {"sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "bytes": 3}
    }


def test_parse_accepts_its_format_only():
    data = json.dumps(manifest()).encode()
    assert parse_manifest(data, "test/1")["files"] == file_entries(FILES)
    with pytest.raises(WrongFormat, match="format 'test/1', expected 'other/1'") as caught:
        parse_manifest(data, "other/1")
    assert caught.value.found == "test/1"
    with pytest.raises(WrongFormat, match="format 'list'"):
        parse_manifest(b"[1]", "test/1")
    with pytest.raises(ManifestError, match="not valid JSON"):
        parse_manifest(b'{"format":', "test/1")


def test_verify_accepts_exactly_the_listed_files():
    verify_files(manifest(), {MANIFEST: b"{}", **FILES})


@pytest.mark.parametrize("files, message", [
    ({"a.bin": b"abc"}, "b.bin is listed in manifest.json but missing"),
    ({"a.bin": b"ab", "b.bin": b""}, "a.bin is 2 bytes, manifest.json says 3 (truncated or replaced)"),
    ({"a.bin": b"abd", "b.bin": b""}, "a.bin has SHA-256"),
    ({**FILES, "c.bin": b""}, "holds ['c.bin'], which manifest.json does not list"),
])
def test_verify_refuses(files, message):
    with pytest.raises(ManifestError) as caught:
        verify_files(manifest(), files)
    assert message in str(caught.value)


@pytest.mark.parametrize("name", ["../a.bin", "sub/a.bin", "sub\\a.bin", "..", ".", "", MANIFEST])
def test_names_must_stay_in_the_folder(name):
    with pytest.raises(ManifestError, match="not a plain file name"):
        verify_files(manifest({name: file_entries({"x": b""})["x"]}), {})


@pytest.mark.parametrize("entry", [{"sha256": "0"}, {"bytes": 0}, {"sha256": "0", "bytes": True}, "0"])
def test_entries_need_a_hash_and_a_size(entry):
    with pytest.raises(ManifestError, match="needs 'sha256'"):
        verify_files(manifest({"a.bin": entry}), {})


def test_a_folder_may_hold_the_allowed_unlisted_names_only(tmp_path):
    for name, data in FILES.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / MANIFEST).write_text("{}")
    (tmp_path / "manifest.sig").write_bytes(b"sig")
    assert read_files(tmp_path, manifest(), unlisted=(MANIFEST, "manifest.sig")) == FILES
    with pytest.raises(ManifestError, match=r"holds \['manifest.sig'\]"):
        read_files(tmp_path, manifest())
    (tmp_path / "b.bin").unlink()
    (tmp_path / "b.bin").mkdir()  # a folder where a file should be
    with pytest.raises(ManifestError, match="b.bin is listed in manifest.json but missing"):
        read_files(tmp_path, manifest(), unlisted=(MANIFEST, "manifest.sig"))
