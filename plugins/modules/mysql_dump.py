#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: mysql_dump
short_description: Dump one MySQL or MariaDB database with mysqldump or mariadb-dump, atomically and with its inventory
version_added: 0.1.0
description:
  - Detects the server's flavour and version (from the SQL function VERSION) and dumps with C(mariadb-dump) for MariaDB 10.4.6
    and newer, C(mysqldump) otherwise. C(--column-statistics=0) is added only where a MySQL 8 C(mysqldump) meets a
    server without that table (MariaDB, MySQL 5.x).
  - Dumps with C(--single-transaction --routines --triggers --events --hex-blob --skip-lock-tables
    --default-character-set=utf8mb4), the flags the NocoBase documentation uses, plus C(--no-tablespaces), so
    routines, triggers, events, views, defaults, indexes and binary data travel with the rows.
  - Dumps the one database without C(--databases), so the dump holds no C(CREATE DATABASE) or C(USE) and can be
    restored under another name.
  - Warns when the database holds non-transactional tables (MyISAM, Aria, MEMORY, ...), whose rows
    C(--single-transaction) cannot take at one consistent point in time.
  - Compresses with C(zstd -T<cores> -3) by default (or gzip, or not at all), writes to a hidden C(.partial) name,
    fsyncs and renames it to O(dest) with mode 0600; nothing is left behind on failure. The exit status of every
    stage of the pipeline is checked and an empty dump is a failure. What is on disk is dropped from the page cache
    as the dump goes, so a large dump does not push the host's working set out of memory.
  - Returns the artefact's size and sha256, the versions involved and the database's object inventory with exact
    per-table row counts (and optional content checksums), which M(appvault.backup.mysql_restore) verifies against.
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.mysql
  - appvault.backup.attributes
  - appvault.backup.attributes.ACTION_GROUP
attributes:
  check_mode:
    support: full
    details: Connects, detects the server, selects the client programs and reports the commands that would run;
      writes nothing.
  diff_mode:
    support: none
  action_group:
    membership:
      - appvault.backup.mysql
options:
  dest:
    description:
      - Path of the dump file. Its parent directory must exist.
    type: path
    required: true
  force:
    description:
      - Replace O(dest) (and O(users_dest)) when it exists. Without it an existing file is an error and nothing is
        touched.
    type: bool
    default: false
  compression:
    description:
      - Compression of the dump, by a pipeline stage (C(zstd -T<cores>) or C(gzip)).
    type: str
    choices: [zstd, gzip, none]
    default: zstd
  compression_level:
    description:
      - Compression level. Defaults to 3 for zstd and 1 for gzip (gzip's higher levels are too slow for a backup's
        critical path).
    type: int
  replace:
    description:
      - Write C(REPLACE) instead of C(INSERT) statements (C(--replace)), so restoring into tables that already hold
        some of the rows overwrites them instead of failing.
    type: bool
    default: false
  exclude_tables:
    description:
      - Do not dump these tables (C(--ignore-table=<db>.<table>)). They are left out of the inventory too.
    type: list
    elements: str
  exclude_table_data:
    description:
      - Dump the definition but not the rows of these tables, for example big log tables.
      - Uses C(--ignore-table-data) where the dump tool has it (MariaDB); otherwise the tables are left out of the
        main dump and their structure is dumped with C(--no-data) into the same file, ahead of the main dump.
      - Their row count in the inventory is 0, as the dump holds them.
    type: list
    elements: str
  users_dest:
    description:
      - Also write the server's accounts and grants to this file (mode 0600, not compressed).
      - MariaDB's C(mariadb-dump --system=users) writes it where available; otherwise (MySQL) it is built from
        C(SHOW CREATE USER) and C(SHOW GRANTS) for every account in C(mysql.user).
      - The file holds password hashes. Needs read access to the C(mysql) system database.
    type: path
  inventory:
    description:
      - Return the object inventory and exact per-table row counts of the database, read while the dump runs.
    type: bool
    default: true
  checksums:
    description:
      - Also return a per-table content checksum (row count and an order-independent sum of row hashes, written
        C(s:<rows>:<sum>)). Reads every row once more.
    type: bool
    default: false
