# -*- coding: utf-8 -*-
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""MySQL / MariaDB adapter: connection, flavour and client selection, inventory, dump and restore.

Everything talks to the server through the client programs (mysql / mariadb, mysqldump / mariadb-dump), so the
managed host needs no Python driver.  Credentials reach them only through a 0600 option file passed as the
first argument (``--defaults-extra-file``), never on argv.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import time

from ansible_collections.appvault.backup.plugins.module_utils import _common, _inventory, _runner
from ansible_collections.appvault.backup.plugins.module_utils._common import (
    GZIP_MAGIC, ZSTD_MAGIC, AppvaultError, compress_argv, decompress_argv, find_tool)

COMPLETED = '-- Dump completed'
TRANSACTIONAL_ENGINES = ('innodb', 'xtradb', 'rocksdb', 'tokudb', 'ndbcluster', 'ndb')
# A DEFINER clause as the dump tools write it; names are backquoted with `` for a backquote inside.
DEFINER_RE = r'DEFINER=`([^`]|``)*`@`([^`]|``)*`'
# Lines holding row data are never touched by the DEFINER filter.
DATA_LINE_RE = r'^(INSERT|REPLACE) INTO '
# The comment lines the dump tools start each table's part with, and the parts after the tables (events, routines,
# the final view definitions). A parallel restore splits the dump at them.
# split_plan: a line of a table's part (a row, as mariadb-dump writes them) costs a restore as much as this many
# bytes of SQL (calibrated on the benchmark data: docs/modules-mysql.md)
ROW_COST_BYTES = 650
TABLE_PART = '-- Table structure for table '
VIEW_STUB_PART = '-- Temporary table structure for view '
# The comment line a table's rows section starts with (it ends with that table's UNLOCK TABLES line); a dump's
# lines that start a row statement, where a parallel restore of a plain dump may cut a table's rows.
DATA_PART = '-- Dumping data for table '
ROW_STATEMENT = re.compile(b'\n(?:INSERT|REPLACE) INTO ')
CHUNK_SEARCH = 1 << 20  # bytes next_row_statement reads at a time
# A dump written with --no-autocommit opens each rows section with this and commits after its UNLOCK TABLES line; the
# lines before a section's first row fit in SECTION_HEAD bytes.
NO_AUTOCOMMIT = re.compile(b'\nset autocommit=0;', re.IGNORECASE)
SECTION_HEAD = 4096
LATER_PARTS = ('-- Dumping events for database ', '-- Dumping routines for database ', '-- Final view structure for view ')
# The lines a restore over several connections leaves out (see restore_steps).
LOCK_LINE_RE = r'LOCK TABLES `([^`]|``)+` WRITE;|UNLOCK TABLES;'


def connection_argument_spec():
    """Options shared by the MySQL modules; mirrored by the doc fragment appvault.backup.mysql."""
    return dict(
        name=dict(type='str', required=True, aliases=['db', 'database']),
        login_host=dict(type='str', aliases=['host']),
        login_port=dict(type='int', default=3306, aliases=['port']),
        login_user=dict(type='str', aliases=['user']),
        login_password=dict(type='str', no_log=True, aliases=['password']),
        login_unix_socket=dict(type='str', aliases=['unix_socket']),
        config_file=dict(type='path'),
        bin_dir=dict(type='path'),
        connect_timeout=dict(type='int', default=10),
    )


def connection_argument_spec_defaults():
    return dict((key, spec.get('default')) for key, spec in connection_argument_spec().items())


def sql_literal(value):
    return "'" + str(value).replace('\\', '\\\\').replace("'", "\\'") + "'"


def sql_ident(value):
    return '`' + str(value).replace('`', '``') + '`'


def option_value(value):
    """A value for a MySQL option file: double-quoted, so '#', ';', quotes and spaces survive."""
    return '"' + str(value).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n') + '"'


def option_file_text(params):
    """Content of the private option file: the user's own file included first, then the password."""
    lines = []
    if params.get('config_file'):
        lines.append('!include %s' % params['config_file'])
    lines.append('[client]')
    if params.get('login_password') is not None:
        lines.append('password=%s' % option_value(params['login_password']))
    return '\n'.join(lines) + '\n'


def connection_argv(params, option_file):
    """Connection arguments for any client program; the option file comes first, as the tools require."""
    argv = ['--defaults-extra-file=%s' % option_file]
    if params.get('login_unix_socket'):
        argv.append('--socket=%s' % params['login_unix_socket'])
    elif params.get('login_host'):
        argv.append('--host=%s' % params['login_host'])
        argv.append('--port=%d' % params['login_port'])
    if params.get('login_user'):
        argv.append('--user=%s' % params['login_user'])
    return argv


def parse_version(text):
    """('mariadb' | 'mysql', (major, minor, patch), 'x.y.z') from a VERSION() string or a client's --version."""
    flavour = 'mariadb' if 'mariadb' in text.lower() else 'mysql'
    match = None
    if flavour == 'mariadb':
        match = re.search(r'(\d+)\.(\d+)\.(\d+)-MariaDB', text, re.I)
    if not match:
        match = re.search(r'(?:Ver |Distrib |from |^)(\d+)\.(\d+)\.(\d+)', text)
    if not match:
        match = re.search(r'(\d+)\.(\d+)\.(\d+)', text)
    if not match:
        return flavour, (0, 0, 0), 'unknown'
    numbers = tuple(int(g) for g in match.groups())
    return flavour, numbers, '%d.%d.%d' % numbers


def tool_names(server_flavour, server_version, kind):
    """Client program names to look for, preferred first (kind: 'dump' or 'client')."""
    mariadb_first = server_flavour == 'mariadb' and server_version >= (10, 4, 6)
    names = {'dump': ['mariadb-dump', 'mysqldump'], 'client': ['mariadb', 'mysql']}[kind]
    return names if mariadb_first else list(reversed(names))


def find_program(names, bin_dir=None):
    for name in names:
        path = os.path.join(bin_dir, name) if bin_dir else shutil.which(name)
        if path and os.access(path, os.X_OK):
            return path
    where = bin_dir or 'PATH'
    raise AppvaultError('none of %s found in %s; install the MySQL or MariaDB client programs or set bin_dir'
                        % (', '.join(names), where))


def program_info(path):
    try:
        result = _runner.run([path, '--version'])
    except _runner.CommandError as exc:
        raise AppvaultError('%s --version failed: %s' % (path, exc.msg))
    flavour, version, text = parse_version(result['stdout'])
    return {'path': path, 'flavour': flavour, 'version_tuple': version, 'version': text}


def needs_column_statistics_off(tool, server_flavour, server_version):
    """MySQL 8's mysqldump reads information_schema.COLUMN_STATISTICS, which MariaDB and MySQL < 8 lack."""
    return tool['flavour'] == 'mysql' and tool['version_tuple'] >= (8, 0, 0) and (
        server_flavour == 'mariadb' or server_version < (8, 0, 0))


