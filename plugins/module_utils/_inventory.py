# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Engine-neutral comparison of database object inventories."""

from __future__ import annotations

MAX_REPORTED = 50


def checksum_rows(checksum):
    """The row count a table's content checksum carries, in any engine's form: "<rows>:<sum>", or "<form>:<rows>:<sum>"
    where the form is a letter (PostgreSQL's row hash "h", MariaDB's SHA1 "s")."""
    head, _sep, rest = checksum.partition(':')
    return int(rest.split(':', 1)[0] if head.isalpha() else head)


def compare(expected, actual, path=''):
    """Return a list of human-readable differences between two inventories.

    Inventories are nested dicts/lists of plain values.  Keys starting with
    ``_`` are informational (server version, timings) and not compared.
    """
    diffs = []
    _compare(expected, actual, path, diffs)
    if len(diffs) > MAX_REPORTED:
        diffs = diffs[:MAX_REPORTED] + ['... and %d more differences' % (len(diffs) - MAX_REPORTED)]
    return diffs


def _compare(expected, actual, path, diffs):
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            if str(key).startswith('_'):
                continue
            where = '%s.%s' % (path, key) if path else str(key)
            if key not in actual:
                diffs.append('%s: missing after restore' % where)
            elif key not in expected:
                diffs.append('%s: not in the recorded inventory' % where)
            else:
                _compare(expected[key], actual[key], where, diffs)
    elif expected != actual:
        diffs.append('%s: expected %r, found %r' % (path, _short(expected), _short(actual)))


def _short(value, limit=200):
    text = repr(value)
    return value if len(text) <= limit else text[:limit] + '...'


def without(data, keys):
    return dict((k, v) for k, v in data.items() if k not in keys)


def verify(result, expected, what, ignore=(), actual=None):
    """Check ``result['inventory']`` against an ``expected`` inventory recorded at dump time.

    Sets ``result['verified']`` (None when nothing was expected) and raises AppvaultError, naming ``what``
    was not kept and listing the differences, when they differ. ``ignore`` names top-level keys not compared;
    checksums are compared only when both sides have them. ``actual`` replaces the result's inventory in the
    comparison (an engine's view of what a recorded inventory can vouch for).
    """
    from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError

    result['verified'] = None
    if not expected:
        return
    actual = result['inventory'] if actual is None else actual
    ignored = set(ignore)
    if 'checksums' not in actual or 'checksums' not in expected:
        ignored.update(('checksums', 'large_object_checksum'))
    differences = compare(without(expected, ignored), without(actual, ignored))
    result['verified'] = not differences
    if differences:
        raise AppvaultError('%s does not match the expected inventory, so it was not kept: %s'
                            % (what, '; '.join(differences[:5])), differences=differences)
