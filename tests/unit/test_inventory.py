"""Inventory comparison: every difference named, informational keys ignored."""

from __future__ import annotations

from ansible_collections.appvault.backup.plugins.module_utils import _inventory


def test_identical_inventories_have_no_difference():
    inv = {'tables': {'a.t': {'columns': ['id int']}}, 'rows': {'a.t': 3}, '_server_version': '15.1'}
    assert _inventory.compare(inv, dict(inv, _server_version='17.2')) == []


def test_differences_are_named():
    before = {'rows': {'a.t': 3, 'a.u': 1}, 'views': {'a.v': 'SELECT 1'}}
    after = {'rows': {'a.t': 2, 'a.w': 1}, 'views': {}}
    assert _inventory.compare(before, after) == [
        'rows.a.t: expected 3, found 2',
        'rows.a.u: missing after restore',
        'rows.a.w: not in the recorded inventory',
        'views.a.v: missing after restore',
    ]


def test_long_difference_lists_are_bounded():
    before = {'rows': {'t%d' % i: i for i in range(80)}}
    diffs = _inventory.compare(before, {'rows': {}})
    assert len(diffs) == _inventory.MAX_REPORTED + 1
    assert diffs[-1] == '... and 30 more differences'
