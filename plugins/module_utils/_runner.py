# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place in the collection that starts processes.

Commands are argument lists, never shell strings.  A pipeline connects the
stages with OS pipes (no shell, no Python in the byte path) and reports the
exit status of every stage, so a failing producer is never hidden behind a
succeeding consumer (what ``set -o pipefail`` does for a shell).
"""

from __future__ import annotations

import errno
import os
import pwd
import select
import signal
import subprocess
import tempfile
import threading
import time

STDERR_KEEP = 64 * 1024  # bytes of stderr kept per stage, the tail


class CommandError(Exception):
    """A stage failed; ``stages`` holds every stage's result."""

    def __init__(self, msg, stages=None):
        super(CommandError, self).__init__(msg)
        self.msg = msg
        self.stages = stages or []


def mask_argv(argv, secrets=()):
    """Return argv as one printable string with any secret value replaced."""
    out = []
    for arg in argv:
        text = str(arg)
        for secret in secrets:
            if secret:
                text = text.replace(secret, '********')
        out.append(text)
    return ' '.join(out)


def _tail(fileobj):
    fileobj.seek(0, os.SEEK_END)
    size = fileobj.tell()
    fileobj.seek(max(0, size - STDERR_KEEP))
    return fileobj.read().decode('utf-8', 'replace').strip()


def _child_env(env):
    merged = dict(os.environ)
    merged.update({'LC_ALL': 'C.UTF-8', 'LANG': 'C.UTF-8'})
    if env:
        merged.update(env)
    return merged


def as_user(user):
    """Popen keyword arguments and environment that run a command as ``user`` (None: as the current user).

    Only root can switch users; any other user asking for someone else gets a CommandError naming the problem.
    """
    if not user:
        return {}, {}
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise CommandError('user %s does not exist' % user)
    env = {'HOME': entry.pw_dir, 'USER': entry.pw_name, 'LOGNAME': entry.pw_name}
    if entry.pw_uid == os.geteuid():
        return {}, env
    if os.geteuid() != 0:
        raise CommandError('running commands as %s needs root (become) on the host' % user)
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    return {'user': entry.pw_uid, 'group': entry.pw_gid, 'extra_groups': groups}, env


def pipeline(stages, stdin_path=None, stdout_path=None, stdout_fd=None, env=None, cwd=None, user=None):
    """Run ``stages`` (a list of argv lists) connected by pipes.

    The first stage reads ``stdin_path`` (or /dev/null); the last writes to
    ``stdout_path`` / ``stdout_fd`` or, when neither is given, its output is
    captured and returned as ``stdout`` of the last stage (for small outputs
    such as query results).  ``user`` runs every stage as that user (see
    ``as_user``).  Raises CommandError naming the first failing stage;
    returns the list of per-stage results otherwise.
    """
    if not stages:
        raise ValueError('pipeline needs at least one stage')
    identity, user_env = as_user(user)
    child_env = _child_env(dict(user_env, **(env or {})))
    procs = []
    errfiles = []
    opened = []
    capture = stdout_path is None and stdout_fd is None
    started = time.monotonic()
    try:
        if stdin_path:
            prev = open(stdin_path, 'rb')
        else:
            prev = open(os.devnull, 'rb')
        opened.append(prev)
        if stdout_path:
            out_final = open(stdout_path, 'wb')
            opened.append(out_final)
        elif stdout_fd is not None:
            out_final = stdout_fd
        else:
            out_final = subprocess.PIPE
        for index, argv in enumerate(stages):
            last = index == len(stages) - 1
            errfile = tempfile.TemporaryFile()
            errfiles.append(errfile)
            try:
                proc = subprocess.Popen(
                    [str(a) for a in argv], stdin=prev, stdout=out_final if last else subprocess.PIPE,
                    stderr=errfile, env=child_env, cwd=cwd, close_fds=True, **identity)
            except OSError as exc:
                for started_proc in procs:
                    started_proc.kill()
                raise CommandError('cannot start %s: %s' % (argv[0], exc))
            if index > 0:
                prev.close()  # the child holds its own copy; closing ours lets SIGPIPE work
            prev = proc.stdout
            procs.append(proc)
        captured = b''
        if capture:
            captured = procs[-1].stdout.read()
            procs[-1].stdout.close()
        results = []
        for argv, proc, errfile in zip(stages, procs, errfiles):
            proc.wait()
            results.append({'cmd': argv[0], 'rc': proc.returncode, 'stderr': _tail(errfile)})
        if capture:
            results[-1]['stdout'] = captured.decode('utf-8', 'replace')
        results[-1]['duration'] = time.monotonic() - started
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for fileobj in opened + errfiles:
            fileobj.close()
    return _checked(results)


