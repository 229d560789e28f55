# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL adapter: connection, client selection, inventory, dump and restore.

Everything talks to the server through the PostgreSQL client programs (psql,
pg_dump, pg_restore), so the managed host needs no Python driver.  The
password reaches them through a 0600 passfile named by PGPASSFILE, never argv.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import glob
import json
import os
import re
import shutil
import time

from ansible_collections.appvault.backup.plugins.module_utils import _common, _inventory, _runner
from ansible_collections.appvault.backup.plugins.module_utils._common import GZIP_MAGIC, ZSTD_MAGIC, AppvaultError, decompress_argv, find_tool

CUSTOM_MAGIC = b'PGDMP'
BIN_DIR_PATTERNS = ('/usr/lib/postgresql/*/bin', '/usr/pgsql-*/bin', '/usr/local/pgsql/bin', '/opt/homebrew/opt/postgresql@*/bin')


def connection_argument_spec():
    """Options shared by the PostgreSQL modules; mirrored by the doc fragment appvault.backup.postgresql."""
    return dict(
        name=dict(type='str', required=True, aliases=['db', 'database']),
        login_host=dict(type='str', aliases=['host']),
        login_port=dict(type='int', default=5432, aliases=['port']),
        login_user=dict(type='str', aliases=['user']),
        login_password=dict(type='str', no_log=True, aliases=['password']),
        login_unix_socket=dict(type='str', aliases=['unix_socket']),
        ssl_mode=dict(type='str', choices=['allow', 'disable', 'prefer', 'require', 'verify-ca', 'verify-full']),
        maintenance_db=dict(type='str', default='postgres'),
        bin_dir=dict(type='path'),
        connect_timeout=dict(type='int', default=10),
    )


def connection_argument_spec_defaults():
    """The default value of every connection option (for callers that build params by hand)."""
    return dict((key, spec.get('default')) for key, spec in connection_argument_spec().items())


def _passfile_escape(value):
    return value.replace('\\', '\\\\').replace(':', '\\:')


def sql_literal(value):
    return "'" + str(value).replace("'", "''") + "'"


def sql_ident(value):
    return '"' + str(value).replace('"', '""') + '"'


def conninfo_value(value):
    return "'" + str(value).replace('\\', '\\\\').replace("'", "\\'") + "'"


class Connection(object):
    """Connection parameters turned into a child environment (no secret on argv)."""

    def __init__(self, params, secret_dir):
        self.params = params
        self.database = params['name']
        env = {
            'PGPORT': str(params['login_port']),
            'PGAPPNAME': 'appvault.backup',
            'PGCONNECT_TIMEOUT': str(params['connect_timeout']),
            'PGOPTIONS': '',
        }
        host = params.get('login_unix_socket') or params.get('login_host')
        if host:
            env['PGHOST'] = host
        if params.get('login_user'):
            env['PGUSER'] = params['login_user']
        if params.get('ssl_mode'):
            env['PGSSLMODE'] = params['ssl_mode']
        if params.get('login_password') is not None:
            env['PGPASSFILE'] = secret_dir.write('pgpass', '*:*:*:*:%s\n' % _passfile_escape(params['login_password']))
            env['PGPASSWORD'] = ''  # an inherited PGPASSWORD would win over the passfile
        self.env = env
        self.where = '%s:%s' % (host or 'local socket', params['login_port'])
        self.user = params.get('login_user') or os.environ.get('PGUSER') or 'the current user'
        self._psql = None
        self.server_version = None
        self.server_version_num = None

    def env_for(self, database):
        env = dict(self.env)
        env['PGDATABASE'] = database
        return env

    # -- queries ---------------------------------------------------------
    def psql(self):
        if self._psql is None:
            self._psql = find_client('psql', 0, self.params.get('bin_dir'))
        return self._psql

    def query(self, sql, database=None):
        """Run SQL through psql; return its unaligned, tuples-only output."""
        database = database or self.database
        argv = [self.psql()['path'], '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', sql]
        try:
            return _runner.run(argv, env=self.env_for(database))['stdout']
        except _runner.CommandError as exc:
            raise AppvaultError(self.explain(exc.stages[-1]['stderr'] if exc.stages else exc.msg, database))

    def session(self, database=None):
        """A psql process fed line by line (one transaction across several statements)."""
        argv = [self.psql()['path'], '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1']
        return _runner.Session(argv, env=self.env_for(database or self.database))

    def session_query(self, session, sql, database=None):
        """Send SQL whose output is exactly one line and return that line; errors explained like ``query``."""
        session.send(sql.strip() + '\n')
        try:
            return session.readline()
        except _runner.CommandError as exc:
            raise AppvaultError(self.explain(exc.msg.split(': ', 1)[-1], database or self.database))

    def explain(self, stderr, database):
        text = stderr.strip().splitlines()
        message = ' '.join(line.strip() for line in text if line.strip()) or 'no error output'
        message = re.sub(r'^(psql|pg_dump|pg_restore|pg_dumpall): (error: )?', '', message)
        return 'PostgreSQL at %s, database "%s", user %s: %s' % (self.where, database, self.user, message)

    def connect(self, database=None):
        """Check the connection and read the server version."""
        out = self.query("SELECT current_setting('server_version_num') || ' ' || current_setting('server_version')", database)
        number, version = out.strip().split(' ', 1)
        self.server_version_num = int(number)
        self.server_version = version.split()[0]
        return self.server_version

    @property
    def server_major(self):
        return self.server_version_num // 10000

    def database_exists(self, name):
        out = self.query('SELECT 1 FROM pg_database WHERE datname = %s' % sql_literal(name), self.params['maintenance_db'])
        return out.strip() == '1'


