# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host-to-host transfer of one archive and its checksum file: rsync over SSH, straight from the host it runs on.

The archive travels to a hidden partial name in the destination directory (``.<name>.partial``; rsync
``--append-verify`` resumes an interrupted transfer there), its sha256 is computed on the receiving host and compared
with the sender's checksum file, and only then are archive and checksum file renamed into place there, checksum
file last, so a listing never sees an archive that is incomplete or unverified. No ``-z``: archives are compressed.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import socket
import tempfile
import time

from ansible_collections.appvault.backup.plugins.module_utils import _common, _manifest, _runner
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError

DEST_RE = re.compile(r'^(?:(?P<user>[^@:/\s]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^@:/\s\[\]]+):(?P<dir>/.*)$')
MISMATCH_RC = 65  # the receiving side's exit status when the sha256 differs


def parse_dest(dest):
    """``user@host:/dir`` (user optional, IPv6 address in brackets) as (user, host, dir)."""
    match = DEST_RE.match(dest or '')
    if not match:
        raise AppvaultError('dest %r is not user@host:/absolute/dir (the user is optional, an IPv6 address goes in brackets)' % dest)
    directory = os.path.normpath(match.group('dir'))
    return match.group('user'), match.group('host').strip('[]'), directory


def known_hosts_lines(host, port, host_keys):
    """known_hosts lines that make ``host_keys`` (``type base64 [comment]``) the keys of ``host`` on ``port``."""
    name = host if port == 22 else '[%s]:%d' % (host, port)
    lines = []
    for key in host_keys:
        fields = key.split()
        if len(fields) < 2 or not fields[0].startswith(('ssh-', 'ecdsa-', 'sk-')):
            raise AppvaultError('host_keys: %r is not an SSH public key (type and base64 data)' % key[:60])
        lines.append('%s %s %s\n' % (name, fields[0], fields[1]))
    return ''.join(lines)


# OpenSSH's default ciphers with AES-GCM first. Where the CPU has AES instructions an archive moves about twice as fast
# as with the default's first choice, chacha20-poly1305 (1.4 GB between two test hosts by rsync: 4.3-5.7 s against
# 8.9-12.2 s; by ssh alone 2.6 s against 5.8-6.5 s). The same set, only reordered: a server accepts what it did.
AES_FIRST_CIPHERS = ('aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,'
                     'aes128-ctr,aes192-ctr,aes256-ctr')


def ssh_argv(port, identity=None, known_hosts=None, connect_timeout=10, aes=None):
    """The ssh client: batch mode (never a prompt), strict host key checking, no user or system configuration; AES-GCM
    preferred when ``aes`` (default: this host's CPU has AES instructions)."""
    argv = [_common.find_tool('ssh', 'openssh-client'), '-F', '/dev/null', '-p', str(port),
            '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', 'ConnectTimeout=%d' % connect_timeout,
            '-o', 'ServerAliveInterval=15', '-o', 'ServerAliveCountMax=4', '-o', 'LogLevel=ERROR']
    if aes is None:
        aes = _common.cpu_has_aes()
    if aes:
        argv += ['-o', 'Ciphers=%s' % AES_FIRST_CIPHERS]
    if identity:
        argv += ['-o', 'IdentitiesOnly=yes', '-i', identity]
    if known_hosts:
        argv += ['-o', 'UserKnownHostsFile=%s' % known_hosts, '-o', 'GlobalKnownHostsFile=/dev/null']
    return argv


def rsync_argv(ssh, src, login, remote_partial, timeout):
    """rsync of one file to its partial name: resumable (--append-verify, which writes in place), no compression."""
    return [_common.find_tool('rsync'), '--append-verify', '--perms', '--chmod=F0600', '--timeout=%d' % timeout,
            '--rsh=%s' % ' '.join(shlex.quote(a) for a in ssh), '--', src, '%s:%s' % (login, remote_partial)]


