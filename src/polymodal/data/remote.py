"""Files on object storage (``s3://``, ``gs://``, ``https://``, ``memory://``, ``file://``),
read through fsspec.

A manifest cell (after its ``path_template``) that starts with ``protocol://`` names a URL, not a
path under the cohort root. Reading one is allowed only when the spec says so: ``allow_urls:
true``, or ``url_prefixes:`` listing the places the cohort's files may come from, since a cell
must not make polymodal fetch (and store words of) whatever it names.

The readers decode local files (Pillow, pydicom, nibabel and MONAI want a path), so a reader
given a :class:`RemoteFile` reads a local copy made for that call and removed after it
(:func:`local_copy`, :func:`reads_local`); a cohort never has to fit on the local disk. The
sample cache keys a URL by what the storage says of the object (:meth:`RemoteFile.content_key`:
its ETag or checksum, else its size and modification time, with the URL), so a cache hit
downloads nothing.

fsspec implements ``memory://``, ``file://`` and, with aiohttp, ``https://``; ``s3://`` needs
s3fs and ``gs://`` gcsfs, which the user installs: a missing one is named in the error.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import posixpath
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from polymodal.errors import ReadError, SpecError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
# Where fsspec's registry names no separate package (its own HTTP file system needs aiohttp).
_PACKAGES = {"http": "aiohttp", "https": "aiohttp"}
# Keys of fsspec's info() that identify an object's content or version, most specific first.
_VERSION_KEYS = ("ETag", "etag", "md5Hash", "crc32c", "ContentMD5", "checksum")
_TIME_KEYS = ("mtime", "LastModified", "Last-Modified", "last_modified", "updated", "created")

T = TypeVar("T")


class MissingProtocol(SpecError):
    """fsspec has no implementation of a URL's protocol installed. A :class:`SpecError` so that
    ``validate`` and training stop on it: it concerns every URL of the protocol, not one file."""


def is_url(text: str) -> bool:
    """True for ``protocol://…`` (``s3://b/k``, ``https://h/p``); False for local paths."""
    return bool(_URL.match(text))


@dataclass(frozen=True)
class RemoteFile:
    """One object (or a folder of objects, e.g. a DICOM series) at ``url``."""

    url: str

    def __str__(self) -> str:
        return self.url

    @property
    def name(self) -> str:
        return posixpath.basename(urlsplit(self.url).path.rstrip("/"))

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    def filesystem(self) -> tuple[Any, str]:
        """fsspec's file system for the URL and the path within it."""
        import fsspec

        check_protocol(self.url)
        with _asking(self.url):  # a malformed URL, or options the back end refuses
            return fsspec.core.url_to_fs(self.url)

    def exists(self) -> bool:
        fs, path = self.filesystem()
        with _asking(self.url):
            return bool(fs.exists(path))

    def is_file(self) -> bool:
        fs, path = self.filesystem()
        with _asking(self.url):
            return bool(fs.isfile(path))

    def content_key(self) -> str:
        """40 hex digits naming this version of the object: the URL with its ETag (or checksum),
        else with its size and modification time; the bytes' blake2b when the storage gives
        neither. A rewritten object gets a new key.

        Raises:
            FileNotFoundError: no object at the URL.
        """
        fs, path = self.filesystem()
        with _asking(self.url):
            info = fs.info(path)
            members = {path: info}
            if info.get("type") == "directory":
                members = dict(sorted(fs.find(path, detail=True).items()))
            stamps = {name: _stamp(member) for name, member in members.items()}
            if None in stamps.values():
                return _hash_bytes(fs, list(members))
        text = "\n".join(f"{name}\0{stamp}" for name, stamp in stamps.items())
        return hashlib.blake2b(f"{self.url}\0{text}".encode(), digest_size=20).hexdigest()


@contextlib.contextmanager
def _asking(url: str) -> Iterator[None]:
    """Turn a storage's own error (network, permission) into a :class:`ReadError` naming the
    URL; a missing object stays :class:`FileNotFoundError`."""
    try:
        yield
    except (FileNotFoundError, ReadError):
        raise
    except Exception as err:  # each fsspec back end raises its own errors
        raise ReadError(f"cannot look it up: {type(err).__name__}: {err}", url) from None


def _stamp(info: dict[str, Any]) -> str | None:
    for key in _VERSION_KEYS:
        if info.get(key):
            return f"{key}={info[key]}"
    for key in _TIME_KEYS:
        if info.get(key) is not None and info.get("size") is not None:
            return f"{info['size']}:{info[key]}"
    return None


