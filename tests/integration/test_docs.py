"""ansible-doc renders every module's documentation completely (options, attributes, examples, return values)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.common import REPO, ansible_env

MODULES = sorted(p.stem for p in (REPO / 'plugins' / 'modules').glob('*.py'))


@pytest.mark.parametrize('module', MODULES)
def test_ansible_doc_is_complete(module):
    proc = subprocess.run([str(Path(sys.executable).parent / 'ansible-doc'), '--json', 'appvault.backup.%s' % module],
                          capture_output=True, text=True, env=ansible_env(), check=True)
    data = json.loads(proc.stdout)['appvault.backup.%s' % module]
    doc = data['doc']
    assert doc['short_description'] and doc['description']
    assert doc['options'] and all(opt.get('description') for opt in doc['options'].values())
    assert {'check_mode', 'diff_mode', 'platform'} <= set(doc['attributes'])
    assert all('support' in attr for attr in doc['attributes'].values())
    assert data['examples'].strip().startswith('- name:')
    assert data['return'] and all(ret.get('description') for ret in data['return'].values())