def names(directory, archive_name):
    final = os.path.join(directory, archive_name)
    return dict(final=final, partial=_common.partial_name(final), sidecar=final + _manifest.CHECKSUM_SUFFIX,
                sidecar_partial=_common.partial_name(final + _manifest.CHECKSUM_SUFFIX))


def state_script(directory, paths, create):
    """Receiving side, before: (create the directory 0700,) then print the final archive's recorded digest and the
    size of a partial left by an interrupted transfer."""
    quoted = dict((k, shlex.quote(v)) for k, v in paths.items())
    return ' '.join([
        'set -e;', ('mkdir -p -m 0700 -- %s;' % shlex.quote(directory)) if create else '',
        'd=; p=0;',
        'if [ -f %(final)s ] && [ -f %(sidecar)s ]; then d=$(head -c 64 %(sidecar)s); fi;' % quoted,
        'if [ -f %(partial)s ]; then p=$(wc -c < %(partial)s); fi;' % quoted,
        'echo "final=$d partial=$p"'])


# The receiving side's sha256: Python's hashlib where python3 is there (OpenSSL, with the CPU's SHA instructions:
# 1.4 GB/s here, where coreutils' sha256sum does 0.5 GB/s), else sha256sum.
RECEIVER_SHA256 = ('import hashlib, sys\n'
                   'h = hashlib.sha256()\n'
                   'with open(sys.argv[1], "rb") as f:\n'
                   '    for block in iter(lambda: f.read(1 << 20), b""):\n'
                   '        h.update(block)\n'
                   'print(h.hexdigest())\n')


# The receiving side's identity of the archive once it is in place: _common.file_identity's format, which a restore
# there compares with the file's (a check of its sha256 moments before, trusted while the file is unchanged).
RECEIVER_IDENTITY = ('import os, sys\n'
                     's = os.stat(sys.argv[1])\n'
                     'print("identity=%d:%d:%d:%d:%d" % (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns))\n')


def finish_script(paths, digest, archive_name, received=None):
    """Receiving side, after: sha256 of the partial against ``digest``; on a match the checksum file is written,
    both are flushed and renamed into place (checksum file last), and the archive's identity there is printed
    (``identity=...``, where python3 is; see arrived_identity); on a mismatch the partial is removed.
    ``received``: the sha256 the receiving side computed as it wrote the partial (stream_script), instead of reading
    it again."""
    quoted = dict((k, shlex.quote(v)) for k, v in paths.items())
    quoted.update(digest=shlex.quote(digest), line=shlex.quote('%s  %s' % (digest, archive_name)), rc=MISMATCH_RC,
                  hasher=shlex.quote(RECEIVER_SHA256), received=shlex.quote(received or ''),
                  identity=shlex.quote(RECEIVER_IDENTITY))
    if received:
        hashed = 'got=%(received)s;' % quoted
    else:
        hashed = ('if command -v python3 >/dev/null 2>&1; then got=$(python3 -c %(hasher)s %(partial)s);'
                  ' else got=$(sha256sum < %(partial)s); fi; got=${got%%%% *};' % quoted)
    return ' '.join([
        'set -e; umask 077;', hashed,
        'if [ "$got" != %(digest)s ]; then rm -f -- %(partial)s;'
        ' echo "sha256 on arrival is $got, the sender recorded "%(digest)s >&2; exit %(rc)d; fi;' % quoted,
        'printf "%%s\\n" %(line)s > %(sidecar_partial)s;' % quoted,
        'chmod 0600 -- %(partial)s %(sidecar_partial)s;' % quoted,
        'sync -- %(partial)s %(sidecar_partial)s;' % quoted,
        'mv -f -- %(partial)s %(final)s;' % quoted,
        'mv -f -- %(sidecar_partial)s %(sidecar)s;' % quoted,
        'sync -- "$(dirname -- %(final)s)"; echo verified;' % quoted,
        'if command -v python3 >/dev/null 2>&1; then python3 -c %(identity)s %(final)s; fi' % quoted])


