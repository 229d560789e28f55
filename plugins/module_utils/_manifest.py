# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup manifest: versioned schema, validation, reading it from an archive, sidecar files.

See docs/archive-format.md for the format this module reads and writes.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import tarfile

from ansible_collections.appvault.backup.plugins.module_utils import _common, _runner
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError

FORMAT = 'appvault.backup'
FORMAT_VERSION = 1
COLLECTION_VERSION = '0.1.0'  # keep equal to galaxy.yml (a unit test checks)
MANIFEST_MEMBER = 'manifest.json'
MAX_MANIFEST_BYTES = 256 * 1024 * 1024

CHECKSUM_SUFFIX = '.sha256'
MANIFEST_SUFFIX = '.manifest.json'
PIN_SUFFIX = '.pin'
SIDECAR_SUFFIXES = (CHECKSUM_SUFFIX, MANIFEST_SUFFIX, PIN_SUFFIX)

ZSTD_MAGIC = _common.ZSTD_MAGIC
GZIP_MAGIC = _common.GZIP_MAGIC
AGE_MAGIC = b'age-encryption.org/'
ZIP_MAGIC = b'PK\x03\x04'

MEMBER_TYPES = ('file', 'dir', 'symlink', 'hardlink')
SHA256_RE = re.compile(r'^[0-9a-f]{64}$')


def sidecars(archive):
    """The sidecar files that belong to ``archive``, by role."""
    return {'checksum': archive + CHECKSUM_SUFFIX, 'manifest': archive + MANIFEST_SUFFIX, 'pin': archive + PIN_SUFFIX}


# -- what kind of file is it ----------------------------------------------
def detect(path):
    """Return (container, compression) of ``path`` from its first bytes: ('tar', 'zstd'), ('age', None), ('zip', None)..."""
    with open(path, 'rb') as fileobj:
        head = fileobj.read(512)
    if head.startswith(ZSTD_MAGIC):
        return 'tar', 'zstd'
    if head.startswith(GZIP_MAGIC):
        return 'tar', 'gzip'
    if head.startswith(AGE_MAGIC):
        inner = 'gzip' if re.search(r'\.(tar\.gz|tgz)\.age$', path) else 'zstd'
        return 'age', inner
    if head.startswith(ZIP_MAGIC):
        return 'zip', None
    if len(head) >= 262 and head[257:262] == b'ustar':
        return 'tar', 'none'
    return 'unknown', None


def decompress_stages(path, identity=None):
    """argv stages that turn ``path`` into a tar stream on stdout (the file itself is the first stage's stdin)."""
    container, compression = detect(path)
    stages = []
    if container == 'age':
        if not identity:
            raise AppvaultError('%s is encrypted with age: give the identity file (identity) to read it' % path)
        stages.append(['age', '--decrypt', '--identity', identity])
    elif container != 'tar':
        raise AppvaultError('%s is not an appvault.backup archive (%s file)' % (path, container))
    if compression == 'zstd':
        stages.append(['zstd', '-q', '-d', '-c'])
    elif compression == 'gzip':
        stages.append(['gzip', '-d', '-c'])
    else:
        stages.append(['cat'])
    return stages


class _Forward(object):
    """A stream (a pipe) read once, front to back, with the ``tell`` and forward-only ``seek`` that tarfile's plain
    read mode asks of its file.

    tarfile's stream mode ('r|') reads 10 KiB at a time and joins and slices its buffer on every read: verifying a
    1.4 GB archive cost 4.4 CPU-seconds through it and 2.7 through this (the same members hashed)."""

    def __init__(self, fileobj):
        self.fileobj = fileobj
        self.pos = 0

    def read(self, size=-1):
        data = self.fileobj.read(size)
        self.pos += len(data)
        return data

    def tell(self):
        return self.pos

    def seek(self, pos, whence=os.SEEK_SET):
        if whence != os.SEEK_SET or pos < self.pos:
            raise tarfile.StreamError('cannot seek back in a stream (to %d from %d)' % (pos, self.pos))
        while self.pos < pos and self.read(min(pos - self.pos, _common.CHUNK)):
            pass
        return self.pos


def open_tar_stream(fileobj):
    """A tarfile.TarFile over the uncompressed tar stream ``fileobj`` (e.g. a _runner.Stream's stdout), read once
    front to back as with mode 'r|': members in order, each member's data read before the next member."""
    return tarfile.TarFile(fileobj=_Forward(fileobj), mode='r')


