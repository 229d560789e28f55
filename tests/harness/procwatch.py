"""Watching /proc while a playbook runs: every process's argv checked for secrets, and fault triggers.

A trigger waits for a process by name (and, optionally, a word of its argv) that belongs to the run under test -
its argv, working directory or open files, or those of its parent and siblings, name one of the run's ``marks``
(the test's directory, its database name) - and then acts on it once: kill it, kill its parent (the module), stop
it while something else happens (the database server stopped, the disk filled), or kill the controller.

Every action freezes its process (SIGSTOP) before it acts and checks that the process is still alive then, so a
short phase cannot end between "seen" and "hit"; it reports what it did in ``Trigger.injected``. An action that
could not act (its process already gone, the disk not full after filling it) sets ``Trigger.error`` instead: the
case then fails, it never passes without its fault.
"""

from __future__ import annotations

import os
import signal
import socket
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


def state_of(pid):
    """The process state letter (R, S, D, T, Z, ...) or None when it is gone."""
    text = _read('/proc/%d/stat' % pid)
    return text.rsplit(')', 1)[1].split()[0] if text else None


class NotInjected(RuntimeError):
    """The action could not inject its fault (its process ended first, ...)."""


class Ended(NotInjected):
    """The process ended before it could be frozen: too short-lived to be hit (the trigger waits for the next one)."""


def freeze(pid, timeout=5):
    """SIGSTOP ``pid`` and wait until it is stopped; NotInjected when it has already ended (gone or a zombie)."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        raise Ended('%d ended before it could be frozen' % pid) from None
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = state_of(pid)
        if state in (None, 'Z', 'X'):
            raise Ended('%d ended before it could be frozen' % pid)
        if state in ('T', 't'):
            return
        time.sleep(0.001)
    state = state_of(pid)
    thaw(pid)  # not left stopped for the next step to trip over
    raise NotInjected('%d did not stop within %d s (state %s)' % (pid, timeout, state))


def thaw(pid):
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def argv_of(pid):
    raw = _read('/proc/%d/cmdline' % pid, binary=True)
    return [a.decode(errors='replace') for a in raw.split(b'\0') if a] if raw else []


MAX_MISSED = 10  # matching processes a trigger lets go by because they ended before they could be frozen


class Trigger:
    """Act once on the first process named ``name`` (with ``argv_has`` in its argv) that belongs to the run."""

    def __init__(self, name, action, argv_has=None, argv_lacks=None, sibling=None, any_owner=False, parent_has=None):
        self.name = name
        self.parent_has = parent_has  # a word of the parent's argv (the module that started the tool)
        self.any_owner = any_owner  # act on the first such process of anyone (for actions on the test's own servers)
        self.action = action  # callable(pid, watch)
        self.argv_has = argv_has
        self.argv_lacks = argv_lacks
        self.sibling = sibling  # the name of another process its parent started (zstd next to tar, not next to pg_dump)
        self.fired = None  # (pid, argv) once it acted
        self.injected = None  # what the action did, once it did it
        self.error = None
        self.missed = []  # processes that ended before the action could freeze them (a later one is taken)
        self.threads = []  # actions that wait for a later moment of their process run in a thread

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
        if self.parent_has and not any(self.parent_has in a for a in argv_of(ppid_of(pid) or 0)):
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
        for thread in self.trigger.threads if self.trigger else ():
            thread.join(60)

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
                done = trig.action(pid, self)
                if done:  # an action that waits in a thread sets it there
                    trig.injected = done
            except Ended as exc:
                # Nothing was done to it: a short-lived process of the same name (the manifest read before a
                # restore's verifying pass) went by. The next one that matches is the target.
                trig.missed.append(str(exc))
                if len(trig.missed) < MAX_MISSED:
                    trig.fired = None
                else:
                    trig.error = 'every one of %d matching processes ended before it could be frozen' % len(trig.missed)
            except Exception as exc:  # reported by the test
                trig.error = repr(exc)

    def belongs_cheap(self, raw):
        return any(mark.encode() in raw for mark in self.marks)


# -- actions: each returns what it did (Trigger.injected) or raises NotInjected ------------------------------------
def kill(pid, _watch):
    """kill -9 the process, frozen first: it is known to be alive (mid-work) when the signal lands."""
    name = comm_of(pid)
    freeze(pid)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        raise NotInjected('%s (pid %d) ended before it could be killed' % (name, pid)) from None
    return 'kill -9 %s (pid %d) while it ran' % (name, pid)


def kill_parent(pid, _watch):
    """Kill the module: the Python process that started the tool (the tool frozen meanwhile, then let go)."""
    parent = ppid_of(pid)
    if not parent or not (comm_of(parent) or '').startswith('python'):
        raise NotInjected('the parent of %d is %s, not a module' % (pid, comm_of(parent) if parent else None))
    freeze(pid)
    try:
        freeze(parent)
        os.kill(parent, signal.SIGKILL)
    finally:
        thaw(pid)
    return 'kill -9 the module (pid %d) while its %s (pid %d) ran' % (parent, comm_of(pid), pid)


def while_stopped(work):
    """An action that freezes the process, runs ``work()`` (which says what it did), then lets the process go on
    (into the fault)."""
    def action(pid, _watch):
        name = comm_of(pid)
        freeze(pid)
        try:
            done = work()
        finally:
            thaw(pid)
        return '%s while %s (pid %d) was frozen' % (done, name, pid)
    return action


def kill_sibling(name, timeout=5):
    """An action on a pipeline's first stage: freeze it, kill -9 the stage called ``name`` started next to it."""
    def work_on(pid):
        parent = ppid_of(pid)
        deadline = time.time() + timeout
        while time.time() < deadline:
            for other in os.listdir('/proc'):
                if other.isdigit() and int(other) != pid and ppid_of(int(other)) == parent and comm_of(int(other)) == name:
                    freeze(int(other))
                    os.kill(int(other), signal.SIGKILL)
                    return int(other)
            time.sleep(0.005)
        raise NotInjected('no %s next to %d' % (name, pid))

    def action(pid, _watch):
        first = comm_of(pid)
        freeze(pid)
        try:
            killed = work_on(pid)
        finally:
            thaw(pid)
        return 'kill -9 %s (pid %d) while %s (pid %d) fed it' % (name, killed, first, pid)
    return action


