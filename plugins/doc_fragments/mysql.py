# -*- coding: utf-8 -*-
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # Mirrors plugins/module_utils/_mysql.py connection_argument_spec().
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
      - When neither O(login_host) nor O(login_unix_socket) is set, the client programs' default (the local socket,
        or what O(config_file) says) is used.
    type: str
    aliases: [host]
  login_port:
    description:
      - TCP port of the server. Used with O(login_host).
    type: int
    default: 3306
    aliases: [port]
  login_user:
    description:
      - Account to connect as. Defaults to what O(config_file) says, else the client programs' default (the
        operating system user).
    type: str
    aliases: [user]
  login_password:
    description:
      - Password of O(login_user).
      - It is written to a 0600 option file in a private temporary directory, passed to every client program as its
        first argument C(--defaults-extra-file); it never appears on a command line, in the result or in logs.
    type: str
    aliases: [password]
  login_unix_socket:
    description:
      - Path of the server's Unix socket file. Takes precedence over O(login_host).
    type: str
    aliases: [unix_socket]
  config_file:
    description:
      - The user's own MySQL option file (for example C(~/.my.cnf) or C(/etc/mysql/debian.cnf)) with connection
        settings and credentials. It is included (C(!include)) at the top of the private option file, so options
        given to the module win over it.
    type: path
  bin_dir:
    description:
      - Directory holding the client programs to use (C(mariadb)/C(mariadb-dump) or C(mysql)/C(mysqldump)).
      - When unset they are taken from E(PATH).
    type: path
  connect_timeout:
    description:
      - Seconds to wait for a connection (the queries made through C(mysql)/C(mariadb)).
    type: int
    default: 10
requirements:
  - MySQL or MariaDB client programs on the managed host. C(mariadb-dump) and C(mariadb) are used for MariaDB 10.4.6
    and newer, C(mysqldump) and C(mysql) otherwise.
  - C(zstd) or C(gzip) on the managed host for compression; C(grep) and C(sed).
notes:
  - The client programs also read the global option files (C(/etc/mysql/my.cnf)) and, after the private option
    file, the user's C(~/.my.cnf); a password set there would win over O(login_password).
'''
