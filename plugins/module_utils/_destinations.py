# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Off-host destinations: S3-compatible storage, SFTP servers and any rclone remote, all reached through rclone.

rclone moves the bytes; this module builds its invocations, verifies what arrived and keeps the catalogue of a
destination.  Secrets never reach argv: an ``s3`` or ``sftp`` destination becomes an rclone remote defined only by
``RCLONE_CONFIG_APPVAULT_*`` environment variables (the SFTP password obscured by ``rclone obscure`` reading a 0600
file), an ``rclone`` destination uses the host's rclone configuration, a path to one, or its text written 0600 into
a private temporary directory.

Publication rule (see docs/destinations.md): a backup at a destination is valid only when its ``.sha256`` sidecar
is there, and the sidecar is uploaded last, after the archive's size and hash were checked at the destination.  An
upload that fails or does not verify is retried, then removed; whatever cannot be removed is listed as invalid
("no checksum file"), never as a valid backup.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time

from ansible_collections.appvault.backup.plugins.module_utils import _catalog, _common, _manifest, _runner
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError

KINDS = ('s3', 'sftp', 'rclone', 'host')
SUPPORTED_KINDS = ('s3', 'sftp', 'rclone')
REMOTE = 'appvault'  # the remote an s3 or sftp destination becomes, defined by environment variables only
ENV_PREFIX = 'RCLONE_CONFIG_APPVAULT_'
REMOTE_NAME_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.+@-]*$')
OPTION_KEY_RE = re.compile(r'^[a-z][a-z0-9_]*$')
SECRET_KEYS = ('access_key_id', 'secret_access_key', 'session_token', 'password', 'key_pem', 'config_content')
RULE_KEYS = ('keep_last', 'keep_daily', 'keep_weekly', 'keep_monthly', 'keep_yearly')
HASH_PREFERENCE = ('sha256', 'md5', 'sha1')
CONNECT_TIMEOUT = '15s'
NOT_FOUND_RC = 3  # rclone: directory not found (4: file not found)


def argument_spec():
    """Sub-options of the ``destination`` option (documented in the appvault.backup.destination doc fragment)."""
    return dict(
        name=dict(type='str', required=True),
        kind=dict(type='str', required=True, choices=list(KINDS)),
        endpoint=dict(type='str'),
        bucket=dict(type='str'),
        prefix=dict(type='str', default=''),
        region=dict(type='str'),
        provider=dict(type='str', default='Other'),
        access_key_id=dict(type='str', no_log=True),
        secret_access_key=dict(type='str', no_log=True),
        session_token=dict(type='str', no_log=True),
        storage_class=dict(type='str'),
        server_side_encryption=dict(type='str'),
        sse_kms_key_id=dict(type='str'),
        upload_cutoff=dict(type='str'),
        chunk_size=dict(type='str'),
        host=dict(type='str'),
        port=dict(type='int', default=22),
        user=dict(type='str'),
        password=dict(type='str', no_log=True),
        key_file=dict(type='path', no_log=False),
        key_pem=dict(type='str', no_log=True),
        known_hosts_file=dict(type='path'),
        path=dict(type='str', default=''),
        remote=dict(type='str'),
        config=dict(type='path'),
        config_content=dict(type='str', no_log=True),
        options=dict(type='dict', default={}),
        env=dict(type='dict', default={}, no_log=True),
        bwlimit=dict(type='str'),
        retries=dict(type='int', default=2),
        verify=dict(type='str', choices=['auto', 'download'], default='auto'),
        keep_last=dict(type='int'),
        keep_daily=dict(type='int'),
        keep_weekly=dict(type='int'),
        keep_monthly=dict(type='int'),
        keep_yearly=dict(type='int'),
    )


def module_options():
    """The ``destination`` and ``rclone_path`` options of a module (one doc fragment documents them for every module;
    the modules that need a destination get an error from ``check`` without one)."""
    return dict(destination=dict(type='dict', options=argument_spec()),
                rclone_path=dict(type='path'))


def _clean_path(value, what, name):
    """A folder path inside the destination: no '..' components, no leading '-'; returned without outer slashes."""
    value = value or ''
    parts = [p for p in value.split('/') if p not in ('', '.')]
    if any(p == '..' for p in parts):
        raise AppvaultError('destination %s: %s %r must not contain ".."' % (name, what, value))
    if value.startswith('-'):
        raise AppvaultError('destination %s: %s %r must not start with "-"' % (name, what, value))
    return '/'.join(parts)


