# The fixture app's state as one JSON document, read independently of the collection's own code: every file
# and directory under the app's paths (type, mode, owner, group, size, sha256, link target) and the database's
# object inventory with per-table row counts and checksums, read as the database superuser over the local socket.
# The scenarios record it before a backup (or a restore) and the verifiers compare it with the state afterwards.
#
#   python3 fixture_state.py CONFIG.json [OUTPUT]   CONFIG: {"root", "paths", "engine": postgresql|mariadb, "database"}
#                                                   OUTPUT: write there (mode 0600) instead of stdout
from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import stat
import subprocess
import sys

PG_USER_SCHEMAS = "n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'"

PG_INVENTORY = {
    'database': """SELECT datname AS name, pg_get_userbyid(datdba) AS owner, pg_encoding_to_char(encoding) AS encoding,
        datcollate AS collate, datctype AS ctype, datacl::text AS acl FROM pg_database WHERE datname = current_database()""",
    'schemas': """SELECT nspname AS name, pg_get_userbyid(nspowner) AS owner, nspacl::text AS acl,
        obj_description(n.oid, 'pg_namespace') AS comment FROM pg_namespace n WHERE %s""" % PG_USER_SCHEMAS,
    'relations': """SELECT n.nspname AS schema, c.relname AS name, c.relkind AS kind, pg_get_userbyid(c.relowner) AS owner,
        c.relacl::text AS acl, c.relispartition AS partition, pg_get_expr(c.relpartbound, c.oid) AS bound,
        obj_description(c.oid, 'pg_class') AS comment,
        CASE WHEN c.relkind IN ('v', 'm') THEN md5(pg_get_viewdef(c.oid)) END AS definition,
        CASE WHEN c.relkind IN ('i', 'I') THEN pg_get_indexdef(c.oid) END AS index
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE %s""" % PG_USER_SCHEMAS,
    'columns': """SELECT n.nspname AS schema, c.relname AS relation, a.attnum AS position, a.attname AS name,
        format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS default,
        a.attidentity AS identity, a.attgenerated AS generated, co.collname AS collation, col_description(c.oid, a.attnum) AS comment
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum LEFT JOIN pg_collation co ON co.oid = a.attcollation
        WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'c', 'f') AND %s""" % PG_USER_SCHEMAS,
    'constraints': """SELECT n.nspname AS schema, co.conrelid::regclass::text AS relation, co.contypid::regtype::text AS domain,
        co.conname AS name, co.contype AS type, pg_get_constraintdef(co.oid) AS definition
        FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace WHERE %s""" % PG_USER_SCHEMAS,
    'functions': """SELECT n.nspname AS schema, p.proname AS name, pg_get_function_identity_arguments(p.oid) AS arguments,
        p.prokind AS kind, pg_get_userbyid(p.proowner) AS owner, md5(pg_get_functiondef(p.oid)) AS definition,
        obj_description(p.oid, 'pg_proc') AS comment
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.prokind <> 'a' AND %s""" % PG_USER_SCHEMAS,
    'triggers': """SELECT t.tgrelid::regclass::text AS relation, t.tgname AS name, t.tgenabled AS enabled,
        pg_get_triggerdef(t.oid) AS definition FROM pg_trigger t WHERE NOT t.tgisinternal""",
    'types': """SELECT n.nspname AS schema, t.typname AS name, t.typtype AS type, pg_get_userbyid(t.typowner) AS owner,
        format_type(t.typbasetype, t.typtypmod) AS base,
        (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) AS labels
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typtype IN ('e', 'd', 'c') AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
        AND %s""" % PG_USER_SCHEMAS,
    'extensions': """SELECT e.extname AS name, e.extversion AS version, n.nspname AS schema
        FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace""",
    'sequences': """SELECT schemaname AS schema, sequencename AS name, sequenceowner AS owner, data_type::text AS type,
        start_value, min_value, max_value, increment_by, cycle, cache_size, last_value FROM pg_sequences""",
    'large_objects': """SELECT l.oid::bigint AS oid, pg_get_userbyid(l.lomowner) AS owner, md5(lo_get(l.oid)) AS md5
        FROM pg_largeobject_metadata l""",
}

PG_TABLES = """SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'm') AND %s ORDER BY 1, 2""" % PG_USER_SCHEMAS

