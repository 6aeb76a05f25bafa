"""MovieLens loaders (100K, 1M, latest-small) in the GroupLens file layouts."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

from ._base import (
    check_complete,
    download_and_extract,
    get_data_home,
    interaction_bunch,
    lists_by_row,
    missing_files,
)

_GROUPLENS = "https://files.grouplens.org/datasets/movielens"

# Checksums as pinned by TensorFlow Datasets (tensorflow_datasets/url_checksums/movielens.txt).
# ``rows`` are the published line counts of the extracted files (without the csv header); they
# catch a file truncated at a line break, which parses without error. The extracted files are
# not checksummed: copies rebuilt from other distributions (blank IMDb URLs in u.item, say)
# hold the same ratings, users and movies and must load.
ARCHIVES: dict[str, dict] = {
    "100k": {
        "url": f"{_GROUPLENS}/ml-100k.zip",
        "sha256": "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        "folder": "ml-100k",
        "files": ("u.data", "u.user", "u.item"),
        "rows": {"u.data": 100_000, "u.user": 943, "u.item": 1_682},
    },
    "1m": {
        "url": f"{_GROUPLENS}/ml-1m.zip",
        "sha256": "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        "folder": "ml-1m",
        "files": ("ratings.dat", "users.dat", "movies.dat"),
        "rows": {"ratings.dat": 1_000_209, "users.dat": 6_040, "movies.dat": 3_883},
    },
    "latest-small": {
        "url": f"{_GROUPLENS}/ml-latest-small.zip",
        "sha256": "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        "folder": "ml-latest-small",
        "files": ("ratings.csv", "movies.csv"),
        "rows": {"ratings.csv": 100_836, "movies.csv": 9_742},
    },
}

# The genre order of the 100K u.item flag columns, used when u.genre is absent.
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

# Occupation codes of users.dat, from the ml-1m README.
OCCUPATIONS_1M = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer",
    "homemaker", "K-12 student", "lawyer", "programmer", "retired", "sales/marketing",
    "scientist", "self-employed", "technician/engineer", "tradesman/craftsman",
    "unemployed", "writer",
)  # fmt: skip

_NO_GENRES = "(no genres listed)"
_INTERACTION_DTYPES = {
    "user_id": "int64",
    "item_id": "int64",
    "rating": "float32",
    "timestamp": "int64",
}

_DESCR = """MovieLens {name} (GroupLens Research, University of Minnesota).

{counts}

Bunch fields: interactions (user_id, item_id, rating, timestamp), users, items
(item_id, title, genres as a list of str), frame (one row per rating, joined with
users and items), variant, data_home.

Licence: GroupLens research licence. The data may be used for research only, not
commercially, without implying endorsement by the University of Minnesota, and must
not be redistributed without permission. See the README inside the archive.

