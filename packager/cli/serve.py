"""The serving commands: deploy, status, undeploy, stop (every target), archive (TorchServe), repo and check-repo
(Triton), check-manifest (KServe). Their target options are built from the targets' own option dataclasses
(packager/targets/base.py), so a flag lives with the target it belongs to and a flag of another target is refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..console import log, run
from ..targets.base import all_targets, cli_fields, get_target, make_options, names
from .app import (
    SECONDS,
    SHARED,
    _print_result,
    chain_option,
    common,
    format_option,
    main,
    public_key_option,
    rewrite_line,
    sign_key_option,
    store_option,
    version_option,
)

DEFAULT_TARGET = "triton"  # TorchServe stays fully supported with --target torchserve (README "Serving")


def _load_build(store: str, model: str, version: str | None, verify: bool = True) -> tuple[Path, Any]:
    """The build and its report; checked against its digests unless the command checks it itself (`pack archive`,
    under the store lock, reading only the export it packs)."""
    from ..report.build_report import BuildReport
    from ..report.store import find_build
    from .verify import require_intact

    folder = find_build(store, model, version)
    report = BuildReport.load(folder)
    if verify:
        require_intact(folder, report)  # nothing unverified reaches a server, an archive or a repository
    return folder, report


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
                kwargs["type"] = click.Choice(list(meta["choices"]))
            elif meta["type"] is not None:
                kwargs["type"] = SECONDS if meta["type"] is float else meta["type"]  # the targets' floats are seconds
            fn = click.option(meta["flag"], name, default=None, **kwargs)(fn)
        return click.option(
            "--target", type=click.Choice(names()), default=DEFAULT_TARGET, show_default=True, help="Where to serve."
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
    any build whose signature does not verify with the given key.
    """

    def body(out: Any) -> None:
        from ..report.trust import deploy_check

        chosen = get_target(target)
        opts = make_options(chosen, "deploy", Path(store), given)
        folder, report = _load_build(store, model, version)
        deploy_check(folder, report, require_signature, public_key, chain)  # once, before any target runs
        _print_result(out, chosen.deploy(folder, report, opts), as_json)

    run(debug, body)


@main.command("status")
@store_option
@target_options("status")
@common
def status_cmd(target: str, store: str, as_json: bool, debug: bool, **given: Any) -> None:
    """What is served on the target's server: models, versions, workers."""

    def body(out: Any) -> None:
        chosen = get_target(target)
        _print_result(out, chosen.status(make_options(chosen, "status", Path(store), given)), as_json)

    run(debug, body)


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
        _print_result(out, chosen.undeploy(model, version, make_options(chosen, "undeploy", Path(store), given)), as_json)

    run(debug, body)


@main.command("stop")
@store_option
@target_options("stop")
@common
def stop_cmd(target: str, store: str, as_json: bool, debug: bool, **given: Any) -> None:
    """Stop the server that pack launched for the target."""

    def body(out: Any) -> None:
        chosen = get_target(target)
        _print_result(out, chosen.stop(make_options(chosen, "stop", Path(store), given)), as_json)

    run(debug, body)


@main.command("archive")
@click.argument("model")
@version_option()
@format_option("Which export the .mar serves.")
@click.option("--batch-size", type=int, help="batch_size in model-config.yaml.")
@click.option("--max-batch-delay", "max_batch_delay_ms", type=int, help="max_batch_delay in model-config.yaml (ms).")
@click.option("--workers", type=int, help="minWorkers/maxWorkers in model-config.yaml.")
@click.option("--threads", type=int, help="onnxruntime intra-op (or torch) threads per worker; 0: the library's default.")
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
    """(Re)write the TorchServe .mar and config.properties of an existing build. A signed build is signed again with
    --sign-key; without it, its signature is removed and a warning says so."""

    def body(out: Any) -> None:
        from ..report.trust import rewriting

        chosen = get_target("torchserve")
        with rewriting("pack archive", sign_key) as rule:  # the key is checked before any work
            folder, report = _load_build(store, model, version, verify=False)  # archive() checks what it reads, locked
            opts = chosen.Options(
                store=Path(store), format=fmt, extra={"force": force}, **{k: v for k, v in kw.items() if v is not None}
            )
            result = chosen.archive(folder, report, opts)  # type: ignore[attr-defined]  # TorchServe's own command
        summary = "\n".join(filter(None, [result.get("summary", ""), rewrite_line(rule.outcome).rstrip()]))
        _print_result(out, {**result, "signature": rule.outcome, "summary": summary}, as_json)

    run(debug, body)


@main.command("repo")
@click.argument("model")
@version_option()
@click.option(
    "--backend",
    type=click.Choice(["onnxruntime", "pytorch", "torch_aoti", "python"]),
    help="Triton backend (default: the native backend of the served export: onnxruntime for ONNX, pytorch for "
    "TorchScript, torch_aoti for AOTInductor; python for an ExportedProgram).",
)
@format_option("Which export to serve (default: ONNX when it passed); with --backend python, which export model.py runs.")
@click.option("--instances", type=int, default=1, show_default=True, help="instance_group count.")
@click.option("--max-batch", type=int, help="max_batch_size (0 disables batching).")
@click.option("--force", is_flag=True, help="Replace an existing repository entry.")
@store_option
@common
def repo_cmd(
    model: str,
    version: str | None,
    backend: str | None,
    fmt: str | None,
    instances: int,
    max_batch: int | None,
    force: bool,
    store: str,
    as_json: bool,
    debug: bool,
) -> None:
    """Write a Triton model repository entry for a build."""

    def body(out: Any) -> None:
        chosen = get_target("triton")
        folder, report = _load_build(store, model, version)
        opts = chosen.Options(
            store=Path(store), backend=backend, format=fmt, extra={"instances": instances, "max_batch": max_batch, "force": force}
        )
        _print_result(out, chosen.repo(folder, report, opts), as_json)  # type: ignore[attr-defined]  # Triton's own command

    run(debug, body)


@main.command("check-repo")
@click.argument("repository", type=click.Path(file_okay=False))
@common
def check_repo_cmd(repository: str, as_json: bool, debug: bool) -> None:
    """Check a Triton model repository offline: every config.pbtxt against its model files."""

    def body(out: Any) -> None:
        from ..errors import ValidationFailed

        result = get_target("triton").check_repo(Path(repository))  # type: ignore[attr-defined]  # Triton's own command
        _print_result(out, result, as_json)
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

        result = get_target("kserve").check_manifest(Path(manifest))  # type: ignore[attr-defined]  # KServe's own command
        _print_result(out, result, as_json)
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
