# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The environment definition (``appvault_app``): profile presets merged in, validated, normalised.

Every role reads the result of :func:`resolve` rather than ``appvault_app`` itself, so a mistake in the
definition is reported once, before anything runs, with the key that is wrong.
"""

from __future__ import annotations

import copy
import posixpath
import shlex

from ansible_collections.appvault.backup.plugins.module_utils import _profiles
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError

ENGINES = ('postgresql', 'mysql', 'mariadb', 'sqlite')
# The module family that handles each engine.
MODULE_ENGINE = {'postgresql': 'postgresql', 'mysql': 'mysql', 'mariadb': 'mysql', 'sqlite': 'sqlite'}
COMMANDS = ('maintenance_on', 'maintenance_off', 'version', 'upgrade', 'restart', 'health')
CONNECTION_KEYS = ('login_host', 'login_port', 'login_user', 'login_password', 'login_unix_socket')
DATABASE_KEYS = ('id', 'engine', 'name', 'path', 'schemas', 'options') + CONNECTION_KEYS
PATH_KEYS = ('id', 'path', 'optional', 'exclude', 'skip')
APP_KEYS = ('name', 'profile', 'root', 'owner', 'group', 'databases', 'paths', 'commands', 'version')
SHELL_WORDS = ('&&', '||', '|', ';', '&', '>', '>>', '<', '2>&1', '2>')


def _where(kind, index, item):
    ident = item.get('id') if isinstance(item, dict) else None
    return 'appvault_app.%s[%d]%s' % (kind, index, ' (id %r)' % ident if ident else '')


def _check_id(value, where):
    if not isinstance(value, str) or not value:
        raise AppvaultError('%s: id is required (letters, digits, ".", "_" or "-")' % where)
    bad = sorted(set(ch for ch in value if not (ch.isascii() and (ch.isalnum() or ch in '._-'))))
    if bad or value[0] in '.-':
        raise AppvaultError('%s: id %r may only hold ASCII letters, digits, ".", "_" and "-" and must not start with '
                            '"." or "-"' % (where, value))
    return value


def _unknown(item, allowed, where):
    extra = sorted(set(item) - set(allowed))
    if extra:
        plural = 's' if len(extra) > 1 else ''
        raise AppvaultError('%s: unknown key%s %s (known: %s)' % (where, plural, ', '.join(extra), ', '.join(allowed)))


def _split(value, where):
    try:
        argv = shlex.split(value)
    except ValueError as exc:
        raise AppvaultError('%s: cannot split %r into arguments: %s' % (where, value, exc))
    for word in argv:
        if word in SHELL_WORDS or '`' in word or '$(' in word or word.endswith(';') or word[:1] in '|<>':
            raise AppvaultError('%s: %r needs a shell (%r); commands run without one: put the steps in a script and '
                                'give its path, or list the commands one by one' % (where, value, word))
    if not argv:
        raise AppvaultError('%s: empty command' % where)
    return argv


def command_list(value, where):
    """A step's commands as a list of argv lists, run in order: a string is one command; a list holds several
    commands, each a string or an argv list. Unset, empty or null means none."""
    if value is None or value in ('', []):
        return []
    if isinstance(value, str):
        return [_split(value, where)]
    if not isinstance(value, (list, tuple)):
        raise AppvaultError('%s: a command is a string or a list of commands, got %s' % (where, type(value).__name__))
    commands = []
    for index, item in enumerate(value):
        here = '%s[%d]' % (where, index)
        if isinstance(item, str):
            commands.append(_split(item, here))
        elif isinstance(item, (list, tuple)) and item and all(isinstance(word, (str, int, float)) for word in item):
            commands.append([str(word) for word in item])
        else:
            raise AppvaultError('%s: each command is a string or a non-empty list of arguments, got %r' % (here, item))
    return commands


def _merge_paths(preset, given):
    """Preset paths overridden per id by the user's; ``skip: true`` drops one; new ids are appended."""
    merged = []
    index = {}
    for item in preset:
        index[item['id']] = len(merged)
        merged.append(dict(item))
    for item in given:
        ident = item.get('id') if isinstance(item, dict) else None
        if ident in index:
            merged[index[ident]].update(item)
        else:
            if ident is not None:
                index[ident] = len(merged)
            merged.append(dict(item) if isinstance(item, dict) else item)
    return [item for item in merged if not (isinstance(item, dict) and item.get('skip'))]


