"""The packages import only downward (the layers contract in pyproject.toml, checked by import-linter): a
kernel, a pass or the runtime reaching up into a client or the pipeline fails here, with the import chain."""

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_layers_import_only_downward_and_top_level_packages_have_no_cycles(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    status = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert status == 0, report
    assert report.count("KEPT") == 2
