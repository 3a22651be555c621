"""The `dnnfusion` command: info, ops, demo. Errors print as one line (no traceback) and exit with status 2."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from . import ops
from .errors import DnnfusionError
from .ir import dtypes
from .ir.graph import Graph

console = Console()
err_console = Console(stderr=True)


def parse_shapes(specs: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """`NAME=D0,D1,...` strings as an input_shapes dict."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, sep, dims = spec.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            raise click.BadParameter(f"'{spec}' is not NAME=D0,D1,... (e.g. input_ids=1,128)", param_hint="--shape")
    return shapes


@contextmanager
def step(message: str) -> Iterator[None]:
    """A spinner while a step runs (only on a terminal)."""
    with console.status(message, spinner="dots"):
        yield


def human(n: float, unit: str = "") -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {suffix}{unit}"
    return f"{n:.0f} {unit}".rstrip()


def fmt_shape(shape: tuple | None) -> str:
    return "?" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def io_table(graph: Graph) -> Table:
    table = Table(title="inputs and outputs", title_justify="left")
    for col in ("", "name", "dtype", "shape"):
        table.add_column(col)
    for kind, values in (("input", graph.inputs), ("output", graph.outputs)):
        for v in values:
            table.add_row(kind, v.name, dtypes.name(v.dtype), fmt_shape(v.shape))
    return table


class _Group(click.Group):
    """Turns DnnfusionError into a one-line message and exit status 2."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except DnnfusionError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, markup=True, soft_wrap=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dnnfusion")
def main() -> None:
    """dnnfusion: an ahead-of-time compiler for ONNX models with aggressive operator fusion (DNNFusion, PLDI'21)."""


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--shape", "shapes", multiple=True, metavar="NAME=D0,D1,...",
              help="Bind an input's dynamic dimensions (repeat per input).")
@click.option("--top", default=15, show_default=True, help="How many operator types to list.")
def info(model: Path, shapes: tuple[str, ...], top: int) -> None:
    """Inputs/outputs with shapes, operator counts per mapping type, FLOPs and parameter bytes after folding."""
    from .ir import from_onnx, infer_shapes  # noqa: PLC0415
    from .rewrite import fold_constants  # noqa: PLC0415
    from .stats import graph_stats  # noqa: PLC0415

    input_shapes = parse_shapes(shapes)
    with step(f"importing {model.name}"):
        graph = from_onnx(model)
        loaded = sum(n.op_type != "Constant" for n in graph.nodes)
    with step("propagating static shapes and folding constants"):
        infer_shapes(graph, input_shapes)
        fold_constants(graph)
    stats = graph_stats(graph)
    console.print(f"[bold]{model.name}[/]  graph '{graph.name}'  opsets {graph.opsets}  producer: {graph.doc.get('producer') or '?'}",
                  highlight=False)
    console.print(io_table(graph))
    summary = Table(title="operators after folding", title_justify="left")
    summary.add_column("mapping type")
    summary.add_column("operators", justify="right")
    for mapping, count in stats.ops_by_mapping.items():
        summary.add_row(mapping, str(count))
    summary.add_row("[bold]total[/]", f"[bold]{stats.ops_total}[/]")
    console.print(summary)
    types = Table(title=f"most common operators (of {len(stats.ops_by_type)} types)", title_justify="left")
    types.add_column("operator")
    types.add_column("count", justify="right")
    types.add_column("mapping type")
    for op_type, count in list(stats.ops_by_type.items())[:top]:
        types.add_row(op_type, str(count), ops.get(op_type).mapping.value)
    console.print(types)
    console.print(f"operators as loaded: {loaded} (Constant nodes excluded); folded away: {loaded - stats.ops_total}")
    console.print(f"FLOPs per run: {human(stats.flops, 'FLOP')}   parameters: {human(stats.param_count)} "
                  f"({human(stats.param_bytes, 'B')})   intermediate results: {human(stats.irs_bytes, 'B')}")
    if stats.dynamic_values:
        console.print(f"[yellow]{len(stats.dynamic_values)} values have data-dependent extents[/] "
                      f"(e.g. {', '.join(stats.dynamic_values[:3])})")
    else:
        console.print("[green]every value has a static shape[/]")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--shape", "shapes", multiple=True, metavar="NAME=D0,D1,...",
              help="Bind an input's dynamic dimensions (repeat per input).")
