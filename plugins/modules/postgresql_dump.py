#!/usr/bin/python
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: postgresql_dump
short_description: Dump one PostgreSQL database with pg_dump, atomically and with its object inventory
version_added: 0.1.0
description:
  - Dumps one database with C(pg_dump) in custom (default), directory or plain format, with the flags NocoBase
    documents for its backups (C(--blobs --quote-all-identifiers)), so defaults, indexes, views, functions,
    procedures, triggers, sequences and large objects travel with the data.
  - Chooses a C(pg_dump) at least as new as the server and fails, naming both versions, when there is none.
  - Compresses with zstd by default, natively with C(pg_dump) 16 or newer, otherwise by piping C(--compress=0)
    output through C(zstd -T<cores>).
  - Writes to a hidden C(.partial) name, fsyncs and renames it to O(dest) with mode 0600; nothing is left behind on
    failure. The exit status of every stage of the pipeline is checked. What is on disk is dropped from the page
    cache as the dump goes, so a large dump does not push the host's working set out of memory.
  - Returns the artefact's size and sha256, the versions involved and the database's object inventory with
    per-table row counts, which M(appvault.backup.postgresql_restore) can verify against.
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.postgresql
  - appvault.backup.attributes
  - appvault.backup.attributes.ACTION_GROUP
attributes:
  check_mode:
    support: full
    details: Connects, selects the client programs and reports the command that would run; writes nothing.
  diff_mode:
    support: none
  action_group:
    membership:
      - appvault.backup.postgresql
options:
  dest:
    description:
      - Path of the dump file (a directory for O(format=directory)). Its parent directory must exist.
    type: path
    required: true
  force:
    description:
      - Replace O(dest) when it exists. Without it an existing O(dest) is an error and nothing is touched.
    type: bool
    default: false
  format:
    description:
      - C(pg_dump) output format. C(custom) and C(directory) are restored with C(pg_restore), C(plain) with C(psql).
    type: str
    choices: [custom, directory, plain]
    default: custom
  compression:
    description:
      - Compression of the dump.
      - V(zstd) uses C(pg_dump)'s own zstd support from version 16; with older clients a custom or plain dump is
        piped through C(zstd), and a directory dump is left uncompressed with a warning.
    type: str
    choices: [zstd, gzip, none]
    default: zstd
  compression_level:
    description:
      - Compression level. Defaults to 3 for zstd and 6 for gzip.
    type: int
  jobs:
    description:
      - Number of parallel C(pg_dump) workers. Values above 1 need O(format=directory).
    type: int
    default: 1
  schemas:
    description:
      - Dump only these schemas (C(--schema)). Also limits the returned inventory.
    type: list
    elements: str
  exclude_schemas:
    description:
      - Do not dump these schemas (C(--exclude-schema)).
    type: list
    elements: str
  exclude_tables:
    description:
      - Do not dump these tables (C(--exclude-table)), patterns as C(pg_dump) understands them.
    type: list
    elements: str
  exclude_table_data:
    description:
      - Dump the definition but not the rows of these tables (C(--exclude-table-data)), for example big log tables.
    type: list
    elements: str
  blobs:
    description:
      - Include large objects (C(--blobs)).
    type: bool
    default: true
  quote_all_identifiers:
    description:
      - Quote every identifier (C(--quote-all-identifiers)), which keeps the dump restorable into a newer server
        where more words are reserved.
    type: bool
    default: true
  globals_dest:
    description:
      - Also write the cluster globals (roles, tablespaces) with C(pg_dumpall --globals-only) to this path.
    type: path
  globals_role_passwords:
    description:
      - Include role password hashes in O(globals_dest). Needs a superuser; off by default, so the globals file
        carries no secret.
    type: bool
    default: false
  inventory:
    description:
      - Return the object inventory and per-table row counts of the database.
      - They are read in the same snapshot as the dump (C(pg_dump --snapshot) with a snapshot exported by a
        repeatable-read transaction), so the row counts are exactly those of the dump even while the application
        writes.
      - Sequence positions are not transactional. They are recorded (and verified on restore) when no sequence
        moved while the dump ran; otherwise they go to C(_sequence_positions), for information only, with a warning.
    type: bool
    default: true
  checksums:
    description:
      - Also return a per-table content checksum (row count and a sum of row hashes). Reads every row once more.
    type: bool
    default: false
