from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from skdssm.datasets import (
    fetch_movielens,
    get_data_home,
    make_geo_interactions,
    make_interactions,
)
from skdssm.datasets import _movielens

INTERACTION_DTYPES = {
    "user_id": "int64",
    "item_id": "int64",
    "rating": "float32",
    "timestamp": "int64",
}

# --------------------------------------------------------------------------- fake GroupLens files

U_DATA = "1\t10\t4\t881250949\n2\t10\t1\t891717742\n1\t20\t5\t878887116\n3\t30\t3\t880606923\n"
U_USER = "1|24|M|technician|85711\n2|53|F|other|01002\n3|23|M|writer|T8H1N\n"
GENRE_FLAGS = {
    10: "0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0",  # Action, Adventure, Thriller
    20: "1" + "|0" * 18,  # unknown
    30: "|".join(["0"] * 19),  # none
}
U_ITEM = (
    "10|GoldenEye (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?GoldenEye%20(1995)|"
    f"{GENRE_FLAGS[10]}\n"
    f"20|Café \"Noir\" (1996)|01-Jan-1996|||{GENRE_FLAGS[20]}\n"
    f"30|Nothing (1997)||||{GENRE_FLAGS[30]}\n"
)
U_GENRE = "".join(f"{name}|{i}\n" for i, name in enumerate(_movielens.GENRES_100K)) + "\n"


def write_fake_100k(home: Path, *, with_genre_file: bool = True) -> Path:
    folder = home / "ml-100k"
    folder.mkdir(parents=True)
    (folder / "u.data").write_text(U_DATA)
    (folder / "u.user").write_text(U_USER)
    (folder / "u.item").write_text(U_ITEM, encoding="latin-1")
    if with_genre_file:
        (folder / "u.genre").write_text(U_GENRE)
    return folder


def zip_folder(folder: Path, zip_path: Path, extra: dict[str, str] | None = None) -> str:
    """Zip ``folder`` (as ``folder.name/...``); return the archive's sha256."""
    with zipfile.ZipFile(zip_path, "w") as zf:
        for file in sorted(folder.iterdir()):
            zf.write(file, f"{folder.name}/{file.name}")
        for name, text in (extra or {}).items():
            zf.writestr(name, text)
    return hashlib.sha256(zip_path.read_bytes()).hexdigest()


def expect_rows(monkeypatch, variant: str, rows: dict[str, int]) -> None:
    """Make the fake files below count as complete: the loader checks published row counts."""
    entry = {**_movielens.ARCHIVES[variant], "rows": rows}
    monkeypatch.setitem(_movielens.ARCHIVES, variant, entry)


@pytest.fixture
def fake_100k_rows(monkeypatch):
    expect_rows(monkeypatch, "100k", {"u.data": 4, "u.user": 3, "u.item": 3})


@pytest.fixture
def fake_archive(tmp_path, monkeypatch, fake_100k_rows):
    """A local ml-100k.zip served from a file:// URL in place of GroupLens."""
    source = write_fake_100k(tmp_path / "source")
    zip_path = tmp_path / "ml-100k.zip"
    sha = zip_folder(source, zip_path)
    entry = {**_movielens.ARCHIVES["100k"], "url": zip_path.as_uri(), "sha256": sha}
    monkeypatch.setitem(_movielens.ARCHIVES, "100k", entry)
    return entry


def all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --------------------------------------------------------------------------- MovieLens, real data


@pytest.mark.realdata
def test_movielens_100k_real_shapes_and_dtypes(movielens_home):
    before = all_files(movielens_home / "ml-100k")
    ml = fetch_movielens("100k", data_home=movielens_home, download=False)

    assert ml.interactions.shape == (100_000, 4)
    assert ml["users"].shape == (943, 5)
    assert ml["items"].shape == (1682, 3)
    assert ml.interactions.dtypes.astype(str).to_dict() == INTERACTION_DTYPES
    assert ml["users"]["age"].dtype == "int64"
    assert ml["items"]["item_id"].dtype == "int64"
    genres = ml["items"]["genres"]
    assert all(isinstance(g, list) and all(isinstance(x, str) for x in g) for g in genres)
    assert {"Action", "Film-Noir", "Sci-Fi"} <= set(genres.explode())

    frame = ml.frame
    assert len(frame) == 100_000
    assert frame.columns.tolist() == [
        "user_id", "item_id", "rating", "timestamp",
        "gender", "age", "occupation", "zip_code", "title", "genres",
    ]  # fmt: skip
    pd.testing.assert_frame_equal(frame[list(INTERACTION_DTYPES)], ml.interactions)
    assert not frame[["user_id", "item_id", "title", "gender"]].isna().any().any()
    assert ml.variant == "100k" and ml.data_home == movielens_home.resolve()
    assert "Harper" in ml.DESCR and "licen" in ml.DESCR.lower()
    assert all_files(movielens_home / "ml-100k") == before


