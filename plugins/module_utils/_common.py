# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small pieces every module shares: hashing, atomic publication, secret files."""

from __future__ import annotations

import collections
import concurrent.futures
import ctypes
import hashlib
import os
import shutil
import stat
import tempfile
import threading

CHUNK = 1024 * 1024
ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'
GZIP_MAGIC = b'\x1f\x8b'


class AppvaultError(Exception):
    """An error with a message meant for the user; ``details`` go into the result."""

    def __init__(self, msg, **details):
        super(AppvaultError, self).__init__(msg)
        self.msg = msg
        self.details = details


def done_future(value):
    """A concurrent.futures.Future that already holds ``value``: a result known without running anything."""
    future = concurrent.futures.Future()
    future.set_result(value)
    return future


def in_background(func, *args, **kwargs):
    """Start ``func(*args, **kwargs)`` in a thread of its own; returns its concurrent.futures.Future."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(func, *args, **kwargs)
    finally:
        pool.shutdown(wait=False)


def bounded_map(func, items, workers, ahead=4):
    """Yield ``func(item)`` for each of ``items``, in order, computed by ``workers`` threads with at most ``ahead``
    calls per thread submitted and not yet yielded.  ThreadPoolExecutor.map submits every call at once: a Future per
    item in memory (about 0.6 KB each, 30 MiB for 50k files)."""
    window = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for item in items:
            window.append(pool.submit(func, item))
            if len(window) >= ahead * workers:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def cpu_count():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def cpu_has_aes(cpuinfo='/proc/cpuinfo'):
    """Whether this host's CPU has AES instructions (the ``aes`` flag: x86 AES-NI, the ARMv8 crypto extension)."""
    try:
        with open(cpuinfo) as fileobj:
            for line in fileobj:
                if line.startswith(('flags', 'Features')):
                    return 'aes' in line.split(':', 1)[-1].split()
    except OSError:
        pass
    return False


def find_tool(name, package=None):
    """The path of program ``name``, or an error naming the package that provides it."""
    path = shutil.which(name)
    if not path:
        raise AppvaultError('%s is not installed (package %s)' % (name, package or name))
    return path


def compress_argv(compression, level, cores):
    """The compression stage of a dump: zstd with every core (level 3), gzip (level 1), or None."""
    if compression == 'zstd':
        return [find_tool('zstd'), '-q', '-T%d' % cores, '-%d' % (level if level is not None else 3), '-c']
    if compression == 'gzip':
        return [find_tool('gzip'), '-c', '-%d' % (level if level is not None else 1)]
    return None


def decompress_argv(outer):
    """The decompression stage for ``outer`` ('zstd', 'gzip'), or None for an uncompressed file."""
    if outer == 'zstd':
        return [find_tool('zstd'), '-dc', '-q']
    if outer == 'gzip':
        return [find_tool('gzip'), '-dc']
    return None


def human_size(size):
    """Bytes as text with a binary unit: 512 B, 1.5 KiB, 70.0 MiB."""
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(size) < 1024 or unit == 'TiB':
            return ('%d %s' if unit == 'B' else '%.1f %s') % (size, unit)
        size /= 1024.0
    return str(size)


def file_identity(st):
    """What must not have changed for a digest taken earlier to still be the file's (any write moves its mtime and
    ctime; ctime cannot be set back): 'dev:inode:size:mtime_ns:ctime_ns' of the os.stat result ``st``."""
    return '%d:%d:%d:%d:%d' % (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def still_verified(verified, sha256, path):
    """Whether ``verified`` (dict(sha256, identity): a check of the whole file ``path`` against its checksum file made
    moments before) still stands: the checksum file holds that ``sha256`` and the file's identity is unchanged."""
    return bool(verified) and verified.get('sha256') == sha256 and verified.get('identity') == file_identity(os.stat(path))


def sha256_file(path):
    """The sha256 (hex) of the file ``path``, read to its end.  Raw reads on a file descriptor: open(), read() until
    empty and close(), half the system calls of a Python file object (which adds fstat, ioctl, lseek and a read),
    which tells on many small files (50k files of 1-16 KiB: 0.83 s against 1.22-1.46 s)."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)  # not inherited by children (PEP 446)
    try:
        while True:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                break
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def artefact_facts(path):
    """Size and sha256 of a file, or of a directory tree (digest over sorted relative names and file digests)."""
    if os.path.isdir(path):
        digest = hashlib.sha256()
        size = 0
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                rel = os.path.relpath(full, path)
                size += os.path.getsize(full)
                digest.update(('%s\0%s\n' % (rel, sha256_file(full))).encode('utf-8'))
        return {'path': path, 'size': size, 'sha256': digest.hexdigest(), 'type': 'directory'}
    return {'path': path, 'size': os.path.getsize(path), 'sha256': sha256_file(path), 'type': 'file'}


def fsync_path(path):
    """fsync a file, or every file of a tree and its directories."""
    if os.path.isdir(path):
        for root, _dirs, files in os.walk(path):
            for name in files:
                fsync_path(os.path.join(root, name))
            fsync_dir(root)
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs():
    """The C library's syncfs(2), or None where it has none."""
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):
        return None