def _hash_bytes(fs: Any, paths: list[str]) -> str:
    """blake2b of the objects' names and bytes, streamed (nothing written to disk)."""
    digest = hashlib.blake2b(digest_size=20)
    for path in paths:
        digest.update(len(path).to_bytes(8, "little") + path.encode())
        with fs.open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def check_protocol(url: str) -> None:
    """Raise :class:`MissingProtocol` (naming the package to install) or :class:`SpecError`
    (an unknown protocol) unless fsspec can open ``url``."""
    try:
        import fsspec
    except ImportError:  # a declared dependency, but an environment can still lack it
        raise MissingProtocol(f"{url}: reading URLs needs fsspec; pip install fsspec") from None
    protocol = url.split("://", 1)[0].lower()
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as err:
        from fsspec.registry import known_implementations

        known = known_implementations.get(protocol, {})
        package = _PACKAGES.get(protocol) or str(known.get("class", protocol)).split(".")[0]
        raise MissingProtocol(
            f"{url}: reading {protocol}:// URLs needs the package {package!r}, which is not "
            f"installed ({err}); install it with: pip install {package}"
        ) from None
    except ValueError:
        raise SpecError(
            f"{url}: unknown URL protocol {protocol!r}; fsspec reads s3://, gs://, https://, "
            "file://, memory:// and the others it lists in fsspec.available_protocols()"
        ) from None


def remote_file(url: str, allow_urls: bool, url_prefixes: Sequence[str]) -> RemoteFile:
    """The URL as a :class:`RemoteFile`, once the spec allows it and its protocol is installed.

    Raises:
        ReadError: the spec allows no URL, or none under this URL's prefix (like a file outside
            the cohort root, reported for its row and column).
        MissingProtocol: the protocol's package is not installed.
    """
    if not allow_urls and not _under_prefix(url, url_prefixes):
        listed = f" (it lists {', '.join(url_prefixes)})" if url_prefixes else ""
        raise ReadError(
            "is a URL, and the cohort spec allows reading none here: set allow_urls: true in "
            f"the spec, or list the allowed prefixes in url_prefixes{listed}",
            url,
        )
    check_protocol(url)
    return RemoteFile(url)


def _under_prefix(url: str, prefixes: Sequence[str]) -> bool:
    """True when ``url`` lies under one of ``prefixes`` (a whole path segment, no ``..``)."""
    if ".." in urlsplit(url).path.split("/"):
        return False
    for prefix in prefixes:
        if url == prefix or (
            url.startswith(prefix) and (prefix.endswith("/") or url[len(prefix)] == "/")
        ):
            return True
    return False


@contextlib.contextmanager
def local_copy(path: Path | str | RemoteFile) -> Iterator[Path]:
    """A local path to read ``path`` from: itself when local; for a :class:`RemoteFile` a copy in
    a temporary folder (its own name kept, so the suffix still tells the format), removed on
    exit. A :class:`ReadError` about the copy is raised again naming the URL.

    Raises:
        ReadError: no object at the URL, or it cannot be downloaded.
    """
    if not isinstance(path, RemoteFile):
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="polymodal-url-") as folder:
        target = Path(folder) / (path.name or "file")
        _download(path, target)
        try:
            yield target
        except ReadError as err:
            if err.path is None or not err.path.startswith(folder):
                raise
            rest = err.path[len(str(target)) :].lstrip("/")
            raise ReadError(
                err.reason, f"{path.url.rstrip('/')}/{rest}" if rest else path.url
            ) from None


def _download(remote: RemoteFile, target: Path) -> None:
    fs, path = remote.filesystem()
    try:
        if not fs.exists(path):
            raise ReadError("file not found", remote.url)
        recursive = fs.isdir(path)  # a DICOM series folder
        fs.get(path.rstrip("/") + ("/" if recursive else ""), str(target), recursive=recursive)
    except ReadError:
        raise
    except Exception as err:  # each fsspec back end raises its own errors for a failed transfer
        raise ReadError(f"cannot download it: {type(err).__name__}: {err}", remote.url) from None


def reads_local(reader: Callable[..., T]) -> Callable[..., T]:
    """Let a reader whose first argument is a local path also take a :class:`RemoteFile`."""

    @functools.wraps(reader)
    def read(path: Path | str | RemoteFile, *args: Any, **kwargs: Any) -> T:
        if not isinstance(path, RemoteFile):
            return reader(path, *args, **kwargs)
        with local_copy(path) as local:
            return reader(local, *args, **kwargs)

    return read
