"""Data home, verified downloads and small helpers shared by the dataset loaders."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

logger = logging.getLogger(__name__)

DATA_HOME_ENV = "SKDSSM_DATA"
_CHUNK_BYTES = 1 << 20


def get_data_home(data_home: str | os.PathLike | None = None) -> Path:
    """Folder where skdssm looks for (and downloads) datasets.

    The first of these that is set wins: the ``data_home`` argument, the
    ``SKDSSM_DATA`` environment variable, ``~/skdssm_data``. ``~`` is expanded.
    The folder is not created here; a download creates it.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Explicit data home.

    Returns
    -------
    pathlib.Path
        The absolute data home.

    Examples
    --------
    >>> from skdssm.datasets import get_data_home
    >>> get_data_home("~/my_data").name
    'my_data'
    """
    if data_home is None:
        data_home = os.environ.get(DATA_HOME_ENV) or Path("~") / "skdssm_data"
    return Path(data_home).expanduser().resolve()


def missing_files(folder: Path, files: Sequence[str]) -> list[str]:
    """Names in ``files`` that are not regular files inside ``folder``."""
    return [name for name in files if not (folder / name).is_file()]


def download_and_extract(archive: dict, data_home: Path) -> None:
    """Download ``archive["url"]``, verify its SHA-256, and unzip it into ``data_home``.

    ``archive`` holds ``url``, ``sha256``, ``folder`` (the top-level folder of the
    zip) and ``files`` (the files that folder must contain). The download goes to a
    temporary file inside ``data_home`` and is deleted afterwards; extraction goes
    to a temporary folder first, so a failure leaves no half-extracted files.

    Raises
    ------
    OSError
        On a network error, a checksum mismatch (the message gives expected and
        got), an archive member that would land outside ``data_home``, or an
        archive lacking the required files.
    """
    data_home.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=".download-", suffix=".zip", dir=data_home)
    tmp_zip = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            digest = _stream_to_file(archive["url"], out)
        if digest != archive["sha256"]:
            raise OSError(
                f"Checksum mismatch for {archive['url']}: expected sha256 {archive['sha256']}, "
                f"got {digest}. The download is corrupt or the file changed upstream; "
                "nothing was extracted. Retry, or download and unzip it by hand."
            )
        _extract_folder(tmp_zip, archive, data_home)
    finally:
        tmp_zip.unlink(missing_ok=True)


def _stream_to_file(url: str, out) -> str:
    """Copy ``url`` to the open binary file ``out``; return the SHA-256 hex digest."""
    logger.info("Downloading %s", url)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(_CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
    except OSError as err:  # URLError, timeouts and socket errors are all OSErrors
        raise OSError(f"Could not download {url}: {err}") from err
    return digest.hexdigest()


def _extract_folder(zip_path: Path, archive: dict, data_home: Path) -> None:
    """Unzip ``zip_path`` and move ``archive["folder"]`` into ``data_home``."""
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=data_home))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            _check_members(zf.namelist(), zip_path)
            zf.extractall(staging)
        extracted = staging / archive["folder"]
        absent = missing_files(extracted, archive["files"])
        if absent:
            raise OSError(
                f"The archive from {archive['url']} has no {archive['folder']}/ folder holding "
                f"{absent}; nothing was extracted."
            )
        target = data_home / archive["folder"]
        if not target.exists():
            os.replace(extracted, target)
            return
        # Keep what the user already has; only fill in files that are missing.
        for source in sorted(p for p in extracted.rglob("*") if p.is_file()):
            destination = target / source.relative_to(extracted)
            if not destination.exists():
                destination.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_members(names: list[str], zip_path: Path) -> None:
    """Refuse archives whose members are absolute or climb out with ``..``."""
    for name in names:
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise OSError(
                f"Refusing to extract {zip_path.name}: member {name!r} would be written "
                "outside the data home."
            )


def check_complete(
    frame: pd.DataFrame,
    path: Path,
    n_rows: int,
    columns: Sequence,
    *,
    header: bool = False,
    how_to_fix: str = "",
) -> None:
    """Raise if ``frame``, parsed from ``path``, is not the whole published file.

    A file cut short at a line break parses without error, so the row count is compared with
    the published one; a file cut inside a line leaves missing values in the last row, so the
    ``columns`` that every row of the release has must hold no missing value.

    Raises
    ------
    ValueError
        Naming ``path``, the rows expected and found, the first line with a missing value,
        and ``how_to_fix``.
    """
    problems = []
    if len(frame) != n_rows:
        problems.append(f"it has {len(frame):,} rows where the release has {n_rows:,}")
    missing = frame[list(columns)].isna().to_numpy()
    if missing.any():
        row, col = np.argwhere(missing)[0]
        problems.append(f"line {row + 1 + int(header)} has no {list(columns)[col]!r} value")
    if problems:
        raise ValueError(
            f"{path} is truncated or damaged: {'; '.join(problems)}. {how_to_fix}".rstrip()
        )


def lists_by_row(rows: np.ndarray, values: np.ndarray, n_rows: int) -> np.ndarray:
    """Object array of ``n_rows`` Python lists: row ``r`` gets ``values[rows == r]`` in order.

    Rows that receive no value get an empty list (a distinct object per row).
    """
    out = np.empty(n_rows, dtype=object)
    grouped = pd.Series(values, dtype=object).groupby(np.asarray(rows), sort=True).agg(list)
    out[grouped.index.to_numpy()] = grouped.to_numpy()
    for row in np.flatnonzero(pd.isna(out)):  # only rows without any value
        out[row] = []
    return out


def interaction_bunch(
    interactions: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame, **fields
) -> Bunch:
    """The Bunch every loader returns; ``frame`` is one row per interaction, in order,
    with the user and then the item columns appended."""
    frame = interactions.merge(users, on="user_id", how="left", validate="many_to_one").merge(
        items, on="item_id", how="left", validate="many_to_one"
    )
    return Bunch(interactions=interactions, users=users, items=items, frame=frame, **fields)
