"""The data the benchmarks load: red wine, the UCI sets, diabetes, the toy data.

- red wine: the red wines of the UCI Wine Quality data (1,599 rows, 11 inputs,
  target ``quality``), read from ``../shared/data/winequalityN.csv`` relative
  to the repository root; random 90/10 splits, split ``i`` made by
  ``train_test_split(test_size=0.1, random_state=i)``;
- diabetes: scikit-learn's, split as red wine;
- the UCI regression benchmark of Hernandez-Lobato & Adams (2015), read from
  ``../shared/data/uci/<folder>`` with the standard splits of the published
  tables (``index_train_K.txt`` / ``index_test_K.txt``);
- the toy data of the seed workload, ``make_toy_regression(random_state=0)``,
  and its query points.
"""

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_swag import make_toy_regression

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
WINE_CSV = DATA_DIR / "winequalityN.csv"
UCI_DIR = DATA_DIR / "uci"
UCI_FOLDERS = {  # name -> folder of ../shared/data/uci
    "concrete": "concrete",
    "energy": "energy",
    "kin8nm": "kin8nm",
    "naval": "naval-propulsion-plant",
    "power": "power-plant",
    "protein": "protein-tertiary-structure",
    "wine-red": "wine-quality-red",
    "yacht": "yacht",
}
OTHER_DATA = ["wine", "diabetes"]
ALL_DATA = [*OTHER_DATA, *UCI_FOLDERS]
RANDOM_SPLITS = 20  # random 90/10 splits of wine and diabetes


@dataclass
class DataSet:
    name: str
    X: np.ndarray
    y: np.ndarray
    splits: list  # (train rows, test rows) per split
    available: int  # splits the data set has
    capped: list = field(default_factory=list)  # (split, rows before the cap)

    def parts(self, n_splits=None):
        """``(X_train, X_test, y_train, y_test)`` of the first ``n_splits`` splits."""
        for train, test in self.splits[:n_splits]:
            yield self.X[train], self.X[test], self.y[train], self.y[test]


def random_splits(n_rows, n_splits=RANDOM_SPLITS):
    """``(train rows, test rows)`` of split ``i``: ``train_test_split``, 10% test."""
    rows = np.arange(n_rows)
    return [
        tuple(train_test_split(rows, test_size=0.1, random_state=i))
        for i in range(n_splits)
    ]


def load_wine():
    """The red wines: ``X`` (NaN where a value is missing) and ``quality``."""
    with WINE_CSV.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [row[1:] for row in reader if row[0] == "red"]
    values = np.array([[float(v) if v else np.nan for v in row] for row in rows])
    assert header[-1] == "quality" and values.shape[1] == 11 + 1, header
    return values[:, :-1], values[:, -1]


def load_uci(folder):
    """``X``, ``y`` and the standard ``(train, test)`` splits of a UCI ``folder``."""

    def ints(name):
        return np.atleast_1d(np.loadtxt(folder / name, dtype=int))

    data = np.loadtxt(folder / "data.txt", ndmin=2)
    X, y = data[:, ints("index_features.txt")], data[:, ints("index_target.txt")[0]]
    n_splits = int(ints("n_splits.txt")[0])
    splits = [
        (ints(f"index_train_{k}.txt"), ints(f"index_test_{k}.txt"))
        for k in range(n_splits)
    ]
    return X, y, splits


def load_data(name):
    """The data set ``name`` of ``ALL_DATA`` with its splits.

    Raises ``OSError`` naming the file or folder when its files are absent.
    """
    if name == "wine":
        if not WINE_CSV.is_file():
            raise FileNotFoundError(f"{WINE_CSV} not found")
        X, y = load_wine()
        return DataSet(name, X, y, random_splits(len(y)), RANDOM_SPLITS)
    if name == "diabetes":
        X, y = load_diabetes(return_X_y=True)
        return DataSet(name, X, y, random_splits(len(y)), RANDOM_SPLITS)
    folder = UCI_DIR / UCI_FOLDERS[name]
    try:
        X, y, splits = load_uci(folder)
    except OSError as exc:
        raise OSError(f"{folder}: {exc}") from exc
    return DataSet(name, X, y, splits, len(splits))


def preprocessing(*steps):
    """``SimpleImputer(strategy="median") -> StandardScaler() -> *steps``."""
    return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), *steps)


def toy_data():
    """The seed workload's 100 points, ``make_toy_regression(random_state=0)``."""
    return make_toy_regression(random_state=0)


def toy_query(n_rows=1000):
    """``n_rows`` query points of the toy data, evenly spaced over [-0.5, 1]."""
    return np.linspace(-0.5, 1.0, n_rows).reshape(-1, 1)