class Connection(object):
    """Connection parameters turned into client arguments; the password lives in a 0600 option file."""

    def __init__(self, params, secret_dir):
        self.params = params
        self.database = params['name']
        if params.get('config_file') and not os.path.isfile(params['config_file']):
            raise AppvaultError('config_file %s does not exist' % params['config_file'])
        self.option_file = secret_dir.write('client.cnf', option_file_text(params))
        self.secrets = [params.get('login_password')] if params.get('login_password') else []
        if params.get('login_unix_socket'):
            self.where = params['login_unix_socket']
        elif params.get('login_host'):
            self.where = '%s:%s' % (params['login_host'], params['login_port'])
        else:
            self.where = 'the default socket'
        self.user = params.get('login_user') or 'the default user'
        self.flavour = None
        self.version_tuple = None
        self.server_version = None
        self._client = None

    def conn_argv(self):
        return connection_argv(self.params, self.option_file)

    def client(self):
        if self._client is None:
            flavour = self.flavour or 'mariadb'
            version = self.version_tuple or (10, 4, 6)
            self._client = program_info(find_program(tool_names(flavour, version, 'client'), self.params.get('bin_dir')))
        return self._client

    def client_argv(self, database=None, extra=()):
        argv = [self.client()['path']] + self.conn_argv() + [
            '--connect-timeout=%d' % self.params['connect_timeout'], '--default-character-set=utf8mb4'] + list(extra)
        if database:
            argv.append(database)
        return argv

    def query(self, sql, database=None, raw=True):
        """Run SQL through the client in batch mode; return its output (tab separated, no column names)."""
        extra = ['--batch', '--skip-column-names']
        if raw:
            extra.append('--raw')
        argv = self.client_argv(database, extra + ['--execute=%s' % sql])
        try:
            return _runner.run(argv)['stdout']
        except _runner.CommandError as exc:
            raise AppvaultError(self.explain(exc.stages[-1]['stderr'] if exc.stages else exc.msg, database))

    def json_rows(self, sql, database=None):
        out = self.query(sql, database)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def explain(self, stderr, database=None):
        text = ' '.join(line.strip() for line in stderr.strip().splitlines() if line.strip()) or 'no error output'
        text = re.sub(r'^(mysql|mariadb|mysqldump|mariadb-dump): ', '', text)
        if re.search(r'errno:? 28\b|No space left', text):
            text += ' (no space left on the device)'
        for secret in self.secrets:
            text = text.replace(secret, '********')
        where = '%s at %s' % ('MariaDB' if self.flavour == 'mariadb' else 'MySQL' if self.flavour else 'MySQL/MariaDB', self.where)
        if database:
            where += ', database "%s"' % database
        return '%s, user %s: %s' % (where, self.user, text)

    def connect(self):
        """Check the connection; read flavour and version (SELECT VERSION())."""
        out = self.query('SELECT VERSION()').strip()
        self.flavour, self.version_tuple, self.server_version = parse_version(out)
        self._client = None  # choose the client for the flavour now known
        return self.server_version

    def database_exists(self, name):
        out = self.query('SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s' % sql_literal(name))
        return out.strip() == '1'

    def database_charset(self, name):
        out = self.query('SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA '
                         'WHERE SCHEMA_NAME = %s' % sql_literal(name)).split()
        return (out[0], out[1]) if len(out) == 2 else (None, None)

    def can_skip_binlog(self):
        """Whether this session may SET sql_log_bin = 0 (SUPER, BINLOG ADMIN or SYSTEM_VARIABLES_ADMIN)."""
        try:
            self.query('SET SESSION sql_log_bin = 0')
            return True
        except AppvaultError:
            return False


# -- inventory --------------------------------------------------------------
_INVENTORY_SQL = r"""
SET SESSION group_concat_max_len = 1048576;
SELECT JSON_OBJECT('k', 'table', 'name', TABLE_NAME, 'type', TABLE_TYPE, 'engine', ENGINE, 'collation', TABLE_COLLATION,
  'comment', TABLE_COMMENT, 'auto_increment', AUTO_INCREMENT, 'rows_estimate', TABLE_ROWS,
  'bytes_estimate', DATA_LENGTH)
  FROM information_schema.TABLES WHERE TABLE_SCHEMA = %(db)s;
SELECT JSON_OBJECT('k', 'column', 'table', TABLE_NAME, 'pos', ORDINAL_POSITION, 'name', COLUMN_NAME, 'def', CONCAT_WS(' ',
  COLUMN_NAME, COLUMN_TYPE, IF(IS_NULLABLE = 'NO', 'NOT NULL', NULL),
  IF(COLUMN_DEFAULT IS NULL, NULL, CONCAT('DEFAULT ', COLUMN_DEFAULT)), NULLIF(EXTRA, ''),
  IF(COALESCE(GENERATION_EXPRESSION, '') = '', NULL, CONCAT('AS (', GENERATION_EXPRESSION, ')')),
  IF(COLLATION_NAME IS NULL, NULL, CONCAT('COLLATE ', COLLATION_NAME)),
  IF(COLUMN_COMMENT = '', NULL, CONCAT('COMMENT ', QUOTE(COLUMN_COMMENT)))))
  FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %(db)s;
SELECT JSON_OBJECT('k', 'index', 'table', TABLE_NAME, 'name', INDEX_NAME, 'non_unique', NON_UNIQUE, 'type', INDEX_TYPE,
  'seq', SEQ_IN_INDEX, 'col', COLUMN_NAME, 'sub', SUB_PART)
  FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %(db)s;
SELECT JSON_OBJECT('k', 'constraint', 'table', TABLE_NAME, 'name', CONSTRAINT_NAME, 'type', CONSTRAINT_TYPE)
  FROM information_schema.TABLE_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %(db)s;
SELECT JSON_OBJECT('k', 'keycol', 'table', TABLE_NAME, 'name', CONSTRAINT_NAME, 'pos', ORDINAL_POSITION, 'col', COLUMN_NAME,
  'ref_schema', REFERENCED_TABLE_SCHEMA, 'ref_table', REFERENCED_TABLE_NAME, 'ref_col', REFERENCED_COLUMN_NAME)
  FROM information_schema.KEY_COLUMN_USAGE WHERE CONSTRAINT_SCHEMA = %(db)s AND REFERENCED_TABLE_NAME IS NOT NULL;
SELECT JSON_OBJECT('k', 'fkrule', 'table', TABLE_NAME, 'name', CONSTRAINT_NAME, 'delete', DELETE_RULE, 'update', UPDATE_RULE)
  FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %(db)s;
SELECT JSON_OBJECT('k', 'view', 'name', TABLE_NAME, 'definition', VIEW_DEFINITION, 'check', CHECK_OPTION,
  'security', SECURITY_TYPE, 'definer', DEFINER)
  FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %(db)s;
SELECT JSON_OBJECT('k', 'routine', 'name', ROUTINE_NAME, 'kind', LOWER(ROUTINE_TYPE), 'returns', DTD_IDENTIFIER,
  'md5', MD5(ROUTINE_DEFINITION), 'deterministic', IS_DETERMINISTIC, 'data_access', SQL_DATA_ACCESS,
  'security', SECURITY_TYPE, 'comment', ROUTINE_COMMENT, 'definer', DEFINER)
  FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %(db)s;
SELECT JSON_OBJECT('k', 'param', 'routine', SPECIFIC_NAME, 'kind', LOWER(ROUTINE_TYPE), 'pos', ORDINAL_POSITION,
  'def', CONCAT_WS(' ', PARAMETER_MODE, PARAMETER_NAME, DTD_IDENTIFIER))
  FROM information_schema.PARAMETERS WHERE SPECIFIC_SCHEMA = %(db)s AND ORDINAL_POSITION > 0;
SELECT JSON_OBJECT('k', 'trigger', 'name', TRIGGER_NAME, 'table', EVENT_OBJECT_TABLE, 'timing', ACTION_TIMING,
  'event', EVENT_MANIPULATION, 'order', ACTION_ORDER, 'md5', MD5(ACTION_STATEMENT), 'definer', DEFINER)
  FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %(db)s;
SELECT JSON_OBJECT('k', 'event', 'name', EVENT_NAME, 'md5', MD5(EVENT_DEFINITION), 'type', EVENT_TYPE,
  'every', CONCAT_WS(' ', INTERVAL_VALUE, INTERVAL_FIELD), 'status', STATUS, 'on_completion', ON_COMPLETION,
  'comment', EVENT_COMMENT, 'definer', DEFINER)
  FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %(db)s;
"""

_CHECKS_SQL = r"""
SELECT JSON_OBJECT('k', 'check', 'name', CONSTRAINT_NAME, 'clause', CHECK_CLAUSE)
  FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %(db)s;
"""


def _strip_schema(text, database):
    return text.replace(sql_ident(database) + '.', '') if text else text


