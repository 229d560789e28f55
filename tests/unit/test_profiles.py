"""Shape of the application profiles: the keys the roles read, safe path ids and paths, shell-free commands, sources."""

from __future__ import annotations

import ast
import os
import posixpath
import re
import shlex

import pytest

from ansible_collections.appvault.backup.plugins.module_utils import _catalog, _profiles
from ansible_collections.appvault.backup.plugins.module_utils._profiles import PROFILES

COMMAND_KEYS = {'maintenance_on', 'maintenance_off', 'version', 'upgrade', 'restart'}
PATH_KEYS = {'id', 'path', 'optional', 'exclude'}
SHELL_META = set('|&;<>()$`\\"\'*?[]{}~!#\n\r\t')
APP_PROFILES = sorted(name for name in PROFILES if name != 'generic')


def _commands(profile):
    """Every (key, command string) of a profile; a list value contributes each of its strings."""
    for key, value in sorted(profile['commands'].items()):
        if value is None:
            continue
        for command in (value if isinstance(value, list) else [value]):
            yield key, command


def test_the_three_profiles_exist():
    assert set(PROFILES) == {'generic', 'exment', 'nocobase'}


def test_generic_is_empty():
    assert PROFILES['generic'] == {'paths': [], 'commands': {}, 'owner': None}


@pytest.mark.parametrize('name', sorted(PROFILES))
def test_every_profile_has_the_keys(name):
    profile = PROFILES[name]
    expected = {'paths', 'commands', 'owner'} | ({'sources'} if name != 'generic' else set())
    assert set(profile) == expected
    assert isinstance(profile['paths'], list)
    assert isinstance(profile['commands'], dict)
    assert profile['owner'] is None or (isinstance(profile['owner'], str) and profile['owner'])


@pytest.mark.parametrize('name', APP_PROFILES)
def test_application_profiles_define_every_command_key(name):
    assert set(PROFILES[name]['commands']) == COMMAND_KEYS
    for value in PROFILES[name]['commands'].values():
        assert value is None or isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(v, str) for v in value))


@pytest.mark.parametrize('name', sorted(PROFILES))
def test_path_items_are_well_formed(name):
    ids = []
    for item in PROFILES[name]['paths']:
        assert set(item) <= PATH_KEYS and {'id', 'path'} <= set(item), item
        assert _catalog.check_name(item['id'], 'path id') == item['id']
        ids.append(item['id'])
        assert isinstance(item.get('optional', False), bool)
        assert isinstance(item.get('exclude', []), list)
        assert all(isinstance(pattern, str) and pattern for pattern in item.get('exclude', []))
    assert len(ids) == len(set(ids)), 'path ids must be unique'


@pytest.mark.parametrize('name', sorted(PROFILES))
def test_paths_are_relative_and_stay_inside_the_root(name):
    for item in PROFILES[name]['paths']:
        path = item['path']
        assert path and not path.startswith('/') and not path.startswith('~'), path
        assert '\\' not in path and '\n' not in path
        parts = path.split('/')
        assert '..' not in parts and '.' not in parts and '' not in parts, path
        assert posixpath.normpath(path) == path


@pytest.mark.parametrize('name', sorted(PROFILES))
def test_paths_do_not_overlap(name):
    # archive_create refuses sources inside one another
    paths = [item['path'] for item in PROFILES[name]['paths']]
    for one in paths:
        for other in paths:
            if one != other:
                assert not other.startswith(one + '/'), '%s is inside %s' % (other, one)


@pytest.mark.parametrize('name', sorted(PROFILES))
def test_commands_split_into_argv_without_shell_features(name):
    for key, command in _commands(PROFILES[name]):
        argv = shlex.split(command)
        assert argv and all(argv), (key, command)
        assert ' '.join(argv) == command, 'no quoting needed, so what is shown is what runs: %r' % command
        bad = sorted(set(command) & SHELL_META)
        assert not bad, '%s: %r uses shell characters %s' % (key, command, bad)
        assert '=' not in argv[0], '%s: %r starts with a variable assignment' % (key, command)


@pytest.mark.parametrize('name', APP_PROFILES)
def test_every_value_has_a_source(name):
    profile = PROFILES[name]
    wanted = {'owner'} | {'paths.' + item['id'] for item in profile['paths']} | {'commands.' + key for key in profile['commands']}
    assert set(profile['sources']) == wanted
    for key, source in profile['sources'].items():
        assert isinstance(source, str) and source.strip(), key
        assert 'https://' in source or 'seed 00' in source, '%s: %r names no URL or seed section' % (key, source)


def test_sources_link_only_to_the_projects_and_their_framework_docs():
    allowed = {'github.com', 'cloud.laravel.com'}
    for name in APP_PROFILES:
        for key, source in PROFILES[name]['sources'].items():
            hosts = set(re.findall(r'https://([^/\s]+)/', source))
            assert hosts <= allowed, '%s links to %s' % (key, sorted(hosts - allowed))


def test_the_module_is_python36_syntax():
    with open(_profiles.__file__, encoding='utf-8') as fileobj:
        source = fileobj.read()
    ast.parse(source, feature_version=(3, 6))
    assert os.path.basename(_profiles.__file__) == '_profiles.py'
