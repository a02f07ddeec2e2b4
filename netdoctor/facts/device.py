"""What a network device is, beyond netlink's link dump: its driver, its offload features, whether it is wireless.

`read(ifname)` runs on a namespace thread (through `NamespaceView.read`): the ethtool calls go through sockets
made on that thread, so they see that namespace's device of that name. Offloads come from pyroute2's
ethtool (netlink, with its ioctl fallback); the driver name from the ETHTOOL_GDRVINFO ioctl, which pyroute2
does not wrap.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
from dataclasses import dataclass, field

SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO = 0x00000003
IFNAMSIZ = 16


class _DrvInfo(ctypes.Structure):
    _fields_ = [("cmd", ctypes.c_uint32), ("driver", ctypes.c_char * 32), ("version", ctypes.c_char * 32),
                ("fw_version", ctypes.c_char * 32), ("bus_info", ctypes.c_char * 32),
                ("erom_version", ctypes.c_char * 32), ("reserved2", ctypes.c_char * 12),
                ("n_priv_flags", ctypes.c_uint32), ("n_stats", ctypes.c_uint32), ("testinfo_len", ctypes.c_uint32),
                ("eedump_len", ctypes.c_uint32), ("regdump_len", ctypes.c_uint32)]


@dataclass(frozen=True)
class Device:
    name: str
    driver: str                   # "" when the device has no ethtool driver info
    features: dict[str, bool] = field(default_factory=dict)  # ethtool -k names -> enabled
    wireless: bool | None = None  # None: unknown (sysfs shows another namespace than this one)
    error: str = ""               # why driver/features could not be read


def _driver(ifname: str) -> str:
    info = _DrvInfo(cmd=ETHTOOL_GDRVINFO)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ifreq = struct.pack(f"{IFNAMSIZ}sP", ifname.encode(), ctypes.addressof(info))
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
    return info.driver.decode(errors="replace")


def _features(ifname: str) -> dict[str, bool]:
    from pyroute2.ethtool import Ethtool

    ethtool = Ethtool()
    try:
        return {name: bool(feature.enable) for name, feature in ethtool.get_features(ifname).features.items()}
    finally:
        ethtool.close()


def _wireless(ifname: str) -> bool | None:
    """/sys/class/net shows the namespace sysfs was mounted in (the host's): trust it only from there."""
    from netdoctor.targets import default_host_netns

    host, _ = default_host_netns()
    if host is None or os.stat("/proc/thread-self/ns/net").st_ino != os.stat(host).st_ino:
        return None
    base = f"/sys/class/net/{ifname}"
    try:
        with open(f"{base}/ifindex") as f:
            if int(f.read()) != socket.if_nametoindex(ifname):
                return None
    except (OSError, ValueError):
        return None
    return os.path.exists(f"{base}/wireless") or os.path.exists(f"{base}/phy80211")


def read(ifname: str) -> Device:
    """Run on the namespace thread."""
    try:
        driver, features = _driver(ifname), _features(ifname)
    except Exception as exc:  # a device without ethtool support is still a device
        return Device(ifname, "", {}, _wireless(ifname), error=f"{type(exc).__name__}: {exc}")
    return Device(ifname, driver, features, _wireless(ifname))