def arrived_identity(output):
    """The identity finish_script printed (None without python3 there): with the sha256 it matched, what lets a
    restore on the receiving host skip hashing the whole archive again (_catalog.describe's and _archive.verify's
    ``verified``)."""
    for line in (output or '').splitlines():
        if line.startswith('identity='):
            return line.split('=', 1)[1].strip() or None
    return None


# The receiving side of a stream: its stdin written to the partial, hashed on the way (one pass, nothing read
# back), the sha256 printed at the end.
STREAM_RECEIVER = ('import hashlib, os, sys\n'
                   'h = hashlib.sha256()\n'
                   'fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)\n'
                   'src = sys.stdin.buffer.raw\n'
                   'buf = bytearray(1 << 20)\n'
                   'view = memoryview(buf)\n'
                   'while True:\n'
                   '    n = src.readinto(buf)\n'
                   '    if not n:\n'
                   '        break\n'
                   '    h.update(view[:n])\n'
                   '    part = view[:n]\n'
                   '    while part:\n'
                   '        part = part[os.write(fd, part):]\n'
                   'os.close(fd)\n'
                   'print(h.hexdigest())\n')
EXISTS_RC = 66  # the receiving side's exit status when the archive is there already


def stream_script(directory, paths):
    """Receiving side of a stream: create the directory (0700), refuse when the archive is there already, write stdin
    to the partial and print its sha256 (python3's hashlib as it writes, else sha256sum after)."""
    quoted = dict((k, shlex.quote(v)) for k, v in paths.items())
    quoted.update(directory=shlex.quote(directory), receiver=shlex.quote(STREAM_RECEIVER), rc=EXISTS_RC)
    return ' '.join([
        'set -e; umask 077; mkdir -p -m 0700 -- %(directory)s;' % quoted,
        'if [ -e %(final)s ]; then echo %(final)s" is there already" >&2; exit %(rc)d; fi;' % quoted,
        'if command -v python3 >/dev/null 2>&1; then exec python3 -c %(receiver)s %(partial)s; fi;' % quoted,
        'cat > %(partial)s; got=$(sha256sum < %(partial)s); echo "${got%%%% *}"' % quoted])


def _remote(ssh, login, script, what):
    try:
        return _runner.run(ssh + [login, script])
    except _runner.CommandError as exc:
        raise AppvaultError('%s failed: %s' % (what, exc.msg))


def source_digest(src):
    """The sha256 the checksum file next to ``src`` records, or the file's own when there is none."""
    sidecar = src + _manifest.CHECKSUM_SUFFIX
    if os.path.exists(sidecar):
        return _manifest.read_checksum_file(sidecar), sidecar
    return _common.sha256_file(src), None


