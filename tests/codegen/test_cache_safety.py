"""The compile cache is never trusted blindly: a truncated, foreign or unloadable cached library is discarded and
rebuilt (right numbers, no crash), cache folders are created 0700 whatever the umask, folders that are not private
to the user are refused with a CacheError, and `dnnfusion cache info|clear` report and empty the cache."""

import hashlib
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from onnx import helper

import dnnfusion
from dnnfusion.cache import cache_dir, current_uid
from dnnfusion.cli import main
from dnnfusion.codegen.build import manifest_path
from dnnfusion.errors import CacheError
from tests.helpers import FLOAT, make_model

RNG = np.random.default_rng(7)
X, B = RNG.standard_normal((4, 6)).astype(np.float32), RNG.standard_normal(6).astype(np.float32)


def model(op):
    """relu(op(x, b)): Add and Mul give libraries with the same entry points and different numbers."""
    nodes = [helper.make_node(op, ["x", "b"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    return make_model(nodes, [("x", FLOAT, [4, 6]), ("b", FLOAT, [6])], ["y"])


def compile_add():
    compiled = dnnfusion.compile(model("Add"), opt_level="O3")
    np.testing.assert_allclose(compiled.run({"x": X, "b": B})["y"], np.maximum(X + B, 0), rtol=1e-6)
    return compiled


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The Add and Mul libraries with their manifests, built in a cache of their own (and loaded from there)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DNNFUSION_CACHE_DIR", str(tmp_path_factory.mktemp("first-cache")))
        add = dnnfusion.compile(model("Add"), opt_level="O3").library_path
        mul = dnnfusion.compile(model("Mul"), opt_level="O3").library_path
    assert add.name != mul.name
    return add, mul


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty private cache whose kernels folder this process has never loaded a library from (the loader
    would hand back an already-loaded library by its path, hiding what is on disk)."""
    monkeypatch.setenv("DNNFUSION_CACHE_DIR", str(tmp_path / "cache"))
    return cache_dir("kernels")


def plant(kernels, name, data, manifest):
    """A cache entry as a new file (never rewriting a library this process has mapped) and its manifest."""
    (kernels / name).write_bytes(data)
    if manifest is not None:
        manifest_path(kernels / name).write_text(manifest)


def assert_vouched(library):
    manifest = json.loads(manifest_path(library).read_text())
    assert {"key", "source_sha256", "library_sha256"} <= manifest.keys()
    assert manifest["library_sha256"] == hashlib.sha256(library.read_bytes()).hexdigest()


def test_truncated_cached_library_is_rebuilt(built, fresh_cache):
    add, _ = built
    data = add.read_bytes()
    plant(fresh_cache, add.name, data[:len(data) // 2], manifest_path(add).read_text())
    compiled = compile_add()
    assert compiled.library_path == fresh_cache / add.name and compiled.library_path.stat().st_size > len(data) // 2
    assert_vouched(compiled.library_path)


def test_another_models_library_at_this_name_is_rebuilt(built, fresh_cache):
    add, mul = built
    plant(fresh_cache, add.name, mul.read_bytes(), manifest_path(add).read_text())
    assert_vouched(compile_add().library_path)


def test_another_models_library_with_its_own_manifest_is_rebuilt(built, fresh_cache):
    add, mul = built
    plant(fresh_cache, add.name, mul.read_bytes(), manifest_path(mul).read_text())
    assert_vouched(compile_add().library_path)


@pytest.mark.parametrize("manifest", [None, "{not json", "[]"])
def test_missing_or_broken_manifest_is_rebuilt(built, fresh_cache, manifest):
    add, mul = built
    plant(fresh_cache, add.name, mul.read_bytes(), manifest)
    assert_vouched(compile_add().library_path)


def test_library_the_loader_rejects_is_rebuilt_once(built, fresh_cache):
    add, _ = built
    garbage = b"\x7fELF not really a library"
    manifest = {**json.loads(manifest_path(add).read_text()), "library_sha256": hashlib.sha256(garbage).hexdigest()}
    plant(fresh_cache, add.name, garbage, json.dumps(manifest))
    compiled = compile_add()
    assert compiled.library_path.read_bytes() != garbage
    assert_vouched(compiled.library_path)


def test_valid_cache_entry_is_reused(built, fresh_cache):
    add, _ = built
    plant(fresh_cache, add.name, add.read_bytes(), manifest_path(add).read_text())
    compiled = compile_add()
    assert compiled.library_path.read_bytes() == add.read_bytes()
    assert not (fresh_cache / f"{add.stem}.c").exists()          # reused: nothing was compiled


@pytest.mark.parametrize("open_folder", ["", "kernels"])
def test_folder_writable_by_others_is_refused(tmp_path, monkeypatch, open_folder):
    root = tmp_path / "cache"
    monkeypatch.setenv("DNNFUSION_CACHE_DIR", str(root))
    cache_dir("kernels")
    os.chmod(root / open_folder, 0o777)
    with pytest.raises(CacheError, match="writable by group/others") as error:
        cache_dir("kernels")
    message = str(error.value)
    assert f"{root / open_folder} " in message and "0777" in message and "chmod go-w" in message
    assert "\n" not in message
    with pytest.raises(CacheError):
        dnnfusion.compile(model("Add"), opt_level="O3")


def test_parents_of_the_root_are_not_checked(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)                                      # like /tmp
    monkeypatch.setenv("DNNFUSION_CACHE_DIR", str(shared / "cache"))
    assert cache_dir("kernels").is_dir()


def test_folders_are_created_private_whatever_the_umask(tmp_path, monkeypatch):
    root = tmp_path / "home" / ".cache" / "dnnfusion"
    monkeypatch.setenv("DNNFUSION_CACHE_DIR", str(root))
    old = os.umask(0)
    try:
        kernels = cache_dir("kernels")
    finally:
        os.umask(old)
    for folder in (kernels, root, root.parent, root.parent.parent):
        assert folder.stat().st_mode & 0o777 == 0o700, folder


def test_folder_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("DNNFUSION_CACHE_DIR", str(root))
    cache_dir("kernels")
    with pytest.raises(CacheError, match=f"{root} is owned by uid {os.stat(root).st_uid}") as error:
        cache_dir("kernels", uid=current_uid() + 1)
    assert "DNNFUSION_CACHE_DIR" in str(error.value)
    if os.geteuid() == 0:                                         # as root: a real foreign owner
        os.chown(root / "kernels", 4242, 4242)
        with pytest.raises(CacheError, match=f"{root / 'kernels'} is owned by uid 4242"):
            cache_dir("kernels")


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_cache_info_and_clear(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("DNNFUSION_CACHE_DIR", str(root))
    library = compile_add().library_path
    result = invoke("cache", "info")
    assert result.exit_code == 0, result.output
    assert str(root) in result.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in result.output.splitlines() if line.count("│") == 5}
    # the model library and the thread pool library it links against
    assert rows["built libraries"][:2] == ["kernels/", "2"] and rows["zoo exports"][1] == "0"
    assert rows["profile DB"][:2] == ["profiles.sqlite", "1"]

    result = invoke("cache", "clear")
    assert result.exit_code == 0, result.output
    assert "removed 2 built libraries" in result.output
    assert not library.exists() and list((root / "kernels").iterdir()) == []
    assert (root / "profiles.sqlite").exists()

    result = invoke("cache", "clear", "--all")
    assert result.exit_code == 0, result.output
    assert "profiles.sqlite" in result.output and list(root.iterdir()) == []
    assert "nothing to remove" in invoke("cache", "clear", "--all").output
    compile_add()                                                 # and the emptied cache works again


def test_cache_commands_refuse_an_open_folder(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("DNNFUSION_CACHE_DIR", str(root))
    root.mkdir()
    os.chmod(root, 0o777)
    for command in (["cache", "info"], ["cache", "clear", "--all"]):
        result = invoke(*command)
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert " ".join(result.output.split()).startswith("error: cache folder") and "chmod go-w" in result.output
    assert root.exists()


def test_cache_help():
    for command in (["cache"], ["cache", "info"], ["cache", "clear"]):
        result = invoke(*command, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output
