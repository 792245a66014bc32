"""odbackupd-intake: the write-only intake (HTTP uploads into per-user drop directories).

Its own program and unit (``odbackupd-intake.service``), never part of the privileged
daemon: :mod:`.main` (entry point, socket activation), :mod:`.app` (routes, PUT, page),
:mod:`.tus` (resumable uploads), :mod:`.store` (partial files, resumable state, quota),
:mod:`.landing` (atomic no-replace rename into the drop directory), :mod:`.tokens`.
Needs python3-aiohttp (an optional dependency of the package).
"""
