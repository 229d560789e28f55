"""The demo (make demo) runs the backup, list and restore playbooks on a sample app and proves its own restore."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.common import REPO, ansible_env


def test_demo_playbook(tmp_path):
    env = ansible_env()
    env['ANSIBLE_STDOUT_CALLBACK'] = 'default'
    proc = subprocess.run([str(Path(sys.executable).parent / 'ansible-playbook'), '-i', str(REPO / 'playbooks' / 'demo' / 'inventory.yml'),
                           str(REPO / 'playbooks' / 'demo.yml'),
                           '-e', 'appvault_demo_dir=%s' % tmp_path], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert 'The data is back: 2000 orders (1000 after the damage)' in proc.stdout
    for play in ('Back up application environments', 'List the backups', 'Restore application environments'):
        assert 'PLAY [%s]' % play in proc.stdout
    app = tmp_path / 'app'
    assert [p.name for p in app.glob('storage-bak-*')], 'the damaged storage was not kept aside'
    assert (app / '.env').read_text().startswith('APP_NAME=demo')
    assert len(list((tmp_path / 'backups').glob('demo-*.tar.zst'))) == 1
