"""Comparison helpers for MySQL/MariaDB: inventory with checksums read through the collection's own code."""

from __future__ import annotations

from ansible_collections.appvault.backup.plugins.module_utils import _common, _inventory, _mysql


def mysql_inventory(server, database, checksums=True, legacy=False):
    params = dict(_mysql.connection_argument_spec_defaults())
    params.update(server.conn_args(database))
    with _common.SecretDir() as secrets:
        conn = _mysql.Connection(params, secrets)
        conn.connect()
        return _mysql.inventory(conn, database, checksums=checksums, legacy=legacy)


def assert_mysql_identical(src_server, src_db, dst_server, dst_db, ignore=()):
    """Inventory (objects, definitions, AUTO_INCREMENT, row counts) and per-table checksums must be equal."""
    before = mysql_inventory(src_server, src_db)
    after = mysql_inventory(dst_server, dst_db)
    for key in ignore:
        before.pop(key, None)
        after.pop(key, None)
    differences = _inventory.compare(before, after)
    assert differences == [], differences
    return before
