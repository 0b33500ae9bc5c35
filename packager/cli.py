"""The `pack` command line. Imports stay inside commands: `pack --help` and `pack models` never import torch."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import click

from . import __version__
from .console import emit_json, log, run, table


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--json and --debug on every command (they may also be given before the command name)."""

    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout (logs stay on stderr).")
    @click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
    @functools.wraps(fn)
    def wrapper(*args: Any, as_json: bool, debug: bool, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        root = ctx.find_root().params
        return fn(*args, as_json=as_json or root.get("as_json", False), debug=debug or root.get("debug", False), **kwargs)

    return wrapper


store_option = click.option(
    "--store",
    envvar="PACK_STORE",
    default="model_store",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Model store folder (environment: PACK_STORE).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pack")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output for the command.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def main(as_json: bool, debug: bool) -> None:
    """Package PyTorch models for serving: export, validate, archive, deploy.

    \b
    Exit codes: 0 ok, 1 internal error, 2 bad input, 3 parity failure,
    4 deploy or smoke test failed, 5 environment (missing dependency or server), 130 interrupted.
    """


@main.command("models")
@common
def models_cmd(as_json: bool, debug: bool) -> None:
    """List the built-in models."""

    def body(out: Any) -> None:
        from .registry import list_models

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
@click.option("--version", "version", help="Version number (default 1).")
@store_option
@click.option("--force", is_flag=True, help="Replace an existing version.")
@click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE[:DTYPE][:dyn=AXES][:range=LOW,HIGH]",
              help="Input, e.g. input_ids:2x16:int64:dyn=0,1:range=0,1000 (repeat per input; passed to the forward() parameter of that name).")
@click.option("--formats", help="Formats that must each pass: torchscript,onnx,pt2,aoti (default: torchscript,onnx,pt2 are tried; one must pass).")
@click.option("--batch-sizes", help="Batch sizes to validate, comma-separated (default 1,4).")
@click.option("--atol", type=float, help="Absolute tolerance of the parity gate.")
@click.option("--rtol", type=float, help="Relative tolerance of the parity gate.")
@click.option("--seed", type=int, help="Seed for random weights and example inputs (default 0).")
@click.option("--opset", type=click.IntRange(9, 23), help="ONNX opset (default: the exporter's own, 17 legacy / 18+ dynamo).")
@click.option("--torchscript", type=click.Choice(["auto", "trace", "script"]), help="auto: trace, script when tracing is unsafe.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--slim", is_flag=True, help="Simplify the ONNX graph with onnxslim.")
@click.option("--iterations", type=click.IntRange(0, 10000), default=10, show_default=True, help="Timed runs per format and batch size (0 skips measuring).")
@common
def build_cmd(model: str | None, spec: str | None, store: str, force: bool, inputs: tuple[str, ...], batch_sizes: str | None, iterations: int, as_json: bool, debug: bool, **opts: Any) -> None:
    """Export MODEL (TorchScript, ONNX, torch.export, AOTInductor), validate against eager, measure, and record.

    MODEL is a built-in name (see `pack models`), path/to/file.py:callable, or a TorchScript/pickled model file.
    """

    def body(out: Any) -> None:
        from .errors import UsageError
        from .plan import parse_input, resolve

        overrides = dict(opts)
        if inputs:
            overrides["inputs"] = [parse_input(t) for t in inputs]
        if batch_sizes:
            try:
                overrides["batch_sizes"] = [int(b) for b in batch_sizes.split(",") if b.strip()]
            except ValueError:
                raise UsageError(f"--batch-sizes {batch_sizes!r} is not a comma-separated list of integers") from None
        plan = resolve(model, spec, overrides)

        from .build import build
        from .summary import build_summary

        report, folder = build(plan, Path(store), force, log, iterations=iterations)
        if as_json:
            emit_json(out, {**report, "path": str(folder.resolve())})
        else:
            out.write(build_summary(report, folder) + "\n")

    run(debug, body)


def _load_build(store: str, model: str, version: str | None) -> tuple[Path, dict[str, Any]]:
    from .build import load_report
    from .store import find_build

    folder = find_build(store, model, version)
    return folder, load_report(folder)


target_option = click.option(
    "--target", type=click.Choice(["torchserve", "triton", "kserve"]), default="torchserve", show_default=True
)
server_options = [
    click.option("--url", help="Use a running server at this URL instead of launching one (TorchServe: management URL)."),
    click.option("--token-file", type=click.Path(dir_okay=False), help="TorchServe key_file.json for --url."),
    click.option("--tritonserver", "server_binary", type=click.Path(dir_okay=False), help="tritonserver binary to launch."),
    click.option("--timeout", type=float, default=180.0, show_default=True, help="Seconds to wait for the server and the model."),
]


def with_server_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(server_options):
        fn = option(fn)
    return fn


def _options(store: str, **kwargs: Any) -> Any:
    from .targets import DeployOptions

    extra = kwargs.pop("extra", {})
    return DeployOptions(store=Path(store), extra=extra, **{k: v for k, v in kwargs.items() if v is not None})


@main.command("deploy")
@click.argument("model")
@click.option("--version", "version", help="Build version to deploy (default: the latest).")
@target_option
@store_option
@with_server_options
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript", "pt2", "aoti"]), help="Which export to serve (default: onnx when it passed).")
@click.option("--backend", type=click.Choice(["onnxruntime", "pytorch", "torch_aoti", "python"]), help="Triton backend.")
@click.option("--workers", type=int, help="Workers (TorchServe) or instances (Triton).")
@click.option("--batch-size", type=int, help="Server-side batch size.")
@click.option("--max-batch-delay", "max_batch_delay_ms", type=int, help="Milliseconds to wait to fill a batch.")
@click.option("--runtime", type=click.Choice(["torchserve", "triton"]), help="KServe: the serving runtime.")
@click.option("--storage-uri", help="KServe: where the storage folder will be uploaded (s3://, gs://, pvc://).")
@click.option("--apply", "apply_", is_flag=True, help="KServe: run kubectl apply when kubectl and a context exist.")
@click.option("--protocol", type=click.Choice(["v1", "v2"]), help="KServe: inference protocol (torchserve v1|v2, triton v2).")
@click.option("--cpu", help="KServe: CPU request and limit (default 1).")
@click.option("--memory", help="KServe: memory request and limit (default 2Gi).")
@click.option("--gpus", type=int, help="KServe: nvidia.com/gpu per replica (default 0).")
@click.option("--min-replicas", type=int, help="KServe: minimum replicas (default 1).")
@click.option("--max-replicas", type=int, help="KServe: maximum replicas (default 3).")
@click.option("--scale-target", type=int, help="KServe: autoscaling target, concurrent requests per replica (default 8).")
@common
def deploy_cmd(model: str, version: str | None, target: str, store: str, fmt: str | None, runtime: str | None, storage_uri: str | None, apply_: bool, as_json: bool, debug: bool, **kw: Any) -> None:
    """Deploy a built MODEL to a server (launched locally unless --url) and smoke-test it.

    With --target kserve: write the storage folder and a schema-checked InferenceService manifest instead.
    """

    def body(out: Any) -> None:
        from .targets import call

        folder, report = _load_build(store, model, version)
        kserve = {k: kw.pop(k) for k in ("protocol", "cpu", "memory", "gpus", "min_replicas", "max_replicas", "scale_target")}
        opts = _options(store, format=fmt, extra={"runtime": runtime, "storage_uri": storage_uri, "apply": apply_, **kserve}, **kw)
        result = call(target, "deploy", folder, report, opts, log)
        _print_result(out, result, as_json)

    run(debug, body)


@main.command("status")
@target_option
@store_option
@with_server_options
@common
def status_cmd(target: str, store: str, as_json: bool, debug: bool, **kw: Any) -> None:
    """What is registered on the target's server: models, versions, workers."""

    def body(out: Any) -> None:
        from .targets import call

        _print_result(out, call(target, "status", _options(store, **kw), log), as_json)

    run(debug, body)


@main.command("undeploy")
@click.argument("model")
@click.option("--version", "version", help="Only this version (default: every version).")
@target_option
@store_option
@with_server_options
@common
def undeploy_cmd(model: str, version: str | None, target: str, store: str, as_json: bool, debug: bool, **kw: Any) -> None:
    """Unregister MODEL from the target's server."""

    def body(out: Any) -> None:
        from .targets import call

        _print_result(out, call(target, "undeploy", model, version, _options(store, **kw), log), as_json)

    run(debug, body)


@main.command("stop")
@target_option
@store_option
@common
def stop_cmd(target: str, store: str, as_json: bool, debug: bool) -> None:
    """Stop the server that pack launched for the target."""

    def body(out: Any) -> None:
        from .targets import call

        _print_result(out, call(target, "stop", _options(store), log), as_json)

    run(debug, body)


@main.command("archive")
@click.argument("model")
@click.option("--version", "version", help="Build version (default: the latest).")
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript", "pt2", "aoti"]), help="Which export the .mar serves.")
@click.option("--batch-size", type=int, help="batch_size in model-config.yaml.")
@click.option("--max-batch-delay", "max_batch_delay_ms", type=int, help="max_batch_delay in model-config.yaml (ms).")
@click.option("--workers", type=int, help="minWorkers/maxWorkers in model-config.yaml.")
@click.option("--force", is_flag=True, help="Replace an existing archive.")
@store_option
@common
def archive_cmd(model: str, version: str | None, fmt: str | None, force: bool, store: str, as_json: bool, debug: bool, **kw: Any) -> None:
    """(Re)write the TorchServe .mar and config.properties of an existing build."""

    def body(out: Any) -> None:
        from .targets import call

        folder, report = _load_build(store, model, version)
        opts = _options(store, format=fmt, extra={"force": force}, **kw)
        _print_result(out, call("torchserve", "archive", folder, report, opts, log), as_json)

    run(debug, body)


@main.command("repo")
@click.argument("model")
@click.option("--version", "version", help="Build version (default: the latest).")
@click.option("--backend", type=click.Choice(["onnxruntime", "pytorch", "torch_aoti", "python"]), default="onnxruntime", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript", "pt2", "aoti"]), help="python backend: which export model.py runs.")
@click.option("--instances", type=int, default=1, show_default=True, help="instance_group count.")
@click.option("--max-batch", type=int, help="max_batch_size (0 disables batching).")
@click.option("--force", is_flag=True, help="Replace an existing repository entry.")
@store_option
@common
def repo_cmd(model: str, version: str | None, backend: str, fmt: str | None, instances: int, max_batch: int | None, force: bool, store: str, as_json: bool, debug: bool) -> None:
    """Write a Triton model repository entry for a build."""

    def body(out: Any) -> None:
        from .targets import call

        folder, report = _load_build(store, model, version)
        opts = _options(store, backend=backend, format=fmt, extra={"instances": instances, "max_batch": max_batch, "force": force})
        _print_result(out, call("triton", "repo", folder, report, opts, log), as_json)

    run(debug, body)


@main.command("check-repo")
@click.argument("repository", type=click.Path(file_okay=False))
@common
def check_repo_cmd(repository: str, as_json: bool, debug: bool) -> None:
    """Check a Triton model repository offline: every config.pbtxt against its model files."""

    def body(out: Any) -> None:
        from .targets import call

        from .errors import ValidationFailed

        result = call("triton", "check_repo", Path(repository), log)
        _print_result(out, result, as_json)
        for problem in result["problems"]:
            log(f"{problem['severity']}: {problem['message']}")
        errors = [p for p in result["problems"] if p["severity"] == "error"]
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise ValidationFailed(f"{errors[0]['message']}{more}", "fix config.pbtxt or regenerate it with `pack repo`")

    run(debug, body)


@main.command("verify")
@click.argument("target", type=click.Path(exists=True))
@click.option("--parity", is_flag=True, help="Also re-run the sample inputs through every export and compare.")
@common
def verify_cmd(target: str, parity: bool, as_json: bool, debug: bool) -> None:
    """Check a build folder, .mar or Triton repository: digests, archive structure, optionally parity (exit 3 on any difference)."""

    def body(out: Any) -> None:
        from .errors import ValidationFailed
        from .verify import verify

        result = verify(Path(target), parity, log)
        if as_json:
            emit_json(out, result)
        else:
            for f in result["findings"]:
                out.write(f"FAIL {f['path']}: {f['problem']}\n")
            out.write(f"{target}: {'verified' if result['passed'] else 'verification failed'} ({result['kind']})\n")
        if not result["passed"]:
            first = result["findings"][0]
            raise ValidationFailed(
                f"{len(result['findings'])} difference(s); first: {first['path']}: {first['problem']}",
                "rebuild or re-download the artifacts; do not ship this folder",
            )

    run(debug, body)


@main.command("inspect")
@click.argument("target", type=click.Path(exists=True))
@common
def inspect_cmd(target: str, as_json: bool, debug: bool) -> None:
    """Summarise a build folder, .mar or Triton repository: manifest, config, I/O, versions."""

    def body(out: Any) -> None:
        from .inspect_cmd import inspect

        _print_result(out, inspect(Path(target)), as_json)

    run(debug, body)


@main.command("bench")
@click.argument("model")
@click.option("--version", "version", help="Build version (default: the latest; a built-in model missing from the store is built into a temporary store).")
@store_option
@click.option("--targets", default="inprocess,torchserve,triton", show_default=True, help="Rows to measure: inprocess, torchserve, triton.")
@click.option("--concurrency", default="1,8,32", show_default=True, help="Concurrent callers per run, comma-separated.")
@click.option("--requests", type=click.IntRange(1, 100000), default=200, show_default=True, help="Timed requests per run (per row and concurrency).")
@click.option("--time-limit", type=click.FloatRange(1, 3600), default=120.0, show_default=True, help="Seconds a run may take; it stops early past it.")
@click.option("--warmup", type=click.IntRange(0, 100), default=2, show_default=True, help="Untimed requests per caller before each run.")
@click.option("--threads", type=click.IntRange(0, 256), default=0, show_default=True, help="In-process torch/onnxruntime threads (0: the libraries' defaults).")
@click.option("--batch", type=click.IntRange(1, 256), default=8, show_default=True, help="Batch size of the in-process eager-vs-ONNX comparison.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write a PNG: latency vs throughput per row.")
@click.option("--workers", type=click.IntRange(1, 64), help="TorchServe workers (bench default 1).")
@click.option("--batch-size", type=click.IntRange(1, 256), help="TorchServe batch size (bench default 1).")
@click.option("--max-batch-delay", type=click.IntRange(0, 10000), help="TorchServe max batch delay, ms (bench default 0).")
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript", "pt2", "aoti"]), help="What TorchServe serves (default onnx).")
@click.option("--instances", type=click.IntRange(1, 64), help="Triton instance count (bench default 1).")
@click.option("--max-batch", type=click.IntRange(0, 256), help="Triton max_batch_size (bench default 8).")
@click.option("--max-queue-delay", type=click.IntRange(0, 10000), help="Triton dynamic batching delay, ms (bench default 1).")
@click.option("--timeout", type=float, default=180.0, show_default=True, help="Seconds to wait for a server and its model.")
@common
def bench_cmd(model: str, version: str | None, store: str, targets: str, concurrency: str, requests: int, time_limit: float, warmup: int, threads: int, batch: int, plot_path: str | None, workers: int | None, batch_size: int | None, max_batch_delay: int | None, fmt: str | None, instances: int | None, max_batch: int | None, max_queue_delay: int | None, timeout: float, as_json: bool, debug: bool) -> None:
    """Measure MODEL in-process and behind TorchServe and Triton: cold start, memory, throughput, latency.

    Servers are launched from a temporary store and stopped at the end. See docs/bench.md.
    """

    def body(out: Any) -> None:
        import sys

        from .bench import BenchOptions, parse_list, run_bench
        from .bench.report import plot, text_table

        options = BenchOptions(
            model=model, version=version, store=Path(store), targets=parse_list(targets, "targets"),
            concurrency=parse_list(concurrency, "concurrency", int), requests=requests, time_limit_s=time_limit, warmup=warmup,
            threads=threads, batch=batch, timeout=timeout,
            torchserve={"workers": workers, "batch_size": batch_size, "max_batch_delay_ms": max_batch_delay, "format": fmt},
            triton={"instances": instances, "max_batch": max_batch, "max_queue_delay_ms": max_queue_delay},
            command="pack " + " ".join(sys.argv[1:]),
        )
        result = run_bench(options, log)
        if plot_path:
            result["plot"] = str(plot(result, Path(plot_path)))
            log(f"wrote {plot_path}")
        if as_json:
            emit_json(out, result)
        else:
            out.write(text_table(result) + "\n")

    run(debug, body)


def _print_result(out: Any, result: dict[str, Any], as_json: bool) -> None:
    """JSON document with --json; otherwise the target's `summary` line(s), or key: value lines."""
    if as_json:
        emit_json(out, result)
        return
    summary = result.get("summary")
    if summary:
        out.write(summary.rstrip("\n") + "\n")
        return
    for key, value in result.items():
        out.write(f"{key}: {value}\n")


if __name__ == "__main__":
    main()
