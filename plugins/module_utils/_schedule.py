# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scheduling logic without side effects: a calendar spec turned into systemd OnCalendar and cron expressions,
and the durations and sizes the runner's ``check`` takes."""

from __future__ import annotations

import re

from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError

WEEKDAYS = ('mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun')
SPEC_KEYS = ('time', 'every_days', 'weekdays')
TIME_RE = re.compile(r'^([01]?[0-9]|2[0-3]):([0-5][0-9])$')
CRON_FIELD_RE = re.compile(r'^[0-9A-Za-z*/,-]+$')
CRON_NICKNAMES = ('@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly')
# What may appear in an OnCalendar= value (weekdays, dates, times, ranges, repetitions, a time zone name).
SYSTEMD_CALENDAR_RE = re.compile(r'^[A-Za-z0-9 *:/,.~+_-]+$')
DURATION_UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}
SIZE_UNITS = {'': 1, 'k': 1024, 'm': 1024 ** 2, 'g': 1024 ** 3, 't': 1024 ** 4}
WHERE = 'appvault_schedule_calendar'


def _times(value):
    values = value if isinstance(value, list) else [value]
    if not values:
        raise AppvaultError('%s.time must name at least one time of day' % WHERE)
    times = []
    for item in values:
        match = TIME_RE.match(str(item).strip()) if isinstance(item, str) else None
        if not match:
            raise AppvaultError('%s.time: %r is not a time of day as "HH:MM" (00:00 to 23:59, quoted in YAML)' % (WHERE, item))
        times.append((int(match.group(1)), int(match.group(2))))
    return sorted(set(times))


def _weekdays(value):
    values = value if isinstance(value, list) else str(value).replace(',', ' ').split()
    days = []
    for item in values:
        day = str(item).strip().lower()[:3]
        if day not in WEEKDAYS or len(str(item).strip()) < 3:
            raise AppvaultError('%s.weekdays: %r is not a weekday (mon, tue, wed, thu, fri, sat, sun)' % (WHERE, item))
        if day not in days:
            days.append(day)
    if not days:
        raise AppvaultError('%s.weekdays must name at least one day' % WHERE)
    return sorted(days, key=WEEKDAYS.index)


def is_cron(text):
    """A cron expression: five fields of digits, names, '*', '/', ',' and '-', or a nickname such as @daily."""
    if text.strip() in CRON_NICKNAMES:
        return True
    fields = text.split()
    return len(fields) == 5 and ':' not in text and all(CRON_FIELD_RE.match(field) for field in fields)


def calendar(spec):
    """``spec`` as dict(on_calendar=[...] or None, cron=[...] or None).

    A mapping is the friendly form: ``time`` ("HH:MM" or a list of them, local time) with either ``every_days``
    (N: every N-th day of the month from the 1st, as cron's ``*/N`` counts, so with N=2 the 31st and the 1st
    both run) or ``weekdays`` (a list of mon..sun); it gives both expressions. A string is used as it is: a cron
    expression (five fields, or @daily and the like) for cron, anything else as a systemd calendar expression.
    """
    if isinstance(spec, str):
        text = spec.strip()
        if not text or '\n' in text:
            raise AppvaultError('%s must not be empty or span lines' % WHERE)
        if text == '@reboot':
            raise AppvaultError('%s: @reboot is not a calendar; give a time' % WHERE)
        if is_cron(text):
            return dict(on_calendar=None, cron=[' '.join(text.split())])
        if not SYSTEMD_CALENDAR_RE.match(text):
            raise AppvaultError('%s: %r is neither a cron expression (five fields) nor a systemd calendar expression '
                                '(see systemd.time(7))' % (WHERE, text))
        return dict(on_calendar=[text], cron=None)
    if not isinstance(spec, dict):
        raise AppvaultError('%s must be a mapping such as {time: "03:00", every_days: 2} or a calendar expression, got %s'
                            % (WHERE, type(spec).__name__))
    extra = sorted(set(spec) - set(SPEC_KEYS))
    if extra:
        raise AppvaultError('%s: unknown key %s (known: %s)' % (WHERE, ', '.join(extra), ', '.join(SPEC_KEYS)))
    if 'time' not in spec:
        raise AppvaultError('%s.time is required, for example "03:00"' % WHERE)
    times = _times(spec['time'])
    every = spec.get('every_days')
    weekdays = spec.get('weekdays')
    if every is not None and weekdays is not None:
        raise AppvaultError('%s: give every_days or weekdays, not both' % WHERE)
    if every is None:
        every = 1
    if isinstance(every, bool) or not isinstance(every, int) or not 1 <= every <= 31:
        raise AppvaultError('%s.every_days must be a whole number from 1 to 31, got %r' % (WHERE, every))
    if weekdays is not None:
        days = _weekdays(weekdays)
        systemd_date = '%s *-*-*' % ','.join(day.capitalize() for day in days)
        cron_date = '* * %s' % ','.join(str(WEEKDAYS.index(day) + 1) for day in days)
    elif every == 1:
        systemd_date, cron_date = '*-*-*', '* * *'
    else:
        systemd_date, cron_date = '*-*-01/%d' % every, '*/%d * *' % every
    return dict(on_calendar=['%s %02d:%02d:00' % (systemd_date, hour, minute) for hour, minute in times],
                cron=['%d %d %s' % (minute, hour, cron_date) for hour, minute in times])


def parse_duration(value, what='duration'):
    """Seconds from an int or text such as 90, "90s", "30m", "26h", "2d", "1w" or "1d12h"."""
    if isinstance(value, bool):
        raise AppvaultError('%s must be a duration such as "26h" or "2d", got %r' % (what, value))
    if isinstance(value, int):
        if value < 0:
            raise AppvaultError('%s must not be negative, got %d' % (what, value))
        return value
    text = str(value).strip().lower().replace(' ', '')
    if text.isdigit():
        return int(text)
    parts = re.findall(r'(\d+)([smhdw])', text)
    if not parts or ''.join(number + unit for number, unit in parts) != text:
        raise AppvaultError('%s must be a duration such as "90m", "26h", "2d" or "1w" (units s, m, h, d, w), got %r' % (what, value))
    return sum(int(number) * DURATION_UNITS[unit] for number, unit in parts)


def parse_size(value, what='size'):
    """Bytes from an int or text such as "512", "10k", "10M", "1.5GiB" (binary multiples: k = 1024)."""
    if isinstance(value, bool):
        raise AppvaultError('%s must be a size such as "10M", got %r' % (what, value))
    if isinstance(value, int):
        if value < 0:
            raise AppvaultError('%s must not be negative, got %d' % (what, value))
        return value
    match = re.match(r'^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$', str(value).strip().lower())
    if not match:
        raise AppvaultError('%s must be a size such as "512", "10k", "10M" or "1.5G" (binary multiples), got %r' % (what, value))
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2)])


def human_duration(seconds):
    """Seconds as the largest fitting units: 45s, 12m, 3h 5m, 2d 4h."""
    seconds = int(seconds)
    if seconds < 60:
        return '%ds' % seconds
    if seconds < 3600:
        return '%dm' % (seconds // 60)
    if seconds < 86400:
        return '%dh %dm' % (seconds // 3600, seconds % 3600 // 60)
    return '%dd %dh' % (seconds // 86400, seconds % 86400 // 3600)