def kill_controller(pid, watch):
    """The controller dies: ansible-playbook and its workers, at once (what the host sees when the controller is lost)."""
    if watch.controller.poll() is not None:
        raise NotInjected('ansible-playbook had already ended')
    os.killpg(watch.controller.pid, signal.SIGKILL)
    return 'kill -9 ansible-playbook and its workers while %s (pid %d) ran' % (comm_of(pid) or 'the watched process', pid)


def kill_controller_before(word):
    """The controller dies just before the host starts a task's module: the process whose argv names ``word`` (the
    task's async wrapper, frozen first) and anything else naming it are killed with the controller, so that task never
    runs."""
    def action(pid, watch):
        freeze(pid)
        if watch.controller.poll() is not None:
            thaw(pid)
            raise NotInjected('ansible-playbook had already ended')
        os.killpg(watch.controller.pid, signal.SIGKILL)
        for other in [int(o) for o in os.listdir('/proc') if o.isdigit()] + [pid]:
            if any(word in a for a in argv_of(other)):
                try:
                    os.kill(other, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.2)
        left = [o for o in os.listdir('/proc') if o.isdigit() and any(word in a for a in argv_of(int(o)))]
        if left:
            raise NotInjected('processes of %s still run: %s' % (word, left))
        return 'kill -9 ansible-playbook and its workers as the host started %s (its job never ran)' % word
    return action


def kill_module_reading(suffix, timeout=120):
    """An action on a tool (tar): wait until its module (the parent) opens a file ending in ``suffix`` read-only - it
    reads back what the tool wrote, to checksum and seal it - then freeze and kill -9 the module there."""
    return _kill_on_open(lambda path: path.endswith(suffix), False, 'module', 'read back a %s file' % suffix, timeout)


def kill_while_module_writes(part, victim='module', timeout=120):
    """An action on a tool (zstd): wait until its module (the parent) has a file open for writing whose path holds
    ``part`` - it writes what the tool decompresses - then freeze and kill -9 the ``victim`` there: the module or
    the tool."""
    return _kill_on_open(lambda path: part in path, True, victim, 'write a file in %s' % part, timeout)


STEP = 0.002  # seconds a tool runs between two looks when it is the victim of _kill_on_open