@click.option("--inputs", "inputs_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An .npz of feeds by input name (default: seeded random feeds).")
@click.option("--check", is_flag=True, help="Compare the outputs with onnxruntime (rtol 1e-3, atol 1e-4).")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), help="Write the outputs to this .npz.")
def run(model: Path, shapes: tuple[str, ...], inputs_file: Path | None, check: bool, save: Path | None) -> None:
    """Run a model with the reference executor (the compiled runtime replaces it in a later stage)."""
    from .ir import load  # noqa: PLC0415
    from .oracle import compare, run_onnxruntime  # noqa: PLC0415
    from .runtime import ReferenceExecutor, random_feeds  # noqa: PLC0415

    with step(f"importing {model.name}"):
        graph = load(model, parse_shapes(shapes))
    if inputs_file is not None:
        with np.load(inputs_file) as data:
            feeds = {k: data[k] for k in data.files}
    else:
        feeds = random_feeds(graph)
    with step("running"):
        outputs = ReferenceExecutor(graph).run(feeds)
    table = Table(title="outputs", title_justify="left")
    for col in ("name", "dtype", "shape", "mean", "min", "max"):
        table.add_column(col)
    for name, array in outputs.items():
        numeric = array.dtype.kind in "biuf" and array.size
        stats = [f"{float(f(array)):.4g}" for f in (np.mean, np.min, np.max)] if numeric else ["", "", ""]
        table.add_row(name, dtypes.name(array.dtype), fmt_shape(array.shape), *stats)
    console.print(table)
    if save is not None:
        np.savez(save, **outputs)
    if check:
        with step("running onnxruntime"):
            theirs = run_onnxruntime(str(model), feeds)
        bad = [d for d in compare(outputs, theirs) if not d.ok]
        for d in compare(outputs, theirs):
            console.print(f"'{d.name}': max abs {d.max_abs:.2e}, max rel {d.max_rel:.2e}: "
                          + ("[green]match[/]" if d.ok else "[red]MISMATCH[/]"))
        if bad:
            raise DnnfusionError(f"{len(bad)} output(s) differ from onnxruntime beyond tolerance: "
                                 f"{', '.join(d.name for d in bad)}")


@main.command("ops")
@click.option("--mapping", type=click.Choice([m.value for m in ops.MappingType]), help="Only this mapping type.")
def list_ops(mapping: str | None) -> None:
    """The operator registry: each operator's mapping type and algebraic properties."""
    table = Table(title="dnnfusion operator registry", title_justify="left")
    for col in ("operator", "domain", "mapping type", "algebraic properties"):
        table.add_column(col)
    shown = [op for op in ops.all_ops() if mapping is None or op.mapping.value == mapping]
    for op in shown:
        table.add_row(op.op_type, op.domain or "ai.onnx", op.mapping.value, op.algebra.describe())
    console.print(table)
    console.print(f"{len(shown)} operators")


@main.command()
@click.option("--batch", default=2, show_default=True, help="Batch size bound to the demo's 'batch' dimension.")
@click.option("--seq", default=32, show_default=True, help="Sequence length bound to its 'seq' dimension.")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), help="Also write the demo model here.")
def demo(batch: int, seq: int, save: Path | None) -> None:
    """Run the built-in model through import, shape binding, folding and the reference executor, checked
    against onnxruntime."""
    from .demo import run_demo  # noqa: PLC0415

    run_demo(batch, seq, save, console)


if __name__ == "__main__":
    main()
