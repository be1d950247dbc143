"""Fixtures of the data tests: a localhost file server (the record: ``record_path`` in
``tests/conftest.py``)."""

import functools
import http.server
import shutil
import threading

import pytest

#: The name the record is served under (the URL's file name, as in the shipped default URL).
RECORD_NAME = "real_double_linear_h_1.txt"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def file_server(tmp_path):
    """Serve ``tmp_path / "served"`` on 127.0.0.1 (random port); yields (directory, base url)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def served_record(file_server, record_path):
    """(url of a localhost copy of the record, directory it is served from)."""
    served, base = file_server
    shutil.copy(record_path, served / RECORD_NAME)
    return f"{base}/{RECORD_NAME}", served
