"""The `dnnfusion` command: info, ops, demo. Errors print as one line (no traceback) and exit with status 2."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import click
import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import ops
from .errors import DnnfusionError
from .ir import dtypes
from .ir.graph import Graph

if TYPE_CHECKING:
    from .fusion import Plan

# Piped output (logs, CI) gets 120 columns so the wider tables do not wrap; a terminal keeps its own width.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
WINOGRAD_HELP = ("Run no 3x3 convolution as Winograd products: results bit-close to a direct convolution, "
                 "slower (docs/WINOGRAD.md).")
TUNE_HELP = ("Time each convolution's candidate methods (Winograd forms, direct) in the compiled model and take the "
             "fastest, instead of the estimate's choice; timings are kept in the profile database, so later "
             "compiles reuse them.")


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
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dnnfusion")
def main() -> None:
    """dnnfusion: an ahead-of-time compiler for ONNX models with aggressive operator fusion (DNNFusion, PLDI'21)."""


@main.command()
@click.argument("model")
@click.option("--shape", "shapes", multiple=True, metavar="NAME=D0,D1,...",
              help="Bind an input's dynamic dimensions (repeat per input).")
@click.option("--top", default=15, show_default=True, help="How many operator types to list.")
def info(model: str, shapes: tuple[str, ...], top: int) -> None:
    """MODEL (an .onnx file or a zoo model name): inputs/outputs with shapes, operator counts per mapping type,
    FLOPs and parameter bytes after folding."""
    from .ir import from_onnx  # noqa: PLC0415
    from .passes import fold_constants, infer_shapes  # noqa: PLC0415
    from .stats import graph_stats  # noqa: PLC0415

    model, zoo_shapes = _model_source(model)
    input_shapes = {**zoo_shapes, **parse_shapes(shapes)}
    with step(f"importing {model.name}"):
        graph = from_onnx(model)
        loaded = len(graph.operators())
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


def _read_feeds(inputs_file: Path | None, named: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """Feeds from an .npz and/or NAME=FILE.npy options; None when neither was given."""
    feeds: dict[str, np.ndarray] = {}
    if inputs_file is not None:
        with np.load(inputs_file) as data:
            feeds.update({k: data[k] for k in data.files})
    for spec in named:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise click.BadParameter(f"'{spec}' is not NAME=FILE.npy", param_hint="--input")
        try:
            feeds[name] = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DnnfusionError(f"cannot read input '{name}' from {file}: {e}") from e
    return feeds if inputs_file is not None or named else None


@main.command()
@click.argument("model")
@click.option("--shape", "shapes", multiple=True, metavar="NAME=D0,D1,...",
              help="Bind an input's dynamic dimensions (repeat per input).")
@click.option("--inputs", "inputs_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An .npz of feeds by input name (default: seeded random feeds).")
@click.option("--input", "named", multiple=True, metavar="NAME=FILE.npy", help="One input from a .npy file.")
@click.option("--opt", "level", type=click.Choice(["O0", "O1", "O2", "O3"]), default="O3", show_default=True)
@click.option("--reference", is_flag=True, help="Run the numpy reference executor instead of compiled code.")
@click.option("--check", is_flag=True, help="Compare the outputs with onnxruntime (rtol 1e-3, atol 1e-4).")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), help="Write the outputs to this .npz.")
@click.option("--no-winograd", "no_winograd", is_flag=True, help=WINOGRAD_HELP)
@click.option("--tune", is_flag=True, help=TUNE_HELP)
def run(model: str, shapes: tuple[str, ...], inputs_file: Path | None, named: tuple[str, ...], level: str,
        reference: bool, check: bool, save: Path | None, no_winograd: bool, tune: bool) -> None:
    """Compile MODEL (an .onnx file or a zoo model name) and run it once; --check compares with onnxruntime."""
    from .oracle import compare, run_onnxruntime  # noqa: PLC0415
    from .runtime import ReferenceExecutor, random_feeds  # noqa: PLC0415

    path, zoo_shapes = _model_source(model)
    input_shapes = {**zoo_shapes, **parse_shapes(shapes)}
    feeds = _read_feeds(inputs_file, named)
    if feeds is not None:
        input_shapes = {**{k: v.shape for k, v in feeds.items()}, **input_shapes}
    if reference:
        from .pipeline import load  # noqa: PLC0415

        with step(f"importing {path.name}"):
            executor = ReferenceExecutor(load(path, input_shapes))
        graph = executor.graph
    else:
        from .pipeline import compile_model  # noqa: PLC0415

        with step(f"compiling {path.name} at {level}"):
            executor = compile_model(path, input_shapes, opt_level=level, winograd=not no_winograd, tune=tune)
        graph = executor.graph
    if feeds is None:
        feeds = random_feeds(graph)
    with step("running"):
        outputs = executor.run(feeds)
    if not reference:
        stats = executor.stats
        console.print(f"compiled: {stats['blocks']} kernels for {stats['ops_before']} operators, arena "
                      f"{human(stats['arena_bytes'], 'B')}, {len(stats['fallback_ops'])} fallback operator(s), "
                      f"{stats['compile_seconds']:.2f} s", highlight=False)
    table = Table(title="outputs", title_justify="left")
    for col in ("name", "dtype", "shape", "mean", "min", "max"):
        table.add_column(col)
    for name, array in outputs.items():
        numeric = array.dtype.kind in "biuf" and array.size
        stats_ = [f"{float(f(array)):.4g}" for f in (np.mean, np.min, np.max)] if numeric else ["", "", ""]
        table.add_row(name, dtypes.name(array.dtype), fmt_shape(array.shape), *stats_)
    console.print(table)
    if save is not None:
        np.savez(save, **outputs)
    if check:
        with step("running onnxruntime"):
            theirs = run_onnxruntime(str(path), feeds)
        diffs = compare(outputs, theirs)
        for d in diffs:
            console.print(f"'{d.name}': max abs {d.max_abs:.2e}, max rel {d.max_rel:.2e}: "
                          + ("[green]match[/]" if d.ok else "[red]MISMATCH[/]"))
        bad = [d for d in diffs if not d.ok]
        if bad:
            raise DnnfusionError(f"{len(bad)} output(s) differ from onnxruntime beyond tolerance: "
                                 f"{', '.join(d.name for d in bad)}")


