"""Notifications about runs: ``[notify.NAME]`` webhook, healthchecks and email notifiers.

``queue``: what to tell whom, decided when a run starts and when its end is recorded,
kept in the state database so an outage or a restart loses nothing. ``message``: the
document each notification carries. ``senders``: one function per notifier type.
``deliver``: sending what is due, with retries and back-off, giving up after a day.
"""
