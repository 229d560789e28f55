"""The scheduled job's copies to off-host destinations, with the real rclone: verified uploads, retention there,
and a destination that cannot be reached failing the run while the local backup and the other copies stay."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import sys
import time
from pathlib import Path

from ansible_collections.appvault.backup.plugins.module_utils import _hostrun

RCLONE = str(Path(sys.executable).parent / 'rclone')


def closed_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def make_config(tmp_path, destinations, keep=2):
    root = tmp_path / 'app'
    (root / 'storage').mkdir(parents=True, exist_ok=True)
    (root / 'storage' / 'a.txt').write_text('attachment\n')
    db = sqlite3.connect(root / 'app.sqlite')
    db.execute('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)')
    db.execute("INSERT INTO t (v) VALUES ('row')")
    db.commit()
    db.close()
    config = {'version': 1, 'backup_dir': str(tmp_path / 'backups'), 'keep': keep, 'rclone_path': RCLONE,
              'app': {'name': 'demo', 'root': str(root), 'databases': [{'id': 'main', 'engine': 'sqlite', 'path': 'app.sqlite'}],
                      'paths': [{'id': 'storage', 'path': 'storage'}]},
              'destinations': destinations}
    path = tmp_path / 'demo.json'
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def local_remote(folder, **extra):
    return dict({'name': 'vault', 'kind': 'rclone', 'remote': 'vault', 'config_content': '[vault]\ntype = alias\nremote = %s\n' % folder},
                **extra)


def test_each_run_copies_the_backup_verified_and_applies_retention_there(tmp_path, capsys):
    folder = tmp_path / 'far'
    folder.mkdir()
    config = make_config(tmp_path, [local_remote(folder, keep_last=1)])
    for run in range(2):
        if run:
            time.sleep(1.1)  # archive names carry the second
        assert _hostrun.main(['--config', str(config), 'run']) == 0, capsys.readouterr().err
    local = sorted(p.name for p in (tmp_path / 'backups').glob('demo-*.tar.zst'))
    remote = sorted(p.name for p in folder.glob('demo-*.tar.zst'))
    assert len(local) == 2, local
    assert remote == local[-1:], 'the destination keeps its own last 1: %s' % remote
    copied = folder / remote[0]
    digest = (folder / (remote[0] + '.sha256')).read_text().split()[0]
    assert digest == hashlib.sha256(copied.read_bytes()).hexdigest()
    assert copied.read_bytes() == (tmp_path / 'backups' / remote[0]).read_bytes()


def test_an_unreachable_destination_fails_the_run_and_keeps_the_rest(tmp_path, capsys):
    folder = tmp_path / 'far'
    folder.mkdir()
    broken = {'name': 'offsite', 'kind': 'sftp', 'host': '127.0.0.1', 'port': closed_port(), 'user': 'nobody',
              'password': 'never-in-argv', 'retries': 0}
    config = make_config(tmp_path, [broken, local_remote(folder)])
    code = _hostrun.main(['--config', str(config), 'run'])
    err = capsys.readouterr().err
    assert code == _hostrun.EXIT_FAILED
    assert 'offsite' in err and 'not copied to every destination' in err, err
    assert 'never-in-argv' not in err
    local = list((tmp_path / 'backups').glob('demo-*.tar.zst'))
    assert len(local) == 1 and (tmp_path / 'backups' / (local[0].name + '.sha256')).exists()
    assert (folder / local[0].name).exists() and (folder / (local[0].name + '.sha256')).exists(), 'the other copy was made'
    assert not os.path.exists(tmp_path / 'backups' / '.appvault-run.lock')
