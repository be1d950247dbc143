"""download_file: localhost download, checksum, atomic cache (never the internet)."""

import hashlib

import pytest

from pl_pac_trs.data.download import ChecksumError, default_cache_dir, download_file, sha256_file

SHA = "094deafabf9c283fa92e25a4c8ceb4437e2262b82870ee89a72484382f5e7fa0"


def test_download_verify_and_reuse(served_record, tmp_path):
    url, served = served_record
    cache = tmp_path / "cache"
    path = download_file(url, SHA, cache_dir=cache)
    assert path == cache / "real_double_linear_h_1.txt" and sha256_file(path) == SHA
    assert sorted(p.name for p in cache.iterdir()) == ["real_double_linear_h_1.txt"]
    # A verified cached file is reused: the server no longer has it.
    (served / "real_double_linear_h_1.txt").unlink()
    assert download_file(url, SHA.upper(), cache_dir=cache) == path


def test_checksum_mismatch_leaves_no_cache_file(served_record, tmp_path):
    url, _ = served_record
    cache = tmp_path / "cache"
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as info:
        download_file(url, wrong, cache_dir=cache)
    message = str(info.value)
    assert url in message and wrong in message and SHA in message
    assert list(cache.iterdir()) == []


def test_corrupt_cached_file_is_replaced(served_record, tmp_path):
    url, _ = served_record
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "real_double_linear_h_1.txt").write_text("tampered")
    path = download_file(url, SHA, cache_dir=cache)
    assert sha256_file(path) == SHA


def test_failed_download_names_url_and_writes_nothing(file_server, tmp_path):
    _, base = file_server
    cache = tmp_path / "cache"
    with pytest.raises(OSError, match=f"download of {base}/missing.txt failed"):
        download_file(f"{base}/missing.txt", SHA, cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_argument_errors_and_default_dir(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="sha256 must be 64 hexadecimal digits"):
        download_file("http://127.0.0.1:9/x.txt", "abc", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="cannot derive a file name"):
        download_file("http://127.0.0.1:9/", SHA, cache_dir=tmp_path)
    monkeypatch.setenv("PL_PAC_TRS_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("PL_PAC_TRS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "pl_pac_trs"


def test_sha256_file(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc" * 1000)
    assert sha256_file(p, chunk_size=7) == hashlib.sha256(b"abc" * 1000).hexdigest()
