#!/usr/bin/python
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: job_wait
short_description: Wait for a long dump, archive or restore started with async and show its progress
version_added: 0.1.0
description:
  - Polls an asynchronous job (a task started with C(async) and C(poll) set to V(0)) until it finishes and returns the job's
    own result, as if the task had run in the foreground, so C(register) works the same.
  - While the job runs, prints a progress line every O(poll) seconds - bytes written so far to the C(.partial) files
    under O(watch), the rate, and with O(total) the share done and the time left - so a dump of many GB shows that
    it is moving, on the console and in AWX job output.
  - An action plugin; it runs on the controller. Each check is one shell command on the host (C(cat) of the job's
    status file, C(find) for the progress, C(touch) for O(renew_lease)); no Python module runs per check. A check
    first waits on the host, up to O(poll) seconds, for the job to end (the shell reads its status file every 0.1 s,
    one C(sleep) started per step), so the wait returns within about 0.1 s of the job's end, not up to O(poll)
    seconds later. The finished job's status file is its result and is removed; only when the status file cannot be
    read for 30 s does C(async_status) run, to say why.
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.attributes
attributes:
  check_mode:
    support: none
    details: Check mode runs nothing asynchronously; skip the task in check mode.
  diff_mode:
    support: none
  action:
    support: full
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
options:
  jid:
    description: The job id (C(ansible_job_id) of the registered async task).
    type: str
    required: true
  watch:
    description:
      - A directory whose files matching O(patterns) (at any depth) grow while the job writes; their total size is the
        progress. Without it, the progress lines only say how long the job has been running.
    type: path
  patterns:
    description:
      - File name patterns counted under O(watch).
      - A pattern with a C(/) is matched against the whole path instead (C(find -path)), for instance
        V(*/.restore-1/*) for every file below that directory.
    type: list
    elements: str
    default: ['*.partial']
  total:
    description: The expected number of bytes (an estimate), for the percentage and the time left. V(0) when unknown.
    type: int
    default: 0
  label:
    description: What the progress lines call the job.
    type: str
    default: job
  timeout:
    description: Seconds to wait at most.
    type: int
    default: 86400
  poll:
    description: Seconds between progress lines; each check waits on the host at most this long for the job to end.
    type: float
    default: 5
  renew_lease:
    description:
      - The directory of a maintenance lease (O(appvault.backup.maintenance#module:path)). Each check renews it, so the
        host-side timer counts from the controller's last sign of life and never fires while a long step still runs;
        when the controller dies, it fires O(appvault.backup.maintenance#module:lease) seconds after the last check.
    type: path
seealso:
  - module: ansible.builtin.async_status
'''

EXAMPLES = r'''
- name: Start the dump
  appvault.backup.postgresql_dump:
    name: shop
    dest: /var/backups/appvault/.work/main.pgdump
  async: 86400
  poll: 0
  register: job

- name: Wait for it, showing progress
  appvault.backup.job_wait:
    jid: "{{ job.ansible_job_id }}"
    watch: /var/backups/appvault/.work
    total: 3000000000
    label: dump main
  register: dump
'''

RETURN = r'''
waited:
  description: Seconds spent waiting.
  returned: always
  type: float
  sample: 42.3
'''