def sync_filesystems(paths):
    """Make what was written below ``paths`` durable: one syncfs(2) per filesystem they are on, which writes a tree
    of many files out at once instead of one fsync per file (sync(2) where the C library has no syncfs)."""
    syncfs = _syncfs()
    seen = set()
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            dev = os.fstat(fd).st_dev
            if dev in seen:
                continue
            seen.add(dev)
            if syncfs is None:
                os.sync()
            elif syncfs(fd) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err), path)
        finally:
            os.close(fd)


def drop_cached(paths):
    """Drop the regular files below ``paths`` from the page cache (POSIX_FADV_DONTNEED); returns how many were
    asked. Only pages already on disk go (sync them first). A hint: a file that cannot be opened is skipped, a
    FIFO or device is never opened."""
    dropped = 0
    for top in paths:
        for root, _dirs, files in os.walk(top):
            for name in files:
                path = os.path.join(root, name)
                try:
                    if not stat.S_ISREG(os.lstat(path).st_mode):
                        continue
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                except OSError:
                    continue
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    dropped += 1
                except OSError:
                    pass
                finally:
                    os.close(fd)
    return dropped


def check_destination(dest, force):
    """Refuse a destination that cannot be written before any work starts."""
    parent = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(parent):
        raise AppvaultError('destination directory %s does not exist' % parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise AppvaultError('destination directory %s is not writable' % parent)
    if os.path.lexists(dest) and not force:
        raise AppvaultError('destination %s already exists; set force: true to replace it' % dest)


def partial_name(dest):
    return os.path.join(os.path.dirname(os.path.abspath(dest)), '.%s.partial' % os.path.basename(dest))


def private_dir(path, check_mode=False):
    """Make ``path`` a directory only its owner can enter (0700): created with its missing parents, or an existing
    one's mode set. Returns whether anything changed (in check mode: would change)."""
    if not os.path.isdir(path):
        if os.path.lexists(path):
            raise AppvaultError('%s exists and is not a directory' % path)
        if not check_mode:
            os.makedirs(path, 0o700)
            os.chmod(path, 0o700)  # makedirs' mode is masked by the umask
        return True
    if stat.S_IMODE(os.stat(path).st_mode) == 0o700:
        return False
    if not check_mode:
        os.chmod(path, 0o700)
    return True


def remove_path(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


def _restrict(path, mode):
    if os.path.isdir(path):
        os.chmod(path, 0o700)
        for root, dirs, files in os.walk(path):
            for name in files:
                os.chmod(os.path.join(root, name), mode)
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o700)
    else:
        os.chmod(path, mode)


def seal(partial, mode=0o600):
    """Restrict ``partial``'s mode and make it durable; return its artefact_facts.

    The fsync runs in a thread while the sha256 is computed (hashlib releases
    the GIL), so the flush to disk costs no extra wall time.  Pass the result
    to ``publish(..., sealed=True)``.
    """
    _restrict(partial, mode)
    errors = []

    def sync():
        try:
            fsync_path(partial)
        except OSError as exc:  # reported after the join
            errors.append(exc)
    worker = threading.Thread(target=sync)
    worker.start()
    try:
        facts = artefact_facts(partial)
    finally:
        worker.join()
    if errors:
        raise errors[0]
    return facts


class SealWhileWriting(object):
    """A new file that other processes write front to back, hashed and flushed to disk while they write.

    ``with SealWhileWriting(partial) as out:`` hand ``out.fd`` to the writer (e.g. a pipeline's last
    stage), then ``facts = out.seal()``.  A thread reads the file right behind the writer, from the page
    cache, hashes it and flushes what it has read every ``FLUSH_EVERY`` bytes, so once the writer ends
    only the tail is left to hash and to sync: the same work as ``seal`` after the writer, but beside it.
    Only for writers that never go back (never pg_dump ``--file``, which rewrites its table of contents at
    the end); the size read is checked against the file's at the end.  Pass the facts to
    ``publish(..., sealed=True)``.

    ``drop_cache``: once a part is hashed and on disk, drop it from the page cache (POSIX_FADV_DONTNEED). For a
    file nothing reads soon (a backup archive): a large backup then does not push the host's working set out of
    memory, and the writer reuses the pages just freed instead of taking fresh ones (on a VM, fresh pages cost
    the writer about twice the system time).  Not for a file read right after (a dump the archive is made from).

    ``sink``: called with every part as it is read, in order (a _transfer.Mirror sending the file elsewhere while it
    is written). It must not raise; while it blocks, the reading waits, and ``seal`` with it.
    """

    READ = 4 * CHUNK
    FLUSH_EVERY = 64 * CHUNK
    IDLE = 0.02

    def __init__(self, path, mode=0o600, drop_cache=False, sink=None):
        self.path = path
        self.mode = mode
        self.drop_cache = drop_cache
        self.sink = sink
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        self._digest = hashlib.sha256()
        self._size = 0
        self._errors = []
        self._written = threading.Event()  # the writer has finished: read to the end, then stop
        self._abort = threading.Event()  # the write failed: stop at once
        self._thread = threading.Thread(target=self._follow, name='seal-while-writing')
        self._thread.daemon = True
        self._thread.start()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self._abort.set()
        self._stop()

    def _follow(self):
        try:
            with open(self.path, 'rb', buffering=0) as fileobj:
                unflushed = 0
                while not self._abort.is_set():
                    # Look at the flag before reading: an empty read after the writer ended is the real end.
                    written = self._written.is_set()
                    chunk = fileobj.read(self.READ)
                    if chunk:
                        self._digest.update(chunk)
                        self._size += len(chunk)
                        if self.sink is not None:
                            self.sink(chunk)
                        unflushed += len(chunk)
                        if unflushed >= self.FLUSH_EVERY:
                            os.fdatasync(fileobj.fileno())
                            if self.drop_cache:
                                os.posix_fadvise(fileobj.fileno(), self._size - unflushed, unflushed, os.POSIX_FADV_DONTNEED)
                            unflushed = 0
                    elif written:
                        return
                    else:
                        self._written.wait(self.IDLE)
        except OSError as exc:  # reported by seal()
            self._errors.append(exc)

    def _stop(self):
        self._written.set()
        self._thread.join()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def seal(self):
        """Wait for the hash of the whole file, make it durable and return its artefact_facts."""
        self._written.set()
        self._thread.join()
        if self._errors:
            raise self._errors[0]
        os.fsync(self.fd)
        if self.drop_cache:
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.fchmod(self.fd, self.mode)
        size = os.fstat(self.fd).st_size
        self._stop()
        if size != self._size:
            raise AppvaultError('%s changed size while it was hashed (%d bytes read, %d on disk): was it written '
                                'by something else too?' % (self.path, self._size, size))
        return {'path': self.path, 'size': size, 'sha256': self._digest.hexdigest(), 'type': 'file'}


def publish(partial, dest, mode=0o600, sealed=False):
    """Make ``partial`` durable and move it to ``dest`` in one rename.

    A file is chmod'ed, fsynced (unless ``seal`` did both already) and renamed
    over ``dest``.  A directory cannot be renamed over an existing one, so an
    existing ``dest`` is moved aside first and removed only once the new one
    is in place.
    """
    if not sealed:
        _restrict(partial, mode)
        fsync_path(partial)
    old = None
    if os.path.isdir(dest) and not os.path.islink(dest):
        old = partial + '.old'
        os.rename(dest, old)
    os.rename(partial, dest)
    fsync_dir(os.path.dirname(os.path.abspath(dest)))
    if old:
        remove_path(old)


class SecretDir(object):
    """A private 0700 directory for password and option files, removed on exit."""

    def __init__(self, base=None):
        self.path = None
        self.base = base

    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix='appvault-', dir=self.base)
        os.chmod(self.path, stat.S_IRWXU)
        return self

    def write(self, name, content):
        path = os.path.join(self.path, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w') as fileobj:
            fileobj.write(content)
        return path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)
        return False


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def finish(module, run):
    """Run ``run(module)`` and end the module: its result on success, the error's message and details on failure."""
    try:
        result = run(module)
    except AppvaultError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    except OSError as exc:
        # Permission denied, no space, ... on a path the module did not expect to fail: name it (with the paths), not
        # a traceback that an asynchronous job reports as a crash.
        module.fail_json(msg=str(exc))
    module.exit_json(**result)
