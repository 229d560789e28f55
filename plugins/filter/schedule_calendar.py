# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: schedule_calendar
short_description: Turn a backup schedule into systemd OnCalendar and cron expressions
version_added: 0.1.0
description:
  - >-
    Takes the friendly form C({time: "03:00", every_days: 2}) (or C(weekdays) instead of C(every_days); C(time) may
    be a list) and returns both a systemd calendar expression per time and a cron expression per time.
  - C(every_days=N) runs on every N-th day of the month counted from the 1st, as cron's C(*/N) does, so both
    schedulers run on the same days (with N=2 the 31st and the following 1st both run).
  - A string is used as it is - a cron expression (five fields, or C(@daily) and the like) for cron only,
    anything else as a systemd calendar expression for systemd only.
  - Times are the host's local time.
author:
  - appvault.backup developers (!UNKNOWN)
options:
  _input:
    description: The schedule (C(appvault_schedule_calendar) of the P(appvault.backup.schedule#role) role).
    type: raw
    required: true
'''

EXAMPLES = r'''
- name: 03:00 every other day
  ansible.builtin.debug:
    msg: "{{ {'time': '03:00', 'every_days': 2} | appvault.backup.schedule_calendar }}"
  # {"on_calendar": ["*-*-01/2 03:00:00"], "cron": ["0 3 */2 * *"]}
'''

RETURN = r'''
_value:
  description:
    - C(on_calendar), the systemd expressions (V(null) for a cron expression), and C(cron), the cron schedules
      (V(null) for a systemd expression).
  type: dict
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.appvault.backup.plugins.module_utils import _schedule
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError


def schedule_calendar(spec):
    try:
        return _schedule.calendar(spec)
    except AppvaultError as exc:
        raise AnsibleFilterError(exc.msg)


class FilterModule(object):
    def filters(self):
        return {'schedule_calendar': schedule_calendar}
