#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: mysql_restore
short_description: Restore one MySQL or MariaDB database from a mysqldump file, verified before and after
version_added: 0.1.0
description:
  - Restores a dump written by M(appvault.backup.mysql_dump) or by C(mysqldump)/C(mariadb-dump) by hand (one
    database, without C(--databases)), plain or compressed with zstd or gzip (detected from the file's content).
  - Reads the whole dump once (O(validate)); it must decompress and end with the dump tool's C(-- Dump completed)
    line, so a corrupt or truncated dump fails with nothing changed. The same pass lists the DEFINER accounts of
    views, routines, triggers and events; with O(definer=keep) every one of them must exist on the target server, or
    the module fails naming the missing accounts, with nothing changed.
  - Into an existing database without O(clean) this check runs before the restore, and so it does when the tables
    are restored over several connections (O(jobs)), which need the offsets it finds. Otherwise, into a database the
    module creates (a new one, or the side database of O(clean=true)), it runs alongside the restore on the core one
    connection leaves idle; when it fails, the restore is stopped and that database dropped, so nothing is changed.
  - Creates the database when it is missing (O(charset), O(collation)). The client stops at the first SQL error,
    which the failure message shows; a database this module created is dropped again on failure.
  - With O(clean=true) on an existing database, nothing is changed before the dump has been proven on this server.
    MySQL and MariaDB cannot rename a database, and tables with triggers, views, routines and events cannot be moved
    between databases, so the module does not swap names as M(appvault.backup.postgresql_restore) does. Instead it
    first restores into a side database C(<name>_appvault_new) and verifies it (SQL errors, missing accounts and
    O(expected_inventory) all fail there, with the original database untouched and the side database dropped). Only
    then is the original database dropped, recreated with its character set and collation, and the proven dump
    restored into it and verified again. Should this second pass fail (the server stopping, a full disk), the
    error says so and the verified copy is kept in C(<name>_appvault_new). With O(rehearse=false) (a caller that
    keeps a verified copy of the current state, such as the restore role's safety snapshot) the dump is checked,
    the original dropped and the dump restored into it once.
  - Without O(clean) an existing database is restored into as it is (the dump's C(DROP TABLE IF EXISTS) replaces
    its tables); DDL commits implicitly, so a failure part-way leaves it partly restored. Prefer O(clean=true).
  - Runs with C(sql_log_bin=0) when O(disable_binlog=true) and the account may set it (checked first; skipped
    silently otherwise), so a restore is not replicated.
  - Compares the restored database with an inventory recorded at dump time (O(expected_inventory)) and fails,
    listing the differences, when they do not match.
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.mysql
  - appvault.backup.attributes
  - appvault.backup.attributes.ACTION_GROUP
attributes:
  check_mode:
    support: full
    details: Connects, validates the dump and its DEFINER accounts and reports what would run; changes nothing.
  diff_mode:
    support: none
  action_group:
    membership:
      - appvault.backup.mysql
options:
  src:
    description:
      - Path of the dump file.
    type: path
    required: true
  create:
    description:
      - Create the database when it does not exist. Without it a missing database is an error.
    type: bool
    default: true
  charset:
    description:
      - Character set of a database this module creates.
    type: str
    default: utf8mb4
  collation:
    description:
      - Collation of a database this module creates. Defaults to the server's default for O(charset).
      - With O(clean=true) the recreated database keeps the original's character set and collation unless
        O(collation) is set.
    type: str
  clean:
    description:
      - Replace an existing database completely (objects not in the dump disappear). See the description for how
        the original is kept unchanged until the dump has been restored and verified on a side database.
    type: bool
    default: false
  rehearse:
    description:
      - With O(clean) over an existing database, restore into a side database first and verify it before the
        existing one is dropped; MySQL and MariaDB cannot rename a database, so the dump is then restored a second
        time, into the real name.
      - V(false) drops the existing database (after the dump has been checked) and restores straight into it, once.
        Only for a caller that keeps a verified copy of the current state elsewhere, such as the restore role's
        safety snapshot, from which it rolls back when this fails.
    type: bool
    default: true
  definer:
    description:
      - What to do with the DEFINER accounts of views, routines, triggers and events in the dump.
      - V(keep) restores them as they are; every account must exist on the target server.
      - V(strip) removes the DEFINER clauses, so the restoring account becomes the definer.
      - V(rewrite) replaces every DEFINER with O(definer_account).
      - The dump is filtered by a C(sed -E) stage in the pipeline; lines holding row data (C(INSERT)/C(REPLACE))
        are never changed.
    type: str
    choices: [keep, strip, rewrite]
    default: keep
  definer_account:
    description:
      - The account for O(definer=rewrite), as C(user@host) (host defaults to C(%)). It must exist on the target.
    type: str
  disable_binlog:
    description:
      - Run the restore with C(SET SESSION sql_log_bin = 0) when the account has the privilege for it, so the
        restore is not written to the binary log (nor replicated).
    type: bool
    default: true
  validate:
    description:
      - Read the whole dump once to check it (decompression, the completion line, the DEFINER accounts) - before the
        restore into an existing database, alongside it into a database the module creates (see the description).
    type: bool
    default: true
  jobs:
    description:
      - Connections that restore the dump's rows side by side, each a contiguous share of about the same estimated
        restore cost (the dump's bytes plus a fixed cost per row, so a run of small rows counts for more than a run of
        hex-encoded BLOBs of the same size; see RV(ranges)); every connection runs the dump's header of session
        settings first.
      - From an uncompressed dump (what the restore role extracts) the shares may cut inside a table, where an
        C(INSERT) statement starts, so one large table is restored by several connections. One connection first
        creates every table, then the connections restore the rows, then one connection creates the triggers (none
        fires on the restored rows, as in the dump), events, routines and final view definitions.
      - From a compressed dump each share is a contiguous run of whole tables (with their triggers); the events,
        routines and final view definitions follow on one connection once all of them are done.
      - Only into a database the module creates (a new one, or the side database of O(clean=true)); an existing
        database is always restored over one connection. The dump is read once first to find its tables (this is
        the O(validate) check, done before the restore then).
      - Default 2 on a host with 2 or more cores when the dump file is 32 MiB or larger, else 1. A dump without the
        tools' per-table comments (for example written with C(--compact)) is restored over one connection.
    type: int
  expected_inventory:
    description:
      - The inventory recorded at dump time (the RV(appvault.backup.mysql_dump#module:inventory) return value).
        After the restore the database's inventory and exact row counts must equal it, or the module fails listing
        the differences. Keys starting with C(_) are not compared, nor C(definers) when O(definer) is not V(keep).
    type: dict
  checksums:
    description:
      - Also compute per-table content checksums of the restored database (compared when O(expected_inventory)
        holds C(checksums); in the older form, without the C(s:) prefix, when those were recorded in it).
    type: bool
    default: false
notes:
  - Objects whose DEFINER is another account need the C(SET USER) (MariaDB 10.5+) or C(SUPER) privilege;
    O(definer=strip) avoids that.
  - With O(clean=true) (and O(rehearse=true)) the restore runs twice and the server needs room for a second copy of
    the database.
seealso:
  - module: appvault.backup.mysql_dump
'''

EXAMPLES = r'''
- name: Restore the Exment dump into a new database on another server
  appvault.backup.mysql_restore:
    name: exment
    login_host: 127.0.0.1
    login_user: root
    login_password: "{{ vault_mysql_root_password }}"
    src: /var/backups/appvault/exment.sql.zst
    expected_inventory: "{{ dump.inventory }}"

- name: Replace an existing database; the objects' definer becomes the restoring account
  appvault.backup.mysql_restore:
    name: exment
    config_file: /etc/mysql/debian.cnf
    src: /var/backups/appvault/exment.sql.zst
    clean: true
    definer: strip

- name: Migrate under another database name, objects owned by the application's account
  appvault.backup.mysql_restore:
    name: exment_staging
    src: /var/backups/appvault/exment.sql.zst
    definer: rewrite
    definer_account: exment@localhost
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
      sample: /var/backups/appvault/exment.sql.zst
    size:
      description: Size in bytes.
      type: int
      sample: 10485760
    sha256:
      description: SHA-256 of the dump.
      type: str
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    compression:
      description: Compression around the dump, C(zstd), C(gzip) or C(none).
      type: str
      sample: zstd
    dumped_from:
      description: Server version recorded in the dump's header.
      type: str
      sample: 10.11.6-MariaDB-0+deb12u1
    dumped_by:
      description: The dump tool recorded in the dump's header.
      type: str
      sample: MariaDB dump 10.19  Distrib 10.11.6-MariaDB, for debian-linux-gnu (x86_64)
    definers:
      description: DEFINER accounts found in the dump.
      type: list
      elements: str
      sample: ["`exment`@`localhost`"]
jobs:
  description: Connections that restored the tables side by side (see O(jobs)); 1 for a single connection.
  returned: always
  type: int
  sample: 2
ranges:
  description:
    - With several connections (RV(jobs) > 1), what each one restored, in the order of the dump, as the split
      estimated it. Empty for a single connection.
    - C(bytes) of the plain SQL, C(lines) of it (mariadb-dump writes one row a line; mysqldump one statement a line),
      C(cost) the estimate the split balanced (bytes plus 650 per line, calibrated on the benchmark data).
    - A share that cuts inside a table estimates its lines from its bytes (the table's lines spread evenly).
  returned: always
  type: list
  elements: dict
  sample: [{bytes: 156826368, lines: 48485, cost: 188340750}, {bytes: 104593014, lines: 211037, cost: 241767064}]
database_created:
  description: Whether this module created the database.
  returned: always
  type: bool
  sample: true
replaced_in_place:
  description: Whether the existing database was dropped and restored into once (O(clean=true), O(rehearse=false)).
  returned: always
  type: bool
  sample: false
duration:
  description: Seconds the restore took.
  returned: success, not in check mode
  type: float
  sample: 20.1
server_version:
  description: Version of the target server.
  returned: always
  type: str
  sample: "10.11.6"
flavour:
  description: C(mariadb) or C(mysql).
  returned: always
  type: str
  sample: mariadb
tool_version:
  description: Version of the client program used.
  returned: always
  type: str
  sample: "10.11.6"
commands:
  description:
    - The commands run (or that would run), with any secret masked.
    - A connection of a parallel restore from an uncompressed dump starts with C(bytes A-B, C-D of <dump>), the byte
      ranges a thread of the module feeds it (the dump's header, its part of the tables, without the LOCK TABLES
      lines).
  returned: always
  type: list
  elements: str
  sample: ["/usr/bin/zstd -dc -q | /usr/bin/mariadb --defaults-extra-file=/tmp/appvault-x/client.cnf --host=127.0.0.1 ... exment"]
binlog_disabled:
  description: Whether the restore ran with C(sql_log_bin=0).
  returned: always
  type: bool
  sample: true
inventory:
  description: Object inventory and row counts of the restored database (see M(appvault.backup.mysql_dump)).
  returned: success, not in check mode
  type: dict
  sample: {"rows": {"users": 3}}
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
  sample: ["rows.users: expected 3, found 2"]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _common, _mysql


def argument_spec():
    return _mysql.restore_argument_spec()


def run(module):
    return _mysql.run_restore(module.params, module.check_mode)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_if=[('definer', 'rewrite', ['definer_account'])])
    _common.finish(module, run)


if __name__ == '__main__':
    main()