def check(dest):
    """Validate a destination dict (already through the argument spec); return it with defaults filled in."""
    if not dest:
        raise AppvaultError('destination is required (a dict with name, kind and its settings)')
    dest = dict(dest)
    for key, spec in argument_spec().items():
        dest.setdefault(key, spec.get('default'))
    name = dest.get('name')
    if not name or not REMOTE_NAME_RE.match(str(name)):
        raise AppvaultError('a destination needs a name of letters, digits, "_", ".", "-" (got %r)' % (name,))
    kind = dest.get('kind')
    if kind == 'host':
        raise AppvaultError('destination %s: kind host (another inventory host) is served by the roles and playbooks through '
                            'the migrate role\'s transfer, not by this module, which handles s3, sftp and rclone' % name)
    if kind not in SUPPORTED_KINDS:
        raise AppvaultError('destination %s: kind %r is not one of %s' % (name, kind, ', '.join(SUPPORTED_KINDS)))
    required = dict(s3=('bucket',), sftp=('host',), rclone=('remote',))[kind]
    missing = [key for key in required if not dest.get(key)]
    if missing:
        raise AppvaultError('destination %s (%s) needs %s' % (name, kind, ', '.join(missing)))
    if kind == 'rclone' and not REMOTE_NAME_RE.match(dest['remote']):
        raise AppvaultError('destination %s: remote %r is not an rclone remote name' % (name, dest['remote']))
    if kind == 's3' and not re.match(r'^[a-z0-9][a-z0-9.-]{1,62}$', dest['bucket']):
        raise AppvaultError('destination %s: bucket %r is not a valid bucket name' % (name, dest['bucket']))
    if kind == 'sftp' and (dest.get('key_file') and dest.get('key_pem')):
        raise AppvaultError('destination %s: give key_file or key_pem, not both' % name)
    if kind == 'rclone' and dest.get('config') and dest.get('config_content'):
        raise AppvaultError('destination %s: give config or config_content, not both' % name)
    for key in dest.get('options') or {}:
        if not OPTION_KEY_RE.match(str(key)):
            raise AppvaultError('destination %s: option %r is not an rclone backend option name (lower case, "_")' % (name, key))
    for key in dest.get('env') or {}:
        if not str(key).startswith('RCLONE_'):
            raise AppvaultError('destination %s: env may only set RCLONE_* variables (got %s)' % (name, key))
    if dest.get('retries') is not None and dest['retries'] < 0:
        raise AppvaultError('destination %s: retries must be 0 or more' % name)
    for key in RULE_KEYS:
        if dest.get(key) is not None and dest[key] < 0:
            raise AppvaultError('destination %s: %s must be 0 or more' % (name, key))
    dest['prefix'] = _clean_path(dest.get('prefix'), 'prefix', name)
    if kind == 'sftp':
        # An absolute path stays absolute; a relative one is relative to the login's home directory.
        dest['path'] = ('/' if (dest.get('path') or '').startswith('/') else '') + _clean_path(dest.get('path'), 'path', name)
    else:
        dest['path'] = _clean_path(dest.get('path'), 'path', name)
    return dest