def _checked(results):
    """``results`` when every stage succeeded; raise CommandError naming the stage that really failed."""
    # A producer killed by SIGPIPE after every later stage succeeded was cut off on
    # purpose (a consumer such as ``head`` stopped reading): not a failure. From the
    # last producer back, so that in ``zstd | tail | head`` tail is cleared before zstd.
    for index in range(len(results) - 2, -1, -1):
        res = results[index]
        if res['rc'] == -signal.SIGPIPE and all(r['rc'] == 0 for r in results[index + 1:]):
            res['rc'] = 0
            res['cut_off'] = True
    failed = [r for r in results if r['rc'] != 0]
    if failed:
        # A producer killed by SIGPIPE only tells that its consumer stopped
        # reading: report the consumer, the stage that really failed.
        real = [r for r in failed if r['rc'] != -signal.SIGPIPE] or failed
        first = real[0]
        detail = first['stderr'] or 'no error output'
        raise CommandError('%s failed with exit status %d: %s' % (first['cmd'], first['rc'], detail), results)
    return results


def run(argv, env=None, cwd=None, stdin_path=None, stdout_path=None, user=None):
    """Run one command; return its result dict (stdout captured unless redirected)."""
    return pipeline([argv], stdin_path=stdin_path, stdout_path=stdout_path, env=env, cwd=cwd, user=user)[-1]


def detach(work):
    """Run ``work()`` in a process of its own that outlives the caller; return that process's pid.

    Double fork and setsid: the process belongs to no session or terminal of the caller, init (or the nearest
    subreaper) adopts it, and it holds none of the caller's file descriptors (stdin, stdout and stderr are
    /dev/null), so neither Ansible nor an SSH connection waits for it. It runs the code already loaded, so it needs
    no files of the caller (Ansible removes the module's temporary files when the module ends).
    """
    read_end, write_end = os.pipe()
    first = os.fork()
    if first == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read_end)
            os.setsid()
            second = os.fork()
            if second == 0:
                os.write(write_end, str(os.getpid()).encode())
                os.close(write_end)
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.closerange(3, 65536)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                try:
                    work()
                    code = 0
                finally:
                    os._exit(code)  # pylint: disable=protected-access
            code = 0
        finally:
            os._exit(code)  # pylint: disable=protected-access
    os.close(write_end)
    with os.fdopen(read_end, 'rb') as pipe_in:
        text = pipe_in.read()
    os.waitpid(first, 0)
    if not text:
        raise CommandError('could not start a detached process')
    return int(text)