def table_names(conn, database):
    rows = conn.json_rows("SELECT JSON_OBJECT('name', TABLE_NAME, 'engine', ENGINE) FROM information_schema.TABLES "
                          "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')" % sql_literal(database))
    return dict((row['name'], row['engine']) for row in rows)


def non_transactional_tables(conn, database, exclude=()):
    return sorted('%s (%s)' % (name, engine) for name, engine in table_names(conn, database).items()
                  if name not in exclude and (engine or '').lower() not in TRANSACTIONAL_ENGINES)


def inventory(conn, database=None, checksums=False, exclude_tables=(), exclude_table_data=(), legacy=False):
    """The database's object inventory with exact row counts (and content checksums when asked).

    ``exclude_tables`` are left out and ``exclude_table_data`` count 0 rows: the inventory describes the dump.
    ``legacy``: checksums in the older form (see checksum_sql), to compare with an inventory recorded in it
    (legacy_checksums()).
    """
    database = database or conn.database
    db = sql_literal(database)
    prefix = ''
    if conn.flavour == 'mysql' and conn.version_tuple >= (8, 0, 0):
        prefix = 'SET SESSION information_schema_stats_expiry = 0;'
    rows = conn.json_rows(prefix + _INVENTORY_SQL % {'db': db}, database)
    try:
        rows += conn.json_rows(_CHECKS_SQL % {'db': db}, database)
    except AppvaultError:
        pass  # MySQL < 8.0.16 has no CHECK constraints
    skip = set(exclude_tables or ())
    by_kind = {}
    for row in rows:
        if row.get('table') in skip or (row['k'] in ('table', 'view') and row['name'] in skip):
            continue
        by_kind.setdefault(row.pop('k'), []).append(row)
    inv = {'tables': {}, 'views': {}, 'routines': {}, 'triggers': {}, 'events': {}, 'indexes': {}, 'constraints': {},
           'auto_increment': {}, 'sequences': [], 'definers': {}, 'rows': {}, '_rows_estimate': {}}
    base = []
    for row in by_kind.get('table', []):
        if row['type'] == 'VIEW':
            continue
        if row['type'] == 'SEQUENCE':
            inv['sequences'].append(row['name'])
            continue
        base.append(row['name'])
        inv['tables'][row['name']] = {'engine': row['engine'], 'collation': row['collation'], 'comment': row['comment'],
                                      'columns': []}
        if row['auto_increment'] is not None:
            inv['auto_increment'][row['name']] = row['auto_increment']
        inv['_rows_estimate'][row['name']] = row['rows_estimate']
    inv['sequences'].sort()
    columns = {}
    for row in by_kind.get('column', []):
        if row['table'] in inv['tables']:
            columns.setdefault(row['table'], []).append((row['pos'], row['def'], row['name']))
    for table, cols in columns.items():
        inv['tables'][table]['columns'] = [c[1] for c in sorted(cols)]
    indexes = {}
    for row in by_kind.get('index', []):
        key = '%s.%s' % (row['table'], row['name'])
        entry = indexes.setdefault(key, {'unique': str(row['non_unique']) == '0', 'type': row['type'], 'cols': []})
        col = sql_ident(row['col']) if row['col'] else '(expression)'
        if row['sub']:
            col += '(%s)' % row['sub']
        entry['cols'].append((row['seq'], col))
    for key, entry in indexes.items():
        inv['indexes'][key] = '%s%s (%s)' % ('UNIQUE ' if entry['unique'] else '', entry['type'],
                                             ', '.join(c[1] for c in sorted(entry['cols'])))
    fk_cols = {}
    for row in by_kind.get('keycol', []):
        fk_cols.setdefault('%s.%s' % (row['table'], row['name']), []).append(row)
    rules = dict(('%s.%s' % (r['table'], r['name']), r) for r in by_kind.get('fkrule', []))
    checks = dict((r['name'], r['clause']) for r in by_kind.get('check', []))
    for row in by_kind.get('constraint', []):
        key = '%s.%s' % (row['table'], row['name'])
        kind = row['type']
        if kind == 'FOREIGN KEY':
            cols = sorted(fk_cols.get(key, []), key=lambda r: r['pos'])
            ref_table = cols[0]['ref_table'] if cols else '?'
            if cols and cols[0]['ref_schema'] != database:
                ref_table = '%s.%s' % (cols[0]['ref_schema'], ref_table)
            rule = rules.get(key, {})
            inv['constraints'][key] = 'FOREIGN KEY (%s) REFERENCES %s (%s) ON DELETE %s ON UPDATE %s' % (
                ', '.join(c['col'] for c in cols), ref_table, ', '.join(c['ref_col'] for c in cols),
                rule.get('delete'), rule.get('update'))
        elif kind == 'CHECK':
            inv['constraints'][key] = 'CHECK (%s)' % checks.get(row['name'], '?')
        else:
            inv['constraints'][key] = kind
    for row in by_kind.get('view', []):
        inv['views'][row['name']] = {'definition': _strip_schema(row['definition'], database), 'check': row['check'],
                                     'security': row['security']}
        inv['definers']['view %s' % row['name']] = row['definer']
    params = {}
    for row in by_kind.get('param', []):
        params.setdefault('%s %s' % (row['kind'], row['routine']), []).append((row['pos'], row['def']))
    for row in by_kind.get('routine', []):
        key = '%s %s' % (row['kind'], row['name'])
        inv['routines'][key] = {'kind': row['kind'], 'returns': row['returns'], 'md5': row['md5'],
                                'deterministic': row['deterministic'], 'data_access': row['data_access'],
                                'security': row['security'], 'comment': row['comment'],
                                'params': [p[1] for p in sorted(params.get(key, []))]}
        inv['definers'][key] = row['definer']
    for row in by_kind.get('trigger', []):
        inv['triggers'][row['name']] = {'table': row['table'], 'timing': row['timing'], 'event': row['event'],
                                        'order': row['order'], 'md5': row['md5']}
        inv['definers']['trigger %s' % row['name']] = row['definer']
    for row in by_kind.get('event', []):
        inv['events'][row['name']] = {'md5': row['md5'], 'type': row['type'], 'every': row['every'], 'status': row['status'],
                                      'on_completion': row['on_completion'], 'comment': row['comment']}
        inv['definers']['event %s' % row['name']] = row['definer']
    no_data = set(exclude_table_data or ())
    counted = sorted(t for t in base if t not in no_data)
    for table in sorted(no_data & set(base)):
        inv['rows'][table] = 0
    if checksums:
        # A checksum counts the rows too (count:sum): one read of every table, not a COUNT(*) pass and then this.
        sizes = dict((row['name'], row.get('bytes_estimate') or 0) for row in by_kind.get('table', []))
        inv['checksums'] = table_checksums(conn, database, columns, counted, sizes, legacy)
        for table, checksum in inv['checksums'].items():
            inv['rows'][table] = _inventory.checksum_rows(checksum)
        for table in sorted(no_data & set(base)):
            inv['checksums'][table] = '0:0' if legacy else SHA1_FORM + '0:0'
    elif counted:
        stmts = ["SELECT JSON_OBJECT('t', %s, 'n', COUNT(*)) FROM %s;" % (sql_literal(t), sql_ident(t)) for t in counted]
        for row in conn.json_rows('\n'.join(stmts), database):
            inv['rows'][row['t']] = row['n']
    inv['_server_version'] = conn.server_version
    inv['_flavour'] = conn.flavour
    return inv


SHA1_FORM = 's:'  # the prefix of a checksum in the current form