class Remote(object):
    """One destination reached through rclone; a context manager holding the private directory for its secrets."""

    def __init__(self, dest, rclone_path=None):
        self.dest = check(dest)
        self.name = self.dest['name']
        self.kind = self.dest['kind']
        self.binary = rclone_path or _common.find_tool('rclone')
        self.secrets = None
        self.env = {}
        self.config = None
        self._hashes = None

    # -- set-up -----------------------------------------------------------------------
    def __enter__(self):
        self.secrets = _common.SecretDir().__enter__()
        try:
            self._configure()
        except BaseException:
            self.secrets.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        self.secrets.__exit__(*exc)
        return False

    def _configure(self):
        dest = self.dest
        env = {}
        if self.kind in ('s3', 'sftp'):
            # An empty configuration of our own: the host's rclone.conf cannot change what this remote means.
            self.config = self.secrets.write('rclone.conf', '')
            env[ENV_PREFIX + 'TYPE'] = self.kind
        if self.kind == 's3':
            values = dict(provider=dest['provider'], endpoint=dest['endpoint'], region=dest['region'],
                          access_key_id=dest['access_key_id'], secret_access_key=dest['secret_access_key'],
                          session_token=dest['session_token'], storage_class=dest['storage_class'],
                          server_side_encryption=dest['server_side_encryption'], sse_kms_key_id=dest['sse_kms_key_id'],
                          upload_cutoff=dest['upload_cutoff'], chunk_size=dest['chunk_size'])
            if not dest['access_key_id']:
                values['env_auth'] = 'true'  # AWS_* variables, a profile or the instance's role
            env.update(self._env_values(values))
        elif self.kind == 'sftp':
            values = dict(host=dest['host'], port=str(dest['port']), user=dest['user'], known_hosts_file=dest['known_hosts_file'],
                          key_file=dest['key_file'])
            if dest['key_pem']:
                values['key_file'] = self.secrets.write('id_key', dest['key_pem'].rstrip('\n') + '\n')
            if dest['password']:
                values['pass'] = self._obscure(dest['password'])
            env.update(self._env_values(values))
        elif dest['config_content']:
            self.config = self.secrets.write('rclone.conf', dest['config_content'])
        elif dest['config']:
            if not os.path.isfile(dest['config']):
                raise AppvaultError('destination %s: rclone config %s does not exist' % (self.name, dest['config']))
            self.config = dest['config']
        if self.kind != 'rclone':
            env.update(self._env_values(dest['options'] or {}))
        env.update(dict((str(k), str(v)) for k, v in (dest['env'] or {}).items()))
        self.env = env

    def secret_values(self):
        """Every secret this destination holds, as given and as rclone sees it (masked in error messages)."""
        values = [self.dest.get(key) for key in SECRET_KEYS] + list((self.dest.get('env') or {}).values())
        values.append(self.env.get(ENV_PREFIX + 'PASS'))
        return [str(v) for v in values if v not in (None, '')]

    @staticmethod
    def _env_values(values):
        return dict((ENV_PREFIX + key.upper(), str(value)) for key, value in values.items() if value not in (None, ''))

    def _obscure(self, secret):
        """``rclone obscure -`` reading the secret from a 0600 file (rclone wants obscured passwords in its config)."""
        path = self.secrets.write('secret', secret)
        try:
            return _runner.run([self.binary, 'obscure', '-'], stdin_path=path)['stdout'].strip()
        except _runner.CommandError as exc:
            raise AppvaultError('destination %s: rclone obscure failed: %s' % (self.name, exc.msg))
        finally:
            os.unlink(path)

    # -- paths ------------------------------------------------------------------------
    def base(self):
        """The folder at the destination, in rclone's syntax."""
        dest = self.dest
        if self.kind == 's3':
            folder = '/'.join(p for p in (dest['bucket'], dest['prefix']) if p)
            return '%s:%s' % (REMOTE, folder)
        if self.kind == 'sftp':
            return '%s:%s' % (REMOTE, '/'.join(p for p in (dest['path'], dest['prefix']) if p).replace('//', '/'))
        return '%s:%s' % (dest['remote'], '/'.join(p for p in (dest['path'], dest['prefix']) if p))

    def target(self, name):
        base = self.base()
        return base + ('' if base.endswith(':') or base.endswith('/') else '/') + name

    def url(self, name=''):
        """Where a backup is, for people and results: no credentials."""
        dest = self.dest
        if self.kind == 's3':
            where = 's3://%s' % '/'.join(p for p in (dest['bucket'], dest['prefix'], name) if p)
            return where + (' at %s' % dest['endpoint'] if dest['endpoint'] else '')
        if self.kind == 'sftp':
            folder = '/'.join(p for p in (dest['path'], dest['prefix'], name) if p)
            user = ('%s@' % dest['user']) if dest['user'] else ''
            return 'sftp://%s%s:%d%s%s' % (user, dest['host'], dest['port'], '' if folder.startswith('/') else '/~/', folder)
        return 'rclone:%s' % self.target(name)

    # -- rclone ---------------------------------------------------------------------
    def argv(self, *args):
        # A destination that does not answer fails within a minute instead of retrying silently for long.
        argv = [self.binary, '--contimeout', CONNECT_TIMEOUT, '--low-level-retries', '2']
        if self.config:
            argv += ['--config', self.config]
        return argv + list(args)

    def run(self, *args, **kwargs):
        try:
            return _runner.run(self.argv(*args), env=self.env, **kwargs)
        except _runner.CommandError as exc:
            raise self._error(exc)

    def _error(self, exc):
        text = _runner.mask_argv([exc.msg], self.secret_values())
        error = AppvaultError('destination %s: %s' % (self.name, text))
        error.rc = exc.stages[-1]['rc'] if exc.stages else None
        return error

    def transfer_flags(self):
        # A few low-level retries per request: rclone's S3 client backs off between them (up to 20 s), so 10 made an
        # unreachable endpoint fail an upload after about 4 minutes; 3 fail it in seconds. Whole attempts are retried
        # by upload() (the destination's retries).
        flags = ['--retries', '1', '--low-level-retries', '3']
        if self.dest['bwlimit']:
            flags += ['--bwlimit', self.dest['bwlimit']]
        return flags

    def hashes(self):
        """The hash types the destination can report without downloading, as rclone names them."""
        if self._hashes is None:
            data = json.loads(self.run('backend', 'features', self.base())['stdout'] or '{}')
            self._hashes = [h.lower() for h in data.get('Hashes') or []]
        return self._hashes

    def stat(self, name, hash_type=None):
        """lsjson of one object (with ``hash_type``'s hash), or None when it is not there."""
        args = ['lsjson', '--stat']
        if hash_type:
            args += ['--hash', '--hash-type', hash_type]
        try:
            out = self.run(*(args + [self.target(name)]))['stdout']
        except AppvaultError as exc:
            if getattr(exc, 'rc', None) in (NOT_FOUND_RC, 4):
                return None
            raise
        data = json.loads(out)
        return None if data.get('IsDir') else data

    def objects(self):
        """The files directly in the destination folder (an empty list when the folder does not exist yet)."""
        try:
            out = self.run('lsjson', '--files-only', '--no-mimetype', self.base())['stdout']
        except AppvaultError as exc:
            if getattr(exc, 'rc', None) == NOT_FOUND_RC:
                return []
            raise
        return json.loads(out or '[]')

    def checksum_lines(self):
        """{archive name: sha256} from every ``.sha256`` sidecar of the folder, read with one ``rclone cat``."""
        out = self.run('cat', '--include', '*' + _manifest.CHECKSUM_SUFFIX, '--max-depth', '1', self.base())['stdout']
        digests = {}
        for line in out.splitlines():
            parts = line.strip().split(None, 1)
            if len(parts) == 2 and _manifest.SHA256_RE.match(parts[0].lower()):
                digests[parts[1].lstrip('*')] = parts[0].lower()
        return digests

    def upload_file(self, local, name):
        self.run(*(['copyto'] + self.transfer_flags() + [local, self.target(name)]))

    def download_file(self, name, local):
        self.run(*(['copyto'] + self.transfer_flags() + [self.target(name), local]))

    def delete(self, name):
        try:
            self.run('deletefile', self.target(name))
        except AppvaultError as exc:
            if getattr(exc, 'rc', None) not in (NOT_FOUND_RC, 4):
                raise

    def stream_sha256(self, name):
        """Read the object back through ``rclone cat`` and hash it here (constant memory)."""
        digest = hashlib.sha256()
        try:
            with _runner.Stream([self.argv('cat', self.target(name))], env=self.env) as stream:
                while True:
                    chunk = stream.stdout.read(_common.CHUNK)
                    if not chunk:
                        break
                    digest.update(chunk)
                stream.finish()
        except _runner.CommandError as exc:
            raise self._error(exc)
        return digest.hexdigest()

    # -- verification ------------------------------------------------------------------
    def verify(self, name, size, sha256, local_hashes=None):
        """Check size and content of ``name`` at the destination; return how the content was checked.

        The content check uses the best hash the destination reports: sha256 directly; otherwise md5 (S3 ETag or
        rclone's metadata) compared with the local file's md5, whose sha256 matched its sidecar; when the
        destination reports none (or ``verify: download``), the object is read back and its sha256 computed here.
        """
        usable = [h for h in HASH_PREFERENCE if h in self.hashes()] if self.dest['verify'] == 'auto' else []
        hash_type = None
        if usable and (usable[0] == 'sha256' or local_hashes is not None):
            hash_type = usable[0]
        info = self.stat(name, hash_type)
        if info is None:
            raise AppvaultError('destination %s: %s is not there' % (self.name, name))
        if int(info.get('Size', -1)) != size:
            raise AppvaultError('destination %s: %s has %s bytes there, %d expected (incomplete upload)'
                                % (self.name, name, info.get('Size'), size))
        reported = (info.get('Hashes') or {}).get(hash_type) if hash_type else None
        if reported:
            expected = sha256 if hash_type == 'sha256' else local_hashes()[hash_type]
            if reported.lower() != expected:
                raise AppvaultError('destination %s: the %s of %s there does not match (%s, expected %s)'
                                    % (self.name, hash_type, name, reported, expected))
            return hash_type
        if self.stream_sha256(name) != sha256:
            raise AppvaultError('destination %s: %s read back does not match its sha256' % (self.name, name))
        return 'sha256 (read back)'