@main.command("compile")
@click.argument("model")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for model.c, the shared library, plan.html and stats.json.")
@click.option("--shape", "shapes", multiple=True, metavar="NAME=D0,D1,...",
              help="Bind an input's dynamic dimensions (repeat per input).")
@click.option("--opt", "level", type=click.Choice(["O0", "O1", "O2", "O3"]), default="O3", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="Threads the compiled model runs with.")
@click.option("--json", "as_json", is_flag=True, help="Print the compile statistics as one JSON object.")
@click.option("--no-winograd", "no_winograd", is_flag=True, help=WINOGRAD_HELP)
@click.option("--tune", is_flag=True, help=TUNE_HELP)
def compile_command(model: str, out_dir: Path, shapes: tuple[str, ...], level: str, threads: int | None,
                    as_json: bool, no_winograd: bool, tune: bool) -> None:
    """Compile MODEL (an .onnx file or a zoo model name) and write its C source, library and plan report."""
    import json  # noqa: PLC0415
    import shutil  # noqa: PLC0415

    from .pipeline import compile_model  # noqa: PLC0415
    from .report import write_plan_html  # noqa: PLC0415

    path, zoo_shapes = _model_source(model)
    with step(f"compiling {path.name} at {level}"):
        compiled = compile_model(path, {**zoo_shapes, **parse_shapes(shapes)}, opt_level=level, threads=threads,
                                 winograd=not no_winograd, tune=tune)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.c").write_text(compiled.source)
    if compiled.library_path is not None:
        shutil.copyfile(compiled.library_path, out_dir / "model.so")
    write_plan_html(compiled.plan, out_dir / "plan.html", title=f"{compiled.graph.name} (compiled)",
                    methods=compiled.program.methods)
    (out_dir / "stats.json").write_text(json.dumps(compiled.stats, indent=1))
    if as_json:
        click.echo(json.dumps(compiled.stats))
        return
    stats = compiled.stats
    console.print(f"{stats['ops_before']} operators -> {stats['blocks']} kernels ({stats['fusion_rate']:.2f}x), "
                  f"arena {human(stats['arena_bytes'], 'B')}, {stats['native_calls_per_run']} native call(s) per "
                  f"run, {len(stats['fallback_ops'])} fallback operator(s), {stats['compile_seconds']:.2f} s",
                  highlight=False)
    for method, count in stats["kernel_methods"].items():
        console.print(f"{count} kernel(s) as {method}", highlight=False)
    console.print(f"wrote {out_dir}/model.c, model.so, plan.html, stats.json", highlight=False)


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
@click.option("--threads", type=click.IntRange(min=1), help="Threads for every runtime (default: all cores).")
@click.option("--rounds", default=50, show_default=True, help="Timed runs per runtime (in turns of 10 runs).")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), help="Also write the demo model here.")
def demo(batch: int, seq: int, threads: int | None, rounds: int, save: Path | None) -> None:
    """Compile the built-in transformer layer, check it against onnxruntime, and time both side by side."""
    from .demo import run_demo  # noqa: PLC0415

    run_demo(batch, seq, save, console, threads, rounds)


