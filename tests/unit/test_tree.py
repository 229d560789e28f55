"""The restore's view of a destination tree (what it would add, change and remove) and the bounded parallel map its
hashing uses: pure logic on real files."""

from __future__ import annotations

import hashlib

from ansible_collections.appvault.backup.plugins.module_utils import _archive, _common


def test_bounded_map_keeps_the_order_and_submits_only_a_few_calls_ahead():
    started = []

    def work(item):
        started.append(item)
        return item * item

    results = _common.bounded_map(work, iter(range(1000)), workers=2, ahead=4)
    first = next(results)
    assert first == 0
    assert len(started) <= 2 * 4, len(started)  # not the 1000 Futures ThreadPoolExecutor.map would make
    assert [first] + list(results) == [n * n for n in range(1000)]


def test_tree_changes_over_a_tree_read_before_finds_a_changed_byte_a_missing_and_an_extra_file(tmp_path):
    dest = tmp_path / 'storage'
    (dest / 'sub').mkdir(parents=True)
    for index in range(20):
        (dest / 'sub' / ('f%02d' % index)).write_bytes(b'x%d' % index)
    wanted = dict((rel, dict(type=item.kind, mode=item.mode & 0o7777, uid=item.uid, gid=item.gid, size=item.size))
                  for rel, item in _archive.current_tree(str(dest)).items())
    for rel, meta in wanted.items():
        if meta['type'] == 'file':
            meta['sha256'] = hashlib.sha256((dest / rel).read_bytes()).hexdigest()
    current = _archive.current_tree(str(dest))
    assert _archive.tree_changes(str(dest), wanted, current=current) == dict(added=[], changed=[], removed=[])
    (dest / 'sub' / 'f07').write_bytes(b'y7')  # same size, other content
    (dest / 'sub' / 'new').write_bytes(b'n')
    wanted['sub/gone'] = dict(type='file', size=1, sha256='0' * 64)
    changes = _archive.tree_changes(str(dest), wanted)
    assert changes == dict(added=['sub/gone'], changed=['sub/f07'], removed=['sub/new'])