def _database(item, index, root, seen):
    where = _where('databases', index, item)
    if not isinstance(item, dict):
        raise AppvaultError('%s: each database is a mapping, got %r' % (where, item))
    _unknown(item, DATABASE_KEYS, where)
    ident = _check_id(item.get('id'), where)
    if ident in seen:
        raise AppvaultError('%s: id %r is used twice; database ids name the dumps and must be unique' % (where, ident))
    seen.add(ident)
    engine = item.get('engine')
    if engine not in ENGINES:
        raise AppvaultError('%s: engine %r is not one of %s' % (where, engine, ', '.join(ENGINES)))
    db = dict(id=ident, engine=engine, module=MODULE_ENGINE[engine], options=dict(item.get('options') or {}))
    if engine == 'sqlite':
        path = item.get('path')
        if not path:
            raise AppvaultError('%s: a sqlite database needs path (the database file)' % where)
        db['path'] = path if posixpath.isabs(path) else posixpath.join(root, path)
        return db
    if not item.get('name'):
        raise AppvaultError('%s: name (the database name) is required for engine %s' % (where, engine))
    db['name'] = str(item['name'])
    for key in CONNECTION_KEYS:
        if item.get(key) is not None:
            db[key] = int(item[key]) if key == 'login_port' else str(item[key])
    if item.get('schemas'):
        if engine != 'postgresql':
            raise AppvaultError('%s: schemas only apply to PostgreSQL' % where)
        schemas = item['schemas']
        db['schemas'] = [schemas] if isinstance(schemas, str) else [str(schema) for schema in schemas]
    return db


def _path(item, index, root):
    where = _where('paths', index, item)
    if not isinstance(item, dict):
        raise AppvaultError('%s: each path is a mapping like {id: storage, path: storage/app}, got %r' % (where, item))
    _unknown(item, PATH_KEYS, where)
    ident = _check_id(item.get('id'), where)
    path = item.get('path')
    if not isinstance(path, str) or not path:
        raise AppvaultError('%s: path is required' % where)
    if '..' in path.split('/'):
        raise AppvaultError('%s: path %r must not contain ".."' % (where, path))
    absolute = posixpath.normpath(path if posixpath.isabs(path) else posixpath.join(root, path))
    exclude = item.get('exclude') or []
    if isinstance(exclude, str):
        exclude = [exclude]
    return dict(id=ident, path=absolute, optional=bool(item.get('optional', False)), exclude=[str(p) for p in exclude])


def resolve(app):
    """Return the complete, validated definition for ``app`` (``appvault_app``) with its profile's presets."""
    if not isinstance(app, dict):
        raise AppvaultError('appvault_app must be a mapping (see docs/environment.md), got %s' % type(app).__name__)
    _unknown(app, APP_KEYS, 'appvault_app')
    name = app.get('name')
    _check_id(name, 'appvault_app.name')
    profile_name = app.get('profile') or 'generic'
    if profile_name not in _profiles.PROFILES:
        raise AppvaultError('appvault_app.profile %r is not one of %s' % (profile_name, ', '.join(sorted(_profiles.PROFILES))))
    profile = _profiles.PROFILES[profile_name]
    root = app.get('root')
    if not isinstance(root, str) or not posixpath.isabs(root):
        raise AppvaultError('appvault_app.root must be an absolute path (the application directory), got %r' % (root,))
    root = posixpath.normpath(root)
    databases = app.get('databases') or []
    if not isinstance(databases, list):
        raise AppvaultError('appvault_app.databases must be a list')
    seen = set()
    resolved_dbs = [_database(item, index, root, seen) for index, item in enumerate(databases)]
    given_paths = app.get('paths') or []
    if not isinstance(given_paths, list):
        raise AppvaultError('appvault_app.paths must be a list')
    paths = [_path(item, index, root) for index, item in enumerate(_merge_paths(profile.get('paths') or [], given_paths))]
    ids = set()
    for index, item in enumerate(paths):
        if item['id'] in ids:
            raise AppvaultError('appvault_app.paths[%d]: id %r is used twice' % (index, item['id']))
        ids.add(item['id'])
    for one in paths:
        for other in paths:
            if one is not other and other['path'].startswith(one['path'].rstrip('/') + '/'):
                raise AppvaultError('appvault_app.paths: %s (%s) is inside %s (%s); paths must not overlap - exclude it '
                                    'from %s or drop one' % (other['path'], other['id'], one['path'], one['id'], one['id']))
    given_commands = app.get('commands') or {}
    if not isinstance(given_commands, dict):
        raise AppvaultError('appvault_app.commands must be a mapping of %s' % ', '.join(COMMANDS))
    _unknown(given_commands, COMMANDS, 'appvault_app.commands')
    commands = {}
    for key in COMMANDS:
        value = given_commands[key] if key in given_commands else (profile.get('commands') or {}).get(key)
        commands[key] = command_list(value, 'appvault_app.commands.%s' % key)
    owner = app.get('owner', profile.get('owner'))
    group = app.get('group') or owner
    return dict(
        name=name, profile=profile_name, root=root, owner=owner or None, group=group or None,
        version=None if app.get('version') is None else str(app['version']),
        databases=resolved_dbs, paths=paths, commands=commands,
        engines=sorted(set(db['module'] for db in resolved_dbs)))