def send(src, dest, port=22, identity=None, host_keys=None, known_hosts=None, timeout=300, connect_timeout=10, force=False,
         check_mode=False):
    """Push ``src`` (and its checksum) to ``dest`` (``user@host:/dir``); returns the result dict."""
    src = os.path.abspath(src)
    if not os.path.isfile(src):
        raise AppvaultError('src %s does not exist or is not a file' % src)
    user, host, directory = parse_dest(dest)
    login = '%s@%s' % (user, host) if user else host
    name = os.path.basename(src)
    digest, sidecar = source_digest(src)
    size = os.path.getsize(src)
    paths = names(directory, name)
    result = dict(changed=False, mode='direct', src=src, dest=dest, path=paths['final'], size=size, sha256=digest,
                  checksum_file=sidecar is not None, resumed_bytes=0)
    with _common.SecretDir() as secrets:
        if host_keys:
            known_hosts = secrets.write('known_hosts', known_hosts_lines(host, port, host_keys))
        ssh = ssh_argv(port, identity, known_hosts, connect_timeout)
        state = _remote(ssh, login, state_script(directory, paths, create=not check_mode), 'connecting to %s as %s' % (host, user or 'the default user'))
        found = dict(item.split('=', 1) for item in state['stdout'].split())
        if found.get('final'):
            if found['final'] == digest:
                return result
            if not force:
                raise AppvaultError('%s already exists on %s with another sha256 (%s); nothing was sent (force: true replaces it)'
                                    % (paths['final'], host, found['final']))
        result['changed'] = True
        result['resumed_bytes'] = int(found.get('partial') or 0)
        if check_mode:
            return result
        started = time.monotonic()
        try:
            _runner.run(rsync_argv(ssh, src, login, paths['partial'], timeout))
        except _runner.CommandError as exc:
            raise AppvaultError('sending %s to %s failed (the partial %s is kept there for a resumed transfer, never under the '
                                'archive name): %s' % (name, host, paths['partial'], exc.msg))
        try:
            finished = _runner.run(ssh + [login, finish_script(paths, digest, name)])
        except _runner.CommandError as exc:
            mismatch = any(stage['rc'] == MISMATCH_RC for stage in exc.stages)
            raise AppvaultError('%s arrived on %s but %s; %s' % (
                name, host, 'its sha256 differs from the checksum file' if mismatch else 'could not be verified and renamed',
                'the partial was removed, nothing looks valid there' if mismatch else exc.msg), sha256=digest)
        result['duration'] = round(time.monotonic() - started, 3)
        identity = arrived_identity(finished['stdout'])
        if identity:
            result['verified_identity'] = identity
    return result


def connection_options():
    """Where to and how to log in there: the options backup_send and backup_create's send_to share (a Mirror's)."""
    return dict(dest=dict(type='str', required=True), port=dict(type='int', default=22), identity=dict(type='path'),
                identity_key=dict(type='str', no_log=True), host_keys=dict(type='list', elements='str', no_log=False),
                known_hosts=dict(type='path', no_log=False), timeout=dict(type='int', default=300),
                connect_timeout=dict(type='int', default=10))