@main.group()
def zoo() -> None:
    """The paper's 15 models, built from code with random weights and exported to ONNX (needs the zoo extra)."""


@zoo.command("list")
@click.option("--small", is_flag=True, help="Describe the small (test) configurations.")
@click.option("--export-missing", is_flag=True, help="Export models not yet in the cache to fill in their figures.")
def zoo_list(small: bool, export_missing: bool) -> None:
    """Name, task, input, parameters, FLOPs and operator count of every zoo model (figures come from the export
    cache; `--export-missing` builds what is not there yet)."""
    from .zoo import export, registry  # noqa: PLC0415

    table = Table(title=f"dnnfusion model zoo ({'small' if small else 'default'} configurations, opset "
                        f"{export.DEFAULT_OPSET})", title_justify="left")
    for col, justify in (("model", "left"), ("task", "left"), ("input", "left"), ("params", "right"),
                         ("FLOPs", "right"), ("ops", "right"), ("paper ops", "right")):
        table.add_column(col, justify=justify, no_wrap=True)
    missing = 0
    for name in registry.names():
        model = registry.get(name)
        if export_missing:
            with step(f"exporting {name}"):
                found = export.export(name, small=small)
        else:
            found = export.cached(name, small=small)
        missing += found is None
        figures = ["-", "-", "-"] if found is None else [
            human(found.stats["params"]), human(found.stats["flops"]), str(found.stats["ops_before"])]
        table.add_row(name, model.task, model.input_desc(model.config(small=small)), *figures,
                      str(model.paper.ops_before))
    console.print(table)
    if missing:
        console.print(f"{missing} model(s) not exported yet: their figures show as '-' "
                      "(`dnnfusion zoo list --export-missing` fills them in).")


@zoo.command("export")
@click.argument("name")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write NAME.onnx (and NAME.npz) here.")
@click.option("--small", is_flag=True, help="The small configuration (same structure, fewer channels/layers).")
@click.option("--seq", type=click.IntRange(min=1), help="Sequence length (transformers).")
@click.option("--image", type=click.IntRange(min=1), help="Image size (vision models).")
@click.option("--opset", default=13, show_default=True, help="ONNX opset (13: LayerNorm/GELU decomposed, "
              "as in the paper; 17/20 bring them as single operators).")
