"""The `pack` command group and its model commands (models, build); verify and inspect are in check.py, the serving
commands in serve.py, bench, tune, optimize and sign in their own modules. Imports stay inside commands: `pack --help`
and `pack models` never import torch. Option values are checked by their click type (every float option is a finite
`Number`), and whatever click refuses is pack's one `error:` line with exit 2 (`PackGroup`). An option several
commands take is declared once here (`store_option`, `version_option`, `format_option`, ...), its choices and help
derived from the registries."""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..console import emit_json, run, table
from ..errors import EXIT_USAGE, UsageError
from ..export import DEFAULT_FORMATS, FORMATS
from ..variants import ALL, VARIANTS


class Number(click.FloatRange):
    """A finite number within [min, max] (either bound open with min_open / max_open): the type of every float option.
    click's FloatRange alone lets `nan` through (every comparison with nan is false) and `inf` when a bound is open."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


SECONDS = Number(0, 86400, min_open=True)  # a timeout or a wait: more than 0, at most a day


class _ClickUsage(click.UsageError):
    """What click refused (an option's value, an unknown option, a missing argument) as pack's one line, exit 2."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        what = " ".join(self.format_message().split())
        where = self.ctx.command_path if self.ctx is not None else "pack"
        click.echo(f"error: {UsageError(what[:1].lower() + what[1:], f'see `{where} --help`').line()}", err=True)


_HELP_ERRORS = tuple(e for e in [getattr(click.exceptions, "NoArgsIsHelpError", None)] if e)  # `pack` alone: its help


# The module of packager/cli that registers each command: a command's module is imported when that command runs
# (or when help lists them all), so `pack archive` does not import bench's table of rows. tests/unit/test_cli_modules.py
# holds it equal to what each module registers.
COMMAND_MODULES = {
    "verify": "check",
    "inspect": "check",
    "deploy": "serve",
    "status": "serve",
    "undeploy": "serve",
    "stop": "serve",
    "archive": "serve",
    "repo": "serve",
    "check-repo": "serve",
    "check-manifest": "serve",
    "bench": "bench",
    "tune": "tune",
    "optimize": "optimize",
    "sign": "sign",
    "migrate": "migrate",
}


class PackGroup(click.Group):
    """The command group whose parse errors (its own and every command's) are one `error:` line, and whose commands'
    modules are imported when first needed."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            importlib.import_module(f"{__package__}.{COMMAND_MODULES[cmd_name]}")
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module in dict.fromkeys(COMMAND_MODULES.values()):
            importlib.import_module(f"{__package__}.{module}")
        return super().list_commands(ctx)

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:
            raise _one_line(exc) from None

    def main(self, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        """As the process's entry point (no `args` given: the command line's), a Ctrl-C or SIGTERM that arrives once
        the command has decided its outcome (its result written, or its error line) is ignored: the exit code stays
        the command's, instead of the interpreter dying of the signal while it shuts down."""
        try:
            return super().main(args, *rest, **kwargs)
        finally:
            if args is None:
                import signal

                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # parses the command's own options
        except click.ClickException as exc:
            raise _one_line(exc) from None