class Mirror(object):
    """A file sent to ``dest`` (``user@host:/dir``) while it is being written, so that it is there, verified, moments
    after it is complete: ``start(name)``, then ``write`` every part in order (the sink of _common.SealWhileWriting,
    which reads the file right behind its writer), then ``finish(digest)`` once the file is complete here.

    The receiving side writes the stream to the same hidden partial name as ``send`` (``.<name>.partial``), hashes it
    as it writes and prints the sha256; ``finish`` compares it with the file's and renames partial and checksum file
    into place there (finish_script). A mirror never fails its writer: a connection that fails, a receiver that stops
    reading or takes no byte for ``timeout`` seconds, or a sha256 that differs ends the mirror, and ``finish`` reports
    ``sent: false`` with the reason. The partial stays there for ``send`` to resume, except after a mismatch."""

    def __init__(self, dest, port=22, identity=None, identity_key=None, host_keys=None, known_hosts=None, timeout=300,
                 connect_timeout=10):
        self.user, self.host, self.directory = parse_dest(dest)
        self.login = '%s@%s' % (self.user, self.host) if self.user else self.host
        self.dest = dest
        self.port = port
        self.identity = identity
        self.identity_key = identity_key
        # made now, so a bad key is refused before anything is written
        self.host_key_lines = known_hosts_lines(self.host, port, host_keys) if host_keys else None
        self.known_hosts = known_hosts
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.paths = None
        self.name = None
        self.size = 0
        self.reason = None
        self._feed = None
        self._out = None
        self._secrets = None
        self._ssh = None
        self._started = None

    def start(self, name):
        """Connect and start the receiving side for the archive ``name``."""
        self.name = name
        self.paths = names(self.directory, name)
        self._started = time.monotonic()
        self._secrets = _common.SecretDir().__enter__()
        identity = self.identity
        if self.identity_key:
            identity = self._secrets.write('identity', self.identity_key.rstrip('\n') + '\n')
        known_hosts = self.known_hosts
        if self.host_key_lines:
            known_hosts = self._secrets.write('known_hosts', self.host_key_lines)
        self._ssh = ssh_argv(self.port, identity, known_hosts, self.connect_timeout)
        self._out = tempfile.TemporaryFile()
        try:
            self._feed = _runner.Feed(self._ssh + [self.login, stream_script(self.directory, self.paths)], stdout_fd=self._out.fileno())
        except _runner.CommandError as exc:
            self.reason = exc.msg

    def write(self, data):
        if self._feed is None or self.reason:
            return
        try:
            if self._feed.write(data, timeout=self.timeout):
                self.size += len(data)
                return
        except Exception as exc:  # the writer must go on whatever happens here
            self.reason = 'sending failed: %s' % exc
        if self._feed.ended(5):  # finish() reads why
            self.reason = self.reason or 'the receiving side stopped reading'
        else:  # stalled: no answer is coming
            self.reason = 'the receiving side took no byte for %d s' % self.timeout
            self._feed.kill()
            self._feed = None

    def _received(self):
        """The receiving side's exit: its sha256, or None with self.reason set."""
        if self._feed is None:
            return None
        try:
            self._feed.finish()
        except _runner.CommandError as exc:
            self.reason = '%s (%s)' % (self.reason, exc.msg) if self.reason else exc.msg
            return None
        finally:
            self._feed = None
        if self.reason:
            return None
        self._out.seek(0)
        return self._out.read().decode('ascii', 'replace').strip()

    def finish(self, digest):
        """Once the file is complete here with ``digest``: verify it there and rename it into place. Returns the
        result (``sent``, and ``reason`` when it was not)."""
        result = dict(sent=False, mode='direct', streamed=True, dest=self.dest, path=self.paths['final'], size=self.size,
                      sha256=digest)
        try:
            got = self._received()
            if got is not None:  # compared there: a mismatch removes the partial and fails the script
                finished = _remote(self._ssh, self.login, finish_script(self.paths, digest, self.name, received=got), 'verifying it there')
                result.update(sent=True, duration=round(time.monotonic() - self._started, 3))
                identity = arrived_identity(finished['stdout'])
                if identity:
                    result['verified_identity'] = identity
        except AppvaultError as exc:
            self.reason = exc.msg
        finally:
            self.close()
        if not result['sent']:
            result['reason'] = 'streaming %s to %s failed: %s' % (self.name, self.host, self.reason)
        return result

    def close(self, remove=False):
        """Stop sending and remove the private files. The partial stays there for a resume, unless ``remove`` (the
        file here failed: nothing of it is worth keeping there), which is tried once, failures ignored."""
        if self._feed is not None:
            self._feed.kill()
            self._feed = None
        if remove and self._ssh is not None:
            try:
                _runner.run(self._ssh + [self.login, 'rm -f -- %s' % shlex.quote(self.paths['partial'])])
            except _runner.CommandError:
                pass
        if self._out is not None:
            self._out.close()
            self._out = None
        if self._secrets is not None:
            self._secrets.__exit__(None, None, None)
            self._secrets = None


def probe(dest, port=22, identity=None, host_keys=None, known_hosts=None, connect_timeout=10):
    """Whether this host can log in to ``dest`` and finds rsync and sha256sum there; a refusal is a result, not an error."""
    user, host, _directory = parse_dest(dest)
    login = '%s@%s' % (user, host) if user else host
    result = dict(changed=False, reachable=False, dest=dest)
    with _common.SecretDir() as secrets:
        try:
            _common.find_tool('rsync')
            if host_keys:
                known_hosts = secrets.write('known_hosts', known_hosts_lines(host, port, host_keys))
            _runner.run(ssh_argv(port, identity, known_hosts, connect_timeout) + [login, 'command -v rsync && command -v sha256sum'])
        except _runner.CommandError as exc:
            failed = exc.stages[-1] if exc.stages else {}
            result['reason'] = ('cannot log in to %s: %s' % (host, failed.get('stderr') or exc.msg) if failed.get('rc') == 255
                                else 'rsync or sha256sum is not installed on %s' % host)
            return result
        except AppvaultError as exc:  # no ssh or rsync on this host
            result['reason'] = exc.msg
            return result
    result['reachable'] = True
    return result


