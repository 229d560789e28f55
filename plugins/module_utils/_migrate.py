# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Migration: the verification of a migrated target against the source's manifest (database inventories and
per-table checksums, file trees), as table rows.  The target's definition (a mapping over the source's) is
_appdef.map_definition."""

from __future__ import annotations

import concurrent.futures
import fnmatch
import os

from ansible_collections.appvault.backup.plugins.module_utils import _archive, _common, _inventory, _manifest
from ansible_collections.appvault.backup.plugins.module_utils import _mysql, _postgres, _preflight, _sqlite
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError

MAX_DIFFERENCES = 10


# -- verification -------------------------------------------------------------------------------------------
def _db_inventory(db, secrets, checksums, expected=None):
    options = db.get('options') or {}
    if db['module'] == 'postgresql':
        conn = _postgres.Connection(_preflight.connection_params(db), secrets)
        conn.connect(conn.params['maintenance_db'])
        return _postgres.inventory(conn, db['name'], schemas=db.get('schemas'), exclude_schemas=options.get('exclude_schemas'),
                                   checksums=checksums, hashed=_postgres.hashed_checksums(expected))
    if db['module'] == 'mysql':
        conn = _mysql.Connection(_preflight.connection_params(db), secrets)
        conn.connect()
        return _mysql.inventory(conn, db['name'], checksums=checksums, exclude_tables=options.get('exclude_tables') or (),
                                exclude_table_data=options.get('exclude_table_data') or (),
                                legacy=_mysql.legacy_checksums(expected))
    return _sqlite.inventory(db['path'], checksums=checksums)


def _inventory_summary(inventory):
    rows = inventory.get('rows') or {}
    text = '%d tables, %d rows' % (len(rows), sum(int(v or 0) for v in rows.values()))
    if inventory.get('checksums'):
        text += ', %d checksums' % len(inventory['checksums'])
    return text


def verify_database(entry, db, secrets, checksums):
    """One row: the target database's inventory (and checksums) against the one the source recorded."""
    expected = entry.get('inventory') or {}
    row = dict(kind='database', id=entry['id'], source=_inventory_summary(expected), target='', equal=False, differences=[])
    if db is None:
        row.update(target='not defined', differences=['database %s is not in the target definition' % entry['id']])
        return row
    try:
        actual = _db_inventory(db, secrets, checksums and 'checksums' in expected, expected)
    except AppvaultError as exc:
        row.update(target='unreadable', differences=[exc.msg])
        return row
    row['target'] = _inventory_summary(actual)
    ignored = set()
    if db['module'] == 'postgresql':
        expected, actual = _postgres.comparable(expected, actual)
    elif db['module'] == 'mysql' and (db.get('options') or {}).get('definer', 'keep') != 'keep':
        ignored.add('definers')
    if 'checksums' not in actual or 'checksums' not in expected:
        ignored.update(('checksums', 'large_object_checksum'))
    row['compared'] = 'objects, row counts' + (', per-table checksums' if 'checksums' not in ignored else '')
    differences = _inventory.compare(_inventory.without(expected, ignored), _inventory.without(actual, ignored))
    row.update(equal=not differences, differences=differences[:MAX_DIFFERENCES])
    return row


def _excluded(ident, rel, patterns):
    name = '%s/%s' % (ident, rel) if rel else ident
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _tree_summary(files, size):
    return '%d files, %s' % (files, _common.human_size(size))


def verify_path(manifest, entry, dest, uid, gid, exclude):
    """One row: the target's tree at ``dest`` against the members the source archived (type, mode, owner, size, sha256)."""
    wanted = dict((rel, meta) for rel, meta in _archive.set_members(manifest, entry['member']).items()
                  if not _excluded(entry['id'], rel, exclude))
    row = dict(kind='path', id=entry['id'], compared='entries, modes, owners, sizes, sha256', differences=[])
    files = [meta for meta in wanted.values() if meta.get('type') == 'file']
    row['source'] = _tree_summary(len(files), sum(meta.get('size') or 0 for meta in files))
    tree = _archive.current_tree(dest)
    current = dict((rel, item) for rel, item in tree.items() if not _excluded(entry['id'], rel, exclude))
    present = [item.size for item in current.values() if item.kind == 'file']
    row['target'] = _tree_summary(len(present), sum(present))
    changes = _archive.tree_changes(dest, wanted, uid, gid, current=tree)
    differences = (['%s: missing' % rel for rel in changes['added']]
                   + ['%s: differs' % rel for rel in changes['changed']]
                   + ['%s: not in the source' % rel for rel in changes['removed'] if rel in current])
    row.update(equal=not differences, differences=_archive.short(differences, MAX_DIFFERENCES))
    return row


def _verify_paths(manifest, paths, uid, gid, exclude):
    rows = []
    for entry in manifest['paths']:
        if not entry.get('present', True):
            continue
        if entry['id'] not in paths:
            rows.append(dict(kind='path', id=entry['id'], source='archived', target='not defined', equal=False,
                             differences=['path %s is not in the target definition' % entry['id']]))
            continue
        rows.append(verify_path(manifest, entry, paths[entry['id']], uid, gid, exclude))
    return rows


def verify(archive, app, checksums=True, exclude=(), identity=None):
    """Compare the migrated target (the resolved definition ``app``) with the manifest of ``archive``."""
    if not os.path.isfile(archive):
        raise AppvaultError('archive %s does not exist' % archive)
    manifest = _manifest.read_from_archive(archive, identity)
    uid, gid = _archive.owner_ids(app.get('owner'), app.get('group'))
    databases = dict((db['id'], db) for db in app['databases'])
    # The trees are read and hashed in a thread while the database servers compute their checksums: the two use
    # different cores, and neither waits for the other.
    trees = _common.in_background(_verify_paths, manifest, dict((item['id'], item['path']) for item in app['paths']),
                                  uid, gid, list(exclude))
    try:
        with _common.SecretDir() as secrets:
            rows = [verify_database(entry, databases.get(entry['id']), secrets, checksums) for entry in manifest['databases']]
    finally:
        concurrent.futures.wait([trees])  # nothing of this call goes on after it
    rows.extend(trees.result())
    return dict(changed=False, equal=all(row['equal'] for row in rows), rows=rows, table=table(rows),
                archive=archive, created_at=manifest.get('created_at'), source_host=(manifest.get('host') or {}).get('hostname'))


def table(rows):
    """The rows as aligned text lines: what, source, target, result."""
    header = ('what', 'source', 'target', 'result')
    body = [('%s %s' % (row['kind'], row['id']), row.get('source') or '', row.get('target') or '',
             'equal' if row['equal'] else 'DIFFERENT: ' + '; '.join(row['differences'][:3])) for row in rows]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(3)]
    return ['  '.join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(line)).rstrip() for line in [header] + body]
