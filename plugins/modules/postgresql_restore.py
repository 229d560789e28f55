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
      - Number of parallel C(pg_restore) jobs; V(0) is one per CPU core of the host. Cannot be combined with
        O(single_transaction). More than one job reads a seekable file, so a dump compressed as a whole is first
        decompressed into O(tmp_dir).
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
      - Read the whole dump once before restoring (C(zstd -dc | pg_restore --file=/dev/null); C(zstd -t) for plain
        SQL), so a corrupt or truncated dump fails before anything is changed.
      - Into a side database (O(clean=true)) or a new one, a failed restore changes nothing (that database is
        dropped), so the restore itself is the first read and this check runs only after a failure, to name a corrupt
        or truncated dump as such. Check mode always runs it.
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _common, _postgres


def argument_spec():
    return _postgres.restore_argument_spec()


def run(module):
    return _postgres.run_restore(module.params, module.check_mode)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    _common.finish(module, run)


if __name__ == '__main__':
    main()
