"""The Engine API client's own HTTP/1.1 exchange (netdoctor/dockerapi.py, over http.client) against
answers written byte by byte on a Unix socket: every way an HTTP server may delimit a body, interim answers,
connections kept or closed, and answers that are not HTTP at all."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from netdoctor.dockerapi import DockerSession, DockerUnavailable

DOC = json.dumps({"ServerVersion": "28.5.2", "Name": "é" * 3000}).encode()  # bigger than one recv of small chunks


def chunked(body: bytes, size: int = 1000) -> bytes:
    parts = [b"%x;ext=1\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\nX-Trailer: yes\r\n\r\n"


ANSWERS = {
    "content-length": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(DOC) + DOC,
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(DOC),
    "interim": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(DOC) + DOC,
    "http/1.0": b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + DOC,
    "close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(DOC) + DOC,
}


class Server:
    """Answers each request on a connection with the next of `answers` (bytes), in pieces of `piece` bytes;
    closes the connection after an answer marked to (HTTP/1.0, Connection: close) or when told to."""

    def __init__(self, path: str, answers: list[bytes], piece: int = 7):
        self.answers = list(answers)
        self.piece = piece
        self.connections = 0
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.talk, args=(conn,), daemon=True).start()

    def talk(self, conn):
        with conn:
            request = b""
            while self.answers:
                while b"\r\n\r\n" not in request:
                    data = conn.recv(4096)
                    if not data:
                        return
                    request += data
                request = request.partition(b"\r\n\r\n")[2]
                answer = self.answers.pop(0)
                for i in range(0, len(answer), self.piece):
                    conn.sendall(answer[i:i + self.piece])
                if answer.startswith(b"HTTP/1.0") or b"Connection: close" in answer:
                    return

    def close(self):
        self.listener.close()


@pytest.fixture
def serve(tmp_path, monkeypatch):
    servers = []

    def start(answers, piece=7):
        path = str(tmp_path / f"engine{len(servers)}.sock")
        servers.append(Server(path, answers, piece))
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize("kind", sorted(ANSWERS))
def test_every_way_a_body_is_delimited(serve, kind):
    serve([ANSWERS[kind]])
    assert DockerSession().info() == json.loads(DOC)


def test_a_kept_alive_connection_serves_the_next_request_and_a_closed_one_is_replaced(serve):
    server = serve([ANSWERS["chunked"], ANSWERS["content-length"].replace(b"28.5.2", b"28.5.3"), ANSWERS["close"],
                    ANSWERS["http/1.0"]], piece=4096)
    engine = DockerSession().engine
    assert engine.get("/info")["ServerVersion"] == "28.5.2"
    assert engine.get("/version")["ServerVersion"] == "28.5.3"
    assert server.connections == 1  # the same connection twice
    engine.get("/info")  # answered with Connection: close
    engine.get("/info")  # so this one needs a new connection
    assert server.connections == 2


def test_answers_that_are_not_http_or_cut_short_are_named(serve):
    serve([b"SSH-2.0-OpenSSH_9.2\r\n\r\n"])
    with pytest.raises(DockerUnavailable, match=r"not reachable \(SSH-2.0-OpenSSH_9.2"):
        DockerSession().info()
    serve([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"cut\": "])
    with pytest.raises(DockerUnavailable, match=r"not reachable \(IncompleteRead"):
        DockerSession().info()