@click.option("--no-cache", is_flag=True, help="Export afresh even if the cache has this configuration.")
def zoo_export(name: str, output: Path | None, small: bool, seq: int | None, image: int | None, opset: int,
               no_cache: bool) -> None:
    """Export zoo model NAME to ONNX with a sample input (.npz); cached by name, configuration and versions."""
    from .zoo import export, registry  # noqa: PLC0415

    model = registry.get(name)
    size = seq if seq is not None else image
    if seq is not None and image is not None or {"seq": image, "image": seq}.get(model.size_key) is not None:
        raise registry.ZooError(f"zoo model '{name}' takes --{model.size_key}, not "
                                f"--{'image' if model.size_key == 'seq' else 'seq'}")
    with console.status(f"exporting {name}", spinner="dots") as status:
        result = export.export(name, small=small, size=size, opset=opset, output=output, use_cache=not no_cache,
                               progress=lambda message: status.update(message))
    stats = result.stats
    console.print(f"[bold]{result.model_path}[/]  ({human(result.model_path.stat().st_size, 'B')})", highlight=False)
    console.print(f"sample input: {result.inputs_path}  "
                  + "  ".join(f"{k}={'x'.join(map(str, v))}" for k, v in result.input_shapes.items()), highlight=False)
    console.print(f"exporter: {result.exporter}, opset {result.opset}", highlight=False)
    console.print(f"operators: {stats['ops_before']} as exported ({stats['ops_after_folding']} after folding); "
                  + ", ".join(f"{k} {v}" for k, v in stats["ops_by_mapping"].items()), highlight=False)
    console.print(f"FLOPs {human(stats['flops'], 'FLOP')}, parameters {human(stats['params'])}, "
                  f"intermediate results {human(stats['irs_bytes'], 'B')}", highlight=False)


def _model_source(model: str) -> tuple[Path, dict[str, tuple[int, ...]]]:
    """A model path, or a zoo model name (its cached default export, with the sample input's shapes)."""
    path = Path(model)
    if path.exists() or path.suffix == ".onnx":
        return path, {}
    from .zoo import export, registry  # noqa: PLC0415

    if model not in registry.MODELS:
        raise DnnfusionError(f"'{model}' is neither a file nor a zoo model ({', '.join(registry.names())})")
    with step(f"exporting zoo model {model}"):
        result = export.export(model)
    return result.model_path, {k: tuple(v) for k, v in result.input_shapes.items()}


@main.command()
@click.argument("model")
@click.option("--shape", "shapes", multiple=True, metavar="NAME=D0,D1,...",
              help="Bind an input's dynamic dimensions (repeat per input).")
@click.option("--opt", "level", type=click.Choice(["O0", "O1", "O2", "O3"]), default="O3", show_default=True,
              help="O0 one block per operator, O1 fixed patterns (TVM/ORT-like), O2/O3 DNNFusion.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan statistics as one JSON object.")