# -- local side ------------------------------------------------------------------------
def local_hashes(path, sha256):
    """A callable returning {'sha256', 'md5', 'sha1'} of ``path`` (read once, on first use); the sha256 must match."""
    cache = {}

    def compute():
        if not cache:
            # md5 and sha1 only to compare with what the destination reports; the archive's identity is its sha256
            digests = dict(sha256=hashlib.sha256(), md5=hashlib.md5(usedforsecurity=False), sha1=hashlib.sha1(usedforsecurity=False))
            with open(path, 'rb') as fileobj:
                while True:
                    chunk = fileobj.read(_common.CHUNK)
                    if not chunk:
                        break
                    for digest in digests.values():
                        digest.update(chunk)
            cache.update((k, v.hexdigest()) for k, v in digests.items())
            if cache['sha256'] != sha256:
                raise AppvaultError('%s does not match its checksum file: not uploading a corrupt backup' % path)
        return cache
    return compute


def _local_backup(archive):
    archive = os.path.abspath(archive)
    if not os.path.isfile(archive):
        raise AppvaultError('backup %s does not exist' % archive)
    side = _manifest.sidecars(archive)
    if not os.path.exists(side['checksum']):
        raise AppvaultError('%s has no checksum file %s: only a complete backup is uploaded' % (archive, os.path.basename(side['checksum'])))
    return archive, side, _manifest.read_checksum_file(side['checksum'])


