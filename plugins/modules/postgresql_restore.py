#!/usr/bin/python
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: postgresql_restore
short_description: Restore one PostgreSQL database from a pg_dump file, verified before and after
version_added: 0.1.0
description:
  - Restores a dump written by M(appvault.backup.postgresql_dump) or by C(pg_dump) by hand, in custom, directory
    or plain format, whole or compressed with zstd or gzip (detected from the file's content, not its name).
  - Reads the whole dump once before touching the database, so a corrupt or truncated dump fails with nothing
    changed (O(validate)).
  - Refuses a dump taken from a newer major version than the target server unless O(force=true), and uses a
    C(pg_restore) at least as new as both the server and the C(pg_dump) that wrote the dump.
  - By default the restore runs in one transaction and stops at the first error, so a failure leaves the database
    as it was. A database this module created is dropped again when the restore fails.
  - With O(jobs) above 1 C(pg_restore) works in parallel; it needs a seekable file, so a dump compressed as a whole
    is first decompressed into a temporary file.
  - Compares the restored database with an inventory recorded at dump time (O(expected_inventory)) and fails,
    listing the differences, when they do not match.
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.postgresql
  - appvault.backup.attributes
  - appvault.backup.attributes.ACTION_GROUP
attributes:
  check_mode:
    support: full
    details: Connects, validates the dump and its versions and reports what would run; changes nothing.
  diff_mode:
    support: none
  action_group:
    membership:
      - appvault.backup.postgresql
options:
  src:
    description:
      - Path of the dump file, or of the directory of a directory-format dump.
    type: path
    required: true
  create:
    description:
      - Create the database (C(TEMPLATE template0)) when it does not exist. Without it a missing database is an error.
    type: bool
    default: false
  owner:
    description:
      - Owner of the database when this module creates it.
    type: str
  clean:
    description:
      - Replace an existing database with the dump's content.
      - The dump is restored into a side database C(<name>_appvault_new), verified (O(expected_inventory)), and only
        then swapped in by renaming; the old database is dropped after the swap. Any failure before the swap
        leaves the existing database untouched. This needs the C(CREATEDB) privilege and no other session on the
        database at swap time (see O(terminate_connections)).
      - The new database keeps the old one's owner unless O(owner) is set; database-level settings
        (C(ALTER DATABASE ... SET)) of the old database are not carried over.
      - Without O(clean), the dump is restored into the existing database as it is, which fails on objects that
        already exist.
    type: bool
    default: false
  no_owner:
    description:
      - Do not restore the original owners of objects (C(--no-owner)); the objects belong to the restoring role.
      - Lets a dump be restored where the original roles do not exist. Ignored for plain-format dumps.
    type: bool
    default: true
  role:
    description:
      - Role to C(SET ROLE) to before restoring (C(--role)), so the objects belong to it.
    type: str
  jobs:
    description:
      - Number of parallel C(pg_restore) jobs. Cannot be combined with O(single_transaction).
    type: int
    default: 1
  single_transaction:
    description:
      - Restore in one transaction, so a failure changes nothing. Used only when O(jobs=1).
    type: bool
    default: true
  exit_on_error:
    description:
      - Stop at the first error. When false, errors are counted and the restore goes on.
    type: bool
    default: true
  schemas:
    description:
      - Restore only these schemas from a custom or directory dump.
    type: list
    elements: str
  force:
    description:
      - Restore a dump taken from a newer PostgreSQL major version than the target server. This usually fails.
    type: bool
    default: false
  validate:
    description:
      - Read the whole dump once before restoring (C(zstd -t), C(pg_restore --file=/dev/null)), so a corrupt or
        truncated dump fails before anything is changed.
    type: bool
    default: true
  expected_inventory:
    description:
      - The inventory recorded at dump time (the RV(appvault.backup.postgresql_dump#module:inventory) return value).
        After the restore the database's inventory and row counts must equal it, or the module fails listing the
        differences. Keys starting with C(_) are not compared.
    type: dict
  checksums:
    description:
      - Also compute per-table content checksums of the restored database (compared when O(expected_inventory)
        holds C(checksums)).
    type: bool
    default: false
  terminate_connections:
    description:
      - With O(clean=true) on an existing database, end other sessions connected to it before the swap.
        Without it, a database still in use makes the swap fail (and the original database stays as it was).
    type: bool
    default: false
  tmp_dir:
    description:
      - Directory for the temporary decompressed copy that a parallel restore of a compressed dump needs.
        Defaults to the directory of O(src).
    type: path
notes:
  - This module does not take a safety copy of the database it restores into; the C(appvault.backup.restore) role
    does before it calls this module.
seealso:
  - module: appvault.backup.postgresql_dump
  - name: pg_restore
    description: PostgreSQL's documentation of pg_restore.
    link: https://www.postgresql.org/docs/current/app-pgrestore.html
'''

EXAMPLES = r'''
- name: Restore the NocoBase dump into a new database on another server
  appvault.backup.postgresql_restore:
    name: nocobase
    login_host: 127.0.0.1
    login_user: postgres
    login_password: "{{ vault_pg_password }}"
    src: /var/backups/appvault/nocobase.pgc.zst
    create: true
    owner: nocobase

- name: Replace the objects of an existing database, as NocoBase documents it (--clean --if-exists --no-owner)
  appvault.backup.postgresql_restore:
    name: nocobase
    src: /var/backups/appvault/nocobase.pgc.zst
    clean: true

- name: Parallel restore, verified against the inventory recorded at dump time
  appvault.backup.postgresql_restore:
    name: exment
    src: /var/backups/appvault/exment.pgc.zst
    create: true
    jobs: 2
    expected_inventory: "{{ dump.inventory }}"
'''

RETURN = r'''
source:
  description: The dump restored.
  returned: always
  type: dict
  contains:
    path:
      description: Path of the dump.
      type: str
      sample: /var/backups/appvault/nocobase.pgc.zst
    size:
      description: Size in bytes.
      type: int
      sample: 10485760
    sha256:
      description: SHA-256 of the dump (see M(appvault.backup.postgresql_dump) for directories).
      type: str
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    format:
      description: Format detected from the content.
      type: str
      sample: custom
    compression:
      description: Compression around the whole dump, C(zstd), C(gzip) or C(none).
      type: str
      sample: zstd
    dumped_from:
      description: Server version recorded in the dump.
      type: str
      sample: "15.18"
    dumped_by:
      description: C(pg_dump) version recorded in the dump.
      type: str
      sample: "15.18"
database_created:
  description: Whether this module created the database.
  returned: always
  type: bool
  sample: true
duration:
  description: Seconds the restore took.
  returned: success, not in check mode
  type: float
  sample: 20.1
server_version:
  description: Version of the target server.
  returned: always
  type: str
  sample: "15.18"
tool_version:
  description: Version of the C(pg_restore) (or C(psql) for plain dumps) used.
  returned: always
  type: str
  sample: "15.18"
commands:
  description: The commands run (or that would run), with any secret masked.
  returned: always
  type: list
  elements: str
  sample:
    - "/usr/bin/zstd -dc -q | /usr/lib/postgresql/15/bin/pg_restore --no-password --dbname=dbname='nocobase' --exit-on-error
      --no-owner --single-transaction"
inventory:
  description: Object inventory and row counts of the restored database (see M(appvault.backup.postgresql_dump)).
  returned: success, not in check mode
  type: dict
  sample: {"rows": {"public.users": 3}}
verified:
  description: Whether the restored database matched O(expected_inventory). C(null) when none was given.
  returned: success, not in check mode
  type: bool
  sample: true
differences:
  description: Differences from O(expected_inventory), when the restore did not match it.
  returned: failure
  type: list
  elements: str
  sample: ["rows.public.users: expected 3, found 2"]
'''

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _common, _inventory, _postgres, _runner
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError


def argument_spec():
    spec = _postgres.connection_argument_spec()
    spec.update(
        src=dict(type='path', required=True),
        create=dict(type='bool', default=False),
        owner=dict(type='str'),
        clean=dict(type='bool', default=False),
        no_owner=dict(type='bool', default=True),
        role=dict(type='str'),
        jobs=dict(type='int', default=1),
        single_transaction=dict(type='bool', default=True),
        exit_on_error=dict(type='bool', default=True),
        schemas=dict(type='list', elements='str'),
        force=dict(type='bool', default=False),
        validate=dict(type='bool', default=True),
        expected_inventory=dict(type='dict'),
        checksums=dict(type='bool', default=False),
        tmp_dir=dict(type='path'),
        terminate_connections=dict(type='bool', default=False),
    )
    return spec


def run(module):
    params = module.params
    src = params['src']
    if params['jobs'] < 1:
        raise AppvaultError('jobs must be 1 or more, got %d' % params['jobs'])
    if not os.path.exists(src):
        raise AppvaultError('src %s does not exist' % src)
    if params['jobs'] > 1:
        params['single_transaction'] = False
    result = dict(changed=False, database_created=False)
    fmt, outer = _postgres.detect_format(src)
    if params['jobs'] > 1 and fmt == 'plain':
        raise AppvaultError('jobs: %d needs a custom or directory dump; %s is plain SQL' % (params['jobs'], src))
    with _common.SecretDir() as secrets:
        conn = _postgres.Connection(params, secrets)
        result['server_version'] = conn.connect(params['maintenance_db'])
        if fmt == 'plain':
            tool = _postgres.find_client('psql', 0, params.get('bin_dir'))
            header = _postgres.dump_header(src, fmt, outer, None)
        else:
            # The newest pg_restore reads any older archive; it must not be older than the server or the dump.
            any_restore = _postgres.find_client('pg_restore', 0, params.get('bin_dir'))
            header = _postgres.dump_header(src, fmt, outer, any_restore['path'])
            needed = max(conn.server_major, header['pg_dump_major'] or 0)
            tool = _postgres.find_client('pg_restore', needed, params.get('bin_dir'),
                                         'the newer of the server and the dump\'s pg_dump')
        result['tool_version'] = tool['version']
        result['source'] = dict(path=src, format=fmt, compression=outer or 'none',
                                dumped_from=header['server'], dumped_by=header['pg_dump'])
        if header['server_major'] and header['server_major'] > conn.server_major and not params['force']:
            raise AppvaultError(
                'the dump %s was taken from PostgreSQL %s, which is newer than the target server %s (PostgreSQL %s); '
                'restoring into an older major version is not supported. Set force: true to try anyway.'
                % (src, header['server'], conn.where, result['server_version']))
        if params['validate']:
            _postgres.validate_dump(src, fmt, outer, tool['path'] if fmt != 'plain' else None)
        exists = conn.database_exists(params['name'])
        if not exists and not params['create']:
            raise AppvaultError('database "%s" does not exist on %s; set create: true to create it' % (params['name'], conn.where))
        work_dir = params['tmp_dir'] or os.path.dirname(os.path.abspath(src))
        seekable = '<decompressed copy in %s>' % work_dir if _postgres.needs_seekable_copy(params, fmt, outer) else None
        stages = _postgres.restore_stages(conn, params, fmt, outer, tool['path'], seekable)[0]
        result['commands'] = [' | '.join(_runner.mask_argv(stage) for stage in stages)]
        result['changed'] = True
        if module.check_mode:
            result['database_created'] = not exists
            return result
        # Replacing an existing database: restore into a side database, verify it, then swap names, so the
        # original stays untouched until its replacement is complete and verified.
        side = params['name'] + '_appvault_new' if exists and params['clean'] else None
        result['database_created'] = not exists
        started = time.monotonic()
        target = side or params['name']
        owner = params['owner'] or (_postgres.database_owner(conn, params['name']) if side else None)
        if side:
            _postgres.drop_database(conn, side)
        if side or not exists:
            _postgres.create_database(conn, target, owner)
        conn.database = target
        try:
            _postgres.restore(conn, params, fmt, outer, tool['path'], work_dir)
            result['inventory'] = _postgres.inventory(conn, target, schemas=params['schemas'], checksums=params['checksums'])
            expected, actual = _postgres.comparable(params['expected_inventory'] or {}, result['inventory'])
            _inventory.verify(result, expected, 'the restored database "%s"' % params['name'], actual=actual)
            if side:
                _postgres.swap_database(conn, side, params['name'], params['terminate_connections'])
        except BaseException:
            if side or not exists:
                _postgres.drop_database(conn, target)
            raise
        finally:
            conn.database = params['name']
        result['duration'] = round(time.monotonic() - started, 3)
        result['source'].update(_common.artefact_facts(src))
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    _common.finish(module, run)


if __name__ == '__main__':
    main()
