"""The serving commands: deploy, status, undeploy, stop (every target), and the commands of one capability each,
run by the one target that has it (packager/targets/capabilities.py): archive, repo, check-repo, check-manifest.
Their target options are built from the targets' own option dataclasses (packager/targets/base.py), so a flag lives
with the target it belongs to and a flag of another target is refused; a server setting's flag is declared once
(packager/serve/settings.py). No target is named here: the choices and the default come from the registry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..console import log, print_result, run
from ..errors import Unhealthy
from ..report.store import drop_scratch, leftover_scratch
from ..targets import ARCHIVER, MANIFEST_CHECKER, REPOSITORY_CHECKER, REPOSITORY_WRITER, DeployOptions, sole
from ..targets.base import all_targets, get_target, make_options, names
from ..targets.options import cli_fields
from .app import (
    SECONDS,
    SHARED,
    chain_option,
    common,
    format_option,
    main,
    public_key_option,
    rewrite_line,
    setting_option,
    sign_key_option,
    store_option,
    version_option,
)


def target_options(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--target plus every target's options for `command` (each flag once; its help names the targets it serves)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        seen: dict[str, tuple[Any, list[str]]] = {}
        for target in all_targets():
            for f in cli_fields(target.Options):
                if command in f.metadata["cli"]["commands"]:
                    seen.setdefault(f.name, (f, []))[1].append(target.name)
        for name, (f, owners) in reversed(list(seen.items())):
            meta = f.metadata["cli"]
            scope = "" if len(owners) == len(all_targets()) else f" [{', '.join(owners)}]"
            if meta["flag"] in SHARED:  # an option other commands take too: its one declaration
                fn = SHARED[meta["flag"]](meta["help"] + scope, name)(fn)
                continue
            kwargs: dict[str, Any] = {"help": meta["help"] + scope}
            if meta["is_flag"]:
                kwargs["is_flag"] = True
            elif meta["choices"]:
                choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]  # from the registry
                kwargs["type"] = click.Choice(list(choices))
            elif meta["type"] is not None:
                kwargs["type"] = SECONDS if meta["type"] is float else meta["type"]  # the targets' floats are seconds
            fn = click.option(meta["flag"], name, default=None, **kwargs)(fn)
        return click.option(
            "--target", type=click.Choice(names()), default=names()[0], show_default=True, help="Where to serve."
        )(fn)

    return decorate


@main.command("deploy")
@click.argument("model")
@version_option("Build version to deploy (default: the latest).")
@store_option
@target_options("deploy")
@click.option(
    "--require-signature",
    is_flag=True,
    help="Refuse (exit 3) a build whose model.sig does not verify with --public-key or --certificate-chain.",
)
@public_key_option("With --require-signature: the signer's EC public key (PEM).")
@chain_option("With --require-signature: trusted certificates (PEM) of a certificate signature (repeat per file).")
@common
def deploy_cmd(
    model: str,
    version: str | None,
    target: str,
    store: str,
    require_signature: bool,
    public_key: str | None,
    chain: tuple[str, ...],
    as_json: bool,
    debug: bool,
    **given: Any,
) -> None:
    """Deploy a built MODEL to a server (launched locally unless --url) and smoke-test it.

    With --target kserve: write the storage folder and a schema-checked InferenceService manifest instead.
    A build whose signature is stale, broken or was removed is deployed with a warning; --require-signature refuses
    any build whose signature does not verify with the given key, and with --public-key the serving code checks it
    again inside the server, over the bytes it is about to load, and refuses to serve them (503) when they differ.
    """

    def body(out: Any) -> None:
        from ..report.integrity import intact_build
        from ..report.provenance import SIGNATURE
        from ..report.trust import deploy_check

        chosen = get_target(target)
        opts = make_options(chosen, "deploy", Path(store), given)
        folder, report = intact_build(store, model, version)
        deploy_check(folder, report, require_signature, public_key, chain)  # once, before any target runs
        if require_signature and public_key:  # the serving code checks it again, over the bytes it loads
            opts.extra["signature"] = (str(folder / SIGNATURE), str(Path(public_key).resolve()))
        print_result(out, chosen.deploy(folder, report, opts), as_json)

    run(debug, body)


@main.command("status")
@store_option
@target_options("status")
@common
def status_cmd(target: str, store: str, as_json: bool, debug: bool, **given: Any) -> None:
    """What is served on the target's server: models, versions, workers."""

    def body(out: Any) -> None:
        chosen = get_target(target)
        result = chosen.status(make_options(chosen, "status", Path(store), given))
        left = [chosen.status(make_options(chosen, "status", f / "store", given)) for f in leftover_scratch(store)]
        result = with_leftovers(result, [doc for doc in left if doc.get("running")], "running")
        print_result(out, result, as_json)  # the whole document first, then the exit code says its health
        sick = unhealthy(result)
        if sick:
            raise health_failure(sick, bool(given.get("repair")))

    run(debug, body)