# -- client programs ------------------------------------------------------
def _client_version(path):
    try:
        out = _runner.run([path, '--version'])['stdout']
    except _runner.CommandError:
        return None
    match = re.search(r'(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    return {'path': path, 'major': int(match.group(1)), 'version': '%s.%s' % (match.group(1), match.group(2) or 0)}


def client_candidates(tool, bin_dir=None):
    if bin_dir:
        dirs = [bin_dir]
    else:
        dirs = []
        for pattern in BIN_DIR_PATTERNS:
            dirs.extend(glob.glob(pattern))
        on_path = shutil.which(tool)
        if on_path:
            dirs.append(os.path.dirname(os.path.realpath(on_path)))
    found = {}
    for directory in dirs:
        path = os.path.join(directory, tool)
        real = os.path.realpath(path)
        if real in found or not os.access(path, os.X_OK):
            continue
        info = _client_version(path)
        if info:
            found[real] = info
    return sorted(found.values(), key=lambda info: info['major'], reverse=True)


def find_client(tool, min_major, bin_dir=None, why='the server'):
    """The newest ``tool`` whose major version is >= ``min_major``."""
    candidates = client_candidates(tool, bin_dir)
    if not candidates:
        where = bin_dir or 'PATH and the usual PostgreSQL directories'
        raise AppvaultError('%s not found in %s; install the PostgreSQL client programs or set bin_dir' % (tool, where))
    best = candidates[0]
    if best['major'] < min_major:
        raise AppvaultError(
            '%s is PostgreSQL %s, but the newest %s found is version %s (%s); install the PostgreSQL %s client '
            'programs or set bin_dir to them' % (why, min_major, tool, best['version'], best['path'], min_major))
    return best


# -- inventory --------------------------------------------------------------
_INVENTORY_SQL = r"""
SET standard_conforming_strings = on;
WITH ns AS (
  SELECT n.oid, n.nspname FROM pg_namespace n
  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
    AND n.nspname NOT LIKE 'pg\_temp\_%%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%%'
    %(schema_filter)s
),
rel AS (
  SELECT c.oid, ns.nspname, c.relname, c.relkind, c.relispopulated
  FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
),
ext_objs AS (SELECT objid FROM pg_depend WHERE deptype = 'e')
SELECT json_build_object(
 'schemas', (SELECT coalesce(json_agg(nspname ORDER BY nspname), '[]') FROM ns),
 'extensions', (SELECT coalesce(json_object_agg(extname, extversion ORDER BY extname), '{}') FROM pg_extension),
 'tables', (SELECT coalesce(json_object_agg(format('%%s.%%s', r.nspname, r.relname), json_build_object(
      'kind', CASE r.relkind WHEN 'p' THEN 'partitioned' ELSE 'table' END,
      'columns', (SELECT json_agg(concat_ws(' ', a.attname, format_type(a.atttypid, a.atttypmod),
                        CASE WHEN a.attnotnull THEN 'NOT NULL' END,
                        CASE WHEN a.attidentity = 'a' THEN 'GENERATED ALWAYS AS IDENTITY'
                             WHEN a.attidentity = 'd' THEN 'GENERATED BY DEFAULT AS IDENTITY' END,
                        CASE WHEN a.attgenerated = 's' THEN 'GENERATED ALWAYS AS (' || pg_get_expr(d.adbin, d.adrelid) || ') STORED'
                             WHEN d.adbin IS NOT NULL THEN 'DEFAULT ' || pg_get_expr(d.adbin, d.adrelid) END,
                        CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                             THEN 'COLLATE ' || (SELECT collname FROM pg_collation WHERE oid = a.attcollation) END)
                        ORDER BY a.attnum)
                  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                  WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped)
   ) ORDER BY r.nspname, r.relname), '{}') FROM rel r WHERE r.relkind IN ('r', 'p')),
 'indexes', (SELECT coalesce(json_object_agg(format('%%s.%%s', r.nspname, r.relname), pg_get_indexdef(r.oid)
      ORDER BY r.nspname, r.relname), '{}') FROM rel r WHERE r.relkind IN ('i', 'I')),
 'constraints', (SELECT coalesce(json_object_agg(format('%%s.%%s.%%s', ns.nspname,
        coalesce((SELECT relname FROM pg_class WHERE oid = co.conrelid), (SELECT typname FROM pg_type WHERE oid = co.contypid)),
        co.conname), pg_get_constraintdef(co.oid) ORDER BY ns.nspname, co.conrelid, co.contypid, co.conname), '{}')
      FROM pg_constraint co JOIN ns ON ns.oid = co.connamespace),
 'views', (SELECT coalesce(json_object_agg(format('%%s.%%s', r.nspname, r.relname), json_build_object(
      'kind', CASE r.relkind WHEN 'm' THEN 'materialized' ELSE 'view' END,
      'definition', pg_get_viewdef(r.oid, true)) ORDER BY r.nspname, r.relname), '{}')
      FROM rel r WHERE r.relkind IN ('v', 'm')),
 'routines', (SELECT coalesce(json_object_agg(format('%%s.%%s(%%s)', ns.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
      json_build_object('kind', CASE p.prokind WHEN 'f' THEN 'function' WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'window' END,
        'language', (SELECT lanname FROM pg_language WHERE oid = p.prolang),
        'md5', CASE WHEN p.prokind IN ('f', 'p') THEN md5(pg_get_functiondef(p.oid)) END)
      ORDER BY ns.nspname, p.proname, pg_get_function_identity_arguments(p.oid)), '{}')
      FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace WHERE p.oid NOT IN (SELECT objid FROM ext_objs)),
 'triggers', (SELECT coalesce(json_object_agg(format('%%s.%%s.%%s', r.nspname, r.relname, tg.tgname), pg_get_triggerdef(tg.oid)
      ORDER BY r.nspname, r.relname, tg.tgname), '{}') FROM pg_trigger tg JOIN rel r ON r.oid = tg.tgrelid WHERE NOT tg.tgisinternal),
 'types', (SELECT coalesce(json_object_agg(format('%%s.%%s', ns.nspname, ty.typname), CASE ty.typtype
        WHEN 'e' THEN json_build_object('kind', 'enum', 'labels', (SELECT json_agg(enumlabel ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = ty.oid))
        WHEN 'd' THEN json_build_object('kind', 'domain', 'base', format_type(ty.typbasetype, ty.typtypmod), 'not_null', ty.typnotnull,
                                        'default', ty.typdefault)
        ELSE json_build_object('kind', 'composite', 'attributes', (SELECT json_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
                                 FROM pg_attribute a WHERE a.attrelid = ty.typrelid AND a.attnum > 0 AND NOT a.attisdropped)) END
      ORDER BY ns.nspname, ty.typname), '{}')
      FROM pg_type ty JOIN ns ON ns.oid = ty.typnamespace
      WHERE (ty.typtype IN ('e', 'd') OR (ty.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = ty.typrelid) = 'c'))
        AND ty.oid NOT IN (SELECT objid FROM ext_objs)),
 'sequences', (SELECT coalesce(json_object_agg(format('%%s.%%s', s.schemaname, s.sequencename), json_build_object(
      'type', s.data_type::text, 'start', s.start_value, 'min', s.min_value, 'max', s.max_value, 'increment', s.increment_by,
      'cycle', s.cycle, 'cache', s.cache_size, 'last_value', s.last_value) ORDER BY s.schemaname, s.sequencename), '{}')
      FROM pg_sequences s JOIN ns ON ns.nspname = s.schemaname),
 'comments', (SELECT coalesce(json_object_agg(format('%%s %%s', o.type, o.identity), d.description ORDER BY o.type, o.identity), '{}')
      FROM pg_description d CROSS JOIN LATERAL pg_identify_object(d.classoid, d.objoid, d.objsubid) o
      WHERE d.classoid <> 'pg_database'::regclass AND (o.schema IN (SELECT nspname FROM ns)
            OR (o.type = 'schema' AND o.identity IN (SELECT quote_ident(nspname) FROM ns)))),
 'large_objects', (SELECT count(*) FROM pg_largeobject_metadata)
  %(contents)s
);
"""

# The relations whose rows an inventory reads, each once: tables and populated materialized views; a partitioned table
# (or an inheritance parent) through its root, whose count(*) and rows take in its partitions (children).  Without a
# % sign: it serves the snippet inserted as it is and the one that goes through Python's % alike.
_READ_RELATIONS_SQL = """FROM rel r WHERE r.relkind IN ('r', 'p', 'm') AND r.relispopulated
      AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = r.oid)"""

# The tables' row counts, when no checksums are asked for (a checksum carries its table's count: one read of each
# table instead of a count(*) pass and then the checksums' pass).  Inserted as it is (single % directives for format()).
_ROWS_SQL = r""",
 'rows', (SELECT coalesce(json_object_agg(format('%s.%s', r.nspname, r.relname),
      (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', r.nspname, r.relname), false, true, '')))[1]::text::bigint
      ORDER BY r.nspname, r.relname), '{}') """ + _READ_RELATIONS_SQL + ')'

# Order-independent content checksum of a table: the number of rows and the sum of a 60-bit slice of each row's md5
# over its text form.  Constant memory whatever the table size.
_MD5_ROW_SQL = "SELECT count(*) || '':'' || coalesce(sum((''x'' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0) AS c FROM %I.%I t"
# From PostgreSQL 14 the row's own hash (hash_record_extended: each column's type's hash function, no text form) is
# several times faster, e.g. 0.33 s instead of 2.59 s for a 411 MB table of bytea.  Used only for tables whose
# columns are all of types whose hash depends on the value alone and is the same in every release (hash
# partitioning relies on that): not enums (their hash is the label's OID, which a restore changes), domains,
# geometric or other types without a hash function, nor text under a non-deterministic collation.  Such a
# checksum is written "h:<rows>:<sum>"; the other tables keep the md5 form.
HASHABLE_TYPES = ('bool', 'int2', 'int4', 'int8', 'numeric', 'float4', 'float8', 'text', 'varchar', 'bpchar', 'bytea',
                  'date', 'time', 'timestamp', 'timestamptz', 'uuid', 'jsonb')
_HASH_ROW_SQL = "SELECT ''h:'' || count(*) || '':'' || coalesce(sum(hash_record_extended(t, 0)), 0) AS c FROM %I.%I t"
_HASHABLE_TABLE_SQL = """NOT EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
          WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
            AND (CASE WHEN ty.typcategory = 'A' THEN ty.typelem ELSE a.atttypid END) NOT IN (%s)
             OR a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attcollation <> 0
            AND NOT (SELECT collisdeterministic FROM pg_collation WHERE oid = a.attcollation))""" % ', '.join(
    "'%s'::regtype::oid" % name for name in HASHABLE_TYPES)
_CHECKSUM_SQL = r""",
 'checksums', (SELECT coalesce(json_object_agg(format('%%s.%%s', r.nspname, r.relname),
      (xpath('/row/c/text()', query_to_xml(format(%(row_sql)s, r.nspname, r.relname), false, true, '')))[1]::text
      ORDER BY r.nspname, r.relname), '{}') """ + _READ_RELATIONS_SQL + r"""),
 'large_object_checksum', (SELECT count(*) || ':' || coalesce(sum(('x' || substr(md5(lo_get(oid)), 1, 15))::bit(60)::bigint), 0)
      FROM pg_largeobject_metadata)"""


def checksum_sql(hashed):
    """The checksums part of the inventory query; ``hashed``: tables of hashable columns use hash_record_extended."""
    row_sql = "'%s'" % _MD5_ROW_SQL
    if hashed:
        row_sql = "CASE WHEN %s THEN '%s' ELSE '%s' END" % (_HASHABLE_TABLE_SQL, _HASH_ROW_SQL, _MD5_ROW_SQL)
    return _CHECKSUM_SQL % {'row_sql': row_sql}


def hashed_checksums(expected):
    """Whether checksums compared with ``expected`` (an inventory recorded at dump time) may use the row hash: only
    when that inventory did for some table (a dump of PostgreSQL 13 or older did not; the same columns choose the same
    form on both sides)."""
    return any(str(value).startswith('h:') for value in ((expected or {}).get('checksums') or {}).values())


def inventory(conn, database=None, schemas=None, exclude_schemas=None, checksums=False, session=None, hashed=None):
    """The database's object inventory with row counts (and content checksums when asked).

    With ``session`` the query runs in that session's open transaction, e.g. the snapshot a dump used. ``hashed``:
    whether checksums may use the row hash (None: when the server is 14 or newer; see hashed_checksums()).
    """
    schema_filter = ''
    if schemas:
        schema_filter += 'AND n.nspname IN (%s)' % ', '.join(sql_literal(s) for s in schemas)
    if exclude_schemas:
        schema_filter += ' AND n.nspname NOT IN (%s)' % ', '.join(sql_literal(s) for s in exclude_schemas)
    if hashed is None:
        hashed = conn.server_major >= 14
    sql = _INVENTORY_SQL % {'schema_filter': schema_filter,
                            'contents': checksum_sql(hashed and conn.server_major >= 14) if checksums else _ROWS_SQL}
    if session is not None:
        # one line per answer: jsonb's text form never spans lines
        body = sql.strip().replace('SET standard_conforming_strings = on;', '').strip().rstrip(';')
        out = conn.session_query(session, 'SELECT (%s)::jsonb::text;' % body.replace('\n', ' '), database)
    else:
        out = conn.query(sql, database)
    data = json.loads(out.strip().splitlines()[-1])
    if checksums:
        data['rows'] = dict((table, _inventory.checksum_rows(checksum)) for table, checksum in data['checksums'].items())
    data['_server_version'] = conn.server_version
    return data


# -- dump -----------------------------------------------------------------
def dump_plan(conn, params, cores):
    """Decide argv stages for a dump; returns (stages, native_compression, warnings, tool)."""
    fmt = params['format']
    compression = params['compression']
    level = params['compression_level']
    jobs = params['jobs']
    if jobs > 1 and fmt != 'directory':
        raise AppvaultError('jobs: %d needs format: directory (pg_dump dumps in parallel only to a directory)' % jobs)
    tool = find_client('pg_dump', conn.server_major, params.get('bin_dir'), 'the server %s' % conn.where)
    argv = [tool['path'], '--format=%s' % fmt[0], '--no-password']
    if params['blobs']:
        argv.append('--blobs')
    if params['quote_all_identifiers']:
        argv.append('--quote-all-identifiers')
    for schema in params['schemas'] or []:
        argv.append('--schema=%s' % schema)
    for schema in params['exclude_schemas'] or []:
        argv.append('--exclude-schema=%s' % schema)
    for table in params['exclude_tables'] or []:
        argv.append('--exclude-table=%s' % table)
    for table in params['exclude_table_data'] or []:
        argv.append('--exclude-table-data=%s' % table)
    if jobs > 1:
        argv.append('--jobs=%d' % jobs)
    warnings = []
    pipe = None
    if compression == 'none':
        argv.append('--compress=0')
    elif compression == 'gzip':
        argv.append('--compress=%d' % (level if level is not None else 6))
    elif tool['major'] >= 16:
        argv.append('--compress=zstd:%d' % (level if level is not None else 3))
    elif fmt == 'directory':
        argv.append('--compress=0')
        warnings.append('pg_dump %s cannot write zstd; the directory dump is uncompressed (an archive made from it '
                        'is compressed)' % tool['version'])
    else:
        argv.append('--compress=0')
        pipe = [find_tool('zstd'), '-q', '-T%d' % cores, '-%d' % (level if level is not None else 3), '-c']
    return tool, argv, pipe, warnings


def sequence_positions(conn, session):
    """{sequence: last_value} now (sequences are not transactional: this is the live position)."""
    out = conn.session_query(session, "SELECT coalesce(json_object_agg(schemaname || '.' || sequencename, last_value), '{}')::jsonb::text "
                                      "FROM pg_sequences;")
    return json.loads(out)


def settle_sequence_positions(inventory_data, other):
    """Keep sequence positions as verifiable only when no sequence moved while the dump ran: ``other`` holds the
    positions read at the dump's other end (sequence_positions) than the inventory.

    Returns the names of the sequences that moved; their positions (all of them, then) move to the
    informational ``_sequence_positions`` key, which restores do not compare.
    """
    sequences = inventory_data.get('sequences', {})
    moved = sorted(name for name, seq in sequences.items() if other.get(name) != seq.get('last_value'))
    if moved:
        inventory_data['_sequence_positions'] = dict((name, seq.pop('last_value', None)) for name, seq in sequences.items())
    return moved


def comparable(expected, actual):
    """``actual`` reduced to what ``expected`` can vouch for: no sequence positions when the dump recorded
    them as informational only; across major versions, what only the newer server spells differently."""
    actual = dict(actual)
    if '_sequence_positions' in expected:
        actual['sequences'] = dict((name, dict((k, v) for k, v in seq.items() if k != 'last_value'))
                                   for name, seq in actual.get('sequences', {}).items())
    source, target = _major(expected.get('_server_version')), _major(actual.get('_server_version'))
    if source and target and source != target:
        expected, actual = _neutral_views(expected), _neutral_views(actual)
        if min(source, target) < 17 <= max(source, target):
            actual = _identity_as_recorded(expected, actual)
    return expected, actual


def _neutral_views(inventory):
    """View definitions without column qualifiers by relation name: PostgreSQL 16 stopped printing them where they
    are not needed (``users.id`` became ``id``), so the same view reads differently on either side of 16."""
    names = sorted(set(key.split('.', 1)[-1] for kind in ('tables', 'views') for key in inventory.get(kind) or {}), key=len, reverse=True)
    if not names or not inventory.get('views'):
        return inventory
    qualifier = re.compile(r'(?<![\w."])(?:%s)\.(?=[\w"])' % '|'.join(re.escape(name) for name in names))
    views = dict((name, dict(view, definition=qualifier.sub('', view.get('definition') or '')))
                 for name, view in inventory['views'].items())
    return dict(inventory, views=views)


IDENTITY_CLAUSES = (' GENERATED ALWAYS AS IDENTITY', ' GENERATED BY DEFAULT AS IDENTITY')


def _identity_as_recorded(expected, actual):
    """PostgreSQL 17 shows a partitioned table's identity column on its partitions too: a column that differs from
    the recorded one only by that clause counts as recorded."""
    tables = {}
    for name, table in (actual.get('tables') or {}).items():
        recorded = set((expected.get('tables') or {}).get(name, {}).get('columns') or [])
        columns = []
        for column in table.get('columns') or []:
            for clause in IDENTITY_CLAUSES:
                if column not in recorded and clause in column and column.replace(clause, '') in recorded:
                    column = column.replace(clause, '')
            columns.append(column)
        tables[name] = dict(table, columns=columns)
    return dict(actual, tables=tables)


def export_snapshot(conn, session):
    """Open a repeatable-read transaction in ``session`` and export its snapshot for pg_dump --snapshot."""
    # SET and BEGIN print nothing under -q: send them with the statement that answers.
    return conn.session_query(session, 'SET standard_conforming_strings = on; '
                                       'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT pg_export_snapshot();')


def dump(conn, params, partial, cores, snapshot=None, drop_cache=False):
    """Write the dump to ``partial`` and seal it (mode 0600, sha256, fsync); returns (tool, stages, warnings, facts).
    ``drop_cache``: see _common.SealWhileWriting."""
    tool, argv, pipe, warnings = dump_plan(conn, params, cores)
    if snapshot:
        argv = argv + ['--snapshot=%s' % snapshot]
    env = conn.env_for(conn.database)
    if pipe:
        # pg_dump writes to the pipe front to back: hash and flush while it runs.
        stages = [argv, pipe]
        with _common.SealWhileWriting(partial, drop_cache=drop_cache) as out:
            _runner.pipeline(stages, stdout_fd=out.fd, env=env)
            return tool, stages, warnings, out.seal()
    # pg_dump --file: a custom-format file gets its table of contents rewritten at the end (data offsets
    # for a parallel restore), so it is hashed once complete.
    stages = [argv + ['--file=%s' % partial]]
    _runner.pipeline(stages, env=env)
    return tool, stages, warnings, _common.seal(partial)


def dump_globals(conn, params, dest, force):
    tool = find_client('pg_dumpall', conn.server_major, params.get('bin_dir'), 'the server %s' % conn.where)
    _common.check_destination(dest, force)
    argv = [tool['path'], '--globals-only', '--no-password']
    if not params['globals_role_passwords']:
        argv.append('--no-role-passwords')
    partial = _common.partial_name(dest)
    try:
        env = conn.env_for(params['maintenance_db'])
        env['PGDATABASE'] = ''
        argv.append('--database=%s' % params['maintenance_db'])
        _runner.pipeline([argv], stdout_path=partial, env=env)
        _common.publish(partial, dest)
    except BaseException:
        _common.remove_path(partial)
        raise
    return argv


# -- restore --------------------------------------------------------------
def detect_format(src):
    """Return (format, outer_compression) of a dump file or directory."""
    if os.path.isdir(src):
        if not os.path.exists(os.path.join(src, 'toc.dat')):
            raise AppvaultError('%s is a directory but not a pg_dump directory dump (no toc.dat)' % src)
        return 'directory', None
    with open(src, 'rb') as fileobj:
        head = fileobj.read(8)
    if not head:
        raise AppvaultError('%s is empty, not a PostgreSQL dump' % src)
    if head.startswith(CUSTOM_MAGIC):
        return 'custom', None
    if head.startswith(ZSTD_MAGIC):
        return _inner_format(src, [find_tool('zstd'), '-dc', '-q']), 'zstd'
    if head.startswith(GZIP_MAGIC):
        return _inner_format(src, [find_tool('gzip'), '-dc']), 'gzip'
    return _plain_or_fail(src, head), None


def _inner_format(src, decompress):
    result = _runner.pipeline([decompress, ['head', '-c', '4096']], stdin_path=src)[-1]
    head = result['stdout'].encode('utf-8', 'replace')
    if head.startswith(CUSTOM_MAGIC):
        return 'custom'
    return _plain_or_fail(src, head)


def _plain_or_fail(src, head):
    if b'PostgreSQL database dump' in head or head.startswith(b'--') or head.startswith(b'SET '):
        return 'plain'
    raise AppvaultError('%s is not a PostgreSQL dump (neither custom, directory nor plain SQL format)' % src)


def validate_dump(src, fmt, outer, pg_restore):
    """Read the whole dump once without a server, so a corrupt or truncated one fails before anything changes."""
    try:
        # zstd -dc | pg_restore checks the compressed frames too: a separate zstd -t only for plain SQL
        if outer == 'zstd' and fmt == 'plain':
            _runner.run([find_tool('zstd'), '-t', '-q', src])
        elif outer == 'gzip' and fmt == 'plain':
            _runner.run([find_tool('gzip'), '-t', src])
        if fmt in ('custom', 'directory'):
            if outer:
                _runner.pipeline([decompress_argv(outer), [pg_restore, '--file=/dev/null']], stdin_path=src)
            else:
                _runner.run([pg_restore, '--file=/dev/null', src])
        elif fmt == 'plain' and not outer:
            with open(src, 'rb') as fileobj:
                fileobj.seek(max(0, os.path.getsize(src) - 4096))
                if b'PostgreSQL database dump complete' not in fileobj.read():
                    raise AppvaultError('%s is truncated: the plain dump lacks its closing line' % src)
    except _runner.CommandError as exc:
        raise AppvaultError('%s is corrupt or truncated: %s' % (src, exc.msg))


def dump_header(src, fmt, outer, pg_restore):
    """Versions recorded in the dump: {'server': '15.4', 'server_major': 15, 'pg_dump': '15.4'}."""
    if fmt in ('custom', 'directory'):
        try:
            if outer:
                text = _runner.pipeline([decompress_argv(outer), [pg_restore, '--list']], stdin_path=src)[-1]['stdout']
            else:
                text = _runner.run([pg_restore, '--list', src])['stdout']
        except _runner.CommandError as exc:
            raise AppvaultError('%s cannot be read as a pg_dump archive: %s' % (src, exc.msg))
        server = re.search(r'Dumped from database version: (\S+)', text)
        tool = re.search(r'Dumped by pg_dump version: (\S+)', text)
    else:
        if outer:
            text = _runner.pipeline([decompress_argv(outer), ['head', '-c', '8192']], stdin_path=src)[-1]['stdout']
        else:
            with open(src, 'rb') as fileobj:
                text = fileobj.read(8192).decode('utf-8', 'replace')
        server = re.search(r'Dumped from database version (\S+)', text)
        tool = re.search(r'Dumped by pg_dump version (\S+)', text)
    header = {'server': server.group(1) if server else None, 'pg_dump': tool.group(1) if tool else None}
    header['server_major'] = _major(header['server'])
    header['pg_dump_major'] = _major(header['pg_dump'])
    return header


def _major(version):
    if not version:
        return None
    return int(re.match(r'(\d+)', version).group(1))


def create_database(conn, name, owner=None):
    sql = 'CREATE DATABASE %s TEMPLATE template0' % sql_ident(name)
    if owner:
        sql += ' OWNER %s' % sql_ident(owner)
    conn.query(sql, conn.params['maintenance_db'])


def drop_database(conn, name):
    conn.query('DROP DATABASE IF EXISTS %s' % sql_ident(name), conn.params['maintenance_db'])


def restore_stages(conn, params, fmt, outer, tool, seekable_copy=None):
    """argv stages of one restore and the path the first stage reads (None: the last argv names its input).

    ``seekable_copy`` is the decompressed temp file a parallel restore of a compressed dump reads.
    """
    src = params['src']
    if fmt == 'plain':
        psql = find_client('psql', 0, params.get('bin_dir'))['path']
        argv = [psql, '-X', '-q', '-v', 'ON_ERROR_STOP=%d' % (1 if params['exit_on_error'] else 0), '--no-password']
        if params['single_transaction']:
            argv.append('--single-transaction')
        if outer:
            return [decompress_argv(outer), argv], src
        return [argv], src
    argv = [tool, '--no-password', '--dbname=dbname=%s' % conninfo_value(conn.database)]
    if params['exit_on_error']:
        argv.append('--exit-on-error')
    if params['no_owner']:
        argv.append('--no-owner')
    if params['role']:
        argv.append('--role=%s' % params['role'])
    for schema in params['schemas'] or []:
        argv.append('--schema=%s' % schema)
    if params['jobs'] > 1:
        # pg_restore -j needs to seek: a dump compressed as a whole is read from a decompressed copy.
        return [argv + ['--jobs=%d' % params['jobs'], seekable_copy or src]], None
    if params['single_transaction']:
        argv.append('--single-transaction')
    if outer:
        return [decompress_argv(outer), argv], src
    return [argv + [src]], None


def needs_seekable_copy(params, fmt, outer):
    return params['jobs'] > 1 and fmt != 'plain' and outer is not None


def restore(conn, params, fmt, outer, tool, work_dir):
    temp = None
    try:
        if needs_seekable_copy(params, fmt, outer):
            temp = os.path.join(work_dir, '.appvault-restore-%d.dump' % os.getpid())
            _runner.pipeline([decompress_argv(outer)], stdin_path=params['src'], stdout_path=temp)
        stages, stdin_path = restore_stages(conn, params, fmt, outer, tool, temp)
        started = time.monotonic()
        _runner.pipeline(stages, stdin_path=stdin_path, env=conn.env_for(conn.database))
        return stages, time.monotonic() - started
    except _runner.CommandError as exc:
        raise AppvaultError('restore into database "%s" at %s failed: %s' % (conn.database, conn.where, exc.msg))
    finally:
        if temp:
            _common.remove_path(temp)


def database_owner(conn, name):
    out = conn.query('SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s' % sql_literal(name),
                     conn.params['maintenance_db'])
    return out.strip() or None


def swap_database(conn, side, name, terminate=False):
    """Put the freshly restored ``side`` database in place of ``name``; the old one is dropped last."""
    old = name + '_appvault_old'
    maint = conn.params['maintenance_db']
    drop_database(conn, old)
    if terminate:
        conn.query('SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()'
                   % sql_literal(name), maint)
    conn.query('ALTER DATABASE %s RENAME TO %s' % (sql_ident(name), sql_ident(old)), maint)
    try:
        conn.query('ALTER DATABASE %s RENAME TO %s' % (sql_ident(side), sql_ident(name)), maint)
    except AppvaultError:
        conn.query('ALTER DATABASE %s RENAME TO %s' % (sql_ident(old), sql_ident(name)), maint)
        raise
    drop_database(conn, old)


def dump_argument_spec():
    """The options of the postgresql_dump module."""
    spec = connection_argument_spec()
    spec.update(
        dest=dict(type='path', required=True),
        force=dict(type='bool', default=False),
        format=dict(type='str', default='custom', choices=['custom', 'directory', 'plain']),
        compression=dict(type='str', default='zstd', choices=['zstd', 'gzip', 'none']),
        compression_level=dict(type='int'),
        jobs=dict(type='int', default=1),
        schemas=dict(type='list', elements='str'),
        exclude_schemas=dict(type='list', elements='str'),
        exclude_tables=dict(type='list', elements='str'),
        exclude_table_data=dict(type='list', elements='str'),
        blobs=dict(type='bool', default=True),
        quote_all_identifiers=dict(type='bool', default=True),
        globals_dest=dict(type='path'),
        globals_role_passwords=dict(type='bool', default=False, no_log=False),
        inventory=dict(type='bool', default=True),
        checksums=dict(type='bool', default=False),
    )
    return spec


def run_dump(params, check_mode=False, warn=None, drop_cache=False):
    """What the postgresql_dump module does, for the module and the host-side runner alike: ``params`` as the
    module's argument spec gives them (defaults filled in), ``warn`` called with each warning.  ``drop_cache``:
    the module's dump is dropped from the page cache once on disk; a dump the archive reads next is not."""
    warn = warn or (lambda msg: None)
    result = dict(changed=False, format=params['format'])
    dest = params['dest']
    if params['jobs'] < 1:
        raise AppvaultError('jobs must be 1 or more, got %d' % params['jobs'])
    _common.check_destination(dest, params['force'])
    if params['globals_dest']:
        _common.check_destination(params['globals_dest'], params['force'])
    cores = _common.cpu_count()
    with _common.SecretDir() as secrets:
        conn = Connection(params, secrets)
        result['server_version'] = conn.connect()
        tool, argv, pipe, warnings = dump_plan(conn, params, cores)
        for warning in warnings:
            warn(warning)
        result['tool_version'] = tool['version']
        how = 'none' if params['compression'] == 'none' else ('pipe' if pipe else 'native')
        if warnings:
            how = 'none'
        level = params['compression_level']
        if level is None and how != 'none':
            level = 3 if params['compression'] == 'zstd' else 6
        result['compression'] = dict(method=params['compression'] if how != 'none' else 'none', level=level, how=how)
        shown = _runner.mask_argv(argv)
        if pipe:
            shown += ' | ' + _runner.mask_argv(pipe)
        result['commands'] = [shown]
        result['changed'] = True
        if check_mode:
            return result
        partial = _common.partial_name(dest)
        _common.remove_path(partial)
        started = time.monotonic()
        # The inventory is read in the snapshot pg_dump uses, so its row counts are exactly the dump's, and while
        # pg_dump runs, so its queries use the CPU the dump leaves idle instead of adding their time after it.
        session = conn.session() if params['inventory'] else None
        counted = None
        try:
            snapshot = export_snapshot(conn, session) if session else None
            if session:
                counted = _common.in_background(inventory, conn, schemas=params['schemas'],
                                                exclude_schemas=params['exclude_schemas'], checksums=params['checksums'],
                                                session=session)
            facts = dump(conn, params, partial, cores, snapshot, drop_cache)[3]
            if facts['size'] == 0:
                raise AppvaultError('pg_dump produced an empty dump of "%s"; nothing was written to %s' % (params['name'], dest))
            if session:
                result['inventory'] = counted.result()
                # sequences are not transactional: the inventory has their positions when it ran, before pg_dump read them
                moved = settle_sequence_positions(result['inventory'], sequence_positions(conn, session))
                if moved:
                    warn('sequences advanced while the dump ran (%s): their positions are recorded for information '
                         'only and not verified on restore; stop writes during the backup for exact positions'
                         % ', '.join(moved[:5]))
            _common.publish(partial, dest, sealed=True)
        except _runner.CommandError as exc:
            _common.remove_path(partial)
            raise AppvaultError('dump of database "%s" at %s failed: %s' % (params['name'], conn.where, exc.msg))
        except BaseException:
            _common.remove_path(partial)
            raise
        finally:
            if session:
                if counted is not None and not counted.done():
                    session.kill()  # the dump failed: stop the inventory's query rather than wait for it
                    concurrent.futures.wait([counted])
                session.close()
        facts['path'] = dest
        result['artefact'] = facts
        result['duration'] = round(time.monotonic() - started, 3)
        if params['globals_dest']:
            result['commands'].append(_runner.mask_argv(dump_globals(conn, params, params['globals_dest'], params['force'])))
            result['globals'] = _common.artefact_facts(params['globals_dest'])
    return result


def restore_argument_spec():
    """The options of the postgresql_restore module."""
    spec = connection_argument_spec()
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


def run_restore(params, check_mode=False, source_facts=True):
    """What the postgresql_restore module does, for the module and _hostrun.restore_archive alike: ``params`` as the
    module's argument spec gives them (defaults filled in).
    ``source_facts`` false leaves the dump's size and sha256 out of ``source`` (the caller verified the dump already)."""
    prepared = prepare_restore(params, check_mode, source_facts)
    return prepared if check_mode else prepared.commit()


def prepare_restore(params, check_mode=False, source_facts=True):
    """run_restore up to the swap: the dump restored into its database's side database (or into the database itself
    when it does not exist yet) and verified; returns a Restored to commit or abort. In check mode, the result."""
    src = params['src']
    if params['jobs'] < 0:
        raise AppvaultError('jobs must be 0 (one per CPU core) or more, got %d' % params['jobs'])
    if params['jobs'] == 0:
        params['jobs'] = _common.cpu_count()
    if not os.path.exists(src):
        raise AppvaultError('src %s does not exist' % src)
    if params['jobs'] > 1:
        params['single_transaction'] = False
    result = dict(changed=False, database_created=False)
    fmt, outer = detect_format(src)
    if params['jobs'] > 1 and fmt == 'plain':
        raise AppvaultError('jobs: %d needs a custom or directory dump; %s is plain SQL' % (params['jobs'], src))
    with contextlib.ExitStack() as stack:
        secrets = stack.enter_context(_common.SecretDir())
        conn = Connection(params, secrets)
        result['server_version'] = conn.connect(params['maintenance_db'])
        if fmt == 'plain':
            tool = find_client('psql', 0, params.get('bin_dir'))
            header = dump_header(src, fmt, outer, None)
        else:
            # The newest pg_restore reads any older archive; it must not be older than the server or the dump.
            any_restore = find_client('pg_restore', 0, params.get('bin_dir'))
            header = dump_header(src, fmt, outer, any_restore['path'])
            needed = max(conn.server_major, header['pg_dump_major'] or 0)
            tool = find_client('pg_restore', needed, params.get('bin_dir'), 'the newer of the server and the dump\'s pg_dump')
        result['tool_version'] = tool['version']
        result['source'] = dict(path=src, format=fmt, compression=outer or 'none',
                                dumped_from=header['server'], dumped_by=header['pg_dump'])
        if header['server_major'] and header['server_major'] > conn.server_major and not params['force']:
            raise AppvaultError(
                'the dump %s was taken from PostgreSQL %s, which is newer than the target server %s (PostgreSQL %s); '
                'restoring into an older major version is not supported. Set force: true to try anyway.'
                % (src, header['server'], conn.where, result['server_version']))
        exists = conn.database_exists(params['name'])
        # Into a side or a new database a failed restore changes nothing (that database is dropped): the whole dump
        # is then read once by the restore itself, and the check runs only to name a corrupt dump after a failure.
        fresh = not exists or params['clean']
        pg_restore = tool['path'] if fmt != 'plain' else None
        if params['validate'] and (check_mode or not fresh):
            validate_dump(src, fmt, outer, pg_restore)
        if not exists and not params['create']:
            raise AppvaultError('database "%s" does not exist on %s; set create: true to create it' % (params['name'], conn.where))
        work_dir = params['tmp_dir'] or os.path.dirname(os.path.abspath(src))
        seekable = '<decompressed copy in %s>' % work_dir if needs_seekable_copy(params, fmt, outer) else None
        stages = restore_stages(conn, params, fmt, outer, tool['path'], seekable)[0]
        result['commands'] = [' | '.join(_runner.mask_argv(stage) for stage in stages)]
        result['changed'] = True
        if check_mode:
            result['database_created'] = not exists
            return result
        # Replacing an existing database: restore into a side database, verify it, then swap names, so the
        # original stays untouched until its replacement is complete and verified.
        side = params['name'] + '_appvault_new' if exists and params['clean'] else None
        result['database_created'] = not exists
        started = time.monotonic()
        target = side or params['name']
        owner = params['owner'] or (database_owner(conn, params['name']) if side else None)
        if side:
            drop_database(conn, side)
        if side or not exists:
            create_database(conn, target, owner)
        conn.database = target
        try:
            try:
                restore(conn, params, fmt, outer, tool['path'], work_dir)
            except AppvaultError:
                if params['validate'] and fresh:
                    validate_dump(src, fmt, outer, pg_restore)  # raises, naming the corrupt or truncated dump
                raise
            result['inventory'] = inventory(conn, target, schemas=params['schemas'], checksums=params['checksums'],
                                            hashed=hashed_checksums(params['expected_inventory']) if params['expected_inventory'] else None)
            expected, actual = comparable(params['expected_inventory'] or {}, result['inventory'])
            _inventory.verify(result, expected, 'the restored database "%s"' % params['name'], actual=actual)
        except BaseException:
            if side or not exists:
                drop_database(conn, target)
            raise
        finally:
            conn.database = params['name']
        # the connection's secrets (its passfile) now belong to the Restored, which removes them when it ends
        return Restored(conn, params, result, side, exists, started, source_facts, stack.pop_all())


class Restored(object):
    """A database restored and verified by prepare_restore, under the side name ``side`` (or under its own name when
    it did not exist): ``commit`` puts it in place and returns the restore's result, ``abort`` drops it. Either ends
    the connection's secrets."""

    def __init__(self, conn, params, result, side, exists, started, source_facts, secrets):
        self.conn, self.params, self.result = conn, params, result
        self.side, self.exists, self.started, self.source_facts = side, exists, started, source_facts
        self.secrets = secrets
        self.aborted = False

    def commit(self):
        try:
            if self.side:
                swap_database(self.conn, self.side, self.params['name'], self.params['terminate_connections'])
        except BaseException:
            self.abort()
            raise
        self.result['duration'] = round(time.monotonic() - self.started, 3)
        self.secrets.close()
        if self.source_facts:
            self.result['source'].update(_common.artefact_facts(self.params['src']))
        return self.result

    def abort(self):
        if self.aborted:
            return
        self.aborted = True
        try:
            if self.side or not self.exists:
                drop_database(self.conn, self.side or self.params['name'])
        finally:
            self.secrets.close()
