"""Unit tests of the MySQL adapter's argv building, version parsing and DEFINER filter (no server needed)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from ansible_collections.appvault.backup.plugins.module_utils import _common, _inventory, _mysql
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError


class FakeConn:
    def __init__(self, flavour='mariadb', version=(10, 11, 6), params=None):
        self.flavour = flavour
        self.version_tuple = version
        self.params = params or {'login_host': '127.0.0.1', 'login_port': 3306, 'login_user': 'backup'}

    def conn_argv(self):
        return _mysql.connection_argv(self.params, '/run/secret/client.cnf')


def tool(flavour='mariadb', version=(10, 11, 6), ignore_table_data=True):
    return {'path': '/usr/bin/dump', 'flavour': flavour, 'version_tuple': version, 'version': '%d.%d.%d' % version,
            'ignore_table_data': ignore_table_data, 'system_users': flavour == 'mariadb'}


def params(**extra):
    base = {'name': 'exment', 'compression': 'zstd', 'compression_level': None, 'replace': False,
            'exclude_tables': None, 'exclude_table_data': None}
    base.update(extra)
    return base


@pytest.mark.parametrize('text,expected', [
    ('10.11.6-MariaDB-0+deb12u1-log', ('mariadb', (10, 11, 6))),
    ('5.5.5-10.3.39-MariaDB', ('mariadb', (10, 3, 39))),
    ('8.0.36', ('mysql', (8, 0, 36))),
    ('5.7.44-log', ('mysql', (5, 7, 44))),
    ('mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)', ('mysql', (8, 0, 36))),
    ('mysqldump  Ver 10.19 Distrib 10.11.6-MariaDB, for debian-linux-gnu (x86_64)', ('mariadb', (10, 11, 6))),
    ('mariadb-dump from 11.8.6-MariaDB, client 10.19 for debian-linux-gnu (x86_64)', ('mariadb', (11, 8, 6))),
    ('mysql  Ver 8.4.0 for Linux on x86_64 (MySQL Community Server - GPL)', ('mysql', (8, 4, 0))),
])
def test_parse_version(text, expected):
    flavour, version, _text = _mysql.parse_version(text)
    assert (flavour, version) == expected


def test_tool_names_follow_flavour_and_version():
    assert _mysql.tool_names('mariadb', (10, 4, 6), 'dump')[0] == 'mariadb-dump'
    assert _mysql.tool_names('mariadb', (10, 11, 0), 'client')[0] == 'mariadb'
    assert _mysql.tool_names('mariadb', (10, 4, 5), 'dump')[0] == 'mysqldump'
    assert _mysql.tool_names('mariadb', (10, 3, 39), 'client')[0] == 'mysql'
    assert _mysql.tool_names('mysql', (8, 0, 36), 'dump')[0] == 'mysqldump'


def test_column_statistics_only_for_mysql8_dump_against_servers_without_it():
    assert _mysql.needs_column_statistics_off(tool('mysql', (8, 0, 36)), 'mariadb', (10, 11, 6))
    assert _mysql.needs_column_statistics_off(tool('mysql', (8, 0, 36)), 'mysql', (5, 7, 44))
    assert not _mysql.needs_column_statistics_off(tool('mysql', (8, 0, 36)), 'mysql', (8, 0, 36))
    assert not _mysql.needs_column_statistics_off(tool('mysql', (5, 7, 44)), 'mariadb', (10, 11, 6))
    assert not _mysql.needs_column_statistics_off(tool('mariadb', (10, 11, 6)), 'mysql', (5, 7, 44))


def test_option_file_quotes_and_includes():
    text = _mysql.option_file_text({'login_password': 'a#b"c\\d e', 'config_file': '/home/app/.my.cnf'})
    lines = text.splitlines()
    assert lines[0] == '!include /home/app/.my.cnf'
    assert lines[1] == '[client]'
    assert lines[2] == 'password="a#b\\"c\\\\d e"'
    assert _mysql.option_file_text({'login_password': None}) == '[client]\n'


def test_connection_argv_option_file_first_and_no_password():
    argv = _mysql.connection_argv({'login_host': 'db', 'login_port': 3307, 'login_user': 'u', 'login_password': 'secret'}, '/x.cnf')
    assert argv == ['--defaults-extra-file=/x.cnf', '--host=db', '--port=3307', '--user=u']
    sock = _mysql.connection_argv({'login_unix_socket': '/run/mysqld/mysqld.sock', 'login_host': 'db', 'login_port': 3306}, '/x.cnf')
    assert sock == ['--defaults-extra-file=/x.cnf', '--socket=/run/mysqld/mysqld.sock']


def test_dump_plan_defaults():
    plan = _mysql.dump_plan(FakeConn(), params(), tool(), 4)
    main = plan['main']
    assert main[0] == '/usr/bin/dump' and main[1] == '--defaults-extra-file=/run/secret/client.cnf'
    for flag in ('--single-transaction', '--routines', '--triggers', '--events', '--hex-blob', '--skip-lock-tables',
                 '--default-character-set=utf8mb4'):
        assert flag in main
    assert main[-2:] == ['--', 'exment']
    assert '--databases' not in main and '--column-statistics=0' not in main and '--set-gtid-purged=OFF' not in main
    assert not any('password' in a for a in main)
    assert plan['structure'] is None
    assert plan['compress'][1:] == ['-q', '-T4', '-3', '-c']


def test_dump_plan_mysql8_against_mariadb():
    main = _mysql.dump_plan(FakeConn(), params(), tool('mysql', (8, 0, 36), ignore_table_data=False), 2)['main']
    assert '--column-statistics=0' in main and '--set-gtid-purged=OFF' in main


def test_dump_plan_exclusions_and_replace():
    plan = _mysql.dump_plan(FakeConn(), params(replace=True, exclude_tables=['t1'], exclude_table_data=['logs']), tool(), 2)
    assert '--replace' in plan['main'] and '--ignore-table=exment.t1' in plan['main']
    assert '--ignore-table-data=exment.logs' in plan['main'] and plan['structure'] is None
    plan = _mysql.dump_plan(FakeConn(), params(exclude_table_data=['logs', 'jobs']), tool('mysql', (8, 0, 36), False), 2)
    assert '--ignore-table=exment.logs' in plan['main'] and '--ignore-table=exment.jobs' in plan['main']
    assert plan['structure'][-4:] == ['--', 'exment', 'logs', 'jobs'] and '--no-data' in plan['structure']
    assert '--routines' not in plan['structure']


@pytest.mark.parametrize('compression,level,expected', [('gzip', None, ['-c', '-1']), ('gzip', 6, ['-c', '-6']),
                                                        ('zstd', 9, ['-q', '-T2', '-9', '-c'])])
def test_compression(compression, level, expected):
    assert _common.compress_argv(compression, level, 2)[1:] == expected
    assert _common.compress_argv('none', None, 2) is None


@pytest.mark.parametrize('text,expected', [('app@localhost', ('app', 'localhost')), ('app', ('app', '%')),
                                           ("'app'@'10.0.%'", ('app', '10.0.%')), ('`a@b`@`%`', ('a@b', '%')),
                                           ('a@b@host', ('a@b', 'host'))])
def test_parse_account(text, expected):
    assert _mysql.parse_account(text) == expected


SAMPLE = '''/*!50013 DEFINER=`app_owner`@`%` SQL SECURITY DEFINER */
CREATE DEFINER=`we``ird`@`localhost` PROCEDURE `p`()
/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER t AFTER INSERT ON x FOR EACH ROW
INSERT INTO `notes` VALUES (1,'DEFINER=`app_owner`@`%` stays in the data');
'''


@pytest.mark.skipif(not shutil.which('sed'), reason='sed not installed')
def test_definer_filter_strip_and_rewrite():
    assert _mysql.definer_filter('keep') is None
    strip = subprocess.run(_mysql.definer_filter('strip'), input=SAMPLE, capture_output=True, text=True, check=True).stdout
    assert strip.splitlines()[0] == '/*!50013  SQL SECURITY DEFINER */'
    assert strip.splitlines()[1] == 'CREATE  PROCEDURE `p`()'
    assert 'DEFINER=`root`' not in strip
    assert strip.splitlines()[3] == SAMPLE.splitlines()[3]
    rewrite = subprocess.run(_mysql.definer_filter('rewrite', ('new&#\\', '%')), input=SAMPLE, capture_output=True, text=True,
                             check=True).stdout
    assert rewrite.splitlines()[0] == '/*!50013 DEFINER=`new&#\\`@`%` SQL SECURITY DEFINER */'
    assert rewrite.count('DEFINER=`new&#\\`@`%`') == 3
    assert rewrite.splitlines()[3] == SAMPLE.splitlines()[3]


def test_checksum_sql_writes_each_value_with_its_length_and_hashes_with_sha1():
    sql = _mysql.checksum_sql('t`x', ['a', 'b'])
    assert 'SUM(' in sql and "IFNULL(CONCAT(LENGTH(`a`), ':', CAST(`a` AS BINARY)), 'N')" in sql and 'FROM `t``x`' in sql
    assert 'SHA1(' in sql and "CONCAT('s:', COUNT(*)" in sql and 'QUOTE(' not in sql
    legacy = _mysql.checksum_sql('t`x', ['a', 'b'], legacy=True)
    assert 'QUOTE(CAST(`a` AS BINARY))' in legacy and 'MD5(' in legacy and "CONCAT('', COUNT(*)" in legacy


def test_legacy_checksums_only_for_an_inventory_recorded_in_the_old_form():
    assert _mysql.legacy_checksums({'checksums': {'t': '3:123', 'u': '0:0'}}) is True
    assert _mysql.legacy_checksums({'checksums': {'t': 's:3:123', 'u': 's:0:0'}}) is False
    assert _mysql.legacy_checksums({'rows': {'t': 3}}) is False
    assert _mysql.legacy_checksums(None) is False
    assert _inventory.checksum_rows('s:42:99') == 42 and _inventory.checksum_rows('42:99') == 42


def test_restore_stages_have_option_file_first():
    class Conn(FakeConn):
        def client_argv(self, database=None, extra=()):
            return ['/usr/bin/mariadb'] + self.conn_argv() + list(extra) + [database]
    [[(stages, ranges)]] = _mysql.restore_steps(Conn(), 'none', 'db', None, True)
    assert len(stages) == 1 and stages[0][1].startswith('--defaults-extra-file=') and ranges is None
    assert '--init-command=SET SESSION sql_log_bin = 0' in stages[0]
    [[(stages, ranges)]] = _mysql.restore_steps(Conn(), 'zstd', 'db', ['sed'], False)
    assert [s[0] for s in stages][1:] == ['sed', '/usr/bin/mariadb'] and ranges is None


def test_parallel_restore_steps_cut_the_plain_sql_at_the_plan():
    class Conn(FakeConn):
        def client_argv(self, database=None, extra=()):
            return ['/usr/bin/mariadb'] + self.conn_argv() + list(extra) + [database]
    plan = {'header': 100, 'ranges': [(0, 5000), (5000, 9000)], 'later': 9000}
    tables, later = _mysql.restore_steps(Conn(), 'zstd', 'db', ['sed'], True, plan, '/t/header.sql')
    (first, none1), (second, none2) = tables
    assert none1 is None and none2 is None
    assert [os.path.basename(s[0]) for s in first] == ['zstd', 'head', 'grep', 'sed', 'mariadb'] and first[1][-1] == '5000'
    assert [os.path.basename(s[0]) for s in second] == ['zstd', 'tail', 'head', 'cat', 'grep', 'sed', 'mariadb']
    assert second[1][-1] == '+5001' and second[2][-1] == '4000' and second[3][1:] == ['/t/header.sql', '-']
    [(last, _ranges)] = later
    assert [os.path.basename(s[0]) for s in last] == ['zstd', 'tail', 'cat', 'grep', 'sed', 'mariadb'] and last[1][-1] == '+9001'
    [[(plain, _ranges)]] = _mysql.restore_steps(Conn(), 'none', 'db', None, True, None)
    assert os.path.basename(plain[0][0]) == 'mariadb'


def test_parallel_restore_steps_feed_byte_ranges_of_a_plain_dump():
    """From a plain dump no helper process cuts it: each connection is fed its ranges, without the lock lines, and every
    connection but the first the header first."""
    class Conn(FakeConn):
        def client_argv(self, database=None, extra=()):
            return ['/usr/bin/mariadb'] + self.conn_argv() + list(extra) + [database]
    plan = {'header': 100, 'ranges': [(0, 5000), (5000, 9000)], 'later': 9000,
            'locks': [(200, 30), (4000, 15), (5100, 30), (8900, 15)]}
    tables, later = _mysql.restore_steps(Conn(), 'none', 'db', ['sed'], True, plan)
    assert [[os.path.basename(s[0]) for s in pipe.stages] for pipe in tables + later] == [['sed', 'mariadb']] * 3
    assert tables[0].ranges == [(0, 200), (230, 3770), (4015, 985)]
    assert tables[1].ranges == [(0, 100), (5000, 100), (5130, 3770), (8915, 85)]
    assert later[0].ranges == [(0, 100), (9000, None)]
    text = _mysql.describe_pipe(later[0], '/d/x.sql')
    assert text.startswith('bytes 0-100, 9000-end of /d/x.sql | sed | /usr/bin/mariadb')


def test_without_leaves_out_the_skipped_bytes():
    assert _mysql._without([], 0, None) == [(0, None)]
    assert _mysql._without([(30, 2), (10, 5)], 0, 40) == [(0, 10), (15, 15), (32, 8)]
    assert _mysql._without([(10, 5), (50, 5)], 12, 50) == [(12, 38)]
    assert _mysql._without([(0, 5), (35, 5)], 0, 40) == [(5, 30)]


@pytest.mark.parametrize('tables, later, jobs, expected', [
    ([100, 200, 5000, 9000], 10000, 2, [(0, 5000), (5000, 10000)]),
    ([100, 9000], 10000, 2, [(0, 9000), (9000, 10000)]),
    ([100, 200, 300, 400], 1000, 3, [(0, 400), (400, 1000)]),
    ([100], 10000, 2, None),
    ([100, 200], None, 2, None),
    ([100, 20000], 10000, 2, None),
    ([100, 200, 5000], 10000, 1, None),
])
def test_split_plan(tables, later, jobs, expected):
    plan = _mysql.split_plan({'tables': tables, 'later': later}, jobs)
    assert (plan['ranges'] if plan else None) == expected
    if plan:
        assert plan['header'] == tables[0] and plan['later'] == later


def test_split_plan_balances_rows_not_bytes():
    """A part of BLOB rows (few lines, many bytes) weighs less than small-row parts of a fifth of its bytes."""
    scan = {'tables': [100, 100100, 120100, 140100], 'later': 160100, 'lines': [10, 110, 20110, 40110], 'later_line': 40120}
    plan = _mysql.split_plan(scan, 2)
    assert plan['ranges'] == [(0, 120100), (120100, 160100)] and plan['header'] == 100 and plan['later'] == 160100
    row = _mysql.ROW_COST_BYTES
    assert plan['parts'] == [{'bytes': 120100, 'lines': 20100, 'cost': 120000 + row * 20100},
                             {'bytes': 40000, 'lines': 20010, 'cost': 40000 + row * 20010}]
    # by bytes alone (no line numbers, or ones that do not match the tables) the cut is after the BLOB part
    for broken in ({'lines': None}, {'lines': [10, 110]}, {'later_line': None}):
        assert _mysql.split_plan(dict(scan, **broken), 2)['ranges'] == [(0, 100100), (100100, 160100)]
    # three connections: both cuts land between the two small-row parts, so two ranges (the last part is cheap)
    assert _mysql.split_plan(scan, 3)['ranges'] == plan['ranges']
    four = _mysql.split_plan(dict(scan, lines=[10, 110, 20110, 20120], later_line=40120), 3)
    assert four['ranges'] == [(0, 120100), (120100, 140100), (140100, 160100)]
    assert sum(part['bytes'] for part in four['parts']) == 160100


def test_checksum_groups_balance_the_sizes_and_drop_empty_ones():
    sizes = {'events': 900, 'documents': 500, 'customers': 300, 'attachments': 200, 'settings': 0}
    groups = _mysql.split_by_size(sorted(sizes), sizes, 2)
    assert sorted(table for group in groups for table in group) == sorted(sizes)  # every table once
    assert [sum(sizes[t] or 1 for t in g) for g in groups] == [901, 1000]
    assert _mysql.split_by_size(['only'], {}, 4) == [['only']]
    assert _mysql.split_by_size(['a', 'b'], {}, 1) == [['a', 'b']]
    assert _mysql.split_by_size([], {}, 2) == []


def test_check_lines_refuses_bytes_that_are_not_the_scanned_line(tmp_path):
    """The restore leaves the lock lines out by offset: a dump that changed since its scan (or a wrong offset) is
    refused instead of cutting a statement."""
    dump = tmp_path / 'd.sql'
    dump.write_bytes(b'SET x=1;\nLOCK TABLES `t``1` WRITE;\nINSERT INTO `t``1` VALUES (1);\nUNLOCK TABLES;\n')
    text = dump.read_bytes()
    lock, unlock = text.index(b'LOCK TABLES'), text.index(b'UNLOCK')
    size = text.index(b'\n', lock) + 1 - lock
    _mysql.check_lines(str(dump), [(lock, size), (unlock, 15)], _mysql.LOCK_LINE_RE)
    for wrong in ([(lock, size - 1)], [(lock + 1, size)], [(unlock - 2, 15)], [(0, 9)]):
        with pytest.raises(AppvaultError, match='is not what the scan of the dump read there'):
            _mysql.check_lines(str(dump), wrong, _mysql.LOCK_LINE_RE)


def test_scan_finds_both_lock_lines_of_each_table(tmp_path):
    """The scan records LOCK TABLES and UNLOCK TABLES lines (a restore over several connections leaves both out)."""
    dump = tmp_path / 'd.sql'
    dump.write_bytes(b'-- MariaDB dump 10.19  Distrib 10.11.6-MariaDB\n-- Table structure for table `t`\n'
                     b'LOCK TABLES `t` WRITE;\nINSERT INTO `t` VALUES (1);\nUNLOCK TABLES;\n'
                     b'-- Dumping routines for database \'d\'\n-- Dump completed on 2025-01-01\n')
    text = dump.read_bytes()
    scan = _mysql.scan_dump(str(dump), 'none')
    assert scan['locks'] == [(text.index(b'LOCK TABLES'), 23), (text.index(b'UNLOCK'), 15)]


def test_scan_of_a_plain_dump_finds_what_the_scan_of_its_compressed_copy_finds(tmp_path):
    """A plain dump is scanned by two greps side by side (the line markers, and the DEFINERs anywhere in a line),
    a compressed one by one grep over the stream: merged by offset, the two find the same, DEFINERs of views,
    routines and triggers included (one inside a row's text, which the scan reads as a DEFINER too)."""
    dump = tmp_path / 'd.sql'
    _synthetic_dump(dump, {'a': 5, 'b': 3})
    text = dump.read_bytes().replace(
        b'/*!50003 CREATE TRIGGER `a_t`', b'/*!50003 CREATE*/ /*!50017 DEFINER=`app`@`%`*/ /*!50003 TRIGGER `a_t`').replace(
        b"-- Dumping routines for database 'd'\n",
        b"-- Dumping routines for database 'd'\nCREATE DEFINER=`r``oot`@`localhost` PROCEDURE `p`() SELECT 1;;\n"
        b"/*!50001 CREATE ALGORITHM=UNDEFINED */ /*!50013 DEFINER=`app`@`%` SQL SECURITY DEFINER */ /*!50001 VIEW `v` AS "
        b"SELECT 1 */;\n").replace(b"INSERT INTO `b` VALUES (1,", b"INSERT INTO `b` VALUES (1,'DEFINER=`x`@`y`',")
    dump.write_bytes(text)
    subprocess.run(['zstd', '-q', '-f', str(dump), '-o', str(dump) + '.zst'], check=True)
    plain = _mysql.scan_dump(str(dump), 'none')
    assert plain == _mysql.scan_dump(str(dump) + '.zst', 'zstd')
    assert plain['definers'] == [('app', '%'), ('x', 'y'), ('r`oot', 'localhost')]
    assert len(plain['tables']) == 2 and plain['later'] is not None


def _synthetic_dump(path, tables):
    """A dump as mariadb-dump writes it: a banner and header, per table its structure, rows section and a trigger,
    then routines. ``tables``: {name: row count}. Returns its bytes."""
    out = [b'-- MariaDB dump 10.19  Distrib 10.11.6-MariaDB\n/*!40101 SET NAMES utf8mb4 */;\n']
    for name, count in tables.items():
        table = name.encode()
        out.append(b'--\n-- Table structure for table `%s`\n--\n\nDROP TABLE IF EXISTS `%s`;\nCREATE TABLE `%s` (i INT);\n\n'
                   % (table, table, table))
        out.append(b'--\n-- Dumping data for table `%s`\n--\n\nLOCK TABLES `%s` WRITE;\n' % (table, table))
        out.extend(b"INSERT INTO `%s` VALUES (%d,'a\\nINSERT INTO `x` VALUES (1);');\n" % (table, i) for i in range(count))
        out.append(b'UNLOCK TABLES;\n/*!50003 CREATE TRIGGER `%s_t` BEFORE INSERT ON `%s` FOR EACH ROW SET @x = 1 */;;\n'
                   % (table, table))
    out.append(b"--\n-- Dumping routines for database 'd'\n--\n-- Dump completed on 2025-01-01\n")
    path.write_bytes(b''.join(out))
    return path.read_bytes()


def test_row_plan_cuts_inside_a_table_and_keeps_every_byte_once(tmp_path):
    """One large table and a small one over two connections: the structure first, the rows split inside the large
    table at a row statement's start, the triggers and routines last; apart from the headers prepended and the
    lock lines left out, every byte of the dump is read exactly once."""
    dump = tmp_path / 'd.sql'
    text = _synthetic_dump(dump, {'big': 3000, 'small': 10})
    scan = _mysql.scan_dump(str(dump), 'none')
    assert [section is not None for section in scan['rows']] == [True, True] and scan['banner'] == 0
    plan = _mysql.row_plan(scan, 2, str(dump))
    structure, shares, last = plan['steps']
    assert len(structure) == 1 and len(shares) == 2 and len(last) == 1
    header = (0, scan['tables'][0])
    assert shares[0][0] == shares[1][0] == last[0][0] == header
    cut = shares[1][1][0]
    big_rows, small_rows = scan['rows']
    assert big_rows[0] < cut < big_rows[2] and text[cut - 1:cut] == b'\n' and text[cut:].startswith(b'INSERT INTO `big`')
    assert 0.9 < plan['parts'][0]['cost'] / plan['parts'][1]['cost'] < 1.1
    assert sum(part['bytes'] for part in plan['parts']) == big_rows[2] - big_rows[0] + small_rows[2] - small_rows[0]
    read = list(structure[0]) + [piece for share in shares for piece in share[1:]] + last[0][1:]
    read = [(start, len(text) if stop is None else stop) for start, stop in read]
    assert sorted(read)[0][0] == 0 and sum(stop - start for start, stop in read) == len(text)
    assert all(a[1] == b[0] for a, b in zip(sorted(read), sorted(read)[1:]))  # contiguous: no gap, no overlap
    # the triggers come after all rows, in the last step
    assert all(text.index(b'CREATE TRIGGER `%s_t`' % name) >= last[0][1][0] for name in (b'big', b'small'))

    # the pipes feed those ranges without the lock lines
    class Conn(FakeConn):
        def client_argv(self, database=None, extra=()):
            return ['/usr/bin/mariadb'] + self.conn_argv() + list(extra) + [database]
    steps = _mysql.restore_steps(Conn(), 'none', 'db', None, True, plan)
    assert [len(step) for step in steps] == [1, 2, 1]
    fed = b''.join(text[offset:None if count is None else offset + count]
                   for step in steps for pipe in step for offset, count in pipe.ranges)
    assert b'LOCK TABLES' not in fed and fed.count(b'INSERT INTO `big` VALUES') == 3000
    # three connections: three shares of about the same cost
    three = _mysql.row_plan(scan, 3, str(dump))
    assert len(three['steps'][1]) == 3 and max(p['cost'] for p in three['parts']) < 1.1 * min(p['cost'] for p in three['parts'])


def test_row_plan_declines_what_it_cannot_cut_safely(tmp_path):
    """No plan (split_plan's whole tables instead) when a rows section's end is unknown, for one connection, or
    when the rows are one statement."""
    dump = tmp_path / 'd.sql'
    _synthetic_dump(dump, {'big': 50, 'small': 5})
    scan = _mysql.scan_dump(str(dump), 'none')
    assert _mysql.row_plan(scan, 1, str(dump)) is None
    open_end = [list(scan['rows'][0][:2]) + [None, None], scan['rows'][1]]
    assert _mysql.row_plan(dict(scan, rows=open_end), 2, str(dump)) is None
    assert _mysql.row_plan(dict(scan, rows=[]), 2, str(dump)) is None
    one = tmp_path / 'one.sql'
    _synthetic_dump(one, {'only': 1})
    assert _mysql.row_plan(_mysql.scan_dump(str(one), 'none'), 2, str(one)) is None
    # --no-autocommit: each section's rows are committed after its UNLOCK TABLES line, so a share that ends inside a
    # table would leave them uncommitted: whole tables instead
    text = dump.read_bytes()
    manual = tmp_path / 'no-autocommit.sql'
    manual.write_bytes(text.replace(b'` WRITE;\n', b'` WRITE;\nset autocommit=0;\n').replace(b'UNLOCK TABLES;\n', b'UNLOCK TABLES;\ncommit;\n'))
    assert _mysql.row_plan(_mysql.scan_dump(str(manual), 'none'), 2, str(manual)) is None
    assert _mysql.row_plan(_mysql.scan_dump(str(dump), 'none'), 2, str(dump)) is not None


def test_next_row_statement_finds_a_line_start_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(_mysql, 'CHUNK_SEARCH', 8)
    dump = tmp_path / 'd.sql'
    dump.write_bytes(b"x" * 50 + b"\nINSERT INTO `t` VALUES ('\\nINSERT INTO ');\nREPLACE INTO `t` VALUES (2);\n")
    text = dump.read_bytes()
    with open(dump, 'rb') as fileobj:
        assert _mysql.next_row_statement(fileobj, 3, len(text)) == 51
        assert _mysql.next_row_statement(fileobj, 52, len(text)) == text.index(b'REPLACE')
        assert _mysql.next_row_statement(fileobj, 52, 60) == 60
        assert _mysql.next_row_statement(fileobj, 51, len(text)) == 51
