"""The `dnnfusion` command: info, ops, run, compile, plan, bench, zoo, caches. Errors print as one line (no
traceback) and exit with status 2."""

from __future__ import annotations

import functools
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, TypeVar

import click
import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import ops
from .errors import DnnfusionError
from .ir import dtypes
from .ir.graph import Graph, Value
from .passes import RewriteOptions

if TYPE_CHECKING:
    from .fusion import Block, Plan

# Piped output (logs, CI) gets 120 columns so the wider tables do not wrap; a terminal keeps its own width.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
WINOGRAD_HELP = ("Run no 3x3 convolution as Winograd products: results bit-close to a direct convolution, "
                 "slower (docs/WINOGRAD.md).")
TUNE_HELP = ("Time each convolution's candidate methods (Winograd forms, direct) in the compiled model and take the "
             "fastest, instead of the estimate's choice; timings are kept in the profile database, so later "
             "compiles reuse them.")
OPT_HELP = "O0 one kernel per operator, O1 fixed patterns (TVM/ORT-like), O2/O3 DNNFusion's fusion plan."
LEVEL_CHOICE = click.Choice(["O0", "O1", "O2", "O3"])
ALL_CORES = "all available cores"
SHAPE_METAVAR = "NAME=D0,D1,...|NAME=D0xD1x..."
TARGETS = ("native", "x86-64-v2", "x86-64-v3", "x86-64-v4")
TARGET_HELP = ("The instruction set the generated code may use: native (this CPU) or an x86-64 level, for a "
               "library that runs on other machines.")
PROFILE_RUNS = 10
F = TypeVar("F", bound=Callable[..., Any])