# -- operations -------------------------------------------------------------------------
def upload(dest, archive, rclone_path=None, check_mode=False):
    """Upload a backup and its sidecars; verify; publish the ``.sha256`` sidecar last.  Returns the module result."""
    started = time.monotonic()
    archive, side, sha256 = _local_backup(archive)
    name = os.path.basename(archive)
    size = os.path.getsize(archive)
    hashes = local_hashes(archive, sha256)
    extra = [side[role] for role in ('manifest', 'pin') if os.path.exists(side[role])]
    with Remote(dest, rclone_path) as remote:
        result = dict(changed=False, destination=remote.name, kind=remote.kind, name=name, url=remote.url(name), size=size,
                      sha256=sha256, attempts=0, verified=None)
        published = remote.checksum_lines().get(name) if remote.stat(name + _manifest.CHECKSUM_SUFFIX) else None
        if published == sha256:
            try:
                result['verified'] = remote.verify(name, size, sha256, hashes)
                result['duration'] = round(time.monotonic() - started, 1)
                return result  # already there, complete and verified
            except AppvaultError:
                pass
        result['changed'] = True
        if check_mode:
            return result
        if published is not None:
            remote.delete(name + _manifest.CHECKSUM_SUFFIX)  # unpublish what is there before replacing it
        errors = []
        for attempt in range(1, remote.dest['retries'] + 2):
            result['attempts'] = attempt
            try:
                remote.upload_file(archive, name)
                result['verified'] = remote.verify(name, size, sha256, hashes)
                break
            except AppvaultError as exc:
                if 'not uploading a corrupt backup' in exc.msg:
                    raise
                errors.append('attempt %d: %s' % (attempt, exc.msg))
        else:
            left = None
            try:
                remote.delete(name)
                left = remote.stat(name) is not None
            except AppvaultError as exc:
                errors.append('removing the incomplete upload: %s' % exc.msg)
                left = True
            tried = len([e for e in errors if e.startswith('attempt')])
            raise AppvaultError('upload of %s to destination %s failed after %d attempt%s (%s); %s'
                                % (name, remote.name, tried, '' if tried == 1 else 's', '; '.join(errors),
                                   'the incomplete copy could not be removed; it has no checksum file, so it is listed as invalid'
                                   if left else 'nothing was left there'),
                                destination=remote.name, url=remote.url(name), attempts=errors, left_behind=bool(left))
        for path in extra:
            remote.upload_file(path, os.path.basename(path))
        remote.upload_file(side['checksum'], name + _manifest.CHECKSUM_SUFFIX)
        if remote.checksum_lines().get(name) != sha256:
            raise AppvaultError('destination %s: the checksum file of %s did not arrive intact' % (remote.name, name))
    result['duration'] = round(time.monotonic() - started, 1)
    return result