# --------------------------------------------------------------------------- MovieLens parsers


@pytest.mark.usefixtures("fake_100k_rows")
def test_100k_parser_on_fake_files(tmp_path):
    write_fake_100k(tmp_path)
    ml = fetch_movielens("100k", data_home=tmp_path, download=False)

    assert ml.interactions["rating"].tolist() == [4.0, 1.0, 5.0, 3.0]
    users = ml["users"].set_index("user_id")
    assert users.columns.tolist() == ["gender", "age", "occupation", "zip_code"]
    assert users.loc[2, "zip_code"] == "01002"  # leading zero kept: zip codes are strings
    assert users.loc[3, "zip_code"] == "T8H1N"
    items = ml["items"].set_index("item_id")
    assert items.loc[20, "title"] == 'Café "Noir" (1996)'  # latin-1, quotes kept as text
    assert items["genres"].tolist() == [["Action", "Adventure", "Thriller"], ["unknown"], []]
    assert ml.frame["genres"].tolist()[:2] == [["Action", "Adventure", "Thriller"]] * 2
    assert ml.frame["occupation"].tolist() == ["technician", "other", "technician", "writer"]


@pytest.mark.usefixtures("fake_100k_rows")
def test_100k_genre_names_fall_back_to_grouplens_list(tmp_path):
    write_fake_100k(tmp_path, with_genre_file=False)
    ml = fetch_movielens("100k", data_home=tmp_path, download=False)
    assert ml["items"]["genres"].iloc[0] == ["Action", "Adventure", "Thriller"]


def test_1m_parser_on_fake_files(tmp_path, monkeypatch):
    expect_rows(monkeypatch, "1m", {"ratings.dat": 3, "users.dat": 2, "movies.dat": 2})
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text(
        "1::1193::5::978300760\n2::3::3::978302109\n1::3::4::978301968\n"
    )
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::0::55117-1234\n")
    (folder / "movies.dat").write_text(
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "3::Misérables, Les: Part 1 (1995)::Comedy|Romance\n",
        encoding="latin-1",
    )
    ml = fetch_movielens("1m", data_home=tmp_path, download=False)

    assert ml.interactions.dtypes.astype(str).to_dict() == INTERACTION_DTYPES
    assert ml.interactions.values.tolist() == [
        [1, 1193, 5, 978300760], [2, 3, 3, 978302109], [1, 3, 4, 978301968],
    ]  # fmt: skip
    users = ml["users"]
    assert users["occupation"].tolist() == ["K-12 student", "other"]
    assert users["age"].tolist() == [1, 56] and users["age"].dtype == "int64"
    assert users["zip_code"].tolist() == ["48067", "55117-1234"]
    items = ml["items"].set_index("item_id")
    assert items.loc[3, "title"] == "Misérables, Les: Part 1 (1995)"
    assert items.loc[3, "genres"] == ["Comedy", "Romance"]
    assert ml.frame["title"].tolist()[1:] == ["Misérables, Les: Part 1 (1995)"] * 2


def test_1m_unknown_occupation_code_is_named(tmp_path, monkeypatch):
    expect_rows(monkeypatch, "1m", {"ratings.dat": 1, "users.dat": 1, "movies.dat": 1})
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::1::5::978300760\n")
    (folder / "users.dat").write_text("1::F::1::42::48067\n")
    (folder / "movies.dat").write_text("1::Toy Story (1995)::Animation\n")
    with pytest.raises(ValueError, match=r"occupation codes \[42\]"):
        fetch_movielens("1m", data_home=tmp_path, download=False)


