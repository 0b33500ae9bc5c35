"""The Triton target: model repositories with config.pbtxt from the build's real I/O, checked offline, deployed to
a local tritonserver (or --url) through the repository API.

    package(build_dir, report)       pack build: build_dir/triton/, a python-backend repository of the build
    repo(build_dir, report, opts)    pack repo: <store>/triton/<model>/..., any backend, versions kept
    check_repo(path)                 pack check-repo: every config.pbtxt against its model files
    deploy / status / undeploy / stop     pack deploy|status|undeploy|stop --target triton (deploy.py, manage.py)
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from ...report.build_report import BuildReport

logger = logging.getLogger(__name__)

BUILD_FOLDER = "triton"
STORE_FOLDER = "triton"

__all__ = ["package", "repo", "check_repo"]


def package(build_dir: Path, report: BuildReport) -> dict[str, Any]:
    """Write build_dir/triton/ (python backend running the served export, ONNX when it passed: what a CPU
    tritonserver can serve) and check
    it offline; returns the report section (paths relative to build_dir)."""
    dest = build_dir / BUILD_FOLDER
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    from ...report.formats import served
    from .check import check_repository, raise_on_errors
    from .repository import RepoOptions, generate, report_section

    fmt = served(report).format
    section = generate(build_dir, report, RepoOptions(backend="python", fmt=fmt), dest)
    result = check_repository(dest)
    raise_on_errors(result)
    logger.info(f"triton: repository entries {', '.join(section['models'])} (python backend) pass the offline check")
    return report_section(section, BUILD_FOLDER)


def repo(build_dir: Path, report: BuildReport, opts: Any) -> dict[str, Any]:
    """Write the build's entries into the store's repository `<store>/triton/`, atomically, keeping other versions."""
    from .check import check_repository, raise_on_errors
    from .deploy import repo_options, staged_entries
    from .install import RepositoryLock, install
    from .repository import auto_backend, model_names, triton_version

    ropts = repo_options(opts, default_backend=auto_backend(report, opts.format, None), report=report)  # for any server
    force = bool(opts.extra.get("force"))
    repository = Path(opts.store) / STORE_FOLDER
    version = triton_version(report)
    names = model_names(report, ropts.backend)
    with staged_entries(build_dir, report, ropts, repository) as (staged, section):
        with RepositoryLock(repository):
            install(staged, repository, names, version, force)
    result = check_repository(repository, only=names)
    raise_on_errors(result)
    return {
        "target": "triton",
        "repository": str(repository),
        "model": report.name,
        "version": version,
        "backend": section["backend"],
        "format": section["format"],
        "served_file": section["served_file"],
        "models": names,
        "serving_model": section["serving_model"],
        "max_batch_size": section["max_batch_size"],
        "instances": section["instances"],
        "files": section["files"],
        "check": {"ok": result["ok"], "problems": result["problems"]},
        "summary": f"wrote {', '.join(names)} v{version} ({section['backend']} backend, "
        f"max_batch_size {section['max_batch_size']}) to {repository}; offline check passed",
    }


def check_repo(path: Path) -> dict[str, Any]:
    """The check-repo document (`ok`, `models`, `problems`, `summary`); the CLI prints it, then fails when not ok."""
    from .check import check_repository

    return check_repository(Path(path))