@click.option("--why", is_flag=True, help="List the merges the planner rejected, grouped by reason.")
@click.option("--html", type=click.Path(dir_okay=False, path_type=Path), help="Draw the plan into this HTML file.")
@click.option("--onnx", "onnx_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the fused graph here, each block an ONNX function (domain dnnfusion; opens in Netron).")
@click.option("--profile-db", "db_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Profile database file (default: the user cache directory).")
def plan(model: str, shapes: tuple[str, ...], level: str, as_json: bool, why: bool, html: Path | None,
         onnx_out: Path | None, db_path: Path | None) -> None:
    """Plan the fusion of MODEL (an .onnx file or a zoo model name): blocks, statistics and why-not-fused."""
    import json  # noqa: PLC0415

    from .fusion import ProfileDB  # noqa: PLC0415
    from .pipeline import plan_model  # noqa: PLC0415

    path, zoo_shapes = _model_source(model)
    with step(f"planning {path.name} at {level}"):
        result = plan_model(path, {**zoo_shapes, **parse_shapes(shapes)}, level, ProfileDB(db_path))
    stats = result.stats()
    if html is not None:
        from .report import write_plan_html  # noqa: PLC0415

        chosen = {position: found[0][0] for position, found in result.kernel_choices().items()}
        write_plan_html(result, html, title=f"{model} at {level}", methods=chosen)
    if onnx_out is not None:
        import onnx  # noqa: PLC0415

        from .fusion.onnx_blocks import fused_model  # noqa: PLC0415

        onnx.save(fused_model(result), onnx_out)
    if as_json:
        click.echo(json.dumps(stats))
        return
    _print_plan(result, stats)
    if why:
        _print_why(result)
    for label, target in (("plan drawing", html), ("fused ONNX graph", onnx_out)):
        if target is not None:
            console.print(f"{label}: {target}", highlight=False)


def _print_plan(result: Plan, stats: dict) -> None:
    table = Table(title=f"fusion plan ({stats['level']})", title_justify="left")
    table.add_column("")
    table.add_column("value", justify="right")
    rows = [("operators before (as loaded)", stats["ops_before"]), ("operators after folding", stats["ops_after_folding"]),
            ("blocks (kernels per run)", stats["blocks"]), ("fusion rate", f"{stats['fusion_rate']:.2f}x"),
            ("IRS before", human(stats["irs_bytes_before"], "B")), ("IRS after (crossing blocks)", human(stats["irs_bytes_after"], "B")),
            ("largest block (operators)", stats["largest_block"]),
            ("yellow cells fused / rejected", f"{stats['yellow_fused']} / {stats['yellow_rejected']}"),
            ("profile DB hits / misses", f"{stats['profile_db_hits']} / {stats['profile_db_misses']}"),
            ("planning time", f"{stats['plan_seconds']:.2f} s")]
    for label, value in rows:
        table.add_row(label, str(value))
    console.print(table)
    console.print("blocks by fused mapping type: " + ", ".join(f"{k} {v}" for k, v in stats["blocks_by_type"].items()),
                  highlight=False)
    for note in result.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)


def _print_kernel_choices(result: Plan) -> None:
    """One row per block whose template chooses its method: the chosen one, then each alternative with its
    estimated time relative to the chosen (`Op.kernel_choices`; `--no-winograd` on compile/run turns it off)."""
    choices = result.kernel_choices()
    if not choices:
        return
    table = Table(title=f"kernel methods chosen by estimate ({len(choices)} blocks)", title_justify="left")
    for col in ("block", "operator", "chosen", "alternatives (estimated time vs chosen)"):
        table.add_column(col, overflow="fold")
    for position, found in choices.items():
        block = result.blocks[position]
        (chosen, best), others = found[0], found[1:]
        anchor = next((op for op in block.ops if op.mapping is ops.MappingType.MANY_TO_MANY), block.ops[0])
        table.add_row(f"#{block.id}", anchor.name, chosen,
                      ", ".join(f"{name} {cycles / best:.2f}x" for name, cycles in others))
    console.print(table)


def _print_why(result: Plan) -> None:
    """Rejected merges grouped by reason, then by operator-type pair, with an example of each; then the kernel
    methods chosen by estimate (Winograd or direct convolutions) with the alternatives' estimated cost."""
    from collections import defaultdict  # noqa: PLC0415

    _print_kernel_choices(result)

    groups: dict = defaultdict(lambda: defaultdict(list))
    for r in result.rejections:
        groups[r.reason][(r.first.node.op_type, r.second.node.op_type)].append(r)
    if not groups:
        console.print("no merge was rejected")
    for reason, pairs in groups.items():
        table = Table(title=f"not fused: {reason.value} ({sum(len(v) for v in pairs.values())})", title_justify="left")
        for col in ("producer -> consumer", "times", "example", "detail"):
            table.add_column(col, overflow="fold")
        for (first, second), items in sorted(pairs.items(), key=lambda kv: -len(kv[1])):
            example = items[0]
            table.add_row(f"{first} -> {second}", str(len(items)), f"{example.first.name} -> {example.second.name}",
                          example.detail)
        console.print(table)


