"""A project folder per test module, with the `test` resources pointed at it."""

import pytest


@pytest.fixture(scope="module")
def project_home(tmp_path_factory):
    """PERPFOLIO_HOME in a fresh temporary folder for the whole module."""
    home = tmp_path_factory.mktemp("perpfolio-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERPFOLIO_HOME", str(home))
        yield home