def test_latest_small_parser_on_fake_files(tmp_path, monkeypatch):
    expect_rows(monkeypatch, "latest-small", {"ratings.csv": 3, "movies.csv": 2})
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n"
        "1,1,4.0,964982703\n5,31,3.5,964982931\n1,31,0.5,964983000\n"
    )
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
        '31,"Good, the Bad and the Ugly, The (1966)",(no genres listed)\n'
    )
    ml = fetch_movielens("latest-small", data_home=tmp_path, download=False)

    assert ml.interactions["rating"].tolist() == [4.0, 3.5, 0.5]
    assert ml.interactions.dtypes.astype(str).to_dict() == INTERACTION_DTYPES
    assert ml["users"].columns.tolist() == ["user_id"]
    assert ml["users"]["user_id"].tolist() == [1, 5]
    items = ml["items"].set_index("item_id")
    assert items.loc[31, "title"] == "Good, the Bad and the Ugly, The (1966)"
    assert items.loc[31, "genres"] == []
    assert items.loc[1, "genres"][:2] == ["Adventure", "Animation"]
    assert ml.frame.columns.tolist() == [*INTERACTION_DTYPES, "title", "genres"]


def test_unparsable_file_is_named(tmp_path):
    folder = write_fake_100k(tmp_path)
    (folder / "u.data").write_text("1\t10\tfour\t881250949\n")
    with pytest.raises(ValueError, match=r"u\.data"):
        fetch_movielens("100k", data_home=tmp_path, download=False)


def cut(path: Path, keep) -> None:
    """Rewrite ``path`` keeping ``keep(text)`` of it, as an interrupted copy or unzip would."""
    text = path.read_text(encoding="latin-1")
    path.write_text(keep(text), encoding="latin-1")


def first_lines(n):
    return lambda text: "".join(text.splitlines(keepends=True)[:n])


@pytest.mark.usefixtures("fake_100k_rows")
@pytest.mark.parametrize(
    "name, keep, problem",
    [
        ("u.data", first_lines(2), "it has 2 rows where the release has 4"),
        ("u.item", lambda text: "", "it has 0 rows where the release has 3"),
        ("u.user", lambda text: "", "it has 0 rows where the release has 3"),
        # Cut inside the last line: its genre flags (or occupation and zip) are missing.
        ("u.item", lambda text: text[: text.index("Nothing") + 7], "line 3 has no 'unknown' value"),
        ("u.user", lambda text: text[: text.index("|M|writer")], "line 3 has no 'gender' value"),
        ("u.data", lambda text: text.replace("\t3\t880606923", "\t\t880606923"),
         "line 4 has no 'rating' value"),
    ],
)
def test_damaged_100k_file_is_named_with_how_to_download_again(tmp_path, name, keep, problem):
    folder = write_fake_100k(tmp_path)
    cut(folder / name, keep)
    with pytest.raises(ValueError, match="truncated or damaged") as info:
        fetch_movielens("100k", data_home=tmp_path, download=True)  # present files are not replaced
    message = str(info.value)
    assert message.startswith(f"{folder / name} is truncated or damaged: {problem}")
    assert f"Delete the folder {folder} and call fetch_movielens again with download=True" in (
        message
    )