class Feed(object):
    """A command whose stdin the caller writes and whose stdout is the file descriptor ``stdout_fd``, such as a
    decompressor filling a file with what the caller reads from elsewhere.

    ``write`` returns False once the command has stopped reading (it ended early: ``finish`` says why);
    ``finish`` closes its stdin, waits and raises CommandError when it failed; ``kill`` stops it.
    """

    def __init__(self, argv, stdout_fd, env=None):
        self.argv = [str(a) for a in argv]
        self._err = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=stdout_fd, stderr=self._err, bufsize=0,
                                         env=_child_env(env), close_fds=True)
        except OSError as exc:
            self._err.close()
            raise CommandError('cannot start %s: %s' % (self.argv[0], exc))

    def write(self, data, timeout=None):
        """Write all of ``data``; False once the command has stopped reading, or when ``timeout`` seconds pass
        without it taking a byte (a stalled reader: ``kill`` it)."""
        view = memoryview(data)
        try:
            if timeout is not None:
                os.set_blocking(self.proc.stdin.fileno(), False)
            while view:
                if timeout is not None and not select.select([], [self.proc.stdin], [], timeout)[1]:
                    return False
                written = self.proc.stdin.write(view)
                view = view[written or 0:]
        except (BrokenPipeError, ValueError):
            return False
        return True

    def finish(self):
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        rc = self.proc.wait()
        detail = _tail(self._err)
        self._err.close()
        if rc != 0:
            raise CommandError('%s failed with exit status %d: %s' % (self.argv[0], rc, detail or 'no error output'))

    def ended(self, timeout):
        """Whether the command has ended, waiting up to ``timeout`` seconds for it."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self._err.close()


class Session(object):
    """A long-lived command fed line by line, such as psql holding a transaction open.

    ``send`` writes text to its stdin; ``readline`` returns its next output
    line and raises CommandError, with the command's error output, when the
    command has ended instead of answering.
    """

    def __init__(self, argv, env=None, cwd=None):
        self.argv = [str(a) for a in argv]
        self._err = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
                                         env=_child_env(env), cwd=cwd, close_fds=True)
        except OSError as exc:
            self._err.close()
            raise CommandError('cannot start %s: %s' % (self.argv[0], exc))

    def send(self, text):
        try:
            self.proc.stdin.write(text.encode('utf-8'))
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            self._failed()

    def readline(self):
        line = self.proc.stdout.readline()
        if not line:
            self._failed()
        return line.decode('utf-8', 'replace').rstrip('\n')

    def _failed(self):
        rc = self.proc.wait()
        raise CommandError('%s ended with exit status %d: %s' % (self.argv[0], rc, _tail(self._err) or 'no error output'))

    def kill(self):
        """End the command now, e.g. to stop a query another thread waits for (its readline then fails)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self._err.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class Stream(object):
    """A pipeline whose last stage's output is read by the caller as a stream (constant memory).

    Use as a context manager: read ``stdout`` (a binary file object), then call
    ``finish()`` to wait for every stage and raise CommandError on a failure.
    Leaving the block without ``finish()`` (an early stop, or an exception)
    kills the stages and ignores their exit status: the caller stopped reading
    on purpose, for example after the first member of an archive.
    """

    def __init__(self, stages, stdin_path=None, env=None, cwd=None, stdin_ranges=None):
        if not stages:
            raise ValueError('a stream needs at least one stage')
        if stdin_ranges is not None and not stdin_path:
            raise ValueError('stdin_ranges are byte ranges of stdin_path')
        self.stages = stages
        self.stdin_path = stdin_path
        self.stdin_ranges = stdin_ranges
        self.env = env
        self.cwd = cwd
        self.procs = []
        self.errfiles = []
        self.stdout = None
        self.results = None
        self._feeder = None

    def __enter__(self):
        child_env = _child_env(self.env)
        if self.stdin_ranges is not None:
            self._feeder = RangeFeeder(self.stdin_path, self.stdin_ranges)
            prev = os.fdopen(self._feeder.read_fd, 'rb')
        else:
            prev = open(self.stdin_path or os.devnull, 'rb')
        try:
            for argv in self.stages:
                errfile = tempfile.TemporaryFile()
                self.errfiles.append(errfile)
                try:
                    # a large read buffer: a reader of many small records (tar headers) makes few syscalls
                    proc = subprocess.Popen([str(a) for a in argv], stdin=prev, stdout=subprocess.PIPE, stderr=errfile,
                                            env=child_env, cwd=self.cwd, close_fds=True, bufsize=CHUNK_DRAIN)
                except OSError as exc:
                    self._kill()
                    raise CommandError('cannot start %s: %s' % (argv[0], exc))
                prev.close()
                prev = proc.stdout
                self.procs.append(proc)
        except BaseException:
            prev.close()
            self._close_errfiles()
            if self._feeder is not None:
                self._feeder.close()
            raise
        self.stdout = prev
        if self._feeder is not None:
            self._feeder.start()
        return self

    def _kill(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if self._feeder is not None:
            self._feeder.close()  # its reader is gone: a write fails at once

    def _close_errfiles(self):
        for errfile in self.errfiles:
            errfile.close()
        self.errfiles = []

    def finish(self):
        """Read what is left, wait for every stage; raise CommandError naming the first failing one."""
        while self.stdout.read(CHUNK_DRAIN):
            pass
        self.stdout.close()
        results = []
        for argv, proc, errfile in zip(self.stages, self.procs, self.errfiles):
            proc.wait()
            results.append({'cmd': argv[0], 'rc': proc.returncode, 'stderr': _tail(errfile)})
        self.results = results
        checked = _checked(results)
        if self._feeder is not None and self._feeder.close():
            # the stages got less than they should have and may not know it (SQL cut after a statement)
            raise CommandError(self._feeder.error, results)
        return checked

    def __exit__(self, *exc):
        if self.stdout is not None and not self.stdout.closed:
            self.stdout.close()
        self._kill()
        self._close_errfiles()
        return False


CHUNK_DRAIN = 1024 * 1024


class RangeFeeder(object):
    """A pipe that a thread fills with byte ranges of a file: the stdin of a Stream that reads parts of a file.

    ``ranges`` are (offset, count) pairs, in the order to send; a count of None runs to the end of the file.  The
    thread writes with os.sendfile (the kernel moves the file's pages into the pipe; nothing passes through this
    process), or pread and write where sendfile cannot write to a pipe.  ``close()`` waits for the thread and
    returns its error (a file shorter than a range, a read error), None when all was sent or the reader stopped
    reading (its exit status tells why).
    """

    def __init__(self, path, ranges):
        self.path = path
        self.ranges = list(ranges)
        self.error = None
        self.read_fd, self._write_fd = os.pipe()
        self._thread = threading.Thread(target=self._run, name='range-feeder')
        self._thread.daemon = True
        self._sendfile = hasattr(os, 'sendfile')

    def start(self):
        self._thread.start()

    def _send(self, src, offset, count):
        if self._sendfile:
            try:
                return os.sendfile(self._write_fd, src, offset, count)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                self._sendfile = False
        data = os.pread(src, min(count, CHUNK_DRAIN), offset)
        return os.write(self._write_fd, data) if data else 0

    def _run(self):
        try:
            with open(self.path, 'rb') as src:
                for offset, count in self.ranges:
                    end = None if count is None else offset + count
                    while end is None or offset < end:
                        sent = self._send(src.fileno(), offset, CHUNK_DRAIN * 64 if end is None else end - offset)
                        if not sent:
                            if end is None:
                                break
                            self.error = '%s ends at byte %d, before the end of the range it should send (%d)' % (
                                self.path, offset, end)
                            return
                        offset += sent
        except BrokenPipeError:
            pass
        except OSError as exc:
            self.error = 'reading %s failed: %s' % (self.path, exc)
        finally:
            os.close(self._write_fd)
            self._write_fd = None

    def close(self):
        if self._thread.ident is not None:
            self._thread.join()
        elif self._write_fd is not None:  # never started
            os.close(self._write_fd)
            self._write_fd = None
        return self.error