def read_from_archive(path, identity=None, members=True):
    """Read the manifest from the first member of ``path``, decompressing only the first bytes of the archive
    (``members``: see loads)."""
    stages = decompress_stages(path, identity)
    try:
        with _runner.Stream(stages, stdin_path=path) as stream:
            try:
                tar = open_tar_stream(stream.stdout)
                first = tar.next()
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise AppvaultError('%s: cannot read the archive: %s' % (path, exc))
            if first is None or first.name != MANIFEST_MEMBER or not first.isfile():
                raise AppvaultError('%s: the first member is not %s (not an appvault.backup archive)' % (path, MANIFEST_MEMBER))
            if first.size > MAX_MANIFEST_BYTES:
                raise AppvaultError('%s: %s is implausibly large (%d bytes)' % (path, MANIFEST_MEMBER, first.size))
            try:
                data = tar.extractfile(first).read()
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise AppvaultError('%s: cannot read %s: %s' % (path, MANIFEST_MEMBER, exc))
            # Leaving without finish() stops the decompressor: the rest of the archive is never read.
    except _runner.CommandError as exc:
        raise AppvaultError('%s: %s' % (path, exc.msg))
    return loads(data, path, members=members)


def loads(data, where, members_required=True, members=True):
    """The manifest in ``data`` (bytes or text), checked against the schema; AppvaultError naming the problems.

    ``members=False``: the member table is checked entry by entry as it is parsed and then left out (the result has
    ``members_omitted`` and ``member_count``), so a catalogue reads the manifest of a million files in little memory.
    """
    member_problems = []
    try:
        text = data.decode('utf-8') if isinstance(data, bytes) else data
        manifest = json.loads(text) if members else _without_members(text, member_problems)
    except ValueError as exc:  # UnicodeDecodeError too
        raise AppvaultError('%s: the manifest is not valid JSON: %s' % (where, exc))
    problems = validate(manifest, members_required and members) + member_problems
    if problems:
        raise AppvaultError('%s: invalid manifest: %s' % (where, '; '.join(problems)), problems=problems)
    return manifest


_SPACE = re.compile(r'[ \t\n\r]*')


def _walk_object(decoder, text, pos, value_of):
    """Parse the JSON object at ``pos`` of ``text``: ``value_of(key, position)`` parses each value and returns the
    position after it.  Returns the position after the object; ValueError when it is malformed."""
    pos = _SPACE.match(text, pos).end()
    if text[pos:pos + 1] != '{':
        raise ValueError('an object was expected at character %d' % pos)
    pos = _SPACE.match(text, pos + 1).end()
    if text[pos:pos + 1] == '}':
        return pos + 1
    while True:
        key, pos = decoder.raw_decode(text, pos)
        pos = _SPACE.match(text, pos).end()
        if not isinstance(key, str) or text[pos:pos + 1] != ':':
            raise ValueError('a key and ":" were expected at character %d' % pos)
        pos = _SPACE.match(text, value_of(key, _SPACE.match(text, pos + 1).end())).end()
        if text[pos:pos + 1] == '}':
            return pos + 1
        if text[pos:pos + 1] != ',':
            raise ValueError('"," or "}" was expected at character %d' % pos)
        pos = _SPACE.match(text, pos + 1).end()


def _without_members(text, problems):
    """The manifest object in ``text`` with its ``members`` table checked one entry at a time, counted, left out."""
    decoder = json.JSONDecoder()
    manifest = {}

    def member(name, pos):
        meta, pos = decoder.raw_decode(text, pos)
        problems.extend(_member_problems(name, meta))
        manifest['member_count'] += 1
        return pos

    def top(key, pos):
        if key == 'members' and text[pos:pos + 1] == '{':
            manifest.update(members_omitted=True, member_count=0)
            return _walk_object(decoder, text, pos, member)
        manifest[key], pos = decoder.raw_decode(text, pos)
        return pos

    end = _walk_object(decoder, text, 0, top)
    if text[end:].strip():
        raise ValueError('extra data after the manifest at character %d' % end)
    return manifest


def load_file(path, members_required=True, members=True):
    with open(path, 'rb') as fileobj:
        return loads(fileobj.read(), path, members_required, members)


def dumps(manifest):
    return json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False).encode('utf-8')


# -- schema -----------------------------------------------------------------
def _expect(problems, obj, key, types, where, required=True):
    if key not in obj:
        if required:
            problems.append('%s.%s is missing' % (where, key))
        return None
    value = obj[key]
    if not isinstance(value, types):
        problems.append('%s.%s has the wrong type (%s)' % (where, key, type(value).__name__))
        return None
    return value


