"""The environment definition, the compatibility gate and the run lock: pure logic."""

from __future__ import annotations

import json
import os
import time

import pytest
import yaml

from ansible_collections.appvault.backup.plugins.doc_fragments.app import ModuleDocFragment
from ansible_collections.appvault.backup.plugins.module_utils import _appdef, _catalog, _preflight
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError

BASE = dict(name='shop', root='/srv/shop', databases=[dict(id='main', engine='postgresql', name='shop')])


def resolve(**changes):
    app = dict(BASE)
    app.update(changes)
    return _appdef.resolve(app)


def _spec_shape(spec):
    return {key: (value.get('type'), value.get('default'), value.get('required', False), bool(value.get('no_log')),
                  _spec_shape(value['options']) if 'options' in value else None) for key, value in spec.items()}


def _doc_shape(options):
    return {key: (value.get('type'), value.get('default'), value.get('required', False),
                  key == 'login_password', _doc_shape(value['suboptions']) if 'suboptions' in value else None)
            for key, value in options.items()}


def test_doc_fragment_mirrors_the_argument_spec():
    doc = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options']['app']['suboptions']
    assert _doc_shape(doc) == _spec_shape(_appdef.argument_spec())


def test_paths_are_resolved_against_root_and_profile_paths_merge_by_id():
    app = resolve(profile='exment', paths=[dict(id='logs', path='var/log', optional=False), dict(id='extra', path='/etc/shop.conf'),
                                           dict(id='templates', skip=True, path='x')])
    by_id = {p['id']: p for p in app['paths']}
    assert by_id['logs'] == dict(id='logs', path='/srv/shop/var/log', optional=False, exclude=[])
    assert by_id['extra']['path'] == '/etc/shop.conf'
    assert 'templates' not in by_id and 'attachments' in by_id
    assert app['owner'] == 'www-data' and app['group'] == 'www-data'


def test_commands_become_lists_of_argv():
    app = resolve(commands=dict(version='php artisan "exment:version"', upgrade=['a --x', ['b', 'c d']], restart=None))
    assert app['commands']['version'] == [['php', 'artisan', 'exment:version']]
    assert app['commands']['upgrade'] == [['a', '--x'], ['b', 'c d']]
    assert app['commands']['restart'] == [] and app['commands']['maintenance_on'] == []


@pytest.mark.parametrize('changes, message', [
    (dict(root='srv'), 'appvault_app.root must be an absolute path'),
    (dict(profile='wordpress'), "appvault_app.profile 'wordpress' is not one of"),
    (dict(databases=[dict(id='main', engine='oracle', name='x')]), "engine 'oracle' is not one of"),
    (dict(databases=[dict(id='a', engine='mysql', name='x'), dict(id='a', engine='mysql', name='y')]), "id 'a' is used twice"),
    (dict(databases=[dict(id='m', engine='mysql', name='x', schemas=['s'])]), 'schemas only apply to PostgreSQL'),
    (dict(databases=[dict(id='m', engine='sqlite')]), 'a sqlite database needs path'),
    (dict(databases=[dict(id='m', engine='mysql', name='x', passwd='p')]), 'unknown key passwd'),
    (dict(paths=[dict(id='a', path='../etc')]), 'must not contain ".."'),
    (dict(paths=[dict(id='a', path='storage'), dict(id='b', path='storage/app')]), 'paths must not overlap'),
    (dict(commands=dict(upgrade='php artisan up && systemctl restart php')), 'needs a shell'),
    (dict(commands=dict(upgrade='echo $(id)')), 'needs a shell'),
    (dict(commands=dict(reboot='x')), 'unknown key reboot'),
    (dict(name='my app'), 'appvault_app.name'),
])
def test_bad_definitions_name_the_key(changes, message):
    with pytest.raises(AppvaultError, match=None) as info:
        resolve(**changes)
    assert message in info.value.msg, info.value.msg


MANIFEST = dict(host=dict(os=dict(id='debian', version_id='12')), app=dict(name='shop', profile='generic', version='1.0'),
                databases=[dict(id='main', engine='postgresql', server_version='17.2')], paths=[dict(id='storage')])


def test_gate_blocks_newer_postgresql_other_engine_and_unknown_ids():
    app = resolve(paths=[dict(id='storage', path='storage')])
    facts = [dict(id='main', engine='postgresql', server_version='15.8', major=15)]
    blocked, risks, report = _preflight.gate(MANIFEST, app, facts, '1.0')
    assert any('PostgreSQL 17' in b and 'target server is 15' in b for b in blocked), blocked
    assert [r['item'] for r in report][:3] == ['os', 'app', 'app version']
    facts[0].update(server_version='17.5', major=17)
    assert _preflight.gate(MANIFEST, app, facts, '1.0')[0] == []
    mysql_app = resolve(databases=[dict(id='main', engine='mariadb', name='shop')], paths=[dict(id='storage', path='storage')])
    blocked = _preflight.gate(MANIFEST, mysql_app, [dict(id='main', engine='mariadb', server_version='10.11.6')], None)[0]
    assert any('another engine cannot restore it' in b for b in blocked), blocked
    blocked = _preflight.gate(MANIFEST, resolve(), facts, None)[0]
    assert any("path storage is in the backup but not in appvault_app.paths" in b for b in blocked)


def test_gate_warns_on_other_os_and_older_mariadb():
    manifest = dict(MANIFEST, host=dict(os=dict(id='ubuntu', version_id='22.04')),
                    databases=[dict(id='main', engine='mariadb', server_version='11.8.6-MariaDB')], paths=[])
    app = resolve(databases=[dict(id='main', engine='mariadb', name='shop')])
    blocked, risks, _report = _preflight.gate(manifest, app, [dict(id='main', engine='mariadb', flavour='mariadb',
                                                                   server_version='10.11.6-MariaDB')], None)
    assert blocked == []
    assert any('ubuntu 22.04' in r for r in risks) and any('target is older' in r for r in risks), risks


def test_run_lock_lease_renewal_conflict_and_stale_takeover(tmp_path):
    mine = _catalog.RunLock(str(tmp_path), 'mine')
    assert mine.acquire('backup', lease=60)['changed'] is True
    assert mine.acquire('backup', lease=60)['changed'] is False  # renewal
    other = _catalog.RunLock(str(tmp_path), 'other')
    with pytest.raises(AppvaultError) as info:
        other.acquire('restore', lease=60)
    assert 'is locked: backup on' in info.value.msg
    assert other.release()['changed'] is False and os.path.exists(mine.path)
    data = json.loads(open(mine.path).read())
    data['expires'] = int(time.time()) - 1
    open(mine.path, 'w').write(json.dumps(data))
    taken = other.acquire('restore', lease=60)
    assert 'lease expired' in taken['recovered']
    assert json.loads(open(mine.path).read())['token'] == 'other'


def test_run_lock_with_a_dead_pid_is_stale(tmp_path):
    lock = _catalog.RunLock(str(tmp_path), 'runner')
    lock.acquire('scheduled backup', pid=2 ** 22 + 12345)  # no such process
    taken = _catalog.RunLock(str(tmp_path), 'next').acquire('backup', lease=60)
    assert 'is gone' in taken['recovered']