def catalogue(remote, verify=False):
    """Every archive-like object of the destination folder, newest first; returns (entries, ignored names)."""
    objects = remote.objects()
    names = set(o['Name'] for o in objects)
    digests = remote.checksum_lines() if any(n.endswith(_manifest.CHECKSUM_SUFFIX) for n in names) else {}
    entries = []
    ignored = []
    for obj in sorted(objects, key=lambda o: o['Name']):
        name = obj['Name']
        if not _catalog.is_listed(name):
            if not name.startswith('.') and not any(name.endswith(s) for s in _manifest.SIDECAR_SUFFIXES):
                ignored.append(name)
            continue
        mtime = (obj.get('ModTime') or '')[:19] + 'Z' if obj.get('ModTime') else None
        when = _catalog.name_time(name)
        entry = dict(name=name, path=remote.url(name), destination=remote.name, size=int(obj.get('Size', 0)), mtime=mtime,
                     created_at=_catalog.format_time(when) if when else mtime,
                     app=_catalog.NAME_TIME_RE.split(name)[0] if when else None, app_version=None, profile=None, label=None,
                     engines=[], paths=[], pinned=(name + _manifest.PIN_SUFFIX) in names,
                     encrypted=name.endswith('.age'), valid=False, reason=None, checksum='missing', sha256=None)
        if (name + _manifest.CHECKSUM_SUFFIX) not in names:
            entry['reason'] = 'no checksum file %s%s (an upload that did not finish)' % (name, _manifest.CHECKSUM_SUFFIX)
        elif name not in digests:
            entry['checksum'] = 'unreadable'
            entry['reason'] = 'the checksum file %s%s does not hold a sha256 line for it' % (name, _manifest.CHECKSUM_SUFFIX)
        else:
            entry.update(checksum='present', sha256=digests[name])
            if entry['encrypted'] and (name + _manifest.MANIFEST_SUFFIX) not in names:
                entry['reason'] = 'encrypted archive without its manifest sidecar %s%s' % (name, _manifest.MANIFEST_SUFFIX)
            elif verify:
                try:
                    remote.verify(name, entry['size'], entry['sha256'])
                    entry['checksum'] = 'ok'
                except AppvaultError as exc:
                    entry['checksum'] = 'mismatch'
                    entry['reason'] = exc.msg.replace('destination %s: ' % remote.name, '')
        entry['valid'] = entry['reason'] is None
        entries.append(entry)
    entries.sort(key=lambda e: (e['created_at'] or '', e['name']), reverse=True)
    return entries, ignored


def info(dest, verify=False, rclone_path=None):
    with Remote(dest, rclone_path) as remote:
        entries, ignored = catalogue(remote, verify)
        newest = _catalog.latest(entries)
        return dict(changed=False, destination=remote.name, url=remote.url(), backups=entries, ignored=ignored,
                    latest=newest['name'] if newest else None, latest_path=newest['path'] if newest else None,
                    count=len(entries), table=_catalog.table(entries))


