"""probes/dns.query against a resolver of the test's own on loopback (no privilege needed): every outcome the
dns check judges, from the real exchange on a connected UDP socket."""

from __future__ import annotations

import socket
import threading

import dns.message
import pytest

from netdoctor.lab.resolver import Resolver
from netdoctor.probes.dns import query


class ThisNamespace:
    """The probe's view of a namespace: here, the test's own."""

    def socket(self, family, type, proto=0):
        return socket.socket(family, type, proto)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def resolver():
    started = []

    def start(behaviour="answer"):
        server = Resolver("127.0.0.1", free_udp_port(), records={"known.test": "192.0.2.7"}, behaviour=behaviour).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.mark.parametrize("name, outcome, addresses", [("known.test", "answer", ("192.0.2.7",)),
                                                      ("missing.test", "nxdomain", ())])
def test_answers_and_nxdomain(resolver, name, outcome, addresses):
    server = resolver()
    result = query(ThisNamespace(), "127.0.0.1", name, 2.0, port=server.port)
    assert (result.outcome, result.addresses, result.server_answered) == (outcome, addresses, True)
    assert server.queries == [name]


def test_servfail(resolver):
    result = query(ThisNamespace(), "127.0.0.1", "known.test", 2.0, port=resolver("servfail").port)
    assert (result.outcome, result.error) == ("servfail", "SERVFAIL")


def test_a_silent_server_times_out_after_the_timeout(resolver):
    result = query(ThisNamespace(), "127.0.0.1", "known.test", 0.3, port=resolver("silent").port)
    assert result.outcome == "timeout" and 250 <= result.latency_ms < 2000


def test_no_server_listening_is_refused():
    result = query(ThisNamespace(), "127.0.0.1", "known.test", 2.0, port=free_udp_port())
    assert result.outcome == "refused" and result.latency_ms < 1000


def _one_reply(reply) -> int:
    """A server that answers one query with reply(query_wire): the port it listens on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def serve():
        with sock:
            wire, peer = sock.recvfrom(65535)
            sock.sendto(reply(wire), peer)

    threading.Thread(target=serve, daemon=True).start()
    return sock.getsockname()[1]


def test_a_reply_to_another_question_is_an_error():
    def other_question(wire):
        asked = dns.message.from_wire(wire)
        return dns.message.make_response(dns.message.make_query("other.test", "A", id=asked.id)).to_wire()

    result = query(ThisNamespace(), "127.0.0.1", "known.test", 2.0, port=_one_reply(other_question))
    assert result.outcome == "error" and "question" in result.error


def test_garbage_is_an_error():
    result = query(ThisNamespace(), "127.0.0.1", "known.test", 2.0, port=_one_reply(lambda wire: b"\x00\x01"))
    assert result.outcome == "error" and result.error
