"""The comparison helper: object inventory plus per-table checksums, and an independent DDL comparison."""

from __future__ import annotations

from ansible_collections.appvault.backup.plugins.module_utils import _common, _inventory, _postgres


def pg_inventory(server, database, checksums=True, hashed=None):
    """Inventory with checksums of a database on a harness server, read through the collection's own code
    (``hashed``: the checksum form, as _postgres.inventory takes it)."""
    params = dict(_postgres.connection_argument_spec_defaults())
    params.update(server.conn_args(database))
    with _common.SecretDir() as secrets:
        conn = _postgres.Connection(params, secrets)
        conn.connect()
        return _postgres.inventory(conn, checksums=checksums, hashed=hashed)


def assert_pg_identical(src_server, src_db, dst_server, dst_db):
    """Inventory, per-table checksums, large objects and the schema-only DDL must all be equal."""
    before = pg_inventory(src_server, src_db)
    after = pg_inventory(dst_server, dst_db)
    differences = _inventory.compare(before, after)
    assert differences == [], differences
    assert src_server.schema_dump(src_db) == dst_server.schema_dump(dst_db)
    return before