def checksum_sql(table, columns, legacy=False):
    """Order-independent content checksum of one table: ``s:<rows>:<sum>``, the row count and the sum of a 60-bit
    slice of each row's SHA1.

    A row is its values joined by commas, each value written as its byte length, a colon and its bytes (CAST AS
    BINARY: no collation or character set conversion), NULL as the bare letter N.  The lengths make the join
    unambiguous (('a,b', 'c') and ('a', 'b,c') differ), and NULL, '' and 'NULL' differ.  The session time zone is UTC,
    so TIMESTAMPs compare equal across servers.

    ``legacy``: the older form (``<rows>:<sum>``, no prefix: every value QUOTE()d and the row's MD5), which restores
    and migrations still compute to compare with an inventory recorded in it (archives written before this form).
    Quoting copies and escapes every byte of a BLOB: 10.4 s of server time against 2.6 s for the current form on the
    1.1 GiB benchmark database.
    """
    if legacy:
        parts = ', '.join('QUOTE(CAST(%s AS BINARY))' % sql_ident(c) for c in columns)
        digest, form = 'MD5', ''
    else:
        # LENGTH() counts the bytes of the value in its character set: those CAST AS BINARY gives.
        parts = ', '.join("IFNULL(CONCAT(LENGTH(%s), ':', CAST(%s AS BINARY)), 'N')" % (sql_ident(c), sql_ident(c))
                          for c in columns)
        digest, form = 'SHA1', SHA1_FORM
    return ("SELECT JSON_OBJECT('t', %s, 'c', CONCAT(%s, COUNT(*), ':', COALESCE(SUM(CAST(CONV(SUBSTRING(%s(CONCAT_WS(',', %s)), "
            "1, 15), 16, 10) AS UNSIGNED)), 0))) FROM %s;" % (sql_literal(table), sql_literal(form), digest, parts, sql_ident(table)))


def legacy_checksums(expected):
    """Whether checksums compared with ``expected`` (an inventory recorded at dump time) must be in the legacy form:
    when it has checksums and none is in the current one."""
    found = [str(value) for value in ((expected or {}).get('checksums') or {}).values()]
    return bool(found) and not any(value.startswith(SHA1_FORM) for value in found)


def table_checksums(conn, database, columns, tables, sizes=None, legacy=False):
    """{table: checksum} of ``tables``, read over one connection per core, the tables split between them by
    ``sizes`` (estimated bytes) so that each connection reads about as much: the server hashes every row on a core of
    its own for each connection.  ``legacy``: see checksum_sql."""
    groups = split_by_size(tables, sizes or {}, _common.cpu_count())

    def read(group):
        stmts = ["SET SESSION time_zone = '+00:00';"]
        for table in group:
            stmts.append(checksum_sql(table, [c[2] for c in sorted(columns.get(table, []))], legacy))
        return conn.json_rows('\n'.join(stmts), database)

    if len(groups) < 2:
        return dict((row['t'], row['c']) for group in groups for row in read(group))
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(groups)) as pool:
        results = list(pool.map(read, groups))
    return dict((row['t'], row['c']) for rows in results for row in rows)


def split_by_size(tables, sizes, count):
    """``tables`` in at most ``count`` non-empty groups of about equal total size (largest first, each to the
    lightest group; a table of unknown size counts 1)."""
    groups = [[] for _index in range(max(1, min(count, len(tables))))]
    loads = [0] * len(groups)
    for table in sorted(tables, key=lambda name: (-(sizes.get(name) or 1), name)):
        lightest = loads.index(min(loads))
        groups[lightest].append(table)
        loads[lightest] += sizes.get(table) or 1
    return [group for group in groups if group]


# -- dump -----------------------------------------------------------------


def dump_tool(conn):
    tool = program_info(find_program(tool_names(conn.flavour, conn.version_tuple, 'dump'), conn.params.get('bin_dir')))
    try:
        help_text = _runner.run([tool['path'], '--no-defaults', '--help'])['stdout']
    except _runner.CommandError:
        help_text = ''
    tool['ignore_table_data'] = '--ignore-table-data' in help_text
    tool['system_users'] = '--system=' in help_text
    return tool


def dump_plan(conn, params, tool, cores):
    """argv of the dump: {'main': argv, 'structure': argv or None, 'compress': argv or None}.

    Dumps the one database without --databases, so the dump has no CREATE DATABASE / USE and restores under any
    name.  Tables in exclude_table_data are dumped without rows: by --ignore-table-data where the tool has it,
    otherwise by a second, structure-only dump of those tables written before the main one.
    """
    db = params['name']
    common = [tool['path']] + conn.conn_argv() + [
        '--single-transaction', '--skip-lock-tables', '--hex-blob', '--default-character-set=utf8mb4',
        '--no-tablespaces', '--max-allowed-packet=1G']
    if needs_column_statistics_off(tool, conn.flavour, conn.version_tuple):
        common.append('--column-statistics=0')
    if tool['flavour'] == 'mysql':
        common.append('--set-gtid-purged=OFF')
    main = common + ['--routines', '--triggers', '--events']
    if params.get('replace'):
        main.append('--replace')
    for table in params.get('exclude_tables') or []:
        main.append('--ignore-table=%s.%s' % (db, table))
    no_data = list(params.get('exclude_table_data') or [])
    structure = None
    if no_data:
        if tool['ignore_table_data']:
            main.extend('--ignore-table-data=%s.%s' % (db, table) for table in no_data)
        else:
            main.extend('--ignore-table=%s.%s' % (db, table) for table in no_data)
            structure = common + ['--no-data', '--skip-comments', '--triggers', '--', db] + no_data
    main += ['--', db]
    return {'main': main, 'structure': structure,
            'compress': compress_argv(params['compression'], params.get('compression_level'), cores)}


def shown_commands(plan, secrets=()):
    tail = (' | ' + _runner.mask_argv(plan['compress'], secrets)) if plan['compress'] else ''
    shown = []
    if plan['structure']:
        shown.append(_runner.mask_argv(plan['structure'], secrets) + tail)
    shown.append(_runner.mask_argv(plan['main'], secrets) + tail)
    return shown


def dump(conn, plan, partial, drop_cache=False):
    """Write the dump to ``partial`` (structure-only part first, then the main dump; compressed frames concatenate)
    and seal it: hashed and flushed while the dump runs; returns its artefact_facts.  ``drop_cache``: see
    _common.SealWhileWriting."""
    with _common.SealWhileWriting(partial, drop_cache=drop_cache) as out:
        for argv in (plan['structure'], plan['main']):
            if not argv:
                continue
            stages = [argv] + ([plan['compress']] if plan['compress'] else [])
            try:
                _runner.pipeline(stages, stdout_fd=out.fd)
            except _runner.CommandError as exc:
                raise AppvaultError('dump failed: %s' % conn.explain(exc.msg, conn.database))
        return out.seal()


def _users_sql_generic(conn):
    """CREATE USER / GRANT statements for every account, where the dump tool cannot write them (MySQL)."""
    accounts = conn.json_rows("SELECT JSON_OBJECT('u', User, 'h', Host) FROM mysql.user ORDER BY User, Host")
    out = ['-- accounts and grants written by appvault.backup']
    for account in accounts:
        name = '%s@%s' % (sql_literal(account['u']), sql_literal(account['h']))
        for sql in ('SHOW CREATE USER %s' % name, 'SHOW GRANTS FOR %s' % name):
            try:
                text = conn.query(sql, raw=False)
            except AppvaultError:
                continue
            for line in text.splitlines():
                if line.strip():
                    line = line.replace('\\\\', '\\')
                    out.append(line.replace('CREATE USER', 'CREATE USER IF NOT EXISTS', 1) + ';')
    return '\n'.join(out) + '\n'