@main.group("profile-db")
def profile_db() -> None:
    """The persistent profile database that decides yellow cells (SQLite in the user cache directory)."""


@profile_db.command("stats")
@click.option("--path", "db_path", type=click.Path(dir_okay=False, path_type=Path), help="Database file.")
def profile_db_stats(db_path: Path | None) -> None:
    """Entries per machine, code version and source."""
    from .fusion import ProfileDB  # noqa: PLC0415

    stats = ProfileDB(db_path).stats()
    console.print(f"{stats['path']}: {stats['entries']} entries, {human(stats['bytes'], 'B')}", highlight=False)
    console.print(f"this machine: {stats['this_machine']}   code version: {stats['code_version']}", highlight=False)
    console.print(f"kernel methods measured (compile --tune): {stats['kernel_method_timings']} timings of "
                  f"{stats['kernel_method_blocks']} blocks", highlight=False)
    table = Table(title_justify="left")
    for col in ("machine", "code version", "source", "entries", "fused"):
        table.add_column(col, justify="right" if col in ("entries", "fused") else "left")
    for g in stats["groups"]:
        table.add_row(g["machine"], g["code_version"], g["source"], str(g["entries"]), str(g["fused"]))
    console.print(table)


@profile_db.command("clear")
@click.option("--path", "db_path", type=click.Path(dir_okay=False, path_type=Path), help="Database file.")
def profile_db_clear(db_path: Path | None) -> None:
    """Delete every entry."""
    from .fusion import ProfileDB  # noqa: PLC0415

    console.print(f"deleted {ProfileDB(db_path).clear()} entries")


@profile_db.command("export")
@click.option("--path", "db_path", type=click.Path(dir_okay=False, path_type=Path), help="Database file.")
@click.option("-o", "--output", type=click.File("w"), default="-", help="JSON-lines file (default: stdout).")
def profile_db_export(db_path: Path | None, output) -> None:  # noqa: ANN001 - click.File
    """Every entry as one JSON object per line (pattern, machine, code version, timings, source), then every
    measured kernel-method timing (kernel_method, block, seconds)."""
    import itertools  # noqa: PLC0415
    import json  # noqa: PLC0415

    from .fusion import ProfileDB  # noqa: PLC0415

    db = ProfileDB(db_path)
    for row in itertools.chain(db.rows(), db.method_rows()):
        output.write(json.dumps(row) + "\n")


@main.group("cache")
def cache() -> None:
    """The user cache: built libraries, zoo exports and the profile DB ($DNNFUSION_CACHE_DIR or ~/.cache)."""


def _folder_usage(folder: Path, pattern: str) -> tuple[int, int]:
    """How many files in `folder` match `pattern`, and the bytes of every file under it."""
    if not folder.is_dir():
        return 0, 0
    files = [f for f in folder.rglob("*") if f.is_file()]
    return len(list(folder.glob(pattern))), sum(f.stat().st_size for f in files)


@cache.command("info")
def cache_info() -> None:
    """Where the cache is and what it holds: built libraries, zoo exports, profile DB."""
    from .cache import cache_dir  # noqa: PLC0415

    root = cache_dir()
    db_files = [f for f in root.glob("profiles.sqlite*") if f.is_file()]
    rows = [("built libraries", "kernels/", *_folder_usage(root / "kernels", "*.so")),
            ("zoo exports", "zoo/", *_folder_usage(root / "zoo", "*.onnx")),
            ("profile DB", "profiles.sqlite", int(any(f.name == "profiles.sqlite" for f in db_files)),
             sum(f.stat().st_size for f in db_files))]
    console.print(f"cache folder: {root}", highlight=False, soft_wrap=True)
    table = Table(title_justify="left")
    for col in ("what", "where", "files", "size"):
        table.add_column(col, justify="right" if col in ("files", "size") else "left")
    for what, where, count, size in rows:
        table.add_row(what, where, str(count), human(size, "B"))
    console.print(table)