notes:
  - The inventory is read while the dump runs, over connections of its own (MySQL and MariaDB cannot share the dump's
    snapshot with another session). For an exact match with the dump, stop writes first (the
    C(appvault.backup.backup) role can switch the application to maintenance mode).
  - The dumping account needs C(SELECT), C(SHOW VIEW), C(TRIGGER), C(EVENT) and, for routines on MySQL 8,
    C(SHOW_ROUTINE) (or C(SELECT) on C(mysql.proc) on MariaDB).
seealso:
  - module: appvault.backup.mysql_restore
  - name: mariadb-dump
    description: MariaDB's documentation of mariadb-dump.
    link: https://mariadb.com/kb/en/mariadb-dump/
  - name: mysqldump
    description: MySQL's documentation of mysqldump.
    link: https://dev.mysql.com/doc/refman/8.0/en/mysqldump.html
'''

EXAMPLES = r'''
- name: Dump the Exment database (zstd)
  appvault.backup.mysql_dump:
    name: exment
    login_host: 127.0.0.1
    login_user: exment
    login_password: "{{ vault_exment_db_password }}"
    dest: /var/backups/appvault/exment.sql.zst
  register: dump

- name: Dump with the credentials of Debian's maintenance file, without the rows of the log table
  appvault.backup.mysql_dump:
    name: exment
    config_file: /etc/mysql/debian.cnf
    dest: /var/backups/appvault/exment.sql.zst
    force: true
    exclude_table_data:
      - exm__logs
    checksums: true

- name: Set connection options once for all MySQL modules
  module_defaults:
    group/appvault.backup.mysql:
      login_host: db.example.com
      login_user: backup
      login_password: "{{ vault_backup_password }}"
  block:
    - name: Dump the database and the accounts
      appvault.backup.mysql_dump:
        name: exment
        dest: /var/backups/appvault/exment.sql.gz
        compression: gzip
        users_dest: /var/backups/appvault/users.sql
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
      sample: /var/backups/appvault/exment.sql.zst
    size:
      description: Size in bytes.
      type: int
      sample: 10485760
    sha256:
      description: SHA-256 of the file.
      type: str
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    type:
      description: Always C(file).
      type: str
      sample: file
compression:
  description: Compression applied.
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
  sample: "10.11.6"
flavour:
  description: C(mariadb) or C(mysql).
  returned: always
  type: str
  sample: mariadb
tool_version:
  description: Version of the dump tool used.
  returned: always
  type: str
  sample: "10.11.6"
commands:
  description: The commands run (or, in check mode, that would run), with any secret masked.
  returned: always
  type: list
  elements: str
  sample: ["/usr/bin/mariadb-dump --defaults-extra-file=/tmp/appvault-x/client.cnf --host=127.0.0.1 --port=3306 --user=exment
    --single-transaction ... -- exment | /usr/bin/zstd -q -T2 -3 -c"]
inventory:
  description:
    - Object inventory of the database, keyed by object kind (C(tables) with engine, collation and column
      definitions with defaults, C(views), C(routines) by kind, C(triggers), C(events), C(indexes), C(constraints)
      with foreign keys and checks, C(auto_increment) positions, C(sequences), C(definers)) and C(rows), the exact
      row count of every table. C(_rows_estimate) holds information_schema's estimates (not compared).
    - C(checksums) when O(checksums=true).
  returned: success, when O(inventory=true) and not in check mode
  type: dict
  sample: {"tables": {"users": {"engine": "InnoDB", "columns": ["id bigint(20) unsigned NOT NULL auto_increment"]}},
    "rows": {"users": 3}}
users:
  description: The accounts file written, when O(users_dest) is set.
  returned: when O(users_dest) is set and not in check mode
  type: dict
  sample: {"path": "/var/backups/appvault/users.sql", "size": 1024, "sha256": "0f3c...", "type": "file"}
'''


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _common, _mysql


def argument_spec():
    return _mysql.dump_argument_spec()


def run(module):
    return _mysql.run_dump(module.params, check_mode=module.check_mode, warn=module.warn, drop_cache=True)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    _common.finish(module, run)


if __name__ == '__main__':
    main()
