"""Every test process gets its own cache directory, so tests never read or write the user's cache."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DNNFUSION_CACHE_DIR", str(tmp_path_factory.mktemp("dnnfusion-cache")))
        yield
