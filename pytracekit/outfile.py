"""Writing result files safely: root writes them, often where others can too.

Every file pytracekit writes (--output, record -o, cprofile windows, diff
--output, the header cache) goes through `write_file`: the data goes to a
fresh temporary file in the target's directory (mkstemp: a new name, O_EXCL,
never through a link), is fsynced, then renamed over the target. So a link
planted at the target is replaced, never followed; a full disk leaves the old
file as it was and no temporary file behind; readers never see half a file.

Written in place instead, because renaming over them would replace the node
itself: a file descriptor's path (/proc/.../fd/N, /dev/fd/N, and links root
owns to them: /dev/stdout), and a character device or FIFO that root (or this
user) owns or that such a link points to (/dev/null, a pipe someone reads).
"""
from __future__ import annotations

import os
import stat

from .errors import PytracekitError, UsageError


def write_file(path: str | os.PathLike, data: bytes, mode: int | None = None) -> None:
    """Replace `path` with `data` atomically; PytracekitError (one line) on failure.
    `mode`: the new file's, else what open() would give (0666 less the umask)."""
    path = os.fspath(path)
    if _in_place(path):
        _write_in_place(path, data)
        return
    directory, name = os.path.split(os.path.abspath(path))
    import tempfile   # here, not at every start: it imports shutil, bz2, lzma, random
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    except OSError as exc:
        raise _error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask() if mode is None else mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise _error(path, exc) from None
        raise


def check_writable(path: str | None) -> None:
    """Before tracing: a run whose results cannot be saved at the end is lost.
    Creates (and removes) a temporary file where write_file will, so it also
    holds for root, whom permission bits do not stop."""
    if not path:
        return
    if os.path.isdir(path):
        raise UsageError(f"cannot write {path}: it is a directory (give a file name)")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"cannot write {path}: no directory {directory} "
                         "(create it or give another path)")
    if not _in_place(path):
        _try_create(directory, f"cannot write {path}", "a path")


def check_writable_dir(directory: str, what: str = "") -> None:
    """Before tracing: files can be created in `directory` (made if missing).
    `what` names it in errors (e.g. "--dir /x")."""
    what = what or directory
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot use {what}: {exc.strerror}") from None
    _try_create(directory, f"cannot use {what}", "a directory")


def _try_create(directory: str, problem: str, hint: str) -> None:
    import tempfile
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".pytracekit-check.", suffix=".tmp")
    except OSError as exc:
        raise UsageError(f"{problem}: {exc.strerror} (give {hint} you can write)") from None
    os.close(fd)
    os.unlink(tmp)


def _trusted_owner(st: os.stat_result) -> bool:
    return st.st_uid in (0, os.geteuid())


_DESCRIPTORS = ("/proc/", "/dev/fd/")


def _in_place(path: str) -> bool:
    """A descriptor, device or FIFO to write into rather than replace (see the module doc)."""
    if os.path.abspath(path).startswith(_DESCRIPTORS):
        return True
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            if not _trusted_owner(st):
                return False
            if os.readlink(path).startswith(_DESCRIPTORS):
                return True
            st = os.stat(path)
    except OSError:
        return False
    return (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)) and _trusted_owner(st)


def _write_in_place(path: str, data: bytes) -> None:
    # O_APPEND: through /dev/stdout into a file, after what the tool printed there
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except OSError as exc:
        raise _error(path, exc) from None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        raise _error(path, exc) from None
    finally:
        os.close(fd)


def _error(path: str, exc: OSError) -> PytracekitError:
    return PytracekitError(f"cannot write {path}: {exc.strerror or exc}")


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022
