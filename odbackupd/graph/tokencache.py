"""The msal token cache of one account, kept in a file two processes share.

The daemon (running as its own user) refreshes tokens; ``odctl login`` (often run as root)
writes a fresh login while the daemon runs. So:

* the file is replaced atomically (temporary file, fsync, rename, fsync of the directory):
  a reader sees the old cache or the new one, never half of one;
* it is mode 0600 in a 0700 directory, and when root writes it into a state directory that
  belongs to another user (the daemon's), the directory and the file are given to that
  user so the daemon can still read and rewrite them;
* every read-modify-write (a refresh, a login, a logout) holds an exclusive ``flock`` on
  the directory, so a refresh in the daemon cannot overwrite a login that just landed;
* readers notice a rewrite by the file's identity (inode, mtime, size) and reload it.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import msal

from .errors import GraphError

log = logging.getLogger(__name__)

_Stamp = tuple[int, int, int] | None


def search_cache(cache: msal.TokenCache, kind: str, query: dict | None = None) -> list[dict]:
    """Matching cache entries (``search`` since msal 1.25; ``find`` before)."""
    if hasattr(cache, "search"):
        return list(cache.search(kind, query=query))
    return cache.find(kind, query=query)


def token_cache_path(state_dir: Path, account_name: str) -> Path:
    """Where the token cache of ``account_name`` lives: ``STATE_DIR/tokens/NAME.json``."""
    return Path(state_dir) / "tokens" / f"{account_name}.json"


class TokenCacheFile:
    """A :class:`msal.SerializableTokenCache` mirrored to ``path``.

    Not thread-safe by itself: the caller serializes (the Authenticator's lock); the
    ``flock`` in :meth:`locked` is for the other process.
    """

    def __init__(self, path: Path, owner_of: Path) -> None:
        self.path = Path(path)
        self.owner_of = Path(owner_of)  # the state dir: its owner owns what we write
        self.cache = msal.SerializableTokenCache()
        self._stamp: _Stamp = None
        self._loaded = False

    # -------------------------------------------------------------- reading
    def _current_stamp(self) -> _Stamp:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self._os_error("read", e) from e
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def changed_on_disk(self) -> bool:
        """Whether the file is not what we last read or wrote (another process rewrote or
        deleted it)."""
        return not self._loaded or self._current_stamp() != self._stamp

    def reload_if_changed(self) -> bool:
        """Re-read the file if another process replaced it; True if the cache changed."""
        stamp = self._current_stamp()
        if self._loaded and stamp == self._stamp:
            return False
        text = None
        if stamp is not None:
            try:
                text = self.path.read_text(encoding="utf-8")
            except FileNotFoundError:
                stamp = None
            except OSError as e:
                raise self._os_error("read", e) from e
        try:
            self.cache.deserialize(text)
        except (ValueError, TypeError):
            log.warning("token cache %s is not valid JSON; treating the account as logged out",
                        self.path)
            self.cache.deserialize(None)
        self._stamp = stamp
        self._loaded = True
        return True

    # -------------------------------------------------------------- writing
    def _owner(self) -> tuple[int, int] | None:
        """(uid, gid) to give what we write to, when root writes into someone else's dir."""
        if os.geteuid() != 0:
            return None
        try:
            st = os.stat(self.owner_of)
        except OSError:
            return None
        return None if st.st_uid == 0 else (st.st_uid, st.st_gid)

    def _ensure_dir(self) -> Path:
        d = self.path.parent
        try:
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = os.stat(d)
            if st.st_mode & 0o077:
                os.chmod(d, 0o700)
            owner = self._owner()
            if owner is not None and (st.st_uid, st.st_gid) != owner:
                os.chown(d, *owner)
        except OSError as e:
            raise self._os_error("create", e, d) from e
        return d

    def check_writable(self) -> None:
        """Fail now, not after a login, if this process cannot write the cache."""
        d = self._ensure_dir()
        if not os.access(d, os.W_OK | os.X_OK):
            raise self._os_error("write", PermissionError(errno.EACCES, "Permission denied"),
                                 d)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the cross-process lock (flock on the tokens directory)."""
        d = self._ensure_dir()
        try:
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise self._os_error("open", e, d) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def save(self) -> None:
        """Write the cache if msal changed it (call with :meth:`locked` held)."""
        if self.cache.has_state_changed:
            self._write(self.cache.serialize())

    def replace_with(self, other: msal.SerializableTokenCache) -> None:
        """Make ``other`` (a fresh login) the whole cache, in memory and on disk."""
        text = other.serialize()
        self.cache.deserialize(text)
        self._write(text)

    def _write(self, text: str) -> None:
        d = self._ensure_dir()
        tmp = d / f".{self.path.name}.{os.getpid()}.tmp"
        try:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()  # a leftover of a killed writer with our pid
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.fchmod(fd, 0o600)  # whatever the umask
                owner = self._owner()
                if owner is not None:
                    os.fchown(fd, *owner)
                data = text.encode("utf-8")
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            self._fsync_dir(d)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise self._os_error("write", e) from e
        self.cache.has_state_changed = False
        self._stamp = self._current_stamp()
        self._loaded = True

    def delete(self) -> None:
        """Forget every account and remove the file (logout)."""
        self.cache.deserialize(None)
        try:
            self.path.unlink()
            self._fsync_dir(self.path.parent)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise self._os_error("delete", e) from e
        self._stamp = None
        self._loaded = True

    @staticmethod
    def _fsync_dir(d: Path) -> None:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _os_error(self, verb: str, e: OSError, path: Path | None = None) -> GraphError:
        where = path or self.path
        hint = ""
        if e.errno in (errno.EACCES, errno.EPERM):
            hint = " (run as root or as the daemon's user, which own the state directory)"
        return GraphError(f"account '{self.path.stem}': cannot {verb} the token cache {where}: "
                          f"{e.strerror or e}{hint}")

    # -------------------------------------------------------------- queries
    def accounts(self) -> list[dict]:
        """The signed-in accounts msal remembers (no tokens in these records)."""
        return search_cache(self.cache, msal.TokenCache.CredentialType.ACCOUNT)

    def has_refresh_token(self) -> bool:
        return bool(search_cache(self.cache, msal.TokenCache.CredentialType.REFRESH_TOKEN))

    def remove_access_token(self, token: str) -> bool:
        """Drop a cached access token the service said is dead; True if it was there."""
        at = msal.TokenCache.CredentialType.ACCESS_TOKEN
        found = search_cache(self.cache, at, {"secret": token})
        for item in found:
            self.cache.remove_at(item)
        return bool(found)

