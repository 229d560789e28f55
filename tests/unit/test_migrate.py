"""The target's definition as a mapping over the source's, and the comparison table (pure logic)."""

from __future__ import annotations

import pytest

from ansible_collections.appvault.backup.plugins.module_utils import _appdef, _migrate
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError

SOURCE = {
    'name': 'exment', 'profile': 'generic', 'root': '/var/www/exment', 'owner': 'www-data',
    'databases': [{'id': 'main', 'engine': 'mariadb', 'name': 'exment', 'login_host': '127.0.0.1', 'login_user': 'exment',
                   'login_password': 'old'}],
    'paths': [{'id': 'storage', 'path': 'storage/app'}, {'id': 'config', 'path': '.env'}],
    'commands': {'maintenance_on': 'php artisan down', 'restart': 'systemctl restart php8.2-fpm'},
}


def test_mapping_changes_only_what_it_names():
    target = _appdef.map_definition(SOURCE, {
        'root': '/srv/exment', 'owner': 'exment',
        'databases': {'main': {'name': 'exment_prod', 'login_host': 'db.internal', 'login_port': 3307, 'login_password': 'new'}},
        'paths': {'storage': {'path': '/data/exment/storage'}},
        'commands': {'restart': 'systemctl restart php8.4-fpm'},
    })
    assert target['root'] == '/srv/exment' and target['owner'] == 'exment'
    assert target['databases'][0] == dict(SOURCE['databases'][0], name='exment_prod', login_host='db.internal', login_port=3307,
                                          login_password='new')
    assert target['paths'] == [{'id': 'storage', 'path': '/data/exment/storage'}, {'id': 'config', 'path': '.env'}]
    assert target['commands'] == {'maintenance_on': 'php artisan down', 'restart': 'systemctl restart php8.4-fpm'}
    assert SOURCE['databases'][0]['login_password'] == 'old', 'the source definition must not change'


def test_empty_mapping_is_the_source():
    assert _appdef.map_definition(SOURCE, {}) == SOURCE


@pytest.mark.parametrize('mapping, message', [
    ({'databases': {'sub': {'name': 'x'}}}, 'databases.sub: the source definition has no such id'),
    ({'databases': {'main': {'engine': 'postgresql'}}}, 'engine cannot be mapped'),
    ({'paths': {'storage': {'path': '../x'}}}, 'must not contain ".."'),
    ({'hostname': 'x'}, 'hostname cannot be mapped'),
    ({'databases': ['main']}, 'must be a mapping of id'),
])
def test_bad_mappings_are_refused_naming_the_key(mapping, message):
    with pytest.raises(AppvaultError, match=message.replace('(', r'\(').replace('.', r'\.')):
        _appdef.map_definition(SOURCE, mapping)


def test_table_aligns_and_names_differences():
    lines = _migrate.table([
        {'kind': 'database', 'id': 'main', 'source': '3 tables, 10 rows', 'target': '3 tables, 10 rows', 'equal': True, 'differences': []},
        {'kind': 'path', 'id': 'storage', 'source': '2 files, 10 B', 'target': '1 files, 5 B', 'equal': False,
         'differences': ['a.txt: missing']},
    ])
    assert lines[0].split() == ['what', 'source', 'target', 'result']
    assert lines[1].endswith('equal') and lines[2].endswith('DIFFERENT: a.txt: missing')
    assert lines[1].index('3 tables') == lines[0].index('source')
