import numpy as np

from obsctl.processing.tables import with_columns


def test_with_columns_adds_and_replaces_without_touching_the_input() -> None:
    table = np.zeros(3, dtype=[("x", "f8"), ("flags", "i4")])
    table["x"] = [1.0, 2.0, 3.0]
    out = with_columns(table, {"flags": np.array([1, 2, 3], np.int16), "mag": [9.0, 8.0, 7.0]})
    assert out.dtype.names == ("x", "flags", "mag")
    assert out["flags"].dtype == np.int16 and out["flags"].tolist() == [1, 2, 3]
    assert out["x"].tolist() == [1.0, 2.0, 3.0] and out["mag"].tolist() == [9.0, 8.0, 7.0]
    assert table.dtype.names == ("x", "flags") and table["flags"].tolist() == [0, 0, 0]
    vectors = with_columns(table, {"xy": np.ones((3, 2))})
    assert vectors["xy"].shape == (3, 2)
    assert with_columns(table, {"ok": np.bool_(True)})["ok"].tolist() == [True] * 3
