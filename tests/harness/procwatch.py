"""Watching /proc while a playbook runs: every process's argv checked for secrets, and fault triggers.

A trigger waits for a process by name (and, optionally, a word of its argv) that belongs to the run under test -
its argv, working directory or open files, or those of its parent and siblings, name one of the run's ``marks``
(the test's directory, its database name) - and then acts on it once: kill it, kill its parent (the module), stop
it while something else happens (the database server stopped, the disk filled), or kill the controller.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

POLL = 0.002
YOUNG = 0.5  # seconds a process's argv is read again (it may exec a new program right after its fork)


def _read(path, binary=False):
    try:
        with open(path, 'rb' if binary else 'r') as fileobj:
            return fileobj.read()
    except (OSError, UnicodeDecodeError):
        return None


def _links(pid):
    out = []
    for entry in ('cwd',):
        try:
            out.append(os.readlink('/proc/%d/%s' % (pid, entry)))
        except OSError:
            pass
    try:
        fds = os.listdir('/proc/%d/fd' % pid)
    except OSError:
        return out
    for fd in fds:
        try:
            out.append(os.readlink('/proc/%d/fd/%s' % (pid, fd)))
        except OSError:
            pass
    return out


def ppid_of(pid):
    text = _read('/proc/%d/stat' % pid)
    if not text:
        return None
    return int(text.rsplit(')', 1)[1].split()[1])


def comm_of(pid):
    text = _read('/proc/%d/comm' % pid)
    return text.strip() if text else None


def argv_of(pid):
    raw = _read('/proc/%d/cmdline' % pid, binary=True)
    return [a.decode(errors='replace') for a in raw.split(b'\0') if a] if raw else []


class Trigger:
    """Act once on the first process named ``name`` (with ``argv_has`` in its argv) that belongs to the run."""

    def __init__(self, name, action, argv_has=None, argv_lacks=None, sibling=None, any_owner=False):
        self.name = name
        self.any_owner = any_owner  # act on the first such process of anyone (for actions on the test's own servers)
        self.action = action  # callable(pid, watch)
        self.argv_has = argv_has
        self.argv_lacks = argv_lacks
        self.sibling = sibling  # the name of another process its parent started (zstd next to tar, not next to pg_dump)
        self.fired = None  # (pid, argv) once it acted
        self.error = None

    def named(self, comm):
        """``name`` is the process name (/proc/<pid>/comm); ending in ``*``, its beginning (python* for python3.11)."""
        if not comm:
            return False
        return comm.startswith(self.name[:-1]) if self.name.endswith('*') else comm == self.name

    def wants(self, pid, argv):
        if not argv or '--version' in argv:
            return False
        if self.argv_has and not any(self.argv_has in a for a in argv):
            return False
        if self.argv_lacks and any(self.argv_lacks in a for a in argv):
            return False
        if self.sibling:
            parent = ppid_of(pid)
            kids = [int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) != pid and ppid_of(int(p)) == parent]
            if not any(comm_of(k) == self.sibling for k in kids):
                return False
        return True


class Watch:
    """A thread polling /proc from start() to stop(); ``leaks`` lists argv holding a secret."""

    def __init__(self, secrets, marks, trigger=None):
        self.secrets = [s.encode() for s in secrets if s]
        self.marks = [str(m) for m in marks if m]
        self.trigger = trigger
        self.leaks = []
        self.sampled = 0
        self.seen_names = set()
        self.controller = None  # the ansible-playbook Popen, for kill-the-controller
        self._seen = set()
        self._first = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._scan()
        self._stop.set()
        self._thread.join(30)

    def _loop(self):
        while not self._stop.is_set():
            self._scan()
            time.sleep(POLL)

    def belongs(self, pid):
        """Whether ``pid`` works for the run: its argv, cwd or files, or its parent's, or (slower) its siblings'."""
        parent = ppid_of(pid)
        near = [pid] + ([parent] if parent else [])
        if any(self._names_mark(member) for member in near):
            return True
        if parent:
            siblings = [int(o) for o in os.listdir('/proc') if o.isdigit() and int(o) != pid and ppid_of(int(o)) == parent]
            return any(self._names_mark(member) for member in siblings)
        return False

    def _names_mark(self, pid):
        texts = argv_of(pid) + _links(pid)
        return any(mark in text for mark in self.marks for text in texts)

    def _scan(self):
        try:
            pids = os.listdir('/proc')
        except OSError:
            return
        now = time.time()
        trig = self.trigger
        for name in pids:
            if not name.isdigit():
                continue
            pid = int(name)
            first = self._first.get(pid)
            if first is not None and now - first > YOUNG:
                continue  # an older process: its argv was read while it was young (a fork execs at once)
            raw = _read('/proc/%d/cmdline' % pid, binary=True)
            if not raw:
                continue  # gone, or a zombie
            if first is None:
                self._first[pid] = now
            key = (pid, raw)
            if key in self._seen:
                continue
            self._seen.add(key)
            self.sampled += 1
            if any(secret in raw for secret in self.secrets):
                self.leaks.append(raw.split(b'\0'))
            comm = comm_of(pid)
            if self.belongs_cheap(raw):
                self.seen_names.add(comm)
            if trig is None or trig.fired or not trig.named(comm):
                continue
            argv = [a.decode(errors='replace') for a in raw.split(b'\0') if a]
            if not trig.wants(pid, argv) or not (trig.any_owner or self.belongs_cheap(raw) or self.belongs(pid)):
                continue
            trig.fired = (pid, argv)
            try:
                trig.action(pid, self)
            except Exception as exc:  # reported by the test
                trig.error = repr(exc)

    def belongs_cheap(self, raw):
        return any(mark.encode() in raw for mark in self.marks)


# -- actions -------------------------------------------------------------------------------------------------------
def kill(pid, _watch):
    os.kill(pid, signal.SIGKILL)


def kill_parent(pid, _watch):
    """Kill the module: the Python process that started the tool."""
    parent = ppid_of(pid)
    if not parent or not (comm_of(parent) or '').startswith('python'):
        raise RuntimeError('the parent of %d is %s, not a module' % (pid, comm_of(parent) if parent else None))
    os.kill(parent, signal.SIGKILL)


def while_stopped(work):
    """An action that freezes the process, runs ``work()``, then lets the process go on (into the fault)."""
    def action(pid, _watch):
        os.kill(pid, signal.SIGSTOP)
        try:
            work()
        finally:
            os.kill(pid, signal.SIGCONT)
    return action


def kill_sibling(name, timeout=5):
    """An action on a pipeline's first stage: freeze it, kill -9 the stage called ``name`` started next to it."""
    def work_on(pid):
        parent = ppid_of(pid)
        deadline = time.time() + timeout
        while time.time() < deadline:
            for other in os.listdir('/proc'):
                if other.isdigit() and int(other) != pid and ppid_of(int(other)) == parent and comm_of(int(other)) == name:
                    os.kill(int(other), signal.SIGKILL)
                    return
            time.sleep(0.005)
        raise RuntimeError('no %s next to %d' % (name, pid))

    def action(pid, _watch):
        os.kill(pid, signal.SIGSTOP)
        try:
            work_on(pid)
        finally:
            os.kill(pid, signal.SIGCONT)
    return action