@cache.command("clear")
@click.option("--all", "everything", is_flag=True, help="Remove everything under the cache folder, not only "
              "built libraries.")
def cache_clear(everything: bool) -> None:
    """Remove the built libraries (rebuilt on the next compile); --all empties the whole cache folder."""
    from .cache import cache_dir  # noqa: PLC0415

    root = cache_dir()
    if everything:
        targets = sorted(root.iterdir())
        for target in targets:
            console.print(f"removed {target} ({human(_remove(target), 'B')})", highlight=False, soft_wrap=True)
        if not targets:
            console.print(f"nothing to remove: {root} is empty", highlight=False, soft_wrap=True)
        return
    folder = root / "kernels"
    targets = sorted(folder.iterdir()) if folder.is_dir() else []
    size = sum(_remove(target) for target in targets)
    libraries = sum(target.suffix == ".so" for target in targets)
    console.print(f"removed {libraries} built libraries with their sources and manifests from {folder} "
                  f"({human(size, 'B')})", highlight=False, soft_wrap=True)


def _remove(target: Path) -> int:
    """Delete a file or a folder tree (a link itself, never what it points to); returns the bytes removed."""
    import shutil  # noqa: PLC0415

    if target.is_dir() and not target.is_symlink():
        size = _folder_usage(target, "*")[1]
        shutil.rmtree(target)
        return size
    size = target.lstat().st_size
    target.unlink()
    return size


@main.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--levels", default="O0,O3", show_default=True,
              help="dnnfusion levels to time, comma-separated (O3/direct: O3 without Winograd convolutions; "
                   "O3/tuned: kernel methods measured, as compile --tune).")
@click.option("--threads", default=2, show_default=True, help="Threads for every runtime.")
@click.option("--blocks", default=8, show_default=True, help="Turns each runtime takes (runs back to back per turn).")
@click.option("--runs", default=5, show_default=True, help="Consecutive runs per turn.")
@click.option("--budget", default=60.0, show_default=True, help="Seconds of timing per model at most.")
@click.option("--load", default=0, show_default=True, type=click.IntRange(min=0),
              help="Busy processes (one core each) running beside the runtimes for the whole timing.")
@click.option("--openvino", is_flag=True, help="Also time OpenVINO in float32 (needs the openvino package).")
@click.option("--mnn", is_flag=True, help="Also time MNN, in the separate environment DNNFUSION_MNN_PYTHON names.")
@click.option("--small", is_flag=True, help="The zoo's small configurations.")
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path), help="Also write the table here.")
def bench(names: tuple[str, ...], levels: str, threads: int, blocks: int, runs: int, budget: float, load: int,
          openvino: bool, mnn: bool, small: bool, markdown: Path | None) -> None:
    """Time zoo models NAMES side by side with onnxruntime (outputs checked first), each runtime in its own
    process, taking turns in blocks of consecutive runs; `--load N` adds N busy neighbours."""
    from .bench.compare import bench_zoo_model  # noqa: PLC0415

    wanted = tuple(level.strip() for level in levels.split(",") if level.strip())
    peers = ("ORT_DISABLE_ALL",) + (("openvino",) if openvino else ()) + (("mnn",) if mnn else ())
    beside = f", {load} busy neighbour process(es)" if load else ", idle machine"
    table = Table(title=f"latency (ms), each runtime in its own process, {threads} thread(s){beside}",
                  title_justify="left")
    headers = ["model", "runtime", "best", "median", "p90", "runs", "ORT_ENABLE_ALL / this (best)",
               "(median)", "kernels", "fallbacks"]
    for col in headers:
        table.add_column(col, justify="left" if col in ("model", "runtime") else "right")
    rows = []
    with console.status("benchmarking", spinner="dots") as status:
        for name in names:
            result = bench_zoo_model(name, wanted, threads, blocks, runs, budget, small, load, peers,
                                     progress=status.update)
            reference = result.timings["ORT_ENABLE_ALL"]
            for runtime, t in result.timings.items():
                level = runtime.split(" ")[-1] if runtime.startswith("dnnfusion") else None
                stats = result.stats.get(level, {}) if level else {}
                row = [name, runtime, f"{t.best * 1e3:.2f}", f"{t.median * 1e3:.2f}", f"{t.p90 * 1e3:.2f}",
                       str(t.rounds), f"{reference.best / t.best:.2f}x", f"{reference.median / t.median:.2f}x",
                       str(stats.get("blocks", "")), str(len(stats["fallback_ops"])) if stats else ""]
                rows.append(row)
                table.add_row(*row)
    console.print(table)
    if markdown is not None:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        markdown.write_text("\n".join(lines) + "\n")