def test_damaged_1m_and_latest_small_files_are_named(tmp_path, monkeypatch):
    expect_rows(monkeypatch, "1m", {"ratings.dat": 2, "users.dat": 1, "movies.dat": 1})
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::1::5::978300760\n")  # one of its two lines
    (folder / "users.dat").write_text("1::F::1::10::48067\n")
    (folder / "movies.dat").write_text("1::Toy Story (1995)::Animation\n")
    with pytest.raises(ValueError, match=r"ratings\.dat is truncated .* has 1 rows where .* 2\."):
        fetch_movielens("1m", data_home=tmp_path, download=False)

    (folder / "ratings.dat").write_text("1::1::5::978300760\n1::1::4::978300761\n")
    (folder / "movies.dat").write_text("1::Toy Story (1995)\n")  # cut before the genres
    with pytest.raises(ValueError, match=r"movies\.dat is truncated .* line 1 has no 'genres'"):
        fetch_movielens("1m", data_home=tmp_path, download=False)

    expect_rows(monkeypatch, "latest-small", {"ratings.csv": 1, "movies.csv": 2})
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n")
    (folder / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Comedy\n2,Jum")
    with pytest.raises(ValueError, match=r"movies\.csv is truncated .*: line 3 has no 'genres'"):
        fetch_movielens("latest-small", data_home=tmp_path, download=False)


def test_published_row_counts():
    rows = {variant: archive["rows"] for variant, archive in _movielens.ARCHIVES.items()}
    assert rows == {
        "100k": {"u.data": 100_000, "u.user": 943, "u.item": 1_682},
        "1m": {"ratings.dat": 1_000_209, "users.dat": 6_040, "movies.dat": 3_883},
        "latest-small": {"ratings.csv": 100_836, "movies.csv": 9_742},
    }


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name, keep, problem",
    [
        ("u.data", first_lines(50_176), "it has 50,176 rows where the release has 100,000"),
        ("u.item", lambda text: "", "it has 0 rows where the release has 1,682"),
        ("u.item", lambda text: text[:60_000], "it has 866 rows where the release has 1,682; "
         "line 866 has no 'unknown' value"),
    ],
)
def test_damaged_real_100k_copy_is_refused(movielens_home, tmp_path, name, keep, problem):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    for file in ("u.data", "u.user", "u.item", "u.genre"):
        (folder / file).write_bytes((movielens_home / "ml-100k" / file).read_bytes())
    cut(folder / name, keep)
    with pytest.raises(ValueError) as info:
        fetch_movielens("100k", data_home=tmp_path, download=False)
    assert str(info.value).startswith(f"{folder / name} is truncated or damaged: {problem}.")


def test_unknown_variant():
    with pytest.raises(ValueError, match=r"variant must be one of .*'1m'.*got '10m'"):
        fetch_movielens("10m", download=False)


# --------------------------------------------------------------------------- download, data home


def test_download_verifies_extracts_and_parses(tmp_path, fake_archive):
    home = tmp_path / "home"
    ml = fetch_movielens("100k", data_home=home)

    assert all_files(home) == [
        "ml-100k", "ml-100k/u.data", "ml-100k/u.genre", "ml-100k/u.item", "ml-100k/u.user",
    ]  # fmt: skip
    assert ml.interactions.shape == (4, 4)
    assert ml["items"]["genres"].iloc[0] == ["Action", "Adventure", "Thriller"]
    assert ml.data_home == home.resolve()


def test_download_fills_in_missing_files_only(tmp_path, fake_archive):
    home = tmp_path / "home"
    (home / "ml-100k").mkdir(parents=True)
    (home / "ml-100k" / "u.data").write_text("7\t10\t2\t881250949\n" * 4)
    ml = fetch_movielens("100k", data_home=home)
    assert ml.interactions["user_id"].tolist() == [7] * 4  # the user's own u.data is kept


def test_checksum_mismatch_says_expected_and_got_and_leaves_nothing(
    tmp_path, fake_archive, monkeypatch
):
    wrong = "0" * 64
    monkeypatch.setitem(_movielens.ARCHIVES, "100k", {**fake_archive, "sha256": wrong})
    home = tmp_path / "home"
    with pytest.raises(OSError, match=r"expected sha256 0{64}, got [0-9a-f]{64}") as info:
        fetch_movielens("100k", data_home=home)
    assert fake_archive["sha256"] in str(info.value)
    assert "u.data" in str(info.value) and str(home / "ml-100k") in str(info.value)
    assert all_files(home) == []


def test_unreachable_url_names_missing_files_and_url(tmp_path, monkeypatch):
    url = (tmp_path / "absent.zip").as_uri()
    monkeypatch.setitem(_movielens.ARCHIVES, "100k", {**_movielens.ARCHIVES["100k"], "url": url})
    with pytest.raises(OSError, match="Could not download") as info:
        fetch_movielens("100k", data_home=tmp_path / "home")
    message = str(info.value)
    assert url in message and "['u.data', 'u.user', 'u.item']" in message
    assert all_files(tmp_path / "home") == []


def test_archive_escaping_the_data_home_is_refused(tmp_path, monkeypatch):
    source = write_fake_100k(tmp_path / "source")
    zip_path = tmp_path / "evil.zip"
    sha = zip_folder(source, zip_path, extra={"../escaped.txt": "gotcha"})
    entry = {**_movielens.ARCHIVES["100k"], "url": zip_path.as_uri(), "sha256": sha}
    monkeypatch.setitem(_movielens.ARCHIVES, "100k", entry)
    home = tmp_path / "home"
    with pytest.raises(OSError, match=r"'\.\./escaped\.txt' would be written outside"):
        fetch_movielens("100k", data_home=home)
    assert not (tmp_path / "escaped.txt").exists()
    assert all_files(home) == []