MY_INVENTORY = {
    'database': """SELECT JSON_OBJECT('charset', DEFAULT_CHARACTER_SET_NAME, 'collation', DEFAULT_COLLATION_NAME)
        FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = DATABASE()""",
    'tables': """SELECT JSON_OBJECT('name', TABLE_NAME, 'type', TABLE_TYPE, 'engine', ENGINE, 'collation', TABLE_COLLATION,
        'comment', TABLE_COMMENT, 'auto_increment', AUTO_INCREMENT, 'options', CREATE_OPTIONS)
        FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()""",
    'columns': """SELECT JSON_OBJECT('table', TABLE_NAME, 'position', ORDINAL_POSITION, 'name', COLUMN_NAME, 'type', COLUMN_TYPE,
        'nullable', IS_NULLABLE, 'default', COLUMN_DEFAULT, 'extra', EXTRA, 'generated', GENERATION_EXPRESSION,
        'charset', CHARACTER_SET_NAME, 'collation', COLLATION_NAME, 'comment', COLUMN_COMMENT)
        FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()""",
    'indexes': """SELECT JSON_OBJECT('table', TABLE_NAME, 'name', INDEX_NAME, 'seq', SEQ_IN_INDEX, 'column', COLUMN_NAME,
        'non_unique', NON_UNIQUE, 'type', INDEX_TYPE, 'sub_part', SUB_PART)
        FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()""",
    'constraints': """SELECT JSON_OBJECT('table', tc.TABLE_NAME, 'name', tc.CONSTRAINT_NAME, 'type', tc.CONSTRAINT_TYPE,
        'references', rc.REFERENCED_TABLE_NAME, 'on_update', rc.UPDATE_RULE, 'on_delete', rc.DELETE_RULE, 'check', cc.CHECK_CLAUSE)
        FROM information_schema.TABLE_CONSTRAINTS tc
        LEFT JOIN information_schema.REFERENTIAL_CONSTRAINTS rc
          ON rc.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA AND rc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME AND rc.TABLE_NAME = tc.TABLE_NAME
        LEFT JOIN information_schema.CHECK_CONSTRAINTS cc
          ON cc.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA AND cc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME AND cc.TABLE_NAME = tc.TABLE_NAME
        WHERE tc.TABLE_SCHEMA = DATABASE()""",
    'views': """SELECT JSON_OBJECT('name', TABLE_NAME, 'definer', DEFINER, 'security', SECURITY_TYPE, 'check', CHECK_OPTION,
        'definition', MD5(VIEW_DEFINITION)) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE()""",
    'routines': """SELECT JSON_OBJECT('name', ROUTINE_NAME, 'type', ROUTINE_TYPE, 'definer', DEFINER, 'definition', MD5(ROUTINE_DEFINITION),
        'returns', DTD_IDENTIFIER, 'access', SQL_DATA_ACCESS, 'deterministic', IS_DETERMINISTIC, 'security', SECURITY_TYPE,
        'sql_mode', SQL_MODE, 'comment', ROUTINE_COMMENT) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE()""",
    'triggers': """SELECT JSON_OBJECT('name', TRIGGER_NAME, 'table', EVENT_OBJECT_TABLE, 'event', EVENT_MANIPULATION,
        'timing', ACTION_TIMING, 'order', ACTION_ORDER, 'definer', DEFINER, 'sql_mode', SQL_MODE, 'statement', MD5(ACTION_STATEMENT))
        FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()""",
    'events': """SELECT JSON_OBJECT('name', EVENT_NAME, 'definer', DEFINER, 'definition', MD5(EVENT_DEFINITION), 'type', EVENT_TYPE,
        'interval', CONCAT(INTERVAL_VALUE, ' ', INTERVAL_FIELD), 'starts', STARTS, 'status', STATUS, 'on_completion', ON_COMPLETION,
        'comment', EVENT_COMMENT) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE()""",
}

MY_TABLES = "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1"


def run(argv, stdin=None):
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit('%s failed (%d): %s' % (argv[0], proc.returncode, proc.stderr.strip()))
    return [line for line in proc.stdout.splitlines() if line.strip()]