def dump_users(conn, tool, dest, force):
    """Accounts and grants: mariadb-dump --system=users, else SHOW CREATE USER / SHOW GRANTS (documented fallback)."""
    _common.check_destination(dest, force)
    partial = _common.partial_name(dest)
    try:
        command = None
        if tool['system_users'] and conn.flavour == 'mariadb':
            argv = [tool['path']] + conn.conn_argv() + ['--system=users', '--skip-comments', '--insert-ignore']
            try:
                _runner.pipeline([argv], stdout_path=partial)
                command = _runner.mask_argv(argv)
            except _runner.CommandError:
                # e.g. an account mariadb-dump cannot SHOW CREATE USER for (host names with skip-name-resolve):
                # the per-account fallback below skips such accounts instead of failing.
                command = None
        if command is None:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, 'w') as fileobj:
                fileobj.write(_users_sql_generic(conn))
            command = 'SHOW CREATE USER / SHOW GRANTS for every account in mysql.user'
        _common.publish(partial, dest)
    except BaseException:
        _common.remove_path(partial)
        raise
    return command


# -- restore --------------------------------------------------------------
def detect_compression(src):
    with open(src, 'rb') as fileobj:
        head = fileobj.read(4)
    if not head:
        raise AppvaultError('%s is empty, not a MySQL/MariaDB dump' % src)
    if head.startswith(ZSTD_MAGIC):
        return 'zstd'
    if head.startswith(GZIP_MAGIC):
        return 'gzip'
    return 'none'


def parse_account(text):
    """'user@host', '`user`@`host`' or "'user'@'host'" -> (user, host); host defaults to '%'."""
    text = text.strip()
    match = re.match(r"^[`'\"](.*)[`'\"]@[`'\"](.*)[`'\"]$", text)
    if match:
        return match.group(1), match.group(2)
    if '@' in text:
        user, host = text.rsplit('@', 1)
        return user, host or '%'
    return text, '%'


def definer_clause(user, host):
    return 'DEFINER=%s@%s' % (sql_ident(user), sql_ident(host))


def _sed_replacement(text):
    return text.replace('\\', '\\\\').replace('&', '\\&').replace('#', '\\#')


def definer_filter(mode, account=None):
    """A ``sed -E`` stage that strips or rewrites DEFINER clauses outside row data, or None to keep them."""
    if mode == 'keep':
        return None
    replacement = '' if mode == 'strip' else _sed_replacement(definer_clause(*account))
    script = '/%s/!s#%s#%s#g' % (DATA_LINE_RE.replace('/', '\\/'), DEFINER_RE, replacement)
    return [find_tool('sed'), '-E', '-e', script]


def scan_dump(src, outer):
    """Read the whole dump once: it must decompress, end with the tools' completion line, and its DEFINERs are listed.

    Returns {'definers': [(user, host), ...], 'header': first lines (tool and server version), 'tables': byte
    offsets (in the plain SQL) of the tables' parts, 'later': offset of the first part after them or None,
    'lines': line numbers of the tables' parts, 'later_line': line number of ``later``, 'rows': per table part
    its rows section as [offset, line, end, end line] (from its DATA_PART line to the end of its UNLOCK TABLES
    line; end None when that line was not found) or None, 'banner': offset of the main dump's first line (the
    tool's banner; after a structure-only dump written before it)} (grep counts the lines in the same pass:
    mariadb-dump writes one row a line, so a part's lines are about its rows; see split_plan).
    """
    parts = '|'.join('^' + re.escape(marker) for marker in (TABLE_PART, VIEW_STUB_PART, DATA_PART) + LATER_PARTS)
    markers = '^-- (MySQL|MariaDB) dump .*|^-- Server version.*|^%s.*|%s|^LOCK TABLES .*|^UNLOCK TABLES;.*' % (COMPLETED, parts)
    decompress = decompress_argv(outer)
    if decompress:  # the stream is decompressed once: one grep for both
        searches = ['%s|%s' % (DEFINER_RE, markers)]
    else:
        # A plain file is read by two greps side by side: the markers start a line, which grep finds fast, while a
        # DEFINER may stand anywhere in one; in one pattern the two make grep try every byte (on the 1.3 GB
        # benchmark dump 1.3-1.5 s, against 0.5 s and 0.3 s apart). Each match is at its own offset, so the two
        # outputs merged by offset are what the one pattern finds.
        searches = [markers, DEFINER_RE]

    def search(pattern):
        stages = ([decompress] if decompress else []) + [[find_tool('grep'), '-a', '-n', '-b', '-o', '-E', '-e', pattern]]
        try:
            out = _runner.pipeline(stages, stdin_path=src)[-1]['stdout']
        except _runner.CommandError as exc:
            grep = exc.stages[-1] if exc.stages else {}
            if grep.get('rc') == 1 and all(s['rc'] == 0 for s in exc.stages[:-1]):
                return []  # nothing matched
            raise AppvaultError('%s is corrupt or truncated: %s' % (src, exc.msg))
        split = [line.split(':', 2) for line in out.splitlines() if line.count(':') >= 2]
        return [(int(number), int(offset), text) for number, offset, text in split
                if number.isdigit() and offset.isdigit() and text.strip()]

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(searches)) as pool:
        found = sorted((item for items in pool.map(search, searches) for item in items), key=lambda item: item[1])
    if not found or not found[-1][2].startswith(COMPLETED):
        raise AppvaultError('%s is not a complete MySQL/MariaDB dump (no "%s" line at its end)' % (src, COMPLETED))
    definers = []
    header = {'tool': None, 'server': None}
    tables, lines, later, later_line, locks, rows, banner = [], [], None, None, [], [], 0
    for number, offset, line in found:
        if line.startswith(('LOCK TABLES ', 'UNLOCK TABLES')):
            if re.fullmatch(LOCK_LINE_RE, line):
                locks.append((offset, len(line.encode('utf-8')) + 1))
                if line.startswith('UNLOCK') and rows and rows[-1] and rows[-1][2] is None:
                    rows[-1][2:] = [locks[-1][0] + locks[-1][1], number + 1]
        elif line == DATA_PART:
            if rows and rows[-1] is None and later is None:
                rows[-1] = [offset, number, None, None]
        elif line.startswith('DEFINER='):
            match = re.match(r'^DEFINER=`((?:[^`]|``)*)`@`((?:[^`]|``)*)`$', line)
            account = (match.group(1).replace('``', '`'), match.group(2).replace('``', '`'))
            if account not in definers:
                definers.append(account)
        elif line in (TABLE_PART, VIEW_STUB_PART):
            tables.append(offset)
            lines.append(number)
            rows.append(None)
        elif line in LATER_PARTS and later is None:
            later, later_line = offset, number
        elif re.match(r'^-- (MySQL|MariaDB) dump', line):
            header['tool'] = header['tool'] or line[3:].strip()
            banner = offset if not tables else banner
        elif line.startswith('-- Server version') and not header['server']:
            header['server'] = line.split('version', 1)[1].strip()
    if outer == 'none':
        check_lines(src, locks, LOCK_LINE_RE)
    return {'definers': definers, 'header': header, 'tables': tables, 'later': later, 'lines': lines,
            'later_line': later_line, 'locks': locks, 'rows': rows, 'banner': banner}


def scan_file(src):
    """scan_dump of the dump file ``src``, compressed or not."""
    return scan_dump(src, detect_compression(src))


def check_lines(src, lines, regex):
    """Each (offset, length) of ``lines`` is a whole line of the file ``src`` that ``regex`` matches (a restore
    leaves these bytes out, so they must be exactly what the scan saw)."""
    with open(src, 'rb') as fileobj:
        for offset, length in lines:
            fileobj.seek(offset)
            text = fileobj.read(length)
            if offset:
                fileobj.seek(offset - 1)
            if (offset and fileobj.read(1) != b'\n') or not text.endswith(b'\n') or \
                    not re.fullmatch(regex.encode('utf-8'), text[:-1]):
                raise AppvaultError('%s: the line at byte %d is not what the scan of the dump read there' % (src, offset))


