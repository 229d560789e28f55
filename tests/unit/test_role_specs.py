"""Every role entry point has an argument spec, and the main entry point's defaults match defaults/main.yml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / 'roles'
ROLE_DIRS = sorted(p for p in ROLES.iterdir() if (p / 'tasks').is_dir())


@pytest.mark.parametrize('role', ROLE_DIRS, ids=lambda p: p.name)
def test_main_spec_matches_defaults(role):
    specs = yaml.safe_load((role / 'meta' / 'argument_specs.yml').read_text())['argument_specs']
    defaults = yaml.safe_load((role / 'defaults' / 'main.yml').read_text()) or {}
    options = specs['main']['options']
    documented_defaults = {k: v['default'] for k, v in options.items() if 'default' in v}
    assert documented_defaults == defaults
    for name, option in options.items():
        assert option.get('description'), '%s: %s has no description' % (role.name, name)
        assert 'default' in option or option.get('required'), '%s: %s is neither required nor defaulted' % (role.name, name)


@pytest.mark.parametrize('role', ROLE_DIRS, ids=lambda p: p.name)
def test_entry_points_used_by_other_roles_have_specs(role):
    specs = yaml.safe_load((role / 'meta' / 'argument_specs.yml').read_text())['argument_specs']
    used = set()
    for other in ROLE_DIRS:
        for tasks in (other / 'tasks').glob('*.yml'):
            for item in yaml.safe_load(tasks.read_text()) or []:
                for task in [item] + item.get('block', []) + item.get('rescue', []) + item.get('always', []):
                    include = task.get('ansible.builtin.include_role') or task.get('ansible.builtin.import_role') or {}
                    if include.get('name') == 'appvault.backup.%s' % role.name:
                        used.add(include.get('tasks_from', 'main').replace('.yml', ''))
    missing = used - set(specs)
    assert not missing, '%s: entry points %s are used by other roles but have no argument spec' % (role.name, missing)