def with_leftovers(result: dict[str, Any], left: list[dict[str, Any]], verb: str) -> dict[str, Any]:
    """A status or stop result with the servers of a killed `pack tune` or `pack bench` (its scratch store under the store's
    `.scratch/`), listed under `leftovers` and in the summary."""
    if not left:
        return result
    lines = [f"left by a killed pack: {verb}: {doc.get('url') or '?'} (pid {doc.get('pid')})" for doc in left]
    if verb == "running":
        lines.append("  `pack stop` with the same --target and --store stops it")
    return {**result, "leftovers": left, "summary": "\n".join([str(result.get("summary") or ""), *lines])}


def unhealthy(result: dict[str, Any]) -> list[str]:
    """The deployments ("name vN") a status document reports unhealthy."""
    from ..serve.health import UNHEALTHY, each_health

    return [key for key, health in each_health(result).items() if health.get("health") == UNHEALTHY]


def health_failure(sick: list[str], repaired: bool) -> Unhealthy:
    """The one line (exit 7) of a status whose document reports an unhealthy deployment."""
    if repaired:
        return Unhealthy(f"not repaired: {', '.join(sick)}", "see the server's log, then redeploy (pack deploy MODEL --force)")
    return Unhealthy(f"unhealthy: {', '.join(sick)}", "run `pack status --repair`, or see the server's log")


@main.command("undeploy")
@click.argument("model")
@version_option("Only this version (default: every version).")
@store_option
@target_options("undeploy")
@common
def undeploy_cmd(model: str, version: str | None, target: str, store: str, as_json: bool, debug: bool, **given: Any) -> None:
    """Unregister MODEL from the target's server."""

    def body(out: Any) -> None:
        chosen = get_target(target)
        print_result(out, chosen.undeploy(model, version, make_options(chosen, "undeploy", Path(store), given)), as_json)

    run(debug, body)


@main.command("stop")
@store_option
@target_options("stop")
@common
def stop_cmd(target: str, store: str, as_json: bool, debug: bool, **given: Any) -> None:
    """Stop the server that pack launched for the target."""

    def body(out: Any) -> None:
        chosen = get_target(target)
        result = chosen.stop(make_options(chosen, "stop", Path(store), given))
        left = []
        for folder in leftover_scratch(store):  # the servers and files of a killed `pack tune` or `pack bench`
            left.append(chosen.stop(make_options(chosen, "stop", folder / "store", given)))
            drop_scratch(folder)  # once no server of another target is left in it
        print_result(out, with_leftovers(result, [doc for doc in left if doc.get("stopped")], "stopped"), as_json)

    run(debug, body)