def split_plan(scan, jobs):
    """Byte ranges of the plain SQL for a restore over ``jobs`` connections side by side, or None for one.

    Each range is a contiguous run of whole tables' parts of about the same estimated restore cost (the first
    range includes the dump's header, the others get it prepended); ``later`` (events, routines, final views) runs
    after all of them, on one connection.  A part costs its bytes plus ROW_COST_BYTES per line: mariadb-dump
    writes one row a line, and a row costs the server far more than its bytes tell when it is small (an index
    entry per key, per-row work), hex-encoded BLOBs far less.  Without line numbers (``lines``) the cost is the
    bytes.  None when the dump has fewer than two tables' parts or an order this does not know.
    The plan's ``parts`` tell each range's bytes, lines and estimated cost.
    """
    tables, later = scan['tables'], scan['later']
    if jobs < 2 or len(tables) < 2 or later is None or tables[-1] > later:
        return None
    lines = scan.get('lines') or []
    if len(lines) != len(tables) or scan.get('later_line') is None:
        lines, later_line = [0] * len(tables), 0
    else:
        later_line = scan['later_line']

    def cost(index):
        """Estimated cost of the tables' parts before boundary ``index`` (len(tables): ``later``)."""
        offset, line = (tables[index], lines[index]) if index < len(tables) else (later, later_line)
        return offset - tables[0] + ROW_COST_BYTES * (line - lines[0])
    total = cost(len(tables))
    cuts = []
    for index in range(1, jobs):
        goal = total * index // jobs
        cut = min(range(1, len(tables)), key=lambda boundary: abs(cost(boundary) - goal))
        if not cuts or cut > cuts[-1]:
            cuts.append(cut)
    bounds = list(zip([0] + cuts, cuts + [len(tables)]))
    offsets = [(0 if first == 0 else tables[first], later if last == len(tables) else tables[last])
               for first, last in bounds]
    parts = [{'bytes': stop - start, 'lines': (later_line if last == len(tables) else lines[last]) - lines[first],
              'cost': cost(last) - cost(first)}
             for (start, stop), (first, last) in zip(offsets, bounds)]
    return {'header': tables[0], 'ranges': offsets, 'later': later, 'parts': parts, 'locks': scan.get('locks') or []}


def next_row_statement(fileobj, offset, end):
    """Offset of the first line at or after ``offset`` and before ``end`` in the plain dump ``fileobj`` that starts a
    row statement (INSERT or REPLACE), else ``end``. The dump tools escape a newline inside a value, so a line's
    start is a statement's start."""
    pos = max(offset - 1, 0)
    while pos < end:
        fileobj.seek(pos)
        chunk = fileobj.read(min(CHUNK_SEARCH, end - pos) + 16)
        found = ROW_STATEMENT.search(chunk)
        if found:
            return min(pos + found.start() + 1, end)
        if len(chunk) <= 16:
            break
        pos += len(chunk) - 16
    return end


def _merge(ranges):
    """Byte ranges (start, stop) with the adjacent ones joined and the empty ones left out."""
    merged = []
    for start, stop in ranges:
        if stop is not None and stop <= start:
            continue
        if merged and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], stop)
        else:
            merged.append((start, stop))
    return merged


def row_plan(scan, jobs, src):
    """A restore of the plain dump ``src`` over ``jobs`` connections that cuts inside a table: None when its scan
    (scan_dump) does not show every table's rows section, else a plan in three steps of (start, stop) byte ranges:

    1. one connection: the dump's header and every table's part without its rows section (DROP and CREATE TABLE, the
       views' stand-ins);
    2. ``jobs`` connections side by side: the header (from the main dump's banner), then a contiguous share of all
       the tables' rows sections of about the same estimated cost (split_plan's: bytes plus ROW_COST_BYTES a line,
       spread evenly over a table's section), cut where a row statement starts (next_row_statement), so one large
       table is restored by several connections;
    3. one connection: the header, what follows each table's rows (its triggers: none fires while rows go in, as in
       the dump), then the events, routines and final views.

    Returns {'steps': [[ranges], ...], 'parts': per connection of step 2 {bytes, lines (estimated), cost},
    'locks': the lock lines to leave out}.
    """
    tables, later, sections = scan['tables'], scan['later'], scan.get('rows') or []
    if jobs < 2 or not tables or later is None or tables[-1] > later or len(sections) != len(tables):
        return None
    header = (scan.get('banner') or 0, tables[0])
    structure, rows, after = [(0, tables[0])], [], []
    for start, stop, section in zip(tables, tables[1:] + [later], sections):
        if section is None:
            structure.append((start, stop))
            continue
        begin, line, end, end_line = section
        if end is None or not start < begin < end <= stop:
            return None  # where its rows end is unknown: a trigger after them could fire on another connection's rows
        structure.append((start, begin))
        rows.append((begin, end, end_line - line, end - begin + ROW_COST_BYTES * (end_line - line)))
        after.append((end, stop))
    total = sum(row[3] for row in rows)
    if not total:
        return None
    cuts, done = [rows[0][0]], 0
    with open(src, 'rb') as fileobj:
        for begin, _end, _lines, _cost in rows:
            fileobj.seek(begin)
            if NO_AUTOCOMMIT.search(fileobj.read(SECTION_HEAD)):
                return None  # a share ending inside a table would leave its rows uncommitted (--no-autocommit)
        for begin, end, _lines, cost in rows:
            while len(cuts) < jobs and done + cost >= total * len(cuts) / jobs:
                guess = begin + int((end - begin) * (total * len(cuts) / jobs - done) / cost)
                cuts.append(max(cuts[-1], next_row_statement(fileobj, guess, end)))
            done += cost
    cuts = cuts[:jobs] + [rows[-1][1]]
    shares, parts = [], []
    for low, high in zip(cuts, cuts[1:]):
        pieces = [(max(begin, low), min(end, high), lines, cost, end - begin) for begin, end, lines, cost in rows
                  if max(begin, low) < min(end, high)]
        if not pieces:
            continue
        shares.append([header] + [(start, stop) for start, stop, _l, _c, _s in pieces])
        parts.append({'bytes': sum(stop - start for start, stop, _l, _c, _s in pieces),
                      'lines': int(sum(lines * (stop - start) / size for start, stop, lines, _c, size in pieces)),
                      'cost': int(sum(cost * (stop - start) / size for start, stop, _l, cost, size in pieces))})
    if len(shares) < 2:
        return None
    return {'steps': [[_merge(structure)], shares, [[header] + _merge(after + [(later, None)])]], 'parts': parts,
            'locks': scan.get('locks') or []}


def missing_accounts(conn, accounts):
    """Accounts from ``accounts`` that do not exist on the server; None when this user may not tell."""
    missing = []
    for user, host in accounts:
        try:
            conn.query('SHOW GRANTS FOR %s@%s' % (sql_literal(user), sql_literal(host)))
        except AppvaultError as exc:
            if 'no such grant' in exc.msg.lower() or '1141' in exc.msg:
                missing.append('`%s`@`%s`' % (user, host))
            elif 'denied' in exc.msg.lower():
                return None
            else:
                raise
    return missing


def create_database(conn, name, charset='utf8mb4', collation=None):
    sql = 'CREATE DATABASE %s CHARACTER SET %s' % (sql_ident(name), charset)
    if collation:
        sql += ' COLLATE %s' % collation
    conn.query(sql)


def drop_database(conn, name):
    conn.query('DROP DATABASE IF EXISTS %s' % sql_ident(name))


# One pipeline of a restore: its stages, and the byte ranges of the dump its first stage reads (None: all of it).
Pipe = collections.namedtuple('Pipe', 'stages ranges')


def _without(skips, start, stop):
    """The byte ranges of [start, stop) (stop None: to the end) without the (offset, length) ``skips``."""
    ranges, pos = [], start
    for offset, length in sorted(skips):
        if offset < start or (stop is not None and offset >= stop):
            continue
        if offset > pos:
            ranges.append((pos, offset - pos))
        pos = max(pos, offset + length)
    if stop is None or stop > pos:
        ranges.append((pos, None if stop is None else stop - pos))
    return ranges


