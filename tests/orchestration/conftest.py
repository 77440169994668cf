"""A project folder per test module, with the `test` resources pointed at it."""

import shutil

import pytest

from tests.support.registries import make_registry


@pytest.fixture(scope="module")
def project_home(tmp_path_factory):
    """PERPFOLIO_HOME in a fresh temporary folder for the whole module."""
    home = tmp_path_factory.mktemp("perpfolio-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERPFOLIO_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    """An MLflow store with its tables and experiment created once (migrations take seconds)."""
    folder = tmp_path_factory.mktemp("mlflow-template")
    make_registry(folder).activate()
    return folder / "mlflow.db"


@pytest.fixture
def registry(tmp_path, empty_store):
    """A registry of its own per test, on a copy of the empty store."""
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    return make_registry(tmp_path)