@main.command("archive")
@click.argument("model")
@version_option()
@format_option("Which export the archive serves.")
@setting_option("workers")
@setting_option("batch_size")
@setting_option("max_batch_delay_ms")
@setting_option("threads")
@click.option("--force", is_flag=True, help="Replace an existing archive.")
@store_option
@sign_key_option
@common
def archive_cmd(
    model: str,
    version: str | None,
    fmt: str | None,
    force: bool,
    store: str,
    sign_key: str | None,
    as_json: bool,
    debug: bool,
    **kw: Any,
) -> None:
    """(Re)write the server archive (TorchServe's .mar and config.properties) of an existing build. A signed build is
    signed again with --sign-key; without it, its signature is removed and a warning says so."""

    def body(out: Any) -> None:
        from ..report.build_report import BuildReport
        from ..report.store import find_build
        from ..report.trust import rewriting

        with rewriting("pack archive", sign_key) as rule:  # the key is checked before any work
            folder = find_build(store, model, version)  # the archive checks what it reads, under the model's lock
            opts = DeployOptions(store=Path(store), format=fmt, extra={"force": force}, **kw)
            result = sole(ARCHIVER).archive(folder, BuildReport.load(folder), opts)
        summary = "\n".join(filter(None, [result.get("summary", ""), rewrite_line(rule.outcome).rstrip()]))
        print_result(out, {**result, "signature": rule.outcome, "summary": summary}, as_json)

    run(debug, body)


@main.command("repo")
@click.argument("model")
@version_option()
@click.option(
    "--backend",
    type=click.Choice(["auto", "onnxruntime", "pytorch", "torch_aoti", "python"]),
    help="Triton backend (default auto: the native backend of the served export: onnxruntime for ONNX, pytorch for "
    "TorchScript, torch_aoti for AOTInductor; python for an ExportedProgram).",
)
@format_option("Which export to serve (default: ONNX when it passed); with --backend python, which export model.py runs.")
@setting_option("workers", "--instances")
@setting_option("batch_size", "--max-batch")
@setting_option("max_batch_delay_ms")
@setting_option("threads")
@click.option("--force", is_flag=True, help="Replace an existing repository entry.")
@store_option
@common
def repo_cmd(
    model: str,
    version: str | None,
    backend: str | None,
    fmt: str | None,
    force: bool,
    store: str,
    as_json: bool,
    debug: bool,
    **settings: Any,
) -> None:
    """Write a build's entries into the store's model repository (Triton's), checked offline."""

    def body(out: Any) -> None:
        from ..report.integrity import intact_build

        folder, report = intact_build(store, model, version)
        opts = DeployOptions(store=Path(store), backend=backend, format=fmt, extra={"force": force}, **settings)
        print_result(out, sole(REPOSITORY_WRITER).repo(folder, report, opts), as_json)

    run(debug, body)


@main.command("check-repo")
@click.argument("repository", type=click.Path(file_okay=False))
@common
def check_repo_cmd(repository: str, as_json: bool, debug: bool) -> None:
    """Check a model repository (Triton's) offline: every config.pbtxt against its model files."""

    def body(out: Any) -> None:
        from ..errors import ValidationFailed

        result = sole(REPOSITORY_CHECKER).check_repo(Path(repository))
        print_result(out, result, as_json)
        for problem in result["problems"]:
            log(f"{problem['severity']}: {problem['message']}")
        errors = [p for p in result["problems"] if p["severity"] == "error"]
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise ValidationFailed(f"{errors[0]['message']}{more}", "fix config.pbtxt or regenerate it with `pack repo`")

    run(debug, body)


@main.command("check-manifest")
@click.argument("manifest", type=click.Path(dir_okay=False))
@common
def check_manifest_cmd(manifest: str, as_json: bool, debug: bool) -> None:
    """Check a KServe manifest offline: every InferenceService, ServingRuntime or ClusterServingRuntime document in
    MANIFEST against the KServe CRD schema, strictly (an unknown field anywhere is an error; exit 3)."""

    def body(out: Any) -> None:
        from ..errors import ValidationFailed

        result = sole(MANIFEST_CHECKER).check_manifest(Path(manifest))
        print_result(out, result, as_json)
        problems = [(d, p) for d in result["documents"] for p in d["problems"]]
        if problems:
            doc, first = problems[0]
            where = f"document {doc['index'] + 1}: " if len(result["documents"]) > 1 else ""
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ValidationFailed(
                f"{manifest}: {where}{first['path']}: {first['message']}{more}",
                "fix the manifest or regenerate it with pack deploy",
            )

    run(debug, body)