def restore_steps(conn, outer, database, definer_stage, skip_binlog, plan=None, header_path=None):
    """The restore as steps run one after the other, each a list of Pipes run side by side.

    Without a ``plan`` one pipeline reads the whole dump; with one of row_plan (a plain dump) each step's
    connections are fed their ranges; with one of split_plan each range goes to its own connection, then the parts
    after the tables; every connection but the first gets the dump's header first.
    The LOCK TABLES lines are left out: LOCK TABLES fixes the tables a statement may touch when it runs, so a child
    table with ON DELETE CASCADE that the other connection creates after this one's LOCK TABLES of its parent fails
    the next INSERT ("was not locked with LOCK TABLES"); InnoDB gains nothing from these locks.  From a plain dump
    a thread feeds each connection its byte ranges (_runner.RangeFeeder, the lock lines as the scan found them
    left out); from a compressed one every range decompresses the dump up to its end and cuts it with
    tail/head, prepends ``header_path`` and drops the lock lines with grep.
    """
    extra = ['--batch', '--max-allowed-packet=1G']
    if skip_binlog:
        extra.append('--init-command=SET SESSION sql_log_bin = 0')
    tail = ([definer_stage] if definer_stage else []) + [conn.client_argv(database, extra)]
    decompress = decompress_argv(outer)
    if not plan:
        return [[Pipe(([decompress] if decompress else []) + tail, None)]]
    if plan.get('steps'):  # row_plan's, of a plain dump
        locks = plan.get('locks', ())
        return [[Pipe(tail, [piece for start, stop in ranges for piece in _without(locks, start, stop)])
                 for ranges in step] for step in plan['steps']]

    def part(start=0, stop=None):
        if not decompress:
            return Pipe(tail, ([(0, plan['header'])] if start else []) + _without(plan.get('locks', ()), start, stop))
        argv = [decompress]
        if start:
            argv.append([find_tool('tail'), '-c', '+%d' % (start + 1)])
        if stop is not None:
            argv.append([find_tool('head'), '-c', '%d' % (stop - start)])
        if start:
            argv.append([find_tool('cat'), header_path, '-'])
        argv.append([find_tool('grep'), '-a', '-v', '-x', '-E', '-e', LOCK_LINE_RE])
        return Pipe(argv + tail, None)
    return [[part(start, stop) for start, stop in plan['ranges']], [part(plan['later'])]]


def describe_pipe(pipe, src, secrets=()):
    """A pipe as text for ``commands`` (secrets masked; the ranges a thread feeds it as a first pseudo-stage)."""
    text = ' | '.join(_runner.mask_argv(stage, secrets) for stage in pipe.stages)
    if pipe.ranges is None:
        return text
    ranges = ', '.join('%d-%s' % (offset, 'end' if count is None else offset + count) for offset, count in pipe.ranges)
    return 'bytes %s of %s | %s' % (ranges, src, text)


def write_header(src, outer, plan, dest):
    """The dump's header (session settings before the first table) into ``dest``, for the later connections."""
    decompress = decompress_argv(outer)
    _runner.pipeline(([decompress] if decompress else []) + [[find_tool('head'), '-c', '%d' % plan['header']]],
                     stdin_path=src, stdout_path=dest)


def restore(conn, steps, src, database, alongside=None):
    """Run the restore ``steps`` (restore_steps); ``alongside`` (a callable) runs while the step of the most
    connections (the first of them) restores.

    When ``alongside`` raises, or one connection fails, the clients are killed and the error propagates (the
    caller drops what the unfinished restore wrote); a client's own failure is reported after ``alongside``.
    """
    widest = max(range(len(steps)), key=lambda index: len(steps[index]))
    try:
        for index, step in enumerate(steps):
            with contextlib.ExitStack() as stack:
                streams = [stack.enter_context(_runner.Stream(pipe.stages, stdin_path=src, stdin_ranges=pipe.ranges))
                           for pipe in step]
                if alongside is not None and index == widest:
                    alongside()
                for stream in streams:
                    stream.finish()
    except _runner.CommandError as exc:
        message = conn.explain(exc.msg, database)
        if re.search(r'SUPER|SET USER|SET_USER_ID', exc.msg):
            message += ('. Creating objects with another account as DEFINER needs the SET USER (or SUPER) privilege; '
                        'set definer: strip to make the restoring user their definer')
        raise AppvaultError('restore into database "%s" failed: %s' % (database, message))


def dump_argument_spec():
    """The options of the mysql_dump module."""
    spec = connection_argument_spec()
    spec.update(
        dest=dict(type='path', required=True),
        force=dict(type='bool', default=False),
        compression=dict(type='str', default='zstd', choices=['zstd', 'gzip', 'none']),
        compression_level=dict(type='int'),
        replace=dict(type='bool', default=False),
        exclude_tables=dict(type='list', elements='str'),
        exclude_table_data=dict(type='list', elements='str'),
        users_dest=dict(type='path'),
        inventory=dict(type='bool', default=True),
        checksums=dict(type='bool', default=False),
    )
    return spec


def run_dump(params, check_mode=False, warn=None, drop_cache=False):
    """What the mysql_dump module does, for the module and the host-side runner alike: ``params`` as the
    module's argument spec gives them (defaults filled in), ``warn`` called with each warning.  ``drop_cache``:
    the module's dump is dropped from the page cache once on disk; a dump the archive reads next is not."""
    warn = warn or (lambda msg: None)
    result = dict(changed=False)
    dest = params['dest']
    _common.check_destination(dest, params['force'])
    if params['users_dest']:
        _common.check_destination(params['users_dest'], params['force'])
    cores = _common.cpu_count()
    with _common.SecretDir() as secrets:
        conn = Connection(params, secrets)
        result['server_version'] = conn.connect()
        result['flavour'] = conn.flavour
        if not conn.database_exists(params['name']):
            raise AppvaultError('database "%s" does not exist on %s' % (params['name'], conn.where))
        tool = dump_tool(conn)
        result['tool_version'] = tool['version']
        plan = dump_plan(conn, params, tool, cores)
        level = params['compression_level']
        if level is None and params['compression'] != 'none':
            level = 3 if params['compression'] == 'zstd' else 1
        result['compression'] = dict(method=params['compression'], level=level,
                                     how='none' if params['compression'] == 'none' else 'pipe')
        result['commands'] = shown_commands(plan, conn.secrets)
        skipped = set(params['exclude_tables'] or [])
        loose = non_transactional_tables(conn, params['name'], skipped)
        if loose:
            warn('database "%s" has non-transactional tables, which --single-transaction cannot dump at one '
                 'consistent point in time: %s. Stop writes (maintenance mode) while dumping, or convert them '
                 'to InnoDB.' % (params['name'], ', '.join(loose)))
        result['changed'] = True
        if check_mode:
            if params['users_dest']:
                result['commands'].append('accounts and grants to %s' % params['users_dest'])
            return result
        partial = _common.partial_name(dest)
        _common.remove_path(partial)
        started = time.monotonic()
        counted = None
        if params['inventory']:
            # Read while the dump runs, over connections of its own (MySQL cannot share the dump's snapshot): the
            # queries use the CPU the dump leaves idle instead of adding their time after it.
            counted = _common.in_background(inventory, conn, checksums=params['checksums'], exclude_tables=skipped,
                                            exclude_table_data=params['exclude_table_data'] or [])
        try:
            facts = dump(conn, plan, partial, drop_cache)
            if facts['size'] == 0:
                raise AppvaultError('the dump of "%s" is empty; nothing was written to %s' % (params['name'], dest))
            if counted is not None:
                result['inventory'] = counted.result()
            _common.publish(partial, dest, sealed=True)
        except BaseException:
            _common.remove_path(partial)
            if counted is not None:
                concurrent.futures.wait([counted])  # its queries end on their own; the secrets go only after them
            raise
        facts['path'] = dest
        result['artefact'] = facts
        result['duration'] = round(time.monotonic() - started, 3)
        if params['users_dest']:
            result['commands'].append(dump_users(conn, tool, params['users_dest'], params['force']))
            result['users'] = _common.artefact_facts(params['users_dest'])
    return result


