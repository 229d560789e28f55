# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # Mirrors plugins/module_utils/_postgres.py connection_argument_spec().
    DOCUMENTATION = r'''
options:
  name:
    description:
      - Name of the database.
    type: str
    required: true
    aliases: [db, database]
  login_host:
    description:
      - Host name or IP address of the server.
      - When neither O(login_host) nor O(login_unix_socket) is set, libpq's default (the local socket) is used.
    type: str
    aliases: [host]
  login_port:
    description:
      - TCP port of the server (also selects the socket file name for a Unix socket).
    type: int
    default: 5432
    aliases: [port]
  login_user:
    description:
      - Role to connect as. Defaults to libpq's default (the operating system user).
    type: str
    aliases: [user]
  login_password:
    description:
      - Password of O(login_user).
      - It is written to a 0600 passfile in a private temporary directory and passed as E(PGPASSFILE); it never
        appears on a command line, in the result or in logs.
    type: str
    aliases: [password]
  login_unix_socket:
    description:
      - Directory of the server's Unix socket. Takes precedence over O(login_host).
    type: str
    aliases: [unix_socket]
  ssl_mode:
    description:
      - libpq's C(sslmode) for the connection.
    type: str
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
  maintenance_db:
    description:
      - Database used for server-level statements (create or drop a database, cluster globals).
    type: str
    default: postgres
  bin_dir:
    description:
      - Directory holding the PostgreSQL client programs to use.
      - When unset, the newest client found under C(/usr/lib/postgresql/*/bin), C(/usr/pgsql-*/bin) and E(PATH)
        is used, and it must be at least as new as the server's major version.
    type: path
  connect_timeout:
    description:
      - Seconds to wait for a connection.
    type: int
    default: 10
requirements:
  - PostgreSQL client programs (C(psql), C(pg_dump), C(pg_restore)) on the managed host, at least as new as the server.
  - C(zstd) on the managed host for zstd compression with clients older than PostgreSQL 16.
'''