def kill_controller(_pid, watch):
    """The controller dies: ansible-playbook and its workers, at once (what the host sees when the controller is lost)."""
    os.killpg(watch.controller.pid, signal.SIGKILL)


def fill(directory, name='.filler'):
    """Fill the filesystem of ``directory`` with a file until it is full; return the file."""
    path = Path(directory) / name
    chunk = b'\0' * (1024 * 1024)
    with open(path, 'wb', buffering=0) as fileobj:
        try:
            while True:
                fileobj.write(chunk)
        except OSError:
            pass
        try:
            while True:
                fileobj.write(b'\0' * 4096)
        except OSError:
            pass
    return path


def wait_quiet(marks, timeout=60):
    """Wait until no process belongs to the run any more (orphans of a killed module finish or die)."""
    deadline = time.time() + timeout
    me = os.getpid()
    while time.time() < deadline:
        busy = []
        for name in os.listdir('/proc'):
            if not name.isdigit() or int(name) == me:
                continue
            raw = _read('/proc/%s/cmdline' % name, binary=True) or b''
            if b'pytest' in raw:
                continue
            if any(str(m).encode() in raw for m in marks):
                busy.append(raw.split(b'\0')[:3])
        if not busy:
            return []
        time.sleep(0.2)
    return busy


def run_watched(argv, env, watch):
    """Run ansible-playbook in its own process group under ``watch``; return the CompletedProcess-like result."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    watch.controller = proc
    watch.start()
    try:
        out, err = proc.communicate()
    finally:
        watch.stop()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)