def _one_line(exc: click.ClickException) -> click.ClickException:
    return exc if isinstance(exc, (_ClickUsage, *_HELP_ERRORS)) else _ClickUsage(exc.format_message(), getattr(exc, "ctx", None))


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--json, --debug, -v and -q on every command (they may also be given before the command name)."""

    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout (logs stay on stderr).")
    @click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
    @click.option("-v", "--verbose", count=True, help="More detail on stderr.")
    @click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
    @functools.wraps(fn)
    def wrapper(*args: Any, as_json: bool, debug: bool, verbose: int, quiet: bool, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        root = ctx.find_root().params
        verbose += root.get("verbose", 0)
        ctx.meta["pack.verbosity"] = -1 if quiet or root.get("quiet") else verbose
        return fn(*args, as_json=as_json or root.get("as_json", False), debug=debug or root.get("debug", False), **kwargs)

    return wrapper


def ranged(flag: str, lo: float, hi: float, default: float, help: str) -> Callable[[Any], Any]:
    """An option limited to [lo, hi] with its default shown: an integer range when the default is an int."""
    kind = click.IntRange(int(lo), int(hi)) if isinstance(default, int) else Number(lo, hi)
    return click.option(flag, type=kind, default=default, show_default=True, help=help)


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def setting_option(name: str, *also: str, scope: str = "") -> Callable[[Any], Any]:
    """A server setting's option as it is declared (packager/serve/settings.py, whose rule checks its range); `also`:
    another spelling a command keeps; `scope`: the targets or rows it applies to."""
    from ..serve.settings import SETTINGS

    setting, where = SETTINGS[name], f" [{scope}]" if scope else ""
    return click.option(setting.flag, *also, name, type=int, default=None, help=setting.describe() + where)


store_option = click.option(
    "--store",
    envvar="PACK_STORE",
    default="model_store",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Model store folder (environment: PACK_STORE).",
)


sign_key_option = click.option(
    "--sign-key",
    type=click.Path(dir_okay=False),
    help="Sign the build (model.sig, OpenSSF Model Signing) with this EC private key (PEM); passphrase: PACK_SIGN_KEY_PASSWORD.",
)


def version_option(help: str = "Build version (default: the latest).") -> Decorator:
    """--version of a command that reads a build of the store."""
    return click.option("--version", "version", help=help)


def format_option(help: str, dest: str = "fmt") -> Decorator:
    """--format: one of the export formats (packager/export/'s registry)."""
    return click.option("--format", dest, type=click.Choice(FORMATS.names()), help=help)


def public_key_option(help: str = "EC public key (PEM) the signature must verify with.") -> Decorator:
    return click.option("--public-key", type=click.Path(dir_okay=False), help=help)


def chain_option(help: str) -> Decorator:
    """--certificate-chain: certificates (PEM), repeated per file."""
    return click.option("--certificate-chain", "chain", multiple=True, type=click.Path(dir_okay=False), help=help)


SHARED: dict[str, Callable[[str, str], Decorator]] = {"--format": format_option}  # flag -> its one declaration


def rewrite_line(outcome: dict[str, Any]) -> str:
    """The line a command that rewrote a build prints about its signature (packager/report/trust.py's outcome)."""
    if outcome.get("signature"):
        key = outcome["key_id"][:16]
        return f"{outcome['status']}: the build's {outcome['signature']} ({outcome['files']} files, key {key})\n"
    if outcome.get("status") == "removed":
        return "unsigned: the build is no longer signed (its signature was removed: see the warning above)\n"
    return ""


def variant_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--variants, --min-speedup, --calibration and --serve-variant (pack build and pack optimize)."""
    for option in reversed(
        [
            click.option(
                "--variants",
                help="Faster ONNX variants to make, each judged by its own gate and kept only when faster: "
                f"{','.join(VARIANTS.names())} (or {ALL}).",
            ),
            click.option(
                "--min-speedup",
                type=Number(min=0),
                help="Keep a variant only this much faster than ONNX (default 1.1).",
            ),
            click.option(
                "--calibration",
                type=click.Path(dir_okay=False),
                help="int8-static's inputs: a .npz with one array per input, named like it (a .npy for a one-input model).",
            ),
            click.option("--serve-variant", help="Serve this variant whatever its speed (it must pass its gate), or `base`."),
        ]
    ):
        fn = option(fn)
    return fn


@click.group(cls=PackGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pack")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output for the command.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.option("-v", "--verbose", count=True, help="More detail on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
def main(as_json: bool, debug: bool, verbose: int, quiet: bool) -> None:
    """Package PyTorch models for serving: export, validate, archive, deploy.

    \b
    Exit codes: 0 ok, 1 internal error, 2 bad input, 3 parity failure,
    4 deploy or smoke test failed, 5 environment (missing dependency or server),
    6 not verified (verify of a .mar or repository without its build), 130 interrupted.
    """


@main.command("models")
@common
def models_cmd(as_json: bool, debug: bool) -> None:
    """List the built-in models."""

    def body(out: Any) -> None:
        from ..registry import list_models

        entries = list_models()
        if as_json:
            emit_json(
                out,
                [
                    {
                        "name": e.name,
                        "task": e.task,
                        "description": e.description,
                        "inputs": [i.to_dict() for i in e.inputs],
                        "outputs": [o.name for o in e.outputs],
                        "requires": list(e.requires),
                    }
                    for e in entries
                ],
            )
            return
        rows = [[e.name, e.task, " ".join("x".join(map(str, i.shape)) for i in e.inputs), e.description] for e in entries]
        out.write(table(rows, ["name", "task", "input", "description"]) + "\n")

    run(debug, body)


@main.command("build")
@click.argument("model", required=False)
@click.option("--spec", type=click.Path(dir_okay=False), help="A pack.yaml spec; options given here override it.")
@click.option("--weights", type=click.Path(dir_okay=False), help="state_dict / checkpoint file (ultralytics .pt for YOLO).")
@click.option("--unsafe-load", is_flag=True, help="Allow pickled Python objects in weights (runs code from the file).")
@click.option("--name", help="Model name in the store and on the servers (default: the model's name).")
@version_option("Version number (default 1).")
@store_option
@click.option("--force", is_flag=True, help="Replace an existing version.")
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="NAME:SHAPE[:DTYPE][:dyn=AXES][:range=LOW,HIGH]",
    help="Input, e.g. input_ids:2x16:int64:dyn=0,seq@1:range=0,1000 "
    "(repeat per input; passed to the forward() parameter of that name). A dynamic axis is AXIS or NAME@AXIS: "
    "axes of one name are one dimension across inputs; the axis named batch is the batch (h0:1x2x16:dyn=batch@1).",
)
@click.option(
    "--formats",
    help=f"Formats that must each pass: {','.join(FORMATS.names())} "
    f"(default: {','.join(DEFAULT_FORMATS)} are tried; one must pass).",
)
@click.option("--batch-sizes", help="Batch sizes to validate, comma-separated (default 1,4).")
@click.option("--atol", type=Number(min=0), help="Absolute tolerance of the parity gate.")
@click.option("--rtol", type=Number(min=0), help="Relative tolerance of the parity gate.")
@click.option("--seed", type=int, help="Seed for random weights and example inputs (default 0; at most 2**32 - 1).")
@click.option("--opset", type=click.IntRange(9, 23), help="ONNX opset (default: the exporter's own, 17 legacy / 18+ dynamo).")
@click.option("--torchscript", type=click.Choice(["auto", "trace", "script"]), help="auto: trace, script when tracing is unsafe.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--slim", is_flag=True, help="Simplify the ONNX graph with onnxslim.")
@ranged("--iterations", 0, 10000, 20, "At most this many timed runs per format and batch size (0 skips measuring).")
@ranged(
    "--measure-budget",
    0.1,
    3600.0,
    3.0,
    "Seconds of latency measurement in all: each format and batch size runs until stable or its share ends.",
)
@click.option(
    "--cache",
    "cache_dir",
    type=click.Path(file_okay=False),
    help="Build cache folder (default: $PACK_CACHE, else <store>/.cache): an unchanged rebuild reuses its checked artifacts.",
)
@click.option("--no-cache", is_flag=True, help="Build in full and store nothing in the cache.")
@sign_key_option
@variant_options
@common
def build_cmd(
    model: str | None,
    spec: str | None,
    store: str,
    force: bool,
    inputs: tuple[str, ...],
    batch_sizes: str | None,
    iterations: int,
    measure_budget: float,
    sign_key: str | None,
    cache_dir: str | None,
    no_cache: bool,
    as_json: bool,
    debug: bool,
    **opts: Any,
) -> None:
    """Export MODEL (TorchScript, ONNX, torch.export, AOTInductor), validate against eager, measure, and record.

    MODEL is a built-in name (see `pack models`), path/to/file.py:callable, or a TorchScript/pickled model file.
    """

    def body(out: Any) -> None:
        from ..build.plan import parse_input, resolve
        from ..errors import UsageError

        overrides = dict(opts)
        if inputs:
            overrides["inputs"] = [parse_input(t) for t in inputs]
        if batch_sizes:
            try:
                overrides["batch_sizes"] = [int(b) for b in batch_sizes.split(",") if b.strip()]
            except ValueError:
                raise UsageError(f"--batch-sizes {batch_sizes!r} is not a comma-separated list of integers") from None
        plan = resolve(model, spec, overrides)
        from ..report.signing import build_signer

        signer, signed = build_signer(sign_key)  # the key is checked before any work

        from ..build.cache import cache_dir as where
        from ..build.pipeline import build
        from ..targets import packagers
        from .summary import build_summary

        cache = where(Path(store), cache_dir, not no_cache)
        report, folder = build(plan, Path(store), force, iterations, packagers(), measure_budget, sign=signer, cache=cache)
        extra = {"signature": {**signed, "signature": str(folder / "model.sig")}} if signed else {}
        if as_json:
            emit_json(out, {**report.to_dict(), "path": str(folder.resolve()), **extra})
        else:
            out.write(build_summary(report, folder) + "\n")
            if signed:
                out.write(f"signed: {folder / 'model.sig'} ({signed['files']} files, key {signed['key_id'][:16]})\n")

    run(debug, body)
