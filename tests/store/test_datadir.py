"""The data directory says what is wrong with it, naming the file, instead of a traceback."""

import pytest

from obsctl.errors import StorageError
from obsctl.store.datadir import DataDir

from ..mounts import tmpfs


def test_read_only_data_directory_is_named(tmp_path) -> None:
    with tmpfs(tmp_path / "data", read_only=True) as data:
        data_dir = DataDir(data)
        data_dir.create()  # it exists: nothing to create
        with (
            pytest.raises(StorageError, match=r"cannot create the lock .*obsctl.lock: Read-only"),
            data_dir.lock(),
        ):
            pass
        with pytest.raises(StorageError, match=r"cannot create the raw frames folder .*/raw"):
            data_dir.raw_store()
        with pytest.raises(StorageError, match=r"obsctl.sqlite: it cannot be written"):
            data_dir.open_log()


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("a.fits", "a"),
        ("a.fits.fz", "a"),  # not a.fits.fz_cal.fits
        ("a.fit.gz", "a"),
        ("a.FITS", "a"),
        ("a.fts.bz2", "a"),
        ("a.fz", "a"),
        ("a.b.fits", "a.b"),
        ("notes.txt", "notes.txt"),
    ],
)
def test_reduced_names_drop_fits_and_compression_suffixes(tmp_path, name, stem) -> None:
    calibrated, catalog = DataDir(tmp_path).reduced_files(tmp_path / "elsewhere" / name)
    assert calibrated.name == f"{stem}_cal.fits" and catalog.name == f"{stem}_cat.fits"
