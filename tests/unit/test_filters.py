"""The filter plugins stay light to load: Ansible imports every filter file of a collection, in each task's worker,
to find any one of its filters, and compiles the collection's Python from source each time."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys

from ansible_collections.appvault.backup.plugins import filter as filters

# module_utils a filter file must not bring in when it is loaded: each takes milliseconds to compile, in every task
HEAVY = ('_archive', '_catalog', '_destinations', '_hostrun', '_migrate', '_mysql', '_postgres', '_preflight', '_transfer')

LOAD_ALL = r'''
import importlib, json, pkgutil, sys
from ansible_collections.appvault.backup.plugins import filter as filters
names = [name for _finder, name, _pkg in pkgutil.iter_modules(filters.__path__)]
for name in names:
    importlib.import_module('%s.%s' % (filters.__name__, name))
prefix = 'ansible_collections.appvault.backup.plugins.module_utils.'
print(json.dumps({'files': names, 'module_utils': sorted(m[len(prefix):] for m in sys.modules if m.startswith(prefix))}))
'''


def test_loading_every_filter_file_as_ansible_does_imports_no_heavy_module_utils():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    out = subprocess.run([sys.executable, '-c', LOAD_ALL], env=env, capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    assert sorted(loaded['files']) == sorted(name for _finder, name, _pkg in pkgutil.iter_modules(filters.__path__))
    assert len(loaded['files']) >= 5
    assert '_appdef' in loaded['module_utils']  # what app_definition needs is there
    assert not set(HEAVY) & set(loaded['module_utils']), loaded['module_utils']


def test_the_filters_that_import_late_still_work():
    from ansible.errors import AnsibleFilterError
    from ansible_collections.appvault.backup.plugins.filter.schedule_config import schedule_config

    config = {'version': 1, 'app': {'name': 'shop', 'root': '/srv/shop'}, 'backup_dir': '/var/backups/shop'}
    assert schedule_config(config) is config
    try:
        schedule_config(dict(config, keep=-1))
    except AnsibleFilterError as exc:
        assert 'keep must be a whole number' in str(exc)
    else:
        raise AssertionError('a negative keep was accepted')


def test_dump_entry_turns_a_dump_result_into_a_manifest_entry_and_refuses_a_failed_one():
    from ansible.errors import AnsibleFilterError
    from ansible_collections.appvault.backup.plugins.filter.dump_entry import dump_entry

    result = {'item': 'main', 'format': 'custom', 'compression': 'none', 'server_version': '15.18', 'tool_version': '15.18',
              'artefact': {'path': '/tmp/main.pgdump', 'type': 'file'}, 'inventory': {'rows': {'public.t': 3}}}
    assert dump_entry(result) == {'id': 'main', 'path': '/tmp/main.pgdump', 'engine': 'postgresql', 'server_version': '15.18',
                                  'tool_version': '15.18', 'options': {'format': 'custom', 'compression': 'none'},
                                  'inventory': {'rows': {'public.t': 3}}}
    for bad, message in ((dict(result, failed=True, msg='pg_dump: error'), 'failed dump result: pg_dump: error'),
                         ({'rc': 0}, 'expects the result of a dump module')):
        try:
            dump_entry(bad)
        except AnsibleFilterError as exc:
            assert message in str(exc)
        else:
            raise AssertionError('dump_entry accepted %r' % (bad,))
