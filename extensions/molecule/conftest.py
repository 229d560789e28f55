"""Fixtures the scenarios' testinfra verifiers share: the fixture app's state now and as recorded by converge,
the role results converge kept, the app's events log, and a readable comparison of two states."""

from __future__ import annotations

import json
import posixpath

import pytest

STATE_DIR = '/var/lib/appvault-molecule'
STATE_HELPER = 'python3 /usr/local/lib/fixture-app/fixture_state.py /etc/fixture-app/state.json'
EVENTS_LOG = '/var/log/fixture-app/events.log'
APP_ROOT = '/srv/fixture-app'


class Event:
    """One line of the events log: '<UTC time> <name> [<detail>...] user=<user> cwd=<dir>'."""

    def __init__(self, line):
        self.line = line
        fields = line.split()
        self.time = fields[0]
        self.name = fields[1]
        self.fields = dict(field.split('=', 1) for field in fields[2:] if '=' in field)
        self.user = self.fields.get('user')

    def __repr__(self):
        return self.line


@pytest.fixture(scope='module')
def fixture_config(host):
    """What the state helper reads: root, paths, engine, database."""
    return json.loads(host.file('/etc/fixture-app/state.json').content_string)


@pytest.fixture(scope='module')
def current_state(host):
    """The fixture's state now (files and database)."""
    return json.loads(host.check_output(STATE_HELPER))


@pytest.fixture(scope='module')
def saved(host):
    """saved(name): a state or result converge kept on the host as <STATE_DIR>/<name>.json."""

    def read(name):
        path = posixpath.join(STATE_DIR, name + '.json')
        assert host.file(path).exists, '%s was not written: converge did not get that far' % path
        return json.loads(host.file(path).content_string)

    return read


@pytest.fixture(scope='module')
def events_after(host):
    """events_after(mark): the app's events after the last 'mark <mark>' line, marks left out."""

    def read(mark):
        lines = host.file(EVENTS_LOG).content_string.splitlines()
        events = [Event(line) for line in lines if line.strip()]
        starts = [index for index, event in enumerate(events) if event.name == 'mark' and event.line.split()[2] == mark]
        assert starts, 'no "mark %s" line in %s' % (mark, EVENTS_LOG)
        return [event for event in events[starts[-1] + 1:] if event.name != 'mark']

    return read


def differences(expected, actual, where=''):
    """Readable differences between two states (nested dicts; lists compared as multisets of rows).

    A directory that is missing or unexpected is one difference, with the number of entries under it.
    """
    if isinstance(expected, dict) and isinstance(actual, dict):
        found, gone = [], None
        for key in sorted(set(expected) | set(actual)):
            path = '%s/%s' % (where, key) if where else str(key)
            if gone is not None and str(key).startswith(gone['key'] + '/'):
                gone['under'] += 1
                continue
            if key in expected and key in actual:
                found.extend(differences(expected[key], actual[key], path))
                continue
            value = expected[key] if key in expected else actual[key]
            what = 'missing, was' if key in expected else 'unexpected:'
            gone = {'key': str(key), 'under': 0, 'text': '%s: %s %s' % (path, what, json.dumps(value, ensure_ascii=False)[:300])}
            found.append(gone)
        return [item if isinstance(item, str) else item['text'] + (' (and %d entries under it)' % item['under'] if item['under'] else '')
                for item in found]
    if isinstance(expected, list) and isinstance(actual, list):
        found = []
        want = sorted(json.dumps(row, sort_keys=True, ensure_ascii=False) for row in expected)
        have = sorted(json.dumps(row, sort_keys=True, ensure_ascii=False) for row in actual)
        for row in want:
            if row in have:
                have.remove(row)
            else:
                found.append('%s: missing %s' % (where, row[:300]))
        found.extend('%s: unexpected %s' % (where, row[:300]) for row in have)
        return found
    if expected != actual:
        return ['%s: %r, expected %r' % (where, actual, expected)]
    return []


@pytest.fixture(scope='session')
def assert_same_state():
    """assert_same_state(expected, actual): fail listing (the first 40) differences."""

    def check(expected, actual):
        found = differences(expected, actual)
        assert not found, '%d differences:\n%s' % (len(found), '\n'.join(found[:40]))

    return check


@pytest.fixture(scope='module')
def app_root():
    return APP_ROOT
