"""Netlink dumps (links, addresses, routes, neighbours, listening sockets) of the calling thread's namespace.

pyroute2 parses the messages; what is not used is its socket layer. `import pyroute2` runs a package
__init__ that imports the whole library (IPDB, NDB, asyncio, nftables, wireless...): about 0.19 s, a third
of a diagnosis, for four dump requests. So pyroute2 is registered as a package whose __init__ runs only
when a name it defines is asked for (`from pyroute2 import IPRoute` anywhere still works: see
_defer_package_init), and only its message classes are imported (pyroute2.netlink.rtnl.*msg, ~0.03 s).
A dump is a few bytes sent on a plain netlink socket and the replies read until NLMSG_DONE.

Route dumps ask the kernel for one table (and, without RTM_F_CLONED, no cached exceptions) with strict dump
checking (NETLINK_GET_STRICT_CHK, Linux 4.20+): a host's local table holds a route per address and broadcast,
three quarters of its dump, and each message decoded costs. Older kernels ignore the filter and send
everything, so callers still filter what they get.

A link message carries some 45 attributes (statistics, per-protocol settings, queue sizes...), and
pyroute2 makes an object of each as it decodes: `links(attributes=...)` drops the others from each reply
before pyroute2 decodes it. Only the framing is read here (each attribute's 4-byte length and type); the
values kept are pyroute2's to decode. It halves the cost of a host's link dump (24 -> 12 ms for 57 links).

Listening sockets come from sock_diag. pyroute2's diag module imports its asyncio socket stack
(another ~0.05 s), so its one reply struct, inet_diag_msg (linux/inet_diag.h, a fixed kernel ABI), is
unpacked here with `struct`: a deliberate exception to "the library parses", for that cost.
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import os
import socket
import struct
import sys
import threading
import types
from dataclasses import dataclass
from typing import Callable, Iterable


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


def _defer_package_init(name: str) -> bool:
    """Register `name` with its __init__ deferred; False when it is already imported (or not installed)."""
    if name in sys.modules:
        return False  # already imported (whole): nothing to save
    spec = importlib.util.find_spec(name)
    if spec is None:
        return False  # not installed: the import below says so
    module = importlib.util.module_from_spec(spec)
    module.__class__ = _DeferredInitPackage
    sys.modules[name] = module
    return True


def _import_messages() -> tuple:
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.netlink.rtnl.ndmsg import ndmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    return ifaddrmsg, ifinfmsg, ndmsg, rtmsg


def _message_classes() -> tuple:
    """pyroute2's rtnl message classes without its package __init__, as pyroute2 0.7.1 to 0.9 lay them out
    (the range pyproject.toml allows, each checked). A pyroute2 laid out otherwise (message modules that
    only its __init__ makes importable, as 0.6's split packages did) gets the plain, whole import."""
    deferred = _defer_package_init("pyroute2")
    try:
        return _import_messages()
    except ImportError:
        if not deferred:
            raise
        for name in [m for m in sys.modules if m == "pyroute2" or m.startswith("pyroute2.")]:
            del sys.modules[name]  # the half-made package and what was imported under it
        importlib.import_module("pyroute2")
        return _import_messages()


ifaddrmsg, ifinfmsg, ndmsg, rtmsg = _message_classes()

NETLINK_SOCK_DIAG = 4
SOL_NETLINK, NETLINK_GET_STRICT_CHK = 270, 12
RTN_UNICAST, RTM_F_CLONED = 1, 0x200
NLM_F_REQUEST, NLM_F_DUMP, NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE, RTM_GETNEIGH = 18, 22, 26, 30
SOCK_DIAG_BY_FAMILY = 20
HEADER = struct.Struct("=IHHII")           # struct nlmsghdr
DIAG_REQUEST = struct.Struct("=BBBBI48x")  # struct inet_diag_req_v2, the socket id left zero: every socket
ATTEMPTS = 3                               # a dump interrupted by a concurrent change is asked again


class NetlinkError(OSError):
    pass


def open_here(protocol: int) -> socket.socket:
    """A netlink socket of the calling thread's namespace. A socket belongs to the namespace it was made in,
    whichever thread then uses it: a namespace's thread can open one and another thread dump through it."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)


Opener = Callable[[int], socket.socket]


def _dump(protocol: int, request: bytes, parse, strict: bool = False, opener: Opener | None = None) -> list:
    """Send one dump request (a full netlink message) and parse every reply until NLMSG_DONE. `strict`: the
    kernel applies the request's filters (where it knows strict checking; elsewhere it sends everything).
    `opener` makes the socket (default: in the calling thread's namespace)."""
    for _ in range(ATTEMPTS):
        interrupted = False
        found = []
        with (opener or open_here)(protocol) as sock:
            if strict:
                try:
                    sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
                except OSError:
                    pass  # before Linux 4.20: an unfiltered dump
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


NLA_HEADER = struct.Struct("=HH")  # struct nlattr: length, type
NLA_TYPE_MASK = 0x3FFF             # without NLA_F_NESTED and NLA_F_NET_BYTEORDER


def _attribute_types(message_class, names: Iterable[str]) -> frozenset[int]:
    """The attribute type numbers of `names`, from pyroute2's map of the message class (listed by position,
    or with their numbers)."""
    entries = message_class.nla_map
    if isinstance(entries[0][0], int):
        return frozenset(number for number, name, *_ in entries if name in names)
    return frozenset(number for number, (name, *_) in enumerate(entries) if name in names)


def _with_only(raw: bytes, start: int, types: frozenset[int]) -> bytes:
    """A reply with only the attributes of `types` (those from offset `start` on), its length set to match."""
    kept = [raw[HEADER.size:start]]
    offset = start
    while offset + NLA_HEADER.size <= len(raw):
        length, kind = NLA_HEADER.unpack_from(raw, offset)
        if length < NLA_HEADER.size:
            break  # malformed: what follows is left out, as pyroute2 would not read past it either
        step = (length + 3) & ~3
        if kind & NLA_TYPE_MASK in types:
            kept.append(raw[offset:offset + step])
        offset += step
    body = b"".join(kept)
    return struct.pack("=I", HEADER.size + len(body)) + raw[4:HEADER.size] + body


def _rtnl_dump(message_class, kind: int, convert: Callable, strict: bool = False, opener: Opener | None = None,
               attributes: Iterable[str] | None = None, **fields) -> list:
    request = message_class()
    request["header"] = {"type": kind, "flags": NLM_F_REQUEST | NLM_F_DUMP, "sequence_number": 1}
    for key, value in fields.items():
        request[key] = value
    request.encode()

    if attributes is not None:
        types = _attribute_types(message_class, attributes)
        start = (HEADER.size + struct.calcsize("=" + "".join(f for _, f in message_class.fields)) + 3) & ~3

    def parse(raw: bytes):
        # Converted one by one: a pyroute2 message is a few hundred objects in reference cycles (freed only by
        # the cyclic GC); a host's whole link dump held at once is 20 MB more peak memory.
        message = message_class(raw if attributes is None else _with_only(raw, start, types))
        message.decode()
        return convert(message)

    return _dump(socket.NETLINK_ROUTE, request.data, parse, strict, opener)


# Each returns pyroute2 messages as IPRoute's get_* would, or what `convert` makes of each; `opener` as in _dump.

def links(convert: Callable = _keep, opener: Opener | None = None, attributes: Iterable[str] | None = None) -> list:
    """`attributes`: the IFLA_* names `convert` reads (the others are not decoded); default all."""
    return _rtnl_dump(ifinfmsg, RTM_GETLINK, convert, opener=opener, attributes=attributes)


def addresses(convert: Callable = _keep, opener: Opener | None = None) -> list:
    return _rtnl_dump(ifaddrmsg, RTM_GETADDR, convert, opener=opener)


def routes(family: int, convert: Callable = _keep, table: int | None = None, cached: bool = False,
           opener: Opener | None = None) -> list:
    """With `table`, that table's unicast routes; with `cached`, the kernel's cached exceptions (learned path
    MTUs, redirects) only. Kernels before 4.20 send every route whatever is asked."""
    if table is None and not cached:
        return _rtnl_dump(rtmsg, RTM_GETROUTE, convert, opener=opener, family=family)
    try:
        return _rtnl_dump(rtmsg, RTM_GETROUTE, convert, strict=True, opener=opener, family=family, table=table or 0,
                          type=0 if cached else RTN_UNICAST, flags=RTM_F_CLONED if cached else 0)
    except NetlinkError as exc:
        if exc.errno == errno.ENOENT:  # IPv4 says so of a table that holds no route yet (a bare namespace)
            return []
        raise


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


def sockets(family: int, protocol: int, states: int, opener: Opener | None = None) -> list[DiagSocket]:
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

    return _dump(NETLINK_SOCK_DIAG, header + DIAG_REQUEST.pack(family, protocol, 0, 0, states), parse, opener=opener)
