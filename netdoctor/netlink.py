"""Netlink dumps (links, addresses, routes, neighbours, listening sockets) of the calling thread's namespace.

pyroute2 parses the messages; what is not used is its socket layer. `import pyroute2` runs a package
__init__ that imports the whole library (IPDB, NDB, asyncio, nftables, wireless...): about 0.19 s, a third
of a diagnosis, for four dump requests. So pyroute2 is registered as a package whose __init__ runs only
when a name it defines is asked for (`from pyroute2 import IPRoute` anywhere still works: see
_defer_package_init), and only its message classes are imported (pyroute2.netlink.rtnl.*msg, ~0.03 s).
A dump is a few bytes sent on a plain netlink socket and the replies read until NLMSG_DONE.

Listening sockets come from sock_diag. pyroute2's diag module imports its asyncio socket stack
(another ~0.05 s), so its one reply struct, inet_diag_msg (linux/inet_diag.h, a fixed kernel ABI), is
unpacked here with `struct`: a deliberate exception to "the library parses", for that cost.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import struct
import sys
import threading
import types
from dataclasses import dataclass
from typing import Callable


class _DeferredInitPackage(types.ModuleType):
    """A package whose __init__ has not run: submodules import as usual; the first other attribute asked
    for runs the real __init__, then answers from it."""

    def __getattr__(self, name: str):
        qualified = f"{self.__name__}.{name}"
        if importlib.util.find_spec(qualified) is not None:  # `from pyroute2 import config`: a submodule
            return importlib.import_module(qualified)
        with _init_lock:
            if not self.__dict__.get("_initialised"):
                self.__dict__["_initialised"] = True
                self.__spec__.loader.exec_module(self)
        try:
            return self.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}") from None


_init_lock = threading.RLock()


def _defer_package_init(name: str) -> None:
    if name in sys.modules:
        return  # already imported (whole): nothing to save
    spec = importlib.util.find_spec(name)
    module = importlib.util.module_from_spec(spec)
    module.__class__ = _DeferredInitPackage
    sys.modules[name] = module


_defer_package_init("pyroute2")

from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: E402
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: E402
from pyroute2.netlink.rtnl.ndmsg import ndmsg  # noqa: E402
from pyroute2.netlink.rtnl.rtmsg import rtmsg  # noqa: E402

NETLINK_SOCK_DIAG = 4
NLM_F_REQUEST, NLM_F_DUMP, NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE, RTM_GETNEIGH = 18, 22, 26, 30
SOCK_DIAG_BY_FAMILY = 20
HEADER = struct.Struct("=IHHII")           # struct nlmsghdr
DIAG_REQUEST = struct.Struct("=BBBBI48x")  # struct inet_diag_req_v2, the socket id left zero: every socket
ATTEMPTS = 3                               # a dump interrupted by a concurrent change is asked again


class NetlinkError(OSError):
    pass


def _dump(protocol: int, request: bytes, parse) -> list:
    """Send one dump request (a full netlink message) and parse every reply until NLMSG_DONE."""
    for _ in range(ATTEMPTS):
        interrupted = False
        found = []
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol) as sock:
            sock.bind((0, 0))
            sock.send(request)
            done = False
            while not done:
                data = sock.recv(1 << 20)
                offset = 0
                while offset + HEADER.size <= len(data):
                    length, kind, flags, _, _ = HEADER.unpack_from(data, offset)
                    if length < HEADER.size:
                        raise NetlinkError(0, "malformed netlink reply")
                    interrupted |= bool(flags & NLM_F_DUMP_INTR)
                    if kind == NLMSG_DONE:
                        done = True
                        break
                    if kind == NLMSG_ERROR:
                        error = -struct.unpack_from("=i", data, offset + HEADER.size)[0]
                        if error:
                            raise NetlinkError(error, f"netlink dump failed: {os.strerror(error)}")
                    else:
                        found.append(parse(data[offset:offset + length]))
                    offset += (length + 3) & ~3
        if not interrupted:
            return found
    return found


def _keep(message):
    return message


def _rtnl_dump(message_class, kind: int, convert: Callable, **fields) -> list:
    request = message_class()
    request["header"] = {"type": kind, "flags": NLM_F_REQUEST | NLM_F_DUMP, "sequence_number": 1}
    for key, value in fields.items():
        request[key] = value
    request.encode()

    def parse(raw: bytes):
        # Converted one by one: a pyroute2 message is a few hundred objects in reference cycles (freed only by
        # the cyclic GC); a host's whole link dump held at once is 20 MB more peak memory.
        message = message_class(raw)
        message.decode()
        return convert(message)

    return _dump(socket.NETLINK_ROUTE, request.data, parse)


# Each returns pyroute2 messages as IPRoute's get_* would, or what `convert` makes of each.

def links(convert: Callable = _keep) -> list:
    return _rtnl_dump(ifinfmsg, RTM_GETLINK, convert)


def addresses(convert: Callable = _keep) -> list:
    return _rtnl_dump(ifaddrmsg, RTM_GETADDR, convert)


def routes(family: int, convert: Callable = _keep) -> list:
    return _rtnl_dump(rtmsg, RTM_GETROUTE, convert, family=family)


def neighbours(family: int, convert: Callable = _keep) -> list:
    return _rtnl_dump(ndmsg, RTM_GETNEIGH, convert, family=family)


@dataclass(frozen=True)
class DiagSocket:
    """One socket as sock_diag reports it."""

    family: int
    state: int
    address: str
    port: int
    inode: int


# struct inet_diag_msg: family, state, timer, retrans (u8); sport, dport (big-endian u16); src, dst
# (16 bytes each, network order); interface (u32), cookie (2 x u32), expires, rqueue, wqueue, uid, inode (u32)
_DIAG_HEAD = struct.Struct("=BBBB")
_DIAG_PORTS = struct.Struct("!HH")
_DIAG_INODE_OFFSET = 4 + 4 + 32 + 4 + 8 + 16


def sockets(family: int, protocol: int, states: int) -> list[DiagSocket]:
    """SOCK_DIAG_BY_FAMILY for one address family and protocol, in the socket states of the bitmask `states`."""
    header = HEADER.pack(HEADER.size + DIAG_REQUEST.size, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    size = 4 if family == socket.AF_INET else 16

    def parse(raw: bytes) -> DiagSocket:
        body = HEADER.size
        family_, state, _, _ = _DIAG_HEAD.unpack_from(raw, body)
        sport, _ = _DIAG_PORTS.unpack_from(raw, body + 4)
        address = socket.inet_ntop(family_, raw[body + 8:body + 8 + size])
        (inode,) = struct.unpack_from("=I", raw, body + _DIAG_INODE_OFFSET)
        return DiagSocket(family_, state, address, sport, inode)

    return _dump(NETLINK_SOCK_DIAG, header + DIAG_REQUEST.pack(family, protocol, 0, 0, states), parse)