def test_download_false_names_missing_files_folder_and_url(tmp_path):
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text(U_DATA)
    with pytest.raises(FileNotFoundError) as info:
        fetch_movielens("100k", data_home=tmp_path, download=False)
    message = str(info.value)
    assert "['u.user', 'u.item']" in message
    assert str(tmp_path / "ml-100k") in message
    assert "https://files.grouplens.org/datasets/movielens/ml-100k.zip" in message
    assert all_files(tmp_path) == ["ml-100k", "ml-100k/u.data"]


@pytest.mark.usefixtures("fake_100k_rows")
def test_environment_variable_sets_the_data_home(tmp_path, monkeypatch):
    write_fake_100k(tmp_path)
    monkeypatch.setenv("SKDSSM_DATA", str(tmp_path))
    assert get_data_home() == tmp_path.resolve()
    assert get_data_home(tmp_path / "explicit") == (tmp_path / "explicit").resolve()
    ml = fetch_movielens(download=False)
    assert ml.data_home == tmp_path.resolve() and len(ml.interactions) == 4


def test_default_data_home_is_under_the_user_home(tmp_path, monkeypatch):
    monkeypatch.delenv("SKDSSM_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert get_data_home() == tmp_path.resolve() / "skdssm_data"
    assert get_data_home("~/elsewhere") == tmp_path.resolve() / "elsewhere"
    assert not (tmp_path / "skdssm_data").exists()  # only a download creates it


# --------------------------------------------------------------------------- make_interactions


def test_make_interactions_layout():
    data = make_interactions(n_users=30, n_items=40, interactions_per_user=7, random_state=0)
    dtypes = data.interactions.dtypes.astype(str).to_dict()
    assert dtypes == {**INTERACTION_DTYPES, "label": "int64"}
    assert data["users"].dtypes.astype(str).to_dict() == {
        "user_id": "int64", "segment": "str", "age_group": "int64", "activity": "float64",
    }  # fmt: skip
    assert data["items"].dtypes.astype(str).to_dict() == {
        "item_id": "int64", "category": "str", "tags": "object", "price": "float64",
    }  # fmt: skip
    assert data["users"]["user_id"].tolist() == list(range(1, 31))
    assert data["items"]["item_id"].tolist() == list(range(1, 41))
    tags = data["items"]["tags"]
    assert tags.map(len).between(1, 3).all() and tags.map(lambda t: len(set(t)) == len(t)).all()
    assert data.frame.columns.tolist() == [
        *data.interactions.columns, *data["users"].columns[1:], *data["items"].columns[1:]
    ]
    pd.testing.assert_frame_equal(data.frame[data.interactions.columns], data.interactions)
    assert data.user_cluster.shape == (30,) and data.item_cluster.shape == (40,)
    assert data.affinity.shape == (4, 4)


@settings(max_examples=25, deadline=None)
@given(
    n_users=st.integers(1, 12),
    n_items=st.integers(1, 15),
    data=st.data(),
)
def test_make_interactions_invariants(n_users, n_items, data):
    per_user = data.draw(st.integers(1, n_items))
    seed = data.draw(st.integers(0, 2**31 - 1))
    result = make_interactions(
        n_users,
        n_items,
        n_user_clusters=data.draw(st.integers(1, n_users)),
        n_item_clusters=data.draw(st.integers(1, n_items)),
        interactions_per_user=per_user,
        random_state=seed,
    )
    inter = result.interactions
    assert len(inter) == n_users * per_user
    assert inter["user_id"].between(1, n_users).all() and inter["item_id"].between(1, n_items).all()
    assert not inter.duplicated(["user_id", "item_id"]).any()
    assert (inter.groupby("user_id").size() == per_user).all()
    assert (inter.groupby("user_id")["timestamp"].diff().dropna() > 0).all()
    assert inter["rating"].isin([1, 2, 3, 4, 5]).all()
    assert ((inter["rating"] >= 4) == (inter["label"] == 1)).all()


def test_make_interactions_is_determined_by_random_state():
    first = make_interactions(random_state=3)
    again = make_interactions(random_state=3)
    other = make_interactions(random_state=4)
    pd.testing.assert_frame_equal(first.frame, again.frame)
    np.testing.assert_array_equal(first.user_cluster, again.user_cluster)
    assert not first.interactions.equals(other.interactions)


def planted_affinity(data) -> np.ndarray:
    """The affinity of each interaction's (user cluster, item cluster) pair."""
    inter = data.interactions
    return data.affinity[
        data.user_cluster[inter["user_id"] - 1], data.item_cluster[inter["item_id"] - 1]
    ]


def test_make_interactions_labels_follow_the_clusters():
    data = make_interactions(random_state=0)
    inter = data.interactions
    planted = planted_affinity(data)
    assert 0.3 < inter["label"].mean() < 0.7
    assert roc_auc_score(inter["label"], planted) > 0.8

    exact = make_interactions(label_noise=0, random_state=0)
    noisy = make_interactions(label_noise=5, random_state=0)
    for data, low, high in [(exact, 0.97, 1.0), (noisy, 0.5, 0.75)]:
        agreement = ((planted_affinity(data) > 0) == (data.interactions["label"] == 1)).mean()
        assert low <= agreement <= high


def test_make_interactions_features_reveal_clusters_partly():
    data = make_interactions(n_users=400, n_items=400, feature_noise=0.4, random_state=1)
    segment = data["users"]["segment"].str.removeprefix("segment_").astype(int)
    category = data["items"]["category"].str.removeprefix("category_").astype(int)
    # A random replacement hits the true cluster 1/4 of the time: 0.6 + 0.4 / 4 = 0.7.
    assert (segment == data.user_cluster).mean() == pytest.approx(0.7, abs=0.07)
    assert (category == data.item_cluster).mean() == pytest.approx(0.7, abs=0.07)
    theme = data["items"]["tags"].str[0].str.removeprefix("theme_").astype(int)
    assert (theme == data.item_cluster).mean() == pytest.approx(0.85, abs=0.06)

    clean = make_interactions(feature_noise=0, random_state=1)
    segment = clean["users"]["segment"].str.removeprefix("segment_").astype(int)
    np.testing.assert_array_equal(segment, clean.user_cluster)


def test_make_interactions_signal_is_learnable_from_features():
    frame = make_interactions(n_users=300, random_state=0).frame
    train, test = train_test_split(frame, test_size=0.3, random_state=0)

    def held_out_auc(columns):
        model = make_pipeline(OneHotEncoder(handle_unknown="ignore"), LogisticRegression())
        model.fit(train[columns].astype(str), train["label"])
        return roc_auc_score(test["label"], model.predict_proba(test[columns].astype(str))[:, 1])

    train, test = (df.assign(pair=df["segment"] + "|" + df["category"]) for df in (train, test))
    features_auc = held_out_auc(["pair"])
    ids_auc = held_out_auc(["user_id", "item_id"])
    assert features_auc > 0.7
    assert features_auc > ids_auc + 0.1


def test_make_interactions_rejects_bad_parameters():
    with pytest.raises(ValueError, match="interactions_per_user == 11, must be <= 10"):
        make_interactions(n_items=10, interactions_per_user=11)
    with pytest.raises(ValueError, match="feature_noise"):
        make_interactions(feature_noise=1.5)
    with pytest.raises(TypeError, match="n_users"):
        make_interactions(n_users=2.5)


# --------------------------------------------------------------------------- make_geo_interactions

KINDS_WITH_MEASURE = {
    "poi": None, "place": None, "traffic": None, "transport": None, "road": "length",
    "railway": "length", "waterway": "length", "building": "area", "landuse": "area",
    "natural": "area", "water": "area",
}  # fmt: skip


@pytest.fixture(scope="module")
def geo():
    return make_geo_interactions(random_state=0)


def test_geo_layout(geo):
    expected = ["item_id"] + [
        f"{kind}_{what}_{radius}"
        for radius in (100, 200, 500)
        for kind, measure in KINDS_WITH_MEASURE.items()
        for what in ("count", measure)
        if what
    ]
    items = geo["items"]
    assert items.columns.tolist() == expected
    assert (items.dtypes.iloc[1:] == "float64").all()
    assert items["item_id"].tolist() == list(range(1, 501))
    assert geo["users"]["user_id"].tolist() == list(range(1, 301))
    assert geo.interactions.dtypes.astype(str).to_dict() == INTERACTION_DTYPES
    assert (geo.interactions.groupby("user_id")["item_id"].nunique() == 30).all()
    assert geo.interactions["rating"].isin([1, 2, 3, 4, 5]).all()
    assert geo.frame.columns.tolist() == [*INTERACTION_DTYPES, *expected[1:]]
    assert geo.user_preference.shape == (300, 3) and geo.item_factors.shape == (500, 3)


def test_geo_features_nest_and_scale_with_the_radius(geo):
    items = geo["items"]
    for column in items.columns[1:].str.removesuffix("_100")[:18]:
        assert (items[f"{column}_500"] >= items[f"{column}_200"]).all(), column
        assert (items[f"{column}_200"] >= items[f"{column}_100"]).all(), column
        # Zero at 100 m but not 200 m is fine; the reverse would break nesting.
        assert not ((items[f"{column}_100"] > 0) & (items[f"{column}_200"] == 0)).any(), column

    def growth(column):  # median ratio between the 500 m and 100 m values
        return (items[f"{column}_500"] / items[f"{column}_100"]).replace(np.inf, np.nan).median()

    assert 15 < growth("poi_count") < 40  # ~ (500 / 100) ** 2 = 25
    assert 15 < growth("building_area") < 40
    assert 3 < growth("road_length") < 8  # ~ 500 / 100 = 5


def test_geo_features_are_heavy_tailed_correlated_and_differently_scaled(geo):
    items = geo["items"]
    for kind in KINDS_WITH_MEASURE:
        assert stats.skew(items[f"{kind}_count_500"]) > 1, kind
    assert items["poi_count_500"].max() / items["poi_count_500"].median() > 10
    assert (items["railway_count_100"] == 0).mean() > 0.5
    assert (items["water_area_500"] == 0).mean() > 0.4
    rho = items.corr(method="spearman")
    assert rho.loc["poi_count_500", "building_count_500"] > 0.4
    assert rho.loc["building_count_500", "building_area_500"] > 0.4
    assert rho.loc["poi_count_500", "natural_area_500"] < -0.2
    medians = items.iloc[:, 1:].median()
    assert medians.max() / medians[medians > 0].min() > 1e4


def test_geo_is_determined_by_random_state(geo):
    again = make_geo_interactions(random_state=0)
    pd.testing.assert_frame_equal(geo.frame, again.frame)
    np.testing.assert_array_equal(geo.user_preference, again.user_preference)
    assert not make_geo_interactions(random_state=1)["items"].equals(geo["items"])


def test_geo_ratings_follow_the_planted_preference(geo):
    frame = geo.frame
    preference = geo.user_preference[frame.user_id - 1]
    score = (preference * geo.item_factors[frame.item_id - 1]).sum(axis=1)
    per_user = pd.DataFrame({"user": frame.user_id, "rating": frame.rating, "score": score})
    rho = per_user.groupby("user")[["rating", "score"]].corr(method="spearman").xs("score", level=1)
    assert rho["rating"].median() > 0.7

    # A linear model on log-scaled, standardised features, one per preference archetype,
    # predicts held-out centred ratings better than their mean (R^2 > 0).
    centred = frame.rating - frame.groupby("user_id").rating.transform("mean")
    archetype = geo.user_archetype[frame.user_id - 1]
    features = frame[geo["items"].columns[1:]]
    train, test = train_test_split(np.arange(len(frame)), test_size=0.3, random_state=0)
    for group in range(len(geo.factor_names)):
        fit_rows, eval_rows = train[archetype[train] == group], test[archetype[test] == group]
        model = make_pipeline(FunctionTransformer(np.log1p), StandardScaler(), Ridge())
        model.fit(features.iloc[fit_rows], centred.iloc[fit_rows])
        assert r2_score(centred.iloc[eval_rows], model.predict(features.iloc[eval_rows])) > 0.25


def test_geo_rejects_bad_radii():
    for radii in [(200, 100), (), (100, 100), (0, 100), (100.5,)]:
        with pytest.raises(ValueError, match="radii must be"):
            make_geo_interactions(radii=radii)