def parse_shapes(specs: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """`NAME=D0,D1,...` (or `NAME=D0xD1x...`) strings as an input_shapes dict; an input named twice is an error."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, sep, dims = spec.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            raise click.BadParameter(f"'{spec}' is not NAME=D0,D1,... or NAME=D0xD1x... (e.g. input_ids=1,128)",
                                     param_hint="--shape")
        if name in shapes:
            raise click.BadParameter(f"input '{name}' is given twice ({'x'.join(map(str, shapes[name]))} and "
                                     f"{'x'.join(map(str, shape))}); give each input once", param_hint="--shape")
        shapes[name] = shape
    return shapes


def parse_dims(specs: tuple[str, ...]) -> dict[str, int]:
    """`NAME=N` strings (a dynamic dimension's name in the model and its size); a name given twice is an error."""
    dims: dict[str, int] = {}
    for spec in specs:
        name, sep, size = spec.rpartition("=")
        if not sep or not name or not size.strip().isdigit():
            raise click.BadParameter(f"'{spec}' is not NAME=N (e.g. batch=1)", param_hint="--dim")
        if name in dims:
            raise click.BadParameter(f"dimension '{name}' is given twice; give each name once", param_hint="--dim")
        dims[name] = int(size)
    return dims


def bindings(zoo: Mapping[str, Any], shapes: tuple[str, ...], dims: tuple[str, ...],
             fed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The input_shapes mapping: a zoo model's sample shapes (left out when --dim binds dimensions by name), the
    shapes of given feeds, then --shape (input name -> shape) and --dim (dimension name -> size, an int)."""
    by_input, by_dim = parse_shapes(shapes), parse_dims(dims)
    both = sorted(set(by_input) & set(by_dim))
    if both:
        raise click.BadParameter(f"'{both[0]}' is named by both --shape and --dim; give it once", param_hint="--dim")
    return {**({} if by_dim else zoo), **(fed or {}), **by_input, **by_dim}


def binding_options(f: F) -> F:
    """--shape and --dim, the two ways to bind dynamic dimensions."""
    f = click.option("--dim", "dims", multiple=True, metavar="NAME=N",
                     help="Bind a dynamic dimension by its name in the model, e.g. batch=1 (repeat per name); "
                          "every input that uses the name gets the size (a zoo model's sample shapes are then "
                          "not used).")(f)
    return click.option("--shape", "shapes", multiple=True, metavar=SHAPE_METAVAR,
                        help="Bind an input's whole shape, e.g. x=1,3,224,224 or x=1x3x224x224 (repeat per "
                             "input).")(f)


def threads_option(help_text: str) -> Callable[[F], F]:
    """--threads N, default every core this process may use (`machine.available_cores`)."""
    return click.option("--threads", type=click.IntRange(min=1), show_default=ALL_CORES, help=help_text)


def hidden_alias(old: str, param: str, **option: Any) -> Callable[[F], F]:
    """A hidden, deprecated option `old` (not in --help) that stands in for parameter `param` (default None)
    when that is not given."""
    def decorate(f: F) -> F:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            legacy = kwargs.pop(f"{param}_legacy")
            kwargs[param] = kwargs[param] if kwargs[param] is not None else legacy
            return f(*args, **kwargs)
        return click.option(old, f"{param}_legacy", hidden=True, **option)(wrapper)
    return decorate


def compile_fields(level: str, threads: int | None, no_winograd: bool, tune: bool, target: str,
                   profile: bool = False, rewriting: RewriteOptions | None = None) -> dict[str, Any]:
    """CompileOptions fields from the shared options."""
    return {"opt_level": level, "threads": threads, "winograd": not no_winograd, "tune": tune, "profile": profile,
            "target": target, "rewriting": rewriting or RewriteOptions()}


def rewrite_options(f: F) -> F:
    """--approximate-rewrites and --no-rule: which of O3's rewrite rules run (docs/REWRITE.md lists them)."""
    f = click.option("--no-rule", "no_rules", multiple=True, metavar="RULE",
                     help="Leave out this O3 rewrite rule (repeat per rule; docs/REWRITE.md lists them).")(f)
    return click.option("--approximate-rewrites", "approximate", is_flag=True,
                        help="Also run O3's rewrite rules that are off by default (inexact in floating point, with "
                             "overflow or rounding risk).")(f)


def rewriting_of(approximate: bool, no_rules: tuple[str, ...]) -> RewriteOptions:
    """The RewriteOptions the flags ask for; an unknown rule name is an error listing the rules."""
    from .passes.rewrite import RULES  # noqa: PLC0415

    known = {r.name for r in RULES}
    unknown = [n for n in no_rules if n not in known]
    if unknown:
        raise click.BadParameter(f"no rewrite rule {unknown[0]!r}; the rules are {', '.join(sorted(known))}",
                                 param_hint="--no-rule")
    return RewriteOptions(approximate, tuple(no_rules))


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


def fmt_shape(shape: tuple | list | None) -> str:
    """[2, 16, 64] for a static shape; `batch x seq x 64` where a dimension is still a name ('?': unknown)."""
    if shape is None:
        return "?"
    if all(isinstance(d, int) for d in shape):
        return "[" + ", ".join(map(str, shape)) + "]"
    return " x ".join("?" if d is None else str(d) for d in shape) or "[]"


def io_table(summary: Mapping[str, Any]) -> Table:
    table = Table(title="inputs and outputs", title_justify="left")
    for col in ("", "name", "dtype", "shape"):
        table.add_column(col)
    for kind in ("input", "output"):
        for v in summary[f"{kind}s"]:
            table.add_row(kind, escape(v["name"]), v["dtype"], escape(fmt_shape(v["shape"])))
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
@binding_options
@click.option("--top", default=15, show_default=True, help="How many operator types to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def info(model: str, shapes: tuple[str, ...], dims: tuple[str, ...], top: int, as_json: bool) -> None:
    """MODEL (an .onnx file or a zoo model name): inputs/outputs with shapes, operator counts per mapping type,
    FLOPs and parameter bytes after folding. With dynamic dimensions left unbound, shapes show their names
    (batch x 128) and the operators are counted as loaded; FLOPs need every dimension bound (--dim/--shape)."""
    from .errors import UnboundDimensionError  # noqa: PLC0415
    from .ir import from_onnx  # noqa: PLC0415
    from .passes import infer_shapes  # noqa: PLC0415

    path, zoo_shapes = _model_source(model)
    input_shapes = bindings(zoo_shapes, shapes, dims)
    with step(f"importing {path.name}"):
        graph = from_onnx(path)
    loaded = len(graph.operators())
    try:
        with step("propagating static shapes"):
            infer_shapes(graph, input_shapes)
    except UnboundDimensionError as e:
        summary = _symbolic_summary(path, graph, input_shapes, _unbound_labels(e.unbound))
    else:
        summary = _static_summary(path, graph, loaded)
    if as_json:
        click.echo(json.dumps(summary))
        return
    _print_info(summary, top)


def _unbound_labels(unbound: list[tuple[str, int, object]]) -> list[str]:
    """Unbound (input, axis, dimension) triples as names, once each (`input[axis]` where unnamed)."""
    return list(dict.fromkeys(dim if isinstance(dim, str) and dim else f"{name}[{axis}]"
                              for name, axis, dim in unbound))


def _header(path: Path, graph: Graph) -> dict[str, Any]:
    return {"model": path.name, "graph": graph.name, "opsets": graph.opsets,
            "producer": graph.doc.get("producer") or None}


def _static_summary(path: Path, graph: Graph, loaded: int) -> dict[str, Any]:
    """Every dimension bound (shapes propagated): constants folded, FLOPs and bytes counted (`stats.graph_stats`)."""
    from .passes import fold_constants  # noqa: PLC0415
    from .stats import graph_stats  # noqa: PLC0415

    with step("folding constants"):
        fold_constants(graph)
    stats = graph_stats(graph)
    values = {kind: [{"name": v.name, "dtype": dtypes.name(v.dtype), "shape": _json_shape(v.shape)}
                     for v in getattr(graph, kind)] for kind in ("inputs", "outputs")}
    return {**_header(path, graph), **values, "folded": True, "unbound": [], "ops_loaded": loaded,
            "ops_total": stats.ops_total, "ops_by_mapping": stats.ops_by_mapping, "ops_by_type": stats.ops_by_type,
            "flops": stats.flops, "param_count": stats.param_count, "param_bytes": stats.param_bytes,
            "irs_bytes": stats.irs_bytes, "dynamic_values": stats.dynamic_values}


def _symbolic_summary(path: Path, graph: Graph, input_shapes: Mapping[str, Any],
                      unbound: list[str]) -> dict[str, Any]:
    """Some dimension unbound: shapes as declared (names where bound sizes are not given), operators counted as
    loaded, FLOPs and intermediate bytes unknown."""
    from collections import Counter  # noqa: PLC0415

    from .ir.onnx_import import declared_shape, read_model  # noqa: PLC0415

    def shape(declared: tuple | None, name: str) -> list | None:
        """An input's given shape, else its declared one with the dimension names given sizes bound."""
        given = input_shapes.get(name)
        if given is not None and not isinstance(given, int):
            return [int(d) for d in given]
        return None if declared is None else [_symbolic_dim(d, input_shapes) for d in declared]

    declared = {vi.name: vi for vi in read_model(path)[0].graph.output}
    declared_outputs = {name: declared_shape(vi) for name, vi in declared.items()}

    def dtype(v: Value) -> str:
        """A value's dtype, else the element type its declaration gives, else '?'."""
        elem = declared[v.name].type.tensor_type.elem_type if v.name in declared else 0
        return dtypes.name(v.dtype) if v.dtype is not None else dtypes.name(dtypes.to_numpy(elem)) if elem else "?"

    nodes = graph.operators()
    used = {id(v) for n in graph.nodes for v in n.inputs if v is not None}
    params = [v for v in graph.initializers if id(v) in used]
    mapping = Counter(ops.lookup(n).mapping.value for n in nodes)
    return {**_header(path, graph),
            "inputs": [{"name": v.name, "dtype": dtypes.name(v.dtype), "shape": shape(v.shape, v.name)}
                       for v in graph.inputs],
            "outputs": [{"name": v.name, "dtype": dtype(v),
                         "shape": shape(declared_outputs.get(v.name), v.name)} for v in graph.outputs],
            "folded": False, "unbound": unbound, "ops_loaded": len(nodes), "ops_total": len(nodes),
            "ops_by_mapping": {m.value: mapping.get(m.value, 0) for m in ops.MappingType},
            "ops_by_type": dict(Counter(n.op_type for n in nodes).most_common()), "flops": None,
            "param_count": sum(v.numel for v in params), "param_bytes": sum(v.nbytes for v in params),
            "irs_bytes": None, "dynamic_values": None}


def _symbolic_dim(d: object, input_shapes: Mapping[str, Any]) -> int | str | None:
    """A declared dimension: its size when bound by name, else its name, its static size, or None (unknown)."""
    if isinstance(d, str) and d:
        bound = input_shapes.get(d)
        return bound if isinstance(bound, int) else d
    return d if isinstance(d, int) and d >= 0 else None


def _json_shape(shape: tuple | None) -> list | None:
    return None if shape is None else [d if isinstance(d, (int, str)) else None for d in shape]


def _print_info(summary: Mapping[str, Any], top: int) -> None:
    """The info summary as tables and lines."""
    console.print(f"[bold]{escape(summary['model'])}[/]  graph '{escape(summary['graph'])}'  opsets "
                  f"{summary['opsets']}  producer: {escape(summary['producer'] or '?')}", highlight=False)
    console.print(io_table(summary))
    folded = summary["folded"]
    table = Table(title="operators after folding" if folded else "operators as loaded (not folded: dimensions "
                  "unbound)", title_justify="left")
    table.add_column("mapping type")
    table.add_column("operators", justify="right")
    for mapping, count in summary["ops_by_mapping"].items():
        table.add_row(mapping, str(count))
    table.add_row("[bold]total[/]", f"[bold]{summary['ops_total']}[/]")
    console.print(table)
    types = Table(title=f"most common operators (of {len(summary['ops_by_type'])} types)", title_justify="left")
    types.add_column("operator")
    types.add_column("count", justify="right")
    types.add_column("mapping type")
    for op_type, count in list(summary["ops_by_type"].items())[:top]:
        types.add_row(op_type, str(count), ops.get(op_type).mapping.value)
    console.print(types)
    params = f"parameters: {human(summary['param_count'])} ({human(summary['param_bytes'], 'B')})"
    if not folded:
        console.print(f"operators as loaded: {summary['ops_loaded']} (Constant nodes excluded)   {params}",
                      highlight=False)
        console.print(f"[yellow]dynamic dimensions not bound: {escape(', '.join(summary['unbound']))}[/]; FLOPs "
                      "and intermediate results need every one bound: --dim NAME=N or --shape INPUT=D0,D1,...",
                      highlight=False)
        return
    console.print(f"operators as loaded: {summary['ops_loaded']} (Constant nodes excluded); folded away: "
                  f"{summary['ops_loaded'] - summary['ops_total']}")
    console.print(f"FLOPs per run: {human(summary['flops'], 'FLOP')}   {params}   intermediate results: "
                  f"{human(summary['irs_bytes'], 'B')}", highlight=False)
    dynamic = summary["dynamic_values"]
    if dynamic:
        console.print(f"[yellow]{len(dynamic)} values have data-dependent extents[/] "
                      f"(e.g. {escape(', '.join(dynamic[:3]))})")
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
@binding_options
@click.option("--inputs", "inputs_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An .npz of feeds by input name (default: seeded random feeds).")
@click.option("--input", "named", multiple=True, metavar="NAME=FILE.npy", help="One input from a .npy file.")
@click.option("--opt", "level", type=LEVEL_CHOICE, default="O3", show_default=True, help=OPT_HELP)
@threads_option("Threads the compiled model runs with.")
@click.option("--target", type=click.Choice(TARGETS), default="native", show_default=True, help=TARGET_HELP)
@click.option("--reference", is_flag=True, help="Run the numpy reference executor instead of compiled code.")
@click.option("--check", is_flag=True, help="Compare the outputs with onnxruntime's (--rtol, --atol); exit status 1 "
              "when one differs.")
@click.option("--rtol", type=click.FloatRange(min=0), default=1e-3, show_default=True,
              help="Relative tolerance of --check.")
@click.option("--atol", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Absolute tolerance of --check.")
@click.option("--profile", is_flag=True, help=f"Time every kernel (mean of {PROFILE_RUNS} runs): operators, ms per "
              "run, share of the total, GFLOP/s.")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), help="Write the outputs to this .npz.")
@click.option("--no-winograd", "no_winograd", is_flag=True, help=WINOGRAD_HELP)
@click.option("--tune", is_flag=True, help=TUNE_HELP)
@rewrite_options
def run(model: str, shapes: tuple[str, ...], dims: tuple[str, ...], inputs_file: Path | None,
        named: tuple[str, ...], level: str, threads: int | None, target: str, reference: bool, check: bool,
        rtol: float, atol: float, profile: bool, save: Path | None, no_winograd: bool, tune: bool,
        approximate: bool, no_rules: tuple[str, ...]) -> None:
    """Compile MODEL (an .onnx file or a zoo model name) and run it once; --check compares with onnxruntime,
    --profile times each kernel."""
    from .runtime import ReferenceExecutor, random_feeds  # noqa: PLC0415

    if reference and profile:
        raise click.UsageError("--profile times compiled kernels; leave out --reference")
    path, zoo_shapes = _model_source(model)
    feeds = _read_feeds(inputs_file, named)
    fed = {k: v.shape for k, v in feeds.items()} if feeds is not None else {}
    input_shapes = bindings(zoo_shapes, shapes, dims, fed)
    if reference:
        from .pipeline import load  # noqa: PLC0415

        with step(f"importing {path.name}"):
            executor = ReferenceExecutor(load(path, input_shapes))
    else:
        from .pipeline import compile_model  # noqa: PLC0415

        with step(f"compiling {path.name} at {level}"):
            executor = compile_model(path, input_shapes, **compile_fields(
                level, threads, no_winograd, tune, target, profile, rewriting_of(approximate, no_rules)))
    if feeds is None:
        feeds = random_feeds(executor.graph)
    with step("running"):
        outputs = executor.run(feeds)
    if not reference:
        stats = executor.stats
        console.print(f"compiled: {stats['blocks']} kernels for {stats['ops_before']} operators, arena "
                      f"{human(stats['arena_bytes'], 'B')}, {len(stats['fallback_ops'])} fallback operator(s), "
                      f"{stats['threads']} thread(s), {stats['compile_seconds']:.2f} s", highlight=False)
    console.print(_outputs_table(outputs))
    if save is not None:
        np.savez(save, **outputs)
    if profile:
        _print_profile(executor, feeds)
    if check:
        _check(path, feeds, outputs, rtol, atol)


def _outputs_table(outputs: Mapping[str, np.ndarray]) -> Table:
    table = Table(title="outputs", title_justify="left")
    for col in ("name", "dtype", "shape", "mean", "min", "max"):
        table.add_column(col)
    for name, array in outputs.items():
        numeric = array.dtype.kind in "biuf" and array.size
        stats = [f"{float(f(array)):.4g}" for f in (np.mean, np.min, np.max)] if numeric else ["", "", ""]
        table.add_row(escape(name), dtypes.name(array.dtype), fmt_shape(array.shape), *stats)
    return table


def _profile_rows(model: Any, feeds: Mapping[str, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """Per-kernel times of a model compiled with profile=True (`report.profile.profile_rows`; random feeds by
    default)."""
    from .report.profile import profile_rows  # noqa: PLC0415
    from .runtime import random_feeds  # noqa: PLC0415

    with step(f"profiling ({PROFILE_RUNS} runs)"):
        return profile_rows(model, random_feeds(model.graph) if feeds is None else feeds, PROFILE_RUNS)


def _print_profile(model: Any, feeds: Mapping[str, np.ndarray] | None = None) -> None:
    """Time every kernel of a model compiled with profile=True and print the table."""
    from .report.profile import profile_table  # noqa: PLC0415

    console.print(profile_table(_profile_rows(model, feeds), PROFILE_RUNS))


def _check(path: Path, feeds: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray], rtol: float,
           atol: float) -> None:
    """Compare with onnxruntime: one verdict line per output; exit status 1 when one differs. A detector's
    ranked boxes, scores and labels are compared as sets of detections (rows paired whatever their order, a row
    left unpaired only at the score cut-off or an NMS threshold: ties two runtimes may break either way)."""
    from .bench.detections import check_outputs  # noqa: PLC0415
    from .oracle import run_onnxruntime  # noqa: PLC0415

    with step("running onnxruntime"):
        theirs = run_onnxruntime(str(path), feeds)
    checks, detections = check_outputs(outputs, theirs, path, rtol, atol)
    for c in checks:
        console.print(f"'{escape(c.name)}': max abs {c.max_abs:.2e}, max rel {c.max_rel:.2e} (rtol {rtol:g}, "
                      f"atol {atol:g}{', as a set of detections' if c.as_set else ''}): "
                      + ("[green]match[/]" if c.ok else "[red]MISMATCH[/]"), highlight=False)
    if detections is not None:
        console.print(f"detections: {detections.matched} paired, {detections.tie_mismatched} unpaired at a tie, "
                      f"{len(detections.unexplained_ours) + len(detections.unexplained_reference)} unexplained",
                      highlight=False)
    bad = [c.name for c in checks if not c.ok]
    if bad:
        err_console.print(f"[bold red]error:[/] {len(bad)} output(s) differ from onnxruntime beyond rtol {rtol:g}, "
                          f"atol {atol:g}: {escape(', '.join(bad))}", highlight=False, soft_wrap=True)
        sys.exit(1)


@main.command("compile")
@click.argument("model")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the saved model (model.so, weights.bin, model.h, manifest.json), its C source "
                   "model.c, plan.html and stats.json.")
@binding_options
@click.option("--opt", "level", type=LEVEL_CHOICE, default="O3", show_default=True, help=OPT_HELP)
@threads_option("Threads the compiled model runs with.")
@click.option("--target", type=click.Choice(TARGETS), default="native", show_default=True, help=TARGET_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the compile statistics (and --profile's rows) as one "
              "JSON object.")
@click.option("--profile", is_flag=True, help=f"Time every kernel on random inputs (mean of {PROFILE_RUNS} runs); "
              "the written library then keeps the timers.")
@click.option("--no-winograd", "no_winograd", is_flag=True, help=WINOGRAD_HELP)
@click.option("--tune", is_flag=True, help=TUNE_HELP)
@rewrite_options
def compile_command(model: str, out_dir: Path, shapes: tuple[str, ...], dims: tuple[str, ...], level: str,
                    threads: int | None, target: str, as_json: bool, profile: bool, no_winograd: bool,
                    tune: bool, approximate: bool, no_rules: tuple[str, ...]) -> None:
    """Compile MODEL (an .onnx file or a zoo model name) and write its C source, library and plan report."""
    import shutil  # noqa: PLC0415
    import time  # noqa: PLC0415

    from .pipeline import compile_model  # noqa: PLC0415
    from .report import write_plan_html  # noqa: PLC0415
    from .runtime.artifact import ArtifactError  # noqa: PLC0415

    path, zoo_shapes = _model_source(model)
    with step(f"compiling {path.name} at {level}"):
        compiled = compile_model(path, bindings(zoo_shapes, shapes, dims), **compile_fields(
            level, threads, no_winograd, tune, target, profile, rewriting_of(approximate, no_rules)))
    started = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        compiled.save(out_dir)
    except ArtifactError as e:                     # fallback operators: the library and reports still help
        err_console.print(f"[yellow]note:[/] {escape(str(e))}; wrote the library, its source and the reports only",
                          highlight=False, soft_wrap=True)
        if compiled.library_path is not None:
            shutil.copyfile(compiled.library_path, out_dir / "model.so")
        (out_dir / "model.c").write_text(compiled.source)
    write_plan_html(compiled.plan, out_dir / "plan.html", model=path.name, compiled=True,
                    methods=compiled.program.methods)
    (out_dir / "stats.json").write_text(json.dumps(compiled.stats, indent=1))
    written = sorted(f.name for f in out_dir.iterdir() if f.is_file() and f.stat().st_mtime >= started - 1)
    if as_json:
        rows = _profile_rows(compiled) if profile else None
        click.echo(json.dumps({**compiled.stats, **({"profile": rows} if profile else {})}))
        return
    stats = compiled.stats
    console.print(f"{stats['ops_before']} operators -> {stats['blocks']} kernels ({stats['fusion_rate']:.2f}x), "
                  f"arena {human(stats['arena_bytes'], 'B')}, {stats['native_calls_per_run']} native call(s) per "
                  f"run, {len(stats['fallback_ops'])} fallback operator(s), {stats['threads']} thread(s), "
                  f"{stats['compile_seconds']:.2f} s", highlight=False)
    for method, count in stats["kernel_methods"].items():
        console.print(f"{count} kernel(s) as {method}", highlight=False)
    _print_layouts(stats)
    console.print(f"wrote {out_dir}/: {', '.join(written)}", highlight=False, soft_wrap=True)
    if profile:
        _print_profile(compiled)


def _print_layouts(stats: dict) -> None:
    """How many values between blocks are held channel-blocked, and each block whose reads and writes differ
    in layout (the conversion fused into its loads or stores)."""
    at = stats["layout_conversions_at"]
    console.print(f"{stats['blocked_values']} value(s) between blocks held channel-blocked, {len(at)} layout "
                  "conversion(s) fused into blocks" + (":" if at else ""), highlight=False)
    if at:
        table = Table(show_header=True, box=None, padding=(0, 2, 0, 0))
        for col in ("block", "kernel", "reads", "writes"):
            table.add_column(col, overflow="fold")
        for c in at:
            table.add_row(f"#{c['block']}", f"{c['op_type']} {c['node']}", c["reads"], c["writes"])
        console.print(table)


@main.command("ops")
@click.option("--mapping", type=click.Choice([m.value for m in ops.MappingType]), help="Only this mapping type.")
@click.option("--json", "as_json", is_flag=True, help="Print the operators as one JSON list.")
def list_ops(mapping: str | None, as_json: bool) -> None:
    """The operator registry: each operator's mapping type and algebraic properties."""
    shown = [op for op in ops.all_ops() if mapping is None or op.mapping.value == mapping]
    if as_json:
        click.echo(json.dumps([{"op_type": op.op_type, "domain": op.domain or "ai.onnx", "mapping": op.mapping.value,
                                "algebra": op.algebra.describe()} for op in shown]))
        return
    table = Table(title="dnnfusion operator registry", title_justify="left")
    for col in ("operator", "domain", "mapping type", "algebraic properties"):
        table.add_column(col)
    for op in shown:
        table.add_row(op.op_type, op.domain or "ai.onnx", op.mapping.value, op.algebra.describe())
    console.print(table)
    console.print(f"{len(shown)} operators")


@main.command()
@click.option("--batch", default=2, show_default=True, help="Batch size bound to the demo's 'batch' dimension.")
@click.option("--seq", default=32, show_default=True, help="Sequence length bound to its 'seq' dimension.")
@threads_option("Threads for every runtime.")
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
@click.option("-o", "--output", type=click.Path(path_type=Path), metavar="FILE.onnx|FOLDER",
              help="A path ending in .onnx: write that file (and the sample input beside it, as .npz); a folder "
                   "(existing, or a new path without a suffix): write NAME.onnx and NAME.npz in it.")
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

    _check_export_target(output)
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


def _check_export_target(output: Path | None) -> None:
    """-o names an .onnx file or a folder; anything else (an existing file, another suffix) is a usage error."""
    if output is None or output.suffix == ".onnx" or output.is_dir():
        return
    what = "an existing file" if output.exists() else f"a new path with suffix '{output.suffix}'"
    if output.exists() or output.suffix:
        raise click.BadParameter(f"'{output}' is {what}: give a path ending in .onnx to write that file, or a "
                                 "folder (existing, or without a suffix) to write NAME.onnx in it", param_hint="-o")


def _is_file(model: str) -> bool:
    """A MODEL argument that names a file (one that exists, or any .onnx path) rather than a zoo model."""
    return Path(model).exists() or Path(model).suffix == ".onnx"


def _check_zoo_name(model: str) -> None:
    """A MODEL that is not a file must be a zoo model's name."""
    from .zoo import registry  # noqa: PLC0415

    if model not in registry.MODELS:
        raise DnnfusionError(f"'{model}' is neither a file nor a zoo model ({', '.join(registry.names())})")


def _model_source(model: str) -> tuple[Path, dict[str, tuple[int, ...]]]:
    """A model path, or a zoo model name (its cached default export, with the sample input's shapes)."""
    if _is_file(model):
        return Path(model), {}
    from .zoo import export  # noqa: PLC0415

    _check_zoo_name(model)
    with step(f"exporting zoo model {model}"):
        result = export.export(model)
    return result.model_path, {k: tuple(v) for k, v in result.input_shapes.items()}


@main.command()
@click.argument("model")
@binding_options
@click.option("--opt", "level", type=LEVEL_CHOICE, default="O3", show_default=True, help=OPT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the plan statistics as one JSON object.")
@click.option("--why", is_flag=True, help="List the merges the planner rejected, grouped by reason, with the blocks "
              "each side ended in.")
@click.option("--html", type=click.Path(dir_okay=False, path_type=Path), help="Draw the plan into this HTML file.")
@click.option("--onnx", "onnx_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the fused graph here, each block an ONNX function (domain dnnfusion; opens in Netron).")
@click.option("--profile-db", "db_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Profile database file (default: the user cache directory).")
@rewrite_options
def plan(model: str, shapes: tuple[str, ...], dims: tuple[str, ...], level: str, as_json: bool, why: bool,
         html: Path | None, onnx_out: Path | None, db_path: Path | None, approximate: bool,
         no_rules: tuple[str, ...]) -> None:
    """Plan the fusion of MODEL (an .onnx file or a zoo model name): blocks, statistics and why-not-fused."""
    from .fusion import ProfileDB  # noqa: PLC0415
    from .pipeline import plan_model  # noqa: PLC0415

    path, zoo_shapes = _model_source(model)
    with step(f"planning {path.name} at {level}"):
        result = plan_model(path, bindings(zoo_shapes, shapes, dims), level, ProfileDB(db_path),
                            rewriting=rewriting_of(approximate, no_rules))
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
    console.print("[dim]IRS: intermediate result size, the bytes operators pass to each other; yellow cells: pairs "
                  "fused only where profiling says it pays (plan --why explains more)[/]", highlight=False)
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


WHY_LEGEND = ("legend: IRS = intermediate result size, the bytes operators pass to each other (after fusion, only "
              "what crosses blocks); pair table: green = always fuse, yellow = fuse only if profiling (or the cost "
              "estimate) says the fused kernel is faster, red = never fuse (e.g. a second Many-to-Many operator "
              "into a block that has one); 'ended in' names the block each side of a rejected pair went to.")


def _ended_in(first: Block, second: Block) -> str:
    """Where the two sides of a rejected pair went: `#2 MatMul / #4 Add+Relu`, or one block when a later merge
    joined them."""
    from .report.profile import fused_label  # noqa: PLC0415

    if first is second:
        return f"both in #{first.id} {fused_label(first)} (merged later)"
    return f"#{first.id} {fused_label(first)} / #{second.id} {fused_label(second)}"


def _print_why(result: Plan) -> None:
    """A one-line legend; rejected merges grouped by reason, then by operator-type pair, with an example of each
    and the blocks its two sides ended in; then the kernel methods chosen by estimate (Winograd or direct
    convolutions) with the alternatives' estimated cost."""
    from collections import defaultdict  # noqa: PLC0415

    console.print(f"[dim]{WHY_LEGEND}[/]", highlight=False)
    _print_kernel_choices(result)
    owner = result.block_of()
    groups: dict = defaultdict(lambda: defaultdict(list))
    for r in result.rejections:
        groups[r.reason][(r.first.node.op_type, r.second.node.op_type)].append(r)
    if not groups:
        console.print("no merge was rejected")
    for reason, pairs in groups.items():
        table = Table(title=f"not fused: {reason.value} ({sum(len(v) for v in pairs.values())})", title_justify="left")
        for col in ("producer -> consumer", "times", "example", "ended in (producer / consumer)", "detail"):
            table.add_column(col, overflow="fold")
        for (first, second), items in sorted(pairs.items(), key=lambda kv: -len(kv[1])):
            example = items[0]
            table.add_row(f"{first} -> {second}", str(len(items)),
                          escape(f"{example.first.name} -> {example.second.name}"),
                          escape(_ended_in(owner[example.first.index], owner[example.second.index])),
                          escape(example.detail))
        console.print(table)


def profile_db_option(f: F) -> F:
    """--profile-db FILE, as `plan` spells it (--path: the hidden, deprecated old spelling)."""
    f = hidden_alias("--path", "db_path", type=click.Path(dir_okay=False, path_type=Path))(f)
    return click.option("--profile-db", "db_path", type=click.Path(dir_okay=False, path_type=Path),
                        help="Database file (default: profiles.sqlite in the user cache directory).")(f)


@main.group("profile-db")
def profile_db() -> None:
    """The persistent profile database that decides yellow cells (SQLite in the user cache directory)."""


@profile_db.command("stats")
@profile_db_option
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
@profile_db_option
def profile_db_clear(db_path: Path | None) -> None:
    """Delete every entry."""
    from .fusion import ProfileDB  # noqa: PLC0415

    console.print(f"deleted {ProfileDB(db_path).clear()} entries")


@profile_db.command("export")
@profile_db_option
@click.option("-o", "--output", type=click.File("w"), default="-", help="JSON-lines file (default: stdout).")
def profile_db_export(db_path: Path | None, output) -> None:  # noqa: ANN001 - click.File
    """Every entry as one JSON object per line (pattern, machine, code version, timings, source), then every
    measured kernel-method timing (kernel_method, block, seconds)."""
    import itertools  # noqa: PLC0415

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
@click.argument("models", nargs=-1, required=True)
@binding_options
@click.option("--opt", "levels", show_default="O0,O3", metavar="LEVEL,...",
              help="dnnfusion levels to time, comma-separated (O3/direct: O3 without Winograd convolutions; "
                   "O3/tuned: kernel methods measured, as compile --tune; O3/plain: no channel-blocked layouts).")
@threads_option("Threads for every runtime.")
@click.option("--rounds", type=click.IntRange(min=1),
              help="Timed runs per runtime in all, in turns of --runs (sets --blocks to rounds / runs).")
@click.option("--blocks", default=8, show_default=True, type=click.IntRange(min=1),
              help="Turns each runtime takes (runs back to back per turn).")
@click.option("--runs", default=5, show_default=True, type=click.IntRange(min=1), help="Consecutive runs per turn.")
@click.option("--budget", default=60.0, show_default=True, help="Seconds of timing per model at most.")
@click.option("--load", default=0, show_default=True, type=click.IntRange(min=0),
              help="Busy processes (one core each) running beside the runtimes for the whole timing.")
@click.option("--openvino", is_flag=True, help="Also time OpenVINO in float32 (needs the openvino package).")
@click.option("--mnn", is_flag=True, help="Also time MNN, in the separate environment DNNFUSION_MNN_PYTHON names.")
@click.option("--small", is_flag=True, help="The zoo's small configurations (zoo names only).")
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path), help="Also write the table here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              metavar="FILE|-", help="Write every number as JSON to FILE ('-': standard output, instead of the table).")
@hidden_alias("--levels", "levels")
def bench(models: tuple[str, ...], shapes: tuple[str, ...], dims: tuple[str, ...], levels: str | None,
          threads: int | None, rounds: int | None, blocks: int, runs: int, budget: float, load: int, openvino: bool,
          mnn: bool, small: bool, markdown: Path | None, json_path: Path | None) -> None:
    """Time MODELS (.onnx files or zoo model names) side by side with onnxruntime (outputs checked first), each
    runtime in its own process, taking turns in blocks of consecutive runs; `--load N` adds N busy neighbours.
    A file gets seeded random inputs of the shapes --shape/--dim bind (applied to every model)."""
    from .machine import available_cores  # noqa: PLC0415

    wanted = tuple(level.strip() for level in (levels or "O0,O3").split(",") if level.strip())
    threads = threads or available_cores()
    if rounds is not None:
        runs = min(runs, rounds)
        blocks = -(-rounds // runs)
    peers = ("ORT_DISABLE_ALL",) + (("openvino",) if openvino else ()) + (("mnn",) if mnn else ())
    input_shapes = bindings({}, shapes, dims)
    results = []
    with console.status("benchmarking", spinner="dots") as status:
        for model in models:
            results.append(_bench_one(model, input_shapes, wanted, threads, blocks, runs, budget, small, load, peers,
                                      status.update))
    if json_path is not None:
        text = json.dumps({"threads": threads, "load": load, "blocks": blocks, "runs": runs,
                           "models": [_bench_json(r) for r in results]}, indent=1)
        if str(json_path) == "-":
            click.echo(text)
            return
        json_path.write_text(text + "\n")
    rows = _bench_rows(results)
    beside = f", {load} busy neighbour process(es)" if load else ", idle machine"
    table = Table(title=f"latency (ms), each runtime in its own process, {threads} thread(s){beside}",
                  title_justify="left")
    for col in BENCH_HEADERS:
        table.add_column(col, justify="left" if col in ("model", "runtime") else "right")
    for row in rows:
        table.add_row(*map(escape, row))
    console.print(table)
    if markdown is not None:
        lines = ["| " + " | ".join(BENCH_HEADERS) + " |", "|" + "---|" * len(BENCH_HEADERS)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        markdown.write_text("\n".join(lines) + "\n")


def _bench_one(model: str, input_shapes: Mapping[str, Any], levels: tuple[str, ...], threads: int, blocks: int,
               runs: int, budget: float, small: bool, load: int, peers: tuple[str, ...],
               progress: Callable[[str], None]) -> Any:
    """One model through `bench.compare`: a file, or a zoo name (its sample input, or random inputs of the bound
    shapes when --shape/--dim are given)."""
    from .bench.compare import bench_file, bench_zoo_model  # noqa: PLC0415

    if _is_file(model):
        return bench_file(Path(model), input_shapes, levels, threads, blocks, runs, budget, load, peers, progress)
    _check_zoo_name(model)
    if not input_shapes:
        return bench_zoo_model(model, levels, threads, blocks, runs, budget, small, load, peers, progress=progress)
    from .zoo import export  # noqa: PLC0415

    progress(f"{model}: exporting")
    exported = export.export(model, small=small)
    zoo_shapes = {} if any(isinstance(v, int) for v in input_shapes.values()) else exported.input_shapes
    shapes = {**{k: tuple(v) for k, v in zoo_shapes.items()}, **input_shapes}
    return bench_file(exported.model_path, shapes, levels, threads, blocks, runs, budget, load, peers, progress,
                      name=model)


BENCH_HEADERS = ["model", "runtime", "best", "median", "p90", "runs", "ORT_ENABLE_ALL / this (best)", "(median)",
                 "kernels", "fallbacks"]


def _bench_rows(results: list[Any]) -> list[list[str]]:
    """One table row (BENCH_HEADERS) per model and runtime."""
    rows = []
    for result in results:
        reference = result.timings["ORT_ENABLE_ALL"]
        for runtime, t in result.timings.items():
            level = runtime.split(" ")[-1] if runtime.startswith("dnnfusion") else None
            stats = result.stats.get(level, {}) if level else {}
            rows.append([result.name, runtime, f"{t.best * 1e3:.2f}", f"{t.median * 1e3:.2f}", f"{t.p90 * 1e3:.2f}",
                         str(t.rounds), f"{reference.best / t.best:.2f}x", f"{reference.median / t.median:.2f}x",
                         str(stats.get("blocks", "")), str(len(stats["fallback_ops"])) if stats else ""])
    return rows


def _bench_json(result: Any) -> dict[str, Any]:
    """One model's numbers: per runtime best/median/p90 in ms, runs, and onnxruntime's time over it."""
    reference = result.timings["ORT_ENABLE_ALL"]
    runtimes = {runtime: {"best_ms": t.best * 1e3, "median_ms": t.median * 1e3, "p90_ms": t.p90 * 1e3,
                          "runs": t.rounds, "speedup_best": reference.best / t.best,
                          "speedup_median": reference.median / t.median} for runtime, t in result.timings.items()}
    return {"model": result.name, "max_abs_error": result.max_abs_error, "runtimes": runtimes,
            "stats": result.stats}


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
              "leaves out the heavy gpt2_head, unet_3x3, vgg_3x3_28, c3d, c3d_stem and s3d_1x3x3).")
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
