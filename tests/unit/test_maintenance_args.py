"""The maintenance module's command validation (the lease itself runs in tests/integration/test_maintenance.py)."""

from __future__ import annotations

import pytest

from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError
from ansible_collections.appvault.backup.plugins.modules import maintenance


def test_commands_become_lists_of_strings():
    assert maintenance.commands([['php', 'artisan', 'down'], ['sleep', 1]], 'maintenance_on') == [['php', 'artisan', 'down'], ['sleep', '1']]


@pytest.mark.parametrize('bad', [[[]], [['php', {'x': 1}]]])
def test_bad_commands_are_named(bad):
    with pytest.raises(AppvaultError) as err:
        maintenance.commands(bad, 'maintenance_on')
    assert err.value.msg.startswith('maintenance_on: each command is a non-empty list of words')