def _thread_counts(spec: str) -> list[int]:
    """`1,2` as [1, 2]; anything but positive integers is a usage error."""
    try:
        counts = [int(t) for t in spec.split(",") if t.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise click.BadParameter(f"'{spec}' is not a comma-separated list of positive integers",
                                 param_hint="--threads")
    return counts


@main.command("bench-kernels")
@click.option("--threads", "thread_spec", default="1,2", show_default=True, help="Thread counts, comma-separated.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every raw number here.")
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path), help="Also write the table here.")
@click.option("--rounds", type=click.IntRange(min=1),
              help="Timed runs per shape in each worker  [default: 10; 3 with --quick]")
@click.option("--blocks", type=click.IntRange(min=1),
              help="Turns each runtime's worker takes  [default: 3; 1 with --quick]")
@click.option("--shapes", "names", help="Case names (GEMM or convolution), comma-separated (default: all; --quick "
              "leaves out the heavy gpt2_head, unet_3x3, vgg_3x3_28 and c3d).")
@click.option("--quick", is_flag=True, help="Fewer rounds and blocks, and no heavy case unless --shapes names it.")
def bench_kernels(thread_spec: str, json_path: Path | None, markdown: Path | None, rounds: int | None,
                  blocks: int | None, names: str | None, quick: bool) -> None:
    """GFLOP/s of dnnfusion, onnxruntime and numpy on the matrix products and convolutions of real models (numpy
    on the products only), each runtime in its own process, against this CPU's measured FP32 FMA peak."""
    from .bench import kernels  # noqa: PLC0415

    threads = _thread_counts(thread_spec)
    try:
        shapes = kernels.select_shapes(names, quick)
    except DnnfusionError as e:
        raise click.BadParameter(str(e), param_hint="--shapes")
    rounds = rounds or (3 if quick else 10)
    blocks = blocks or (1 if quick else 3)
    with console.status("benchmarking", spinner="dots") as status:
        report = kernels.bench_kernels(shapes, threads, rounds, blocks, progress=status.update)
    table = Table(title="GEMM and convolution GFLOP/s (best run), each runtime in its own process",
                  title_justify="left", caption=kernels.caption(report), caption_justify="left")
    for col in kernels.HEADERS:                        # two-line headers, so that 120 columns hold the table
        header = "% of\npeak" if col == "% of peak" else col.replace(" ", "\n", 1)
        text = col in ("case", "shape")
        table.add_column(header, justify="left" if text else "right", no_wrap=text)
    for row in kernels.table_rows(report):
        table.add_row(*row)
    console.print(table)
    if json_path is not None:
        report.write_json(json_path)
    if markdown is not None:
        markdown.write_text(kernels.markdown(report))


if __name__ == "__main__":
    main()