Citation: F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets:
History and Context. ACM Transactions on Interactive Intelligent Systems (TiiS)
5, 4, Article 19. https://doi.org/10.1145/2827872
"""

_COUNTS = {
    "100k": "100,000 ratings (1-5) from 943 users on 1,682 movies, 1997-1998; users "
    "have age, gender, occupation and zip code.",
    "1m": "1,000,209 ratings (1-5) from 6,040 users on 3,706 of its 3,883 movies, 2000-2003; "
    "users have gender, an age-range code, occupation and zip code.",
    "latest-small": "100,836 ratings (0.5-5 in half stars) from 610 users on 9,742 movies, "
    "1996-2018; no user demographics.",
}


def fetch_movielens(
    variant: str = "100k",
    data_home: str | os.PathLike | None = None,
    download: bool = True,
) -> Bunch:
    """Load a MovieLens dataset as pandas DataFrames, downloading it if needed.

    Parameters
    ----------
    variant : {"100k", "1m", "latest-small"}, default="100k"
        Which GroupLens release. Each lives in its own folder of the data home:
        ``ml-100k/``, ``ml-1m/`` or ``ml-latest-small/``, exactly as unzipped.
    data_home : str or path-like, default=None
        Folder holding those folders; see :func:`get_data_home` for the default
        (``$SKDSSM_DATA``, else ``~/skdssm_data``).
    download : bool, default=True
        If the files are missing, download the zip from GroupLens, verify its
        SHA-256 and unzip it into ``data_home``. Files already present are only
        read, never modified.

    Returns
    -------
    sklearn.utils.Bunch
        ``interactions``: DataFrame with ``user_id`` (int64), ``item_id`` (int64),
        ``rating`` (float32), ``timestamp`` (int64, Unix seconds), in file order.
        ``users``: ``user_id`` plus, where the variant has them, ``gender`` (str),
        ``age`` (int64; for "1m" the age-range code 1, 18, 25, 35, 45, 50, 56),
        ``occupation`` (str) and ``zip_code`` (str); "latest-small" has ``user_id`` only.
        ``items``: ``item_id`` (int64), ``title`` (str), ``genres`` (list of str per row,
        empty when none is listed).
        ``frame``: ``interactions`` joined with ``users`` and ``items``, one row per
        rating in the same order.
        ``variant``, ``data_home`` (the resolved path) and ``DESCR`` (description,
        licence and citation).

    Raises
    ------
    ValueError
        If ``variant`` is unknown, or a file cannot be parsed or is truncated or damaged (it
        has fewer or more lines than the release, or a line lacks a field). The message
        names the file; delete its folder and call again with ``download=True`` to replace
        it with a verified download.
    FileNotFoundError
        If files are missing and ``download=False``. The message names the missing
        files, the folder searched, and the URL of the archive to unzip there.
    OSError
        If the download fails (network error, or a checksum mismatch, reported as
        expected vs got). Nothing half-extracted is left behind.

    Examples
    --------
    >>> from skdssm.datasets import fetch_movielens
    >>> ml = fetch_movielens("100k")  # doctest: +SKIP
    >>> ml.interactions.shape  # doctest: +SKIP
    (100000, 4)
    >>> ml.frame.columns.tolist()  # doctest: +SKIP
    ['user_id', 'item_id', 'rating', 'timestamp', 'gender', 'age', 'occupation',
     'zip_code', 'title', 'genres']
    """
    if variant not in ARCHIVES:
        raise ValueError(f"variant must be one of {sorted(ARCHIVES)}; got {variant!r}.")
    archive = ARCHIVES[variant]
    home = get_data_home(data_home)
    folder = home / archive["folder"]
    absent = missing_files(folder, archive["files"])
    if absent and not download:
        raise FileNotFoundError(_missing_message(absent, folder, archive))
    if absent:
        try:
            download_and_extract(archive, home)
        except OSError as err:
            raise OSError(f"{err}\n{_missing_message(absent, folder, archive)}") from err

    interactions, users, items = _READERS[variant](folder, archive["rows"])
    return interaction_bunch(
        interactions,
        users,
        items,
        variant=variant,
        data_home=home,
        DESCR=_DESCR.format(name=variant.upper(), counts=_COUNTS[variant]),
    )


def _missing_message(absent: list[str], folder: Path, archive: dict) -> str:
    return (
        f"MovieLens files {absent} are missing from {folder}. Download {archive['url']} "
        f"and unzip it into {folder.parent} (it creates {archive['folder']}/), or call "
        "fetch_movielens with download=True. Set data_home or the SKDSSM_DATA "
        "environment variable to use another folder."
    )


def _redownload_hint(path: Path) -> str:
    return (
        f"Delete the folder {path.parent} and call fetch_movielens again with download=True "
        "to replace it with a verified download."
    )


def _read(path: Path, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` whose parse errors name the file."""
    try:
        return pd.read_csv(path, **kwargs)
    except (ValueError, pd.errors.ParserError) as err:
        raise ValueError(
            f"Could not parse {path}: {err}. The file does not have the GroupLens format or "
            f"is truncated. {_redownload_hint(path)}"
        ) from err


def _check(frame: pd.DataFrame, path: Path, rows: dict, *, header: bool = False) -> pd.DataFrame:
    """``frame`` if it holds every line of ``path`` with every field filled, else ValueError.

    Every column is checked except the 100K release and video-release dates and IMDb URLs,
    which the release leaves blank for some movies.
    """
    columns = frame.columns.drop(["release_date", "video_release_date", "url"], errors="ignore")
    check_complete(
        frame, path, rows[path.name], columns, header=header, how_to_fix=_redownload_hint(path)
    )
    return frame