seealso:
  - module: appvault.backup.postgresql_restore
  - name: pg_dump
    description: PostgreSQL's documentation of pg_dump.
    link: https://www.postgresql.org/docs/current/app-pgdump.html
'''

EXAMPLES = r'''
- name: Dump the NocoBase database (custom format, zstd)
  appvault.backup.postgresql_dump:
    name: nocobase
    login_host: 127.0.0.1
    login_user: nocobase
    login_password: "{{ vault_nocobase_db_password }}"
    dest: /var/backups/appvault/nocobase.pgc.zst
  register: dump

- name: Parallel directory dump without the rows of the log table
  appvault.backup.postgresql_dump:
    name: exment
    login_unix_socket: /var/run/postgresql
    dest: /var/backups/appvault/exment.dir
    format: directory
    jobs: 2
    exclude_table_data:
      - public.exm__logs

- name: Set connection options once for all PostgreSQL modules
  module_defaults:
    group/appvault.backup.postgresql:
      login_host: db.example.com
      login_user: backup
      login_password: "{{ vault_backup_password }}"
  block:
    - name: Dump only the schema of one NocoBase sub-application
      appvault.backup.postgresql_dump:
        name: nocobase
        schemas: [sub_a]
        dest: /var/backups/appvault/sub_a.pgc.zst
        force: true
'''

RETURN = r'''
artefact:
  description: The dump written.
  returned: success, not in check mode
  type: dict
  contains:
    path:
      description: Path of the dump.
      type: str
      sample: /var/backups/appvault/nocobase.pgc.zst
    size:
      description: Size in bytes (sum of the files for a directory dump).
      type: int
      sample: 10485760
    sha256:
      description: SHA-256 of the file; for a directory, of the sorted list of member names and their SHA-256.
      type: str
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    type:
      description: C(file) or C(directory).
      type: str
      sample: file
format:
  description: Format of the dump.
  returned: always
  type: str
  sample: custom
compression:
  description: Compression applied, and how (C(native), C(pipe) or C(none)).
  returned: always
  type: dict
  sample: {"method": "zstd", "level": 3, "how": "pipe"}
duration:
  description: Seconds the dump took.
  returned: success, not in check mode
  type: float
  sample: 12.5
server_version:
  description: Version of the server dumped.
  returned: always
  type: str
  sample: "15.18"
tool_version:
  description: Version of the C(pg_dump) used.
  returned: always
  type: str
  sample: "15.18"
commands:
  description: The commands run (or, in check mode, that would run), with any secret masked.
  returned: always
  type: list
  elements: str
  sample: ["/usr/lib/postgresql/15/bin/pg_dump --format=c --no-password --blobs --quote-all-identifiers --compress=0 | /usr/bin/zstd -q -T2 -3 -c"]
inventory:
  description:
    - Object inventory of the database, keyed by object kind (C(schemas), C(extensions), C(tables) with columns,
      C(indexes), C(constraints), C(views), C(routines), C(triggers), C(types), C(sequences), C(comments),
      C(large_objects)) and C(rows), the row count of every table and materialized view.
    - C(checksums) and C(large_object_checksum) when O(checksums=true).
  returned: success, when O(inventory=true) and not in check mode
  type: dict
  sample: {"tables": {"public.users": {"kind": "table", "columns": ["id bigint NOT NULL"]}}, "rows": {"public.users": 3}}
globals:
  description: The cluster globals file written, when O(globals_dest) is set.
  returned: when O(globals_dest) is set and not in check mode
  type: dict
  sample: {"path": "/var/backups/appvault/globals.sql", "size": 1024, "sha256": "0f3c...", "type": "file"}
'''


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _common, _postgres


def argument_spec():
    return _postgres.dump_argument_spec()


def run(module):
    return _postgres.run_dump(module.params, check_mode=module.check_mode, warn=module.warn, drop_cache=True)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    _common.finish(module, run)


if __name__ == '__main__':
    main()