# -- the ephemeral key of a direct transfer ---------------------------------------------------------------------------
KEY_LINE_RE = re.compile(r'^(?P<type>ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+) (?P<data>[A-Za-z0-9+/=]+)(?: (?P<comment>\S+))?$')
EXPIRY_RE = re.compile(r'^\d{12}Z$')
ADDRESS_PROBE = '192.0.2.1'  # TEST-NET-1 (RFC 5737): only asks the routing table which address goes out by default


def keypair(comment):
    """A new ed25519 key pair (private key text, public key line), made by ssh-keygen in a private directory that is
    removed before this returns."""
    with _common.SecretDir() as secrets:
        path = os.path.join(secrets.path, 'id_ed25519')
        _runner.run([_common.find_tool('ssh-keygen', 'openssh-client'), '-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path])
        with open(path) as fileobj:
            private = fileobj.read()
        with open(path + '.pub') as fileobj:
            public = fileobj.read().strip()
    return private, public


def access_line(public_key, expiry):
    """The authorized_keys line of an ephemeral key: no forwarding, no pty, no agent, expiring at ``expiry``
    (``YYYYMMDDHHMMZ``) even if nobody removes it."""
    match = KEY_LINE_RE.match((public_key or '').strip())
    if not match:
        raise AppvaultError('public_key is not one SSH public key line (type, base64 data, optional comment)')
    if not EXPIRY_RE.match(expiry or ''):
        raise AppvaultError('expiry must be a UTC time as YYYYMMDDHHMMZ, got %r' % expiry)
    return 'restrict,expiry-time="%s" %s' % (expiry, public_key.strip())


def host_keys(directory='/etc/ssh'):
    """This host's SSH public host keys (``type base64 comment`` lines)."""
    keys = []
    for name in sorted(os.listdir(directory)):
        if name.startswith('ssh_host_') and name.endswith('_key.pub'):
            with open(os.path.join(directory, name)) as fileobj:
                keys.append(fileobj.read().strip())
    return keys


def default_address():
    """The IPv4 address this host uses for its default route (what the setup module calls default_ipv4), or None
    when it has no default route. No packet is sent."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((ADDRESS_PROBE, 9))
        return probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()


def grant(user, line, state='present', check_mode=False):
    """Add (``present``) or remove (``absent``) the authorized_keys ``line`` of ``user``; the file and its .ssh
    directory are created owned by the user (0600, 0700) and rewritten atomically. Returns whether it changed."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise AppvaultError('user %s does not exist on this host' % user)
    directory = os.path.join(entry.pw_dir, '.ssh')
    path = os.path.join(directory, 'authorized_keys')
    try:
        with open(path) as fileobj:
            lines = fileobj.read().splitlines()
    except FileNotFoundError:
        lines = []
    if state == 'present':
        wanted = lines if line in (item.strip() for item in lines) else lines + [line]
    else:
        wanted = [item for item in lines if item.strip() != line]
    if wanted == lines or check_mode:
        return wanted != lines
    if not os.path.isdir(directory):
        os.mkdir(directory, 0o700)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    partial = _common.partial_name(path)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, 'w') as fileobj:
            fileobj.write(''.join(item + '\n' for item in wanted))
            fileobj.flush()
            os.fsync(fileobj.fileno())
        os.chown(partial, entry.pw_uid, entry.pw_gid)
        os.rename(partial, path)
    except BaseException:
        _common.remove_path(partial)
        raise
    _common.fsync_dir(directory)
    return True