def validate(manifest, members_required=True):
    """Return a list of problems with ``manifest`` (empty when it follows the schema)."""
    problems = []
    if not isinstance(manifest, dict):
        return ['the manifest is not an object']
    if manifest.get('format') != FORMAT:
        return ['format is %r, not %r' % (manifest.get('format'), FORMAT)]
    version = manifest.get('format_version')
    if not isinstance(version, int) or isinstance(version, bool):
        return ['format_version is missing']
    if version > FORMAT_VERSION:
        return ['format_version %d is newer than this collection reads (%d); upgrade appvault.backup' % (version, FORMAT_VERSION)]
    _expect(problems, manifest, 'collection_version', str, 'manifest')
    created = _expect(problems, manifest, 'created_at', str, 'manifest')
    if created is not None and not re.match(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$', created):
        problems.append('manifest.created_at %r is not a UTC timestamp (YYYY-MM-DDThh:mm:ssZ)' % created)
    app = _expect(problems, manifest, 'app', dict, 'manifest')
    if app is not None:
        _expect(problems, app, 'name', str, 'app')
    _expect(problems, manifest, 'host', dict, 'manifest')
    ids = set()
    for kind in ('databases', 'paths'):
        entries = _expect(problems, manifest, kind, list, 'manifest')
        for index, entry in enumerate(entries or []):
            where = '%s[%d]' % (kind, index)
            if not isinstance(entry, dict):
                problems.append('%s is not an object' % where)
                continue
            ident = _expect(problems, entry, 'id', str, where)
            if ident is not None and (kind, ident) in ids:
                problems.append('%s: duplicate id %r' % (where, ident))
            ids.add((kind, ident))
            _expect(problems, entry, 'member', str, where)
            if kind == 'databases':
                _expect(problems, entry, 'engine', str, where)
    members = manifest.get('members')
    if members is None and not members_required and manifest.get('members_omitted'):
        return problems
    if not isinstance(members, dict):
        problems.append('manifest.members is missing')
        return problems
    for name, meta in members.items():
        problems.extend(_member_problems(name, meta))
    return problems


def _member_problems(name, meta):
    """The problems of one entry of the member table (none when it follows the schema)."""
    where = 'members[%r]' % name
    if not isinstance(meta, dict) or meta.get('type') not in MEMBER_TYPES:
        return ['%s has no valid type' % where]
    if meta['type'] == 'file':
        if not isinstance(meta.get('size'), int) or not SHA256_RE.match(str(meta.get('sha256', ''))):
            return ['%s needs size and sha256' % where]
    elif meta['type'] in ('symlink', 'hardlink') and not isinstance(meta.get('target'), str):
        return ['%s needs a target' % where]
    return []


# -- a dump's entry --------------------------------------------------------------
def dump_entry(result, ident=None):
    """A dump's entry in the manifest's ``databases`` (as _archive.create takes it) from a dump module's result: id
    (``ident``, else the result's loop ``item`` or ``id``), path, engine (the MySQL flavour when known), versions,
    options, inventory."""
    if not isinstance(result, dict) or not isinstance(result.get('artefact'), dict):
        raise AppvaultError('dump_entry expects the result of a dump module (with artefact), got %r'
                            % (sorted(result) if isinstance(result, dict) else type(result).__name__,))
    if result.get('failed'):
        raise AppvaultError('dump_entry got a failed dump result: %s' % result.get('msg'))
    # mysql_dump and sqlite_dump name their flavour (mariadb, mysql, sqlite); postgresql_dump alone has a format.
    engine = result.get('flavour') or ('postgresql' if 'format' in result else None)
    if engine is None:
        raise AppvaultError('dump_entry cannot tell which engine produced %s' % result['artefact'].get('path'))
    options = dict((key, result[key]) for key in ('format', 'compression') if key in result)
    return dict(id=str(ident or result.get('item') or result.get('id')), path=result['artefact']['path'], engine=engine,
                server_version=result.get('server_version'), tool_version=result.get('tool_version'), options=options,
                inventory=result.get('inventory') or {})


# -- checksum sidecar ----------------------------------------------------------
def write_checksum_file(archive, digest, path=None):
    """Write ``<archive>.sha256`` in sha256sum's format, atomically, mode 0600."""
    path = path or archive + CHECKSUM_SUFFIX
    partial = _common.partial_name(path)
    with open(partial, 'w') as fileobj:
        fileobj.write('%s  %s\n' % (digest, os.path.basename(archive)))
    _common.publish(partial, path)
    return path


def read_checksum_file(path):
    """Return the hex digest a sha256sum-format file holds (its first line), or raise AppvaultError."""
    try:
        with open(path) as fileobj:
            line = fileobj.readline(4096)
    except (OSError, UnicodeDecodeError) as exc:
        raise AppvaultError('cannot read the checksum file %s: %s' % (path, exc))
    digest = line.strip().split(' ', 1)[0].lower()
    if not SHA256_RE.match(digest):
        raise AppvaultError('the checksum file %s does not hold a sha256 digest' % path)
    return digest


# -- where the backup was made -------------------------------------------------
def os_release():
    info = {}
    try:
        with open('/etc/os-release') as fileobj:
            for line in fileobj:
                key, sep, value = line.strip().partition('=')
                if sep and key in ('ID', 'VERSION_ID', 'PRETTY_NAME'):
                    info[key.lower()] = value.strip('"\'')
    except (OSError, UnicodeDecodeError):
        pass
    return info


def host_info():
    uname = platform.uname()
    return {
        'hostname': socket.gethostname(),
        'os': dict(os_release(), system=uname.system, kernel=uname.release, machine=uname.machine),
        'python': platform.python_version(),
    }