AUTO_JOBS_MIN_BYTES = 32 * 1024 * 1024  # smaller dumps restore over one connection unless jobs says otherwise


def restore_jobs(jobs, size):
    """How many connections a restore of a dump of ``size`` bytes uses: ``jobs`` when given, else two (one per core,
    at most two) from AUTO_JOBS_MIN_BYTES on."""
    return jobs or (min(2, _common.cpu_count()) if size >= AUTO_JOBS_MIN_BYTES else 1)


def restore_argument_spec():
    """The options of the mysql_restore module."""
    spec = connection_argument_spec()
    spec.update(
        src=dict(type='path', required=True),
        create=dict(type='bool', default=True),
        charset=dict(type='str', default='utf8mb4'),
        collation=dict(type='str'),
        clean=dict(type='bool', default=False),
        rehearse=dict(type='bool', default=True),
        definer=dict(type='str', default='keep', choices=['keep', 'strip', 'rewrite']),
        definer_account=dict(type='str'),
        disable_binlog=dict(type='bool', default=True),
        validate=dict(type='bool', default=True),
        jobs=dict(type='int'),
        expected_inventory=dict(type='dict'),
        checksums=dict(type='bool', default=False),
    )
    return spec


def check_definers(conn, params, scan):
    """Every DEFINER the restored objects will have must exist on the target; raise naming the missing ones."""
    if params['definer'] == 'strip':
        return
    if params['definer'] == 'rewrite':
        accounts = [parse_account(params['definer_account'])]
    else:
        accounts = scan['definers']
    missing = missing_accounts(conn, accounts)
    if not missing:
        return
    if params['definer'] == 'rewrite':
        raise AppvaultError('definer_account %s does not exist on %s; create it first' % (missing[0], conn.where))
    raise AppvaultError(
        'the dump %s has views, routines, triggers or events whose DEFINER account does not exist on %s: %s. Create '
        'the account(s) first, or set definer: strip (the restoring account becomes the definer) or definer: rewrite '
        'with definer_account. Nothing was changed.' % (params['src'], conn.where, ', '.join(missing)),
        missing_definers=missing)


def _restore_once(conn, params, steps, target, result, alongside=None):
    restore(conn, steps, params['src'], target, alongside)
    result['inventory'] = inventory(conn, target, checksums=params['checksums'],
                                    legacy=legacy_checksums(params['expected_inventory']))
    _inventory.verify(result, params['expected_inventory'], 'the restored database "%s"' % params['name'],
                      ignore=() if params['definer'] == 'keep' else ('definers',))


def run_restore(params, check_mode=False, source_facts=True, scanned=None):
    """What the mysql_restore module does, for the module and _hostrun.restore_archive alike: ``params`` as the
    module's argument spec gives them (defaults filled in).
    ``source_facts`` false leaves the dump's size and sha256 out of ``source`` (the caller verified the dump already).
    ``scanned``: what scan_dump found in this very file, when the caller read it already (the check is not repeated)."""
    src = params['src']
    if not os.path.isfile(src):
        raise AppvaultError('src %s does not exist or is not a file' % src)
    if params['definer'] == 'rewrite' and not params['definer_account']:
        raise AppvaultError('definer: rewrite needs definer_account (user@host)')
    outer = detect_compression(src)
    result = dict(changed=False, database_created=False, binlog_disabled=False)
    name = params['name']
    with _common.SecretDir() as secrets:
        conn = Connection(params, secrets)
        result['server_version'] = conn.connect()
        result['flavour'] = conn.flavour
        result['tool_version'] = conn.client()['version']
        result['source'] = dict(path=src, compression=outer, dumped_from=None, dumped_by=None, definers=[])
        exists = conn.database_exists(name)
        if not exists and not params['create']:
            raise AppvaultError('database "%s" does not exist on %s; set create: true to create it' % (name, conn.where))
        # clean over an existing database: rehearsed in a side database (restored twice), or replaced in place
        side = name + '_appvault_new' if exists and params['clean'] and params['rehearse'] else None
        in_place = exists and params['clean'] and not params['rehearse']
        target = side or name

        scan = {}

        def validate():
            scan.update(scanned if scanned is not None else scan_dump(src, outer))
            result['source'].update(dumped_from=scan['header']['server'], dumped_by=scan['header']['tool'],
                                    definers=['`%s`@`%s`' % account for account in scan['definers']])
            check_definers(conn, params, scan)

        # Into a database this module creates (a new one, or clean's side database) a failed check stops the
        # restore and that database is dropped: nothing is changed either way, so the check may read the dump on the
        # core a single-connection restore leaves idle. Into an existing database it must come first, and before
        # one replaced in place is dropped. Several connections need the check's table offsets first.
        fresh = bool(side or not exists or in_place)
        jobs = restore_jobs(params['jobs'], os.path.getsize(src))
        if jobs < 1:
            raise AppvaultError('jobs must be 1 or more, not %d' % jobs)
        parallel = fresh and jobs > 1 and not check_mode
        alongside = params['validate'] and fresh and not check_mode and not parallel and not in_place
        if parallel or (params['validate'] and not alongside):
            validate()
        elif not params['validate']:
            check_definers(conn, params, {'definers': []})
        plan = ((row_plan(scan, jobs, src) if outer == 'none' else None) or split_plan(scan, jobs)) if parallel else None
        result['jobs'], result['ranges'] = (len(plan['parts']), plan['parts']) if plan else (1, [])
        header = secrets.write('header.sql', '') if plan and outer != 'none' else None
        charset, collation = params['charset'], params['collation']
        if side or in_place:
            charset, original_collation = conn.database_charset(name)
            collation = collation or original_collation
        account = parse_account(params['definer_account']) if params['definer'] == 'rewrite' else None
        filter_stage = definer_filter(params['definer'], account)
        result['binlog_disabled'] = bool(params['disable_binlog'] and conn.can_skip_binlog())
        steps = restore_steps(conn, outer, target, filter_stage, result['binlog_disabled'], plan, header)
        result['commands'] = [describe_pipe(pipe, src, conn.secrets) for step in steps for pipe in step]
        if side:
            final = restore_steps(conn, outer, name, filter_stage, result['binlog_disabled'], plan, header)
            result['commands'].extend(describe_pipe(pipe, src, conn.secrets) for step in final for pipe in step)
        result['changed'] = True
        result['database_created'] = not exists
        result['replaced_in_place'] = in_place
        if check_mode:
            return result
        started = time.monotonic()
        if side:
            drop_database(conn, side)
        if in_place:
            drop_database(conn, name)
        if side or not exists or in_place:
            create_database(conn, target, charset, collation)
        if header:
            write_header(src, outer, plan, header)
        facts = {}

        def beside_restore():
            if alongside:
                validate()
            if source_facts:
                facts.update(_common.artefact_facts(src))

        try:
            _restore_once(conn, params, steps, target, result, beside_restore)
        except AppvaultError as exc:
            if side or not exists:
                drop_database(conn, target)
            elif in_place:
                raise AppvaultError('%s. The database "%s" was dropped to be replaced in place and is incomplete; restore '
                                    'the copy kept of it (rehearse: false)' % (exc.msg, name), **exc.details)
            raise
        except BaseException:
            if side or not exists:
                drop_database(conn, target)
            raise
        if side:
            # The dump is proven on this server: now replace the original and verify again.
            try:
                drop_database(conn, name)
                create_database(conn, name, charset, collation)
                _restore_once(conn, params, final, name, result)
            except AppvaultError as exc:
                raise AppvaultError('%s. The dump had been restored and verified in database "%s", which is kept; the '
                                    'database "%s" is incomplete.' % (exc.msg, side, name), **exc.details)
            drop_database(conn, side)
        result['duration'] = round(time.monotonic() - started, 3)
        result['source'].update(facts)
    return result