# -- migration: the target's definition ------------------------------------------------------------------
MAPPING_KEYS = ('name', 'profile', 'root', 'owner', 'group', 'version', 'commands', 'databases', 'paths')


def _by_id(items, where):
    out = {}
    for index, item in enumerate(items or []):
        if not isinstance(item, dict) or 'id' not in item:
            raise AppvaultError('%s[%d] has no id' % (where, index))
        out[item['id']] = index
    return out


def _overlay(items, changes, allowed, where):
    """Lay ``changes`` ({id: {key: value}}) over the list ``items`` of mappings with an id."""
    if not isinstance(changes, dict):
        raise AppvaultError('%s must be a mapping of id to the keys that differ, got %s' % (where, type(changes).__name__))
    items = [dict(item) for item in items or []]
    index = _by_id(items, where)
    for ident, change in changes.items():
        if ident not in index:
            raise AppvaultError('%s.%s: the source definition has no such id (it has: %s)' % (where, ident, ', '.join(sorted(index)) or 'none'))
        if not isinstance(change, dict):
            raise AppvaultError('%s.%s must be a mapping, got %s' % (where, ident, type(change).__name__))
        unknown = sorted(set(change) - set(allowed))
        if unknown:
            raise AppvaultError('%s.%s: %s cannot be mapped (allowed: %s)' % (where, ident, ', '.join(unknown), ', '.join(allowed)))
        items[index[ident]].update(change)
    return items


def map_definition(app, mapping):
    """The target's definition: the source's ``appvault_app`` with ``mapping`` laid over it (see docs/migration.md)."""
    if not isinstance(app, dict):
        raise AppvaultError('the source definition (appvault_app) must be a mapping')
    mapping = mapping or {}
    if not isinstance(mapping, dict):
        raise AppvaultError('appvault_migrate_mapping must be a mapping, got %s' % type(mapping).__name__)
    unknown = sorted(set(mapping) - set(MAPPING_KEYS))
    if unknown:
        raise AppvaultError('appvault_migrate_mapping: %s cannot be mapped (allowed: %s)' % (', '.join(unknown), ', '.join(MAPPING_KEYS)))
    target = copy.deepcopy(app)
    for key in ('name', 'profile', 'root', 'owner', 'group', 'version'):
        if key in mapping:
            target[key] = mapping[key]
    if 'commands' in mapping:
        if not isinstance(mapping['commands'], dict):
            raise AppvaultError('appvault_migrate_mapping.commands must be a mapping of command names')
        target['commands'] = dict(target.get('commands') or {}, **mapping['commands'])
    if 'databases' in mapping:
        target['databases'] = _overlay(target.get('databases'), mapping['databases'],
                                       [k for k in DATABASE_KEYS if k not in ('id', 'engine')], 'appvault_migrate_mapping.databases')
    if 'paths' in mapping:
        target['paths'] = _overlay(target.get('paths'), mapping['paths'], [k for k in PATH_KEYS if k != 'id'],
                                   'appvault_migrate_mapping.paths')
    resolve(target)  # fail here, naming the key, rather than later on the target
    return target


def argument_spec():
    """The resolved definition as a module option; mirrored by the doc fragment appvault.backup.app."""
    database = dict(
        id=dict(type='str', required=True),
        engine=dict(type='str', required=True, choices=list(ENGINES)),
        module=dict(type='str', required=True, choices=['postgresql', 'mysql', 'sqlite']),
        name=dict(type='str'),
        path=dict(type='str'),
        schemas=dict(type='list', elements='str'),
        options=dict(type='dict', default={}),
        login_host=dict(type='str'),
        login_port=dict(type='int'),
        login_user=dict(type='str'),
        login_password=dict(type='str', no_log=True),
        login_unix_socket=dict(type='str'),
    )
    path = dict(
        id=dict(type='str', required=True),
        path=dict(type='str', required=True),
        optional=dict(type='bool', default=False),
        exclude=dict(type='list', elements='str', default=[]),
    )
    return dict(
        name=dict(type='str', required=True),
        profile=dict(type='str', default='generic'),
        root=dict(type='str', required=True),
        owner=dict(type='str'),
        group=dict(type='str'),
        version=dict(type='str'),
        databases=dict(type='list', elements='dict', default=[], options=database),
        paths=dict(type='list', elements='dict', default=[], options=path),
        commands=dict(type='dict', default={}),
        engines=dict(type='list', elements='str', default=[]),
    )