def psql(database, sql):
    return run(['runuser', '-u', 'postgres', '--', 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', database, '-f', '-'], sql)


def mariadb(database, sql):
    return run(['mariadb', '--batch', '--skip-column-names', '--raw', '--default-character-set=utf8mb4', database], sql)


def pg_state(database):
    inventory = {}
    for section, query in PG_INVENTORY.items():
        rows = psql(database, 'SELECT row_to_json(q) FROM (%s) q;' % query)
        inventory[section] = sorted(rows)
    queries = []
    for line in psql(database, PG_TABLES + ';'):
        schema, name = line.split('|', 1)
        queries.append("SELECT json_build_object('table', %s, 'rows', count(*), 'md5', md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), ''))) "
                       "FROM %s.%s AS t;" % (quote_literal(schema + '.' + name), quote_ident(schema), quote_ident(name)))
    tables = {}
    for row in psql(database, '\n'.join(queries)) if queries else []:
        data = json.loads(row)
        tables[data['table']] = {'rows': data['rows'], 'md5': data['md5']}
    return {'inventory': {key: [json.loads(row) for row in rows] for key, rows in inventory.items()}, 'tables': tables}


def my_state(database):
    inventory = {section: [json.loads(row) for row in sorted(mariadb(database, query + ';'))] for section, query in MY_INVENTORY.items()}
    for table in inventory['tables']:
        # SHOW CREATE TABLE prints an Aria table's default PAGE_CHECKSUM=1, so after any logical dump and restore it
        # is an explicit option: the same table, not a difference.
        if table['engine'] == 'Aria' and table['options']:
            table['options'] = ' '.join(option for option in table['options'].split() if option != 'page_checksum=1')
    names = mariadb(database, MY_TABLES + ';')
    tables = {}
    if names:
        counts = mariadb(database, ' UNION ALL '.join("SELECT '%s', COUNT(*) FROM `%s`" % (name, name) for name in names) + ';')
        for line in counts:
            name, rows = line.split('\t')
            tables[name] = {'rows': int(rows), 'sha256': my_table_digest(database, name)}
    return {'inventory': inventory, 'tables': tables}


def my_table_digest(database, name):
    """The sha256 of every row's text in a fixed order, as the PostgreSQL side hashes its rows. Not CHECKSUM TABLE:
    MariaDB 11.8.9 computes it differently from 10.11 for a table with a stored generated column, same rows or not."""
    argv = ['mariadb', '--batch', '--skip-column-names', '--raw', '--default-character-set=utf8mb4', '--quick', database,
            '-e', 'SELECT * FROM `%s` ORDER BY %s;' % (name, ', '.join(str(n + 1) for n in range(column_count(database, name))))]
    proc = subprocess.run(argv, capture_output=True, check=False)
    if proc.returncode:
        raise SystemExit('mariadb failed (%d): %s' % (proc.returncode, proc.stderr.decode('utf-8', 'replace').strip()))
    return hashlib.sha256(proc.stdout).hexdigest()


def column_count(database, name):
    return int(mariadb(database, "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                                 "AND TABLE_NAME = '%s';" % name)[0])


def quote_ident(name):
    return '"%s"' % name.replace('"', '""')


def quote_literal(text):
    return "'%s'" % text.replace("'", "''")


def describe(path):
    info = os.lstat(path)
    entry = {
        'mode': '%04o' % stat.S_IMODE(info.st_mode),
        'user': pwd.getpwuid(info.st_uid).pw_name,
        'group': grp.getgrgid(info.st_gid).gr_name,
    }
    if stat.S_ISLNK(info.st_mode):
        entry.update(type='link', target=os.readlink(path))
    elif stat.S_ISDIR(info.st_mode):
        entry['type'] = 'dir'
    elif stat.S_ISREG(info.st_mode):
        digest = hashlib.sha256()
        with open(path, 'rb') as handle:
            for block in iter(lambda: handle.read(1 << 20), b''):
                digest.update(block)
        entry.update(type='file', size=info.st_size, sha256=digest.hexdigest())
    else:
        entry['type'] = 'other'
    return entry


def files_state(root, paths):
    state = {}
    for relative in paths:
        top = os.path.join(root, relative)
        if not os.path.lexists(top):
            state[relative] = {'type': 'missing'}
            continue
        state[relative] = describe(top)
        if os.path.isdir(top) and not os.path.islink(top):
            for directory, dirs, files in os.walk(top):
                for name in dirs + files:
                    path = os.path.join(directory, name)
                    state[os.path.relpath(path, root)] = describe(path)
    return dict(sorted(state.items()))


def main():
    with open(sys.argv[1]) as handle:
        config = json.load(handle)
    if config['engine'] == 'postgresql':
        database = pg_state(config['database'])
    else:
        database = my_state(config['database'])
    state = {'files': files_state(config['root'], config['paths']), 'database': database}
    text = json.dumps(state, indent=1, sort_keys=True, ensure_ascii=False) + '\n'
    if len(sys.argv) > 2:
        partial = sys.argv[2] + '.partial'
        with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'w', encoding='utf-8') as handle:
            handle.write(text)
        os.replace(partial, sys.argv[2])
    else:
        sys.stdout.write(text)


if __name__ == '__main__':
    main()