def prune(dest, rules, verify=False, rclone_path=None, check_mode=False):
    """Apply retention at a destination with the catalogue's retention math; invalid objects are left alone.

    ``rules``: the module's keep_* values; when none is set, the destination's own, then keep_last 7.
    """
    if all(rules.get(k) is None for k in RULE_KEYS):
        rules = dict((k, dest.get(k)) for k in RULE_KEYS)
    rules = _catalog.retention_rules(**rules)
    with Remote(dest, rclone_path) as remote:
        entries, _ignored = catalogue(remote, verify)
        valid = [e for e in entries if e['valid']]
        items = [dict(name=e['name'], created_at=_catalog.parse_time(e['created_at']), pinned=e['pinned']) for e in valid]
        kept = _catalog.retention(items, **rules)
        removed = [e for e in valid if e['name'] not in kept]
        if not check_mode:
            for entry in removed:
                # The checksum file first: an interrupted prune leaves an invalid object, never a valid-looking one.
                for suffix in (_manifest.CHECKSUM_SUFFIX, '', _manifest.MANIFEST_SUFFIX, _manifest.PIN_SUFFIX):
                    remote.delete(entry['name'] + suffix)
        return dict(changed=bool(removed), destination=remote.name, removed=[e['name'] for e in removed],
                    kept=[dict(name=e['name'], created_at=e['created_at'], reasons=kept[e['name']]) for e in valid if e['name'] in kept],
                    invalid=[dict(name=e['name'], reason=e['reason']) for e in entries if not e['valid']], rules=rules)


def download(dest, dest_dir, backup='latest', rclone_path=None, check_mode=False):
    """Download a backup (``latest`` or a name) into ``dest_dir``, verify its sha256 against the destination's
    checksum file, then publish it with its sidecars.  Returns the module result (``path`` for a restore)."""
    started = time.monotonic()
    if not os.path.isdir(dest_dir):
        raise AppvaultError('backup directory %s does not exist' % dest_dir)
    with Remote(dest, rclone_path) as remote:
        entries, _ignored = catalogue(remote)
        if backup in (None, '', 'latest'):
            entry = _catalog.latest(entries)
            if entry is None:
                raise AppvaultError('destination %s (%s) holds no valid backup (%d listed)' % (remote.name, remote.url(), len(entries)))
        else:
            _catalog.check_name(backup, 'backup name')
            entry = next((e for e in entries if e['name'] == backup), None)
            if entry is None:
                raise AppvaultError('destination %s (%s) has no backup %s' % (remote.name, remote.url(), backup))
            if not entry['valid']:
                raise AppvaultError('backup %s at destination %s cannot be restored: %s' % (backup, remote.name, entry['reason']))
        name = entry['name']
        target = os.path.join(dest_dir, name)
        side = _manifest.sidecars(target)
        result = dict(changed=False, destination=remote.name, name=name, url=entry['path'], path=target, size=entry['size'],
                      sha256=entry['sha256'])
        if os.path.exists(target):
            if os.path.exists(side['checksum']) and _manifest.read_checksum_file(side['checksum']) == entry['sha256'] \
                    and _common.sha256_file(target) == entry['sha256']:
                result['duration'] = round(time.monotonic() - started, 1)
                return result
            raise AppvaultError('%s already exists and is not the backup at destination %s; rename or remove it first' % (target, remote.name))
        result['changed'] = True
        if check_mode:
            return result
        partial = _common.partial_name(target)
        try:
            remote.download_file(name, partial)
            facts = _common.seal(partial)
            if facts['size'] != entry['size'] or facts['sha256'] != entry['sha256']:
                raise AppvaultError('the copy of %s downloaded from destination %s does not match its checksum file '
                                    '(%d bytes, sha256 %s; expected %d bytes, %s)'
                                    % (name, remote.name, facts['size'], facts['sha256'], entry['size'], entry['sha256']))
            if entry['encrypted']:
                manifest_partial = _common.partial_name(side['manifest'])
                remote.download_file(name + _manifest.MANIFEST_SUFFIX, manifest_partial)
                _common.publish(manifest_partial, side['manifest'])
            _common.publish(partial, target, sealed=True)
        finally:
            _common.remove_path(partial)
        _manifest.write_checksum_file(target, entry['sha256'])
    result['duration'] = round(time.monotonic() - started, 1)
    return result