def _kill_on_open(match, writing, victim, what, timeout):
    def watch_module(tool, module, trig):
        deadline = time.time() + timeout
        name = comm_of(tool)
        # A small file can be opened, written and closed between a look and the module's freeze. After such a near
        # miss the module is frozen before each look (stepping): a file seen open is then still open when the victim
        # dies, at the cost of stopping the module briefly between looks for the rest of the phase.
        stepping, misses = False, 0
        while time.time() < deadline:
            if state_of(module) in (None, 'Z', 'X'):
                trig.error = 'the module (pid %d) ended before it did %s' % (module, what)
                return
            if victim == 'tool':
                # The tool runs in steps of STEP seconds, frozen in between: on a small archive it could otherwise
                # finish its whole part before the module is seen with the file open, and there would be nothing
                # left to kill.  A tool that ends first (the module reads the manifest with a short-lived one
                # before its main pass) hands over to the module's next child of the same name.
                try:
                    freeze(tool)
                except NotInjected:
                    tool = next((child for child in _children(module, name) if child != tool), tool)
                    time.sleep(0.0005)
                    continue
            target = module if victim == 'module' else tool
            hit, frozen = None, False
            try:
                if stepping:
                    freeze(module)
                    frozen = True
                hit = _open_file(module, match, writing)
                if hit and not frozen:
                    freeze(module)  # the module holds still; the file is still open when the victim dies
                    frozen = True
                    if not _open_file(module, match, writing):
                        stepping, hit, misses = True, None, misses + 1  # a near miss: from now on, look frozen
                if hit:
                    try:
                        os.kill(target, signal.SIGKILL)
                    except ProcessLookupError:
                        raise NotInjected('the %s (pid %d) had ended before it could be killed' % (victim, target)) from None
            except NotInjected as exc:
                if victim == 'tool':
                    thaw(tool)
                trig.error = repr(exc)
                return
            finally:
                if frozen:
                    thaw(module)  # whatever happened: a module left stopped would hang the run (harmless after SIGKILL)
            if hit:
                trig.injected = 'kill -9 the %s (pid %d) while the module had %s open%s' % (
                    victim, target, os.path.basename(hit), ' (looked at frozen after a near miss)' if misses else '')
                return
            if victim == 'tool':
                thaw(tool)
                time.sleep(STEP)
            else:
                time.sleep(0.0005)
        if victim == 'tool':
            thaw(tool)
        trig.error = 'the module (pid %d) did not %s within %d s' % (module, what, timeout)

    def action(pid, watch):
        module = ppid_of(pid)
        if not module or not (comm_of(module) or '').startswith('python'):
            raise NotInjected('the parent of %d is %s, not a module' % (pid, comm_of(module) if module else None))
        thread = threading.Thread(target=watch_module, args=(pid, module, watch.trigger), daemon=True)
        watch.trigger.threads.append(thread)
        thread.start()  # it sets Trigger.injected (or error) itself
    return action


def _children(pid, name):
    """Pids of the live children of ``pid`` whose command name is ``name``."""
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit() and ppid_of(int(entry)) == pid and comm_of(int(entry)) == name \
                and state_of(int(entry)) not in (None, 'Z', 'X'):
            found.append(int(entry))
    return found


def _open_file(pid, match, writing):
    """The path of a file that ``pid`` has open read-only (``writing``: for writing) and ``match(path)`` accepts, or None."""
    try:
        fds = os.listdir('/proc/%d/fd' % pid)
    except OSError:
        return None
    for fd in fds:
        try:
            target = os.readlink('/proc/%d/fd/%s' % (pid, fd))
        except OSError:
            continue
        if not match(target):
            continue
        info = _read('/proc/%d/fdinfo/%s' % (pid, fd)) or ''
        flags = [line.split()[1] for line in info.splitlines() if line.startswith('flags:')]
        if flags and (int(flags[0], 8) & os.O_ACCMODE != os.O_RDONLY) == writing:
            return target
    return None


def port_open(port, host='127.0.0.1'):
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def fill(directory, name='.filler'):
    """Fill the filesystem of ``directory`` with a file until it is full; return what was done (NotInjected when
    the filesystem still has room)."""
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
    stats = os.statvfs(directory)
    left = stats.f_bavail * stats.f_frsize
    if left >= 64 * 1024:
        raise NotInjected('%s still has %d bytes free after filling it' % (directory, left))
    return 'filled the filesystem of %s (%d bytes left)' % (path.parent.name, left)


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
