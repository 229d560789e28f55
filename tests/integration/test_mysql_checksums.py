"""MariaDB content checksums on a real server: the length-prefixed SHA1 form tells apart what a plain join would
not, ignores row order, sees one changed byte, and a restore compared with an inventory recorded in the older form
computes that form."""

from __future__ import annotations

from harness.common import run_module
from harness.compare_mysql import mysql_inventory

SCHEMA = """
CREATE TABLE pairs (id INT PRIMARY KEY, a VARCHAR(20), b VARCHAR(20));
CREATE TABLE blobs (id INT PRIMARY KEY, body LONGBLOB, note TEXT, at TIMESTAMP NULL, n DECIMAL(10, 2), f DOUBLE);
"""
TABLES = SCHEMA + """
INSERT INTO blobs SELECT seq, RANDOM_BYTES(1024), CONCAT('note ', seq, ' 日本語'), FROM_UNIXTIME(1700000000 + seq * 3600),
       seq / 7, seq / 3 FROM seq_1_to_300;
"""


def checksum(server, db, table, legacy=False):
    return mysql_inventory(server, db, legacy=legacy)['checksums'][table]


def set_pairs(server, db, rows):
    server.sql('DELETE FROM pairs; INSERT INTO pairs VALUES %s' % ', '.join(rows), db=db)
    return checksum(server, db, 'pairs')


def test_the_join_is_unambiguous_and_null_safe(mysql_source):
    mysql_source.create_db('cks_pairs')
    mysql_source.sql(TABLES, db='cks_pairs')
    split = set_pairs(mysql_source, 'cks_pairs', ["(1, 'x,y', 'z')"])
    assert split.startswith('s:1:')
    assert set_pairs(mysql_source, 'cks_pairs', ["(1, 'x', 'y,z')"]) != split
    nulls = set(set_pairs(mysql_source, 'cks_pairs', ["(1, %s, 'z')" % value]) for value in ('NULL', "''", "'NULL'", "'N'"))
    assert len(nulls) == 4
    assert set_pairs(mysql_source, 'cks_pairs', ["(1, 'x,y', 'z')"]) == split  # the same row, the same checksum


def test_order_independent_and_one_byte_changes_it(mysql_source, mysql_target, tmp_out):
    mysql_source.create_db('cks_src')
    mysql_source.sql(TABLES, db='cks_src')
    found = checksum(mysql_source, 'cks_src', 'blobs')
    assert found.startswith('s:300:')
    # The same rows inserted in reverse order on another server (through the dump's hex form) give the same checksum.
    mysql_target.create_db('cks_copy')
    mysql_target.sql(SCHEMA, db='cks_copy')
    rows = mysql_source.sql("SELECT CONCAT('(', id, ', 0x', HEX(body), ', ', QUOTE(note), ', ', QUOTE(at), ', ', n, ', ', "
                            "QUOTE(f), ')') FROM blobs ORDER BY id DESC", db='cks_src').split('\n')
    insert = tmp_out / 'reversed.sql'
    insert.write_text('INSERT INTO blobs VALUES %s;\n' % ', '.join(r for r in rows if r))
    mysql_target.sql(db='cks_copy', file=insert)
    assert checksum(mysql_target, 'cks_copy', 'blobs') == found
    mysql_target.sql("UPDATE blobs SET body = CONCAT(LEFT(body, 1023), CHAR(ASCII(RIGHT(body, 1)) ^ 1)) WHERE id = 150",
                     db='cks_copy')
    changed = checksum(mysql_target, 'cks_copy', 'blobs')
    assert changed.startswith('s:300:') and changed != found


def test_restore_against_an_inventory_in_the_older_form(mysql_source, tmp_out):
    mysql_source.create_db('cks_old')
    mysql_source.sql(TABLES, db='cks_old')
    dest = tmp_out / 'cks_old.sql.zst'
    assert not run_module('mysql_dump', mysql_source.conn_args('cks_old', dest=str(dest), checksums=False)).get('failed')
    recorded = mysql_inventory(mysql_source, 'cks_old', legacy=True)  # as an earlier build recorded it
    assert recorded['checksums']['blobs'].startswith('300:')
    args = mysql_source.conn_args('cks_old_copy', src=str(dest), checksums=True, expected_inventory=recorded)
    restored = run_module('mysql_restore', args)
    assert not restored.get('failed'), restored.get('msg')
    assert restored['verified'] is True and restored['inventory']['checksums'] == recorded['checksums']
    # A changed row is still found in the older form.
    recorded['checksums']['blobs'] = '300:1'
    failed = run_module('mysql_restore', dict(args, name='cks_old_copy2'))
    assert failed.get('failed') and 'checksums.blobs' in failed['msg']
