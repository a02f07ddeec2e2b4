"""facts.processes reads a process's name and command line as psutil reads them (it stopped importing psutil
for speed): the same answers for every process of this machine, and for the awkward command lines."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import psutil

from netdoctor.facts import processes


def psutil_reading(pid: int):
    try:
        proc = psutil.Process(pid)
        return proc.name(), tuple(proc.cmdline())
    except psutil.Error:
        return None


def ours(pid: int):
    found = processes.process(pid)
    return None if found is None else (found.name, found.cmdline)


def test_every_process_of_this_machine_reads_as_psutil_reads_it():
    pids = psutil.pids()
    differing = [(pid, ours(pid), psutil_reading(pid)) for pid in pids if ours(pid) != psutil_reading(pid)]
    # a process may start or exit between the two readings: only a difference that stays is one
    differing = [d for d in differing if ours(d[0]) != psutil_reading(d[0]) and psutil.pid_exists(d[0])]
    assert not differing, differing[:5]
    assert len(pids) > 1


def test_a_name_the_kernel_truncated_is_completed_from_the_command_line(tmp_path):
    program = tmp_path / "a-program-with-a-long-name"
    program.symlink_to(sys.executable)
    child = subprocess.Popen([str(program), "-c", "import time; print('ready', flush=True); time.sleep(30)",
                              "two words"], stdout=subprocess.PIPE, text=True)
    try:
        child.stdout.readline()
        assert ours(child.pid) == psutil_reading(child.pid)
        assert ours(child.pid)[0] == "a-program-with-a-long-name" and ours(child.pid)[1][-1] == "two words"
    finally:
        child.kill()
        child.wait()
    assert processes.process(child.pid) is None  # reaped: gone


def test_arguments_separated_by_spaces_or_nuls():
    assert processes._arguments("") == []
    assert processes._arguments("a\x00b c\x00") == ["a", "b c"]
    assert processes._arguments("nginx: worker process\x00") == ["nginx:", "worker", "process"]
    assert processes._arguments("title with spaces ") == ["title", "with", "spaces"]


def test_a_socket_of_this_process_is_found_with_its_holder():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        inode = os.fstat(sock.fileno()).st_ino
        assert os.getpid() in processes.socket_holders()[inode]