def _read_100k(folder: Path, rows: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    interactions = _read(
        folder / "u.data",
        sep="\t",
        header=None,
        names=list(_INTERACTION_DTYPES),
        dtype=_INTERACTION_DTYPES,
    )
    _check(interactions, folder / "u.data", rows)
    users = _read(
        folder / "u.user",
        sep="|",
        header=None,
        names=["user_id", "age", "gender", "occupation", "zip_code"],
        dtype={"user_id": "int64", "age": "int64", "gender": str, "occupation": str,
               "zip_code": str},  # fmt: skip
    )[["user_id", "gender", "age", "occupation", "zip_code"]]
    _check(users, folder / "u.user", rows)
    genre_names = _genre_names_100k(folder)
    raw = _read(
        folder / "u.item",
        sep="|",
        header=None,
        encoding="latin-1",
        quoting=csv.QUOTE_NONE,
        names=["item_id", "title", "release_date", "video_release_date", "url", *genre_names],
        dtype={"item_id": "int64", "title": str},
    )
    _check(raw, folder / "u.item", rows)
    flagged, cols = np.nonzero(raw[list(genre_names)].to_numpy(dtype=bool))
    items = raw[["item_id", "title"]].assign(
        genres=lists_by_row(flagged, np.asarray(genre_names, dtype=object)[cols], len(raw))
    )
    return interactions, users, items


def _genre_names_100k(folder: Path) -> tuple[str, ...]:
    path = folder / "u.genre"
    if not path.is_file():
        return GENRES_100K
    table = _read(path, sep="|", header=None, names=["genre", "index"], encoding="latin-1")
    return tuple(table.dropna().sort_values("index")["genre"].astype(str))


def _read_1m(folder: Path, rows: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    # ratings.dat and users.dat hold no single ':' inside fields, so splitting on ':'
    # with the fast C parser and keeping every other column reads the '::' format.
    interactions = _read(
        folder / "ratings.dat",
        sep=":",
        header=None,
        usecols=[0, 2, 4, 6],
        names=range(7),
        dtype=dict(zip([0, 2, 4, 6], _INTERACTION_DTYPES.values())),
    ).set_axis(list(_INTERACTION_DTYPES), axis=1)
    _check(interactions, folder / "ratings.dat", rows)
    users = _read(
        folder / "users.dat",
        sep=":",
        header=None,
        usecols=[0, 2, 4, 6, 8],
        names=range(9),
        encoding="latin-1",
        dtype={0: "int64", 2: str, 4: "int64", 6: "int64", 8: str},
    ).set_axis(["user_id", "gender", "age", "occupation", "zip_code"], axis=1)
    _check(users, folder / "users.dat", rows)
    codes = users["occupation"].to_numpy()
    unknown = np.setdiff1d(codes, np.arange(len(OCCUPATIONS_1M)))
    if unknown.size:
        raise ValueError(
            f"{folder / 'users.dat'} has occupation codes {unknown.tolist()}; the ml-1m "
            f"README defines codes 0-{len(OCCUPATIONS_1M) - 1} only."
        )
    users["occupation"] = pd.Series(np.asarray(OCCUPATIONS_1M)[codes], dtype=str)
    movies = _check(_read_movies_1m(folder), folder / "movies.dat", rows)
    return interactions, users, _split_genres(movies)


def _read_movies_1m(folder: Path) -> pd.DataFrame:
    # Titles contain single colons ("Star Wars: Episode IV"), so split on '::' exactly.
    return _read(
        folder / "movies.dat",
        sep="::",
        engine="python",
        header=None,
        names=["item_id", "title", "genres"],
        encoding="latin-1",
        quoting=csv.QUOTE_NONE,
        dtype={"item_id": "int64", "title": str, "genres": str},
    )


def _read_latest_small(
    folder: Path, rows: dict
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    interactions = _read(
        folder / "ratings.csv", header=0, names=list(_INTERACTION_DTYPES), dtype=_INTERACTION_DTYPES
    )
    _check(interactions, folder / "ratings.csv", rows, header=True)
    users = pd.DataFrame({"user_id": np.unique(interactions["user_id"].to_numpy()).astype("int64")})
    items = _read(
        folder / "movies.csv",
        header=0,
        names=["item_id", "title", "genres"],
        dtype={"item_id": "int64", "title": str, "genres": str},
    )
    _check(items, folder / "movies.csv", rows, header=True)
    return interactions, users, _split_genres(items)


def _split_genres(items: pd.DataFrame) -> pd.DataFrame:
    """Turn ``"Action|Comedy"`` strings into lists; ``"(no genres listed)"`` becomes []."""
    pieces = items["genres"].fillna("").reset_index(drop=True).str.split("|").explode()
    pieces = pieces[(pieces != "") & (pieces != _NO_GENRES)]
    genres = lists_by_row(pieces.index.to_numpy(), pieces.to_numpy(dtype=object), len(items))
    return items.assign(genres=genres)


_READERS = {"100k": _read_100k, "1m": _read_1m, "latest-small": _read_latest_small}
