"""Content checksums on a real PostgreSQL server: the row-hash form where every column's hash is a pure function of
its value, the md5 form elsewhere, and both equal after a dump and restore into another server."""

from __future__ import annotations

from ansible_collections.appvault.backup.plugins.module_utils import _postgres
from harness.common import run_module
from harness.compare import pg_inventory

TABLES = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE COLLATION IF NOT EXISTS ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE plain (id int8 PRIMARY KEY, name text, price numeric(10, 2), at timestamptz, data jsonb, raw bytea,
                    tags text[], ok bool, u uuid);
CREATE TABLE with_enum (id int PRIMARY KEY, m mood);
CREATE TABLE with_ci (id int PRIMARY KEY, name text COLLATE ci);
CREATE TABLE with_point (id int PRIMARY KEY, p point);
INSERT INTO plain SELECT g, 'name ' || g || ' 日本語', g / 7.0, '2026-01-01'::timestamptz + g * interval '1 hour',
       jsonb_build_object('g', g, 'half', g / 2.0), decode(md5(g::text), 'hex'), ARRAY['a' || g, NULL], g % 2 = 0,
       md5(g::text)::uuid FROM generate_series(1, 3000) g;
INSERT INTO with_enum SELECT g, (ARRAY['sad', 'ok', 'happy'])[g % 3 + 1]::mood FROM generate_series(1, 300) g;
INSERT INTO with_ci SELECT g, 'Name ' || g FROM generate_series(1, 300) g;
INSERT INTO with_point SELECT g, point(g, g / 3.0) FROM generate_series(1, 300) g;
"""


def checksums(server, db, hashed=None):
    return pg_inventory(server, db, hashed=hashed)['checksums']


def test_row_hash_only_where_the_hash_is_a_function_of_the_value(pg_source, pg_target, tmp_out):
    pg_source.create_db('cks_src')
    pg_source.psql(TABLES, db='cks_src')
    found = checksums(pg_source, 'cks_src')
    assert found['public.plain'].startswith('h:3000:')
    for table in ('public.with_enum', 'public.with_ci', 'public.with_point'):  # enum OIDs, ICU sort keys, no hash
        assert found[table].startswith('300:'), (table, found[table])
    assert checksums(pg_source, 'cks_src', hashed=False)['public.plain'].startswith('3000:')

    # The same rows written in another order into another database give the same checksum; one changed value does not.
    pg_source.create_db('cks_copy')
    pg_source.psql(TABLES.partition('INSERT INTO plain')[0], db='cks_copy')
    rows = pg_source.psql("COPY (SELECT * FROM plain ORDER BY id DESC) TO STDOUT", db='cks_src')
    copy_file = tmp_out / 'plain.copy'
    copy_file.write_text(rows + '\n')
    pg_source.psql("\\copy plain FROM '%s'" % copy_file, db='cks_copy')
    assert checksums(pg_source, 'cks_copy')['public.plain'] == found['public.plain']
    pg_source.psql("UPDATE plain SET price = price + 0.01 WHERE id = 1234", db='cks_copy')
    assert checksums(pg_source, 'cks_copy')['public.plain'] != found['public.plain']

    # Dumped with the inventory recorded, restored into the other server and verified there by the restore module.
    dump = run_module('postgresql_dump', pg_source.conn_args('cks_src', dest=str(tmp_out / 'cks.pgc.zst'), checksums=True))
    assert not dump.get('failed'), dump.get('msg')
    assert dump['inventory']['checksums'] == found
    args = pg_target.conn_args('cks_dst', src=str(tmp_out / 'cks.pgc.zst'), create=True, expected_inventory=dump['inventory'],
                               checksums=True)
    restored = run_module('postgresql_restore', args)
    assert not restored.get('failed'), restored.get('msg')
    assert restored['inventory']['checksums'] == found
    pg_source.drop_db('cks_src')
    pg_source.drop_db('cks_copy')
    pg_target.drop_db('cks_dst')


def test_a_dump_recorded_with_md5_checksums_is_verified_with_md5(pg_source, pg_target, tmp_out):
    """An inventory without the row-hash form (a backup of PostgreSQL 13, or made before it existed) is compared in md5."""
    pg_source.create_db('cks_old')
    pg_source.psql(TABLES, db='cks_old')
    dump = run_module('postgresql_dump', pg_source.conn_args('cks_old', dest=str(tmp_out / 'old.pgc.zst'), checksums=True))
    assert not dump.get('failed'), dump.get('msg')
    recorded = dict(dump['inventory'], checksums=checksums(pg_source, 'cks_old', hashed=False))
    assert not _postgres.hashed_checksums(recorded) and _postgres.hashed_checksums(dump['inventory'])
    args = pg_target.conn_args('cks_old', src=str(tmp_out / 'old.pgc.zst'), create=True, expected_inventory=recorded,
                               checksums=True)
    restored = run_module('postgresql_restore', args)
    assert not restored.get('failed'), restored.get('msg')
    assert restored['inventory']['checksums'] == recorded['checksums']
    pg_source.drop_db('cks_old')
    pg_target.drop_db('cks_old')


def test_row_counts_taken_from_the_checksums_equal_a_count_of_every_table(pg_source):
    """With checksums each table is read once: its row count comes from its checksum.  Partitions count under their
    parent, a materialized view and an empty table count too, exactly as the count(*) pass without checksums does."""
    pg_source.create_db('cks_rows')
    pg_source.psql(TABLES + """
CREATE TABLE m (at date NOT NULL, v int) PARTITION BY RANGE (at);
CREATE TABLE m_2025 PARTITION OF m FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE m_2026 PARTITION OF m FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO m SELECT '2025-06-01'::date + g, g FROM generate_series(1, 400) g;
CREATE MATERIALIZED VIEW expensive AS SELECT id, price FROM plain WHERE price > 100;
CREATE TABLE empty (id int);
""", db='cks_rows')
    counted = pg_inventory(pg_source, 'cks_rows', checksums=False)
    with_checksums = pg_inventory(pg_source, 'cks_rows')
    assert 'checksums' not in counted
    assert with_checksums['rows'] == counted['rows']
    assert counted['rows']['public.m'] == 400 and counted['rows']['public.empty'] == 0
    assert counted['rows']['public.expensive'] == 2300 and counted['rows']['public.plain'] == 3000
    assert set(with_checksums['checksums']) == set(counted['rows'])
    pg_source.drop_db('cks_rows')
