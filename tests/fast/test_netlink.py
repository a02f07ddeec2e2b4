"""netdoctor.netlink read in the test's own network namespace, which needs no privilege: the dumps that the
checks' facts come from, and pyroute2 loaded without running its package __init__ unless asked to."""

import os
import socket
import subprocess
import sys

from netdoctor.facts import namespace
from netdoctor import netlink


def test_links_addresses_and_routes_of_this_namespace():
    links = namespace.read_links()
    assert any(link.name == "lo" and link.up for link in links)
    loopback = next(link for link in links if link.name == "lo")
    assert any(a.address == "127.0.0.1" and a.index == loopback.index for a in namespace.read_addresses())
    assert all(route.table == namespace.MAIN_TABLE for route in namespace.read_routes())


def test_a_listening_socket_is_found_with_its_inode():
    with socket.socket() as tcp, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("::1", 0))
        found = {(l.proto, l.address, l.port): l.inode for l in namespace.read_listeners()}
        for proto, sock in (("tcp", tcp), ("udp", udp)):
            address, port = sock.getsockname()[:2]
            inode = found.get((proto, address, port))
            assert inode == os.fstat(sock.fileno()).st_ino, (proto, address, port)


def test_neighbour_dump_parses():
    assert all(entry.get_attr("NDA_DST") for entry in netlink.neighbours(socket.AF_INET))


def test_pyroute2_is_not_imported_whole_until_a_name_of_its_package_is_asked_for():
    code = ("import sys; from netdoctor.facts import namespace; namespace.read_links(); "
            "print(len([m for m in sys.modules if m.startswith('pyroute2.')]), "
            "'pyroute2.ndb.main' in sys.modules); "
            "from pyroute2 import IPRoute; print('pyroute2.ndb.main' in sys.modules, IPRoute.__name__)")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # this interpreter's packages
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=environment).stdout.split()
    light, whole_before, whole_after, name = int(out[0]), out[1], out[2], out[3]
    assert whole_before == "False" and light < 60  # the message classes only
    assert whole_after == "True" and name == "IPRoute"  # `from pyroute2 import IPRoute` still works


def test_a_pyroute2_laid_out_otherwise_is_imported_whole(tmp_path):
    """A pyroute2 whose message modules only its __init__ makes importable (as 0.6's split packages did):
    netlink.py cannot skip that __init__, so it falls back to the plain import, and the dumps still work."""
    real = sys.modules["pyroute2"].__spec__.submodule_search_locations[0]
    package = tmp_path / "pyroute2"
    package.mkdir()
    (package / "__init__.py").write_text(f"__path__.append({real!r})  # the modules live elsewhere\n")
    code = ("import sys; from netdoctor.facts import namespace; links = namespace.read_links(); "
            "module = sys.modules['pyroute2']; print(any(l.name == 'lo' for l in links), type(module).__name__, module.__file__)")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *(p for p in sys.path if p)])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment)
    assert done.returncode == 0, done.stderr
    found_lo, kind, origin = done.stdout.split()
    assert found_lo == "True" and kind == "module" and origin == str(package / "__init__.py")
