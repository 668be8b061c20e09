"""Where a run came from: its id and time, the git commit and branch, the CI run."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from pytest_llmeval.support.problems import ConfigError

# (provider, the variable holding its run id, the variables naming the branch)
CI_RUN_VARIABLES = (
    ("github-actions", "GITHUB_RUN_ID", ("GITHUB_HEAD_REF", "GITHUB_REF_NAME")),
    ("gitlab-ci", "CI_PIPELINE_ID", ("CI_COMMIT_REF_NAME",)),
    ("buildkite", "BUILDKITE_BUILD_ID", ("BUILDKITE_BRANCH",)),
    ("circleci", "CIRCLE_WORKFLOW_ID", ("CIRCLE_BRANCH",)),
    ("jenkins", "BUILD_TAG", ("BRANCH_NAME",)),
    ("azure-pipelines", "BUILD_BUILDID", ("BUILD_SOURCEBRANCHNAME",)),
)


def _version() -> str:
    # pyproject.toml's version, as installed: the one place it is written.
    return version("pytest-llmeval")


@dataclass(frozen=True)
class Provenance:
    run_id: str
    started_at: float  # epoch seconds
    plugin_version: str = field(default_factory=_version)
    commit: str | None = None
    branch: str | None = None
    ci: dict[str, str] = field(default_factory=dict)  # provider, run_id
    # A shard's {"index", "total"} (--llm-shard), a merged run's {"total"}; None: one job.
    shard: dict[str, int] | None = None

    @classmethod
    def now(cls, root: Path, shard: tuple[int, int] | None = None) -> Provenance:
        ci, ci_branch = _ci()
        branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
        if branch in (None, "HEAD"):  # a detached checkout, as CI makes: CI knows the name
            branch = ci_branch
        return cls(
            run_id=_run_id(ci, sharded=shard is not None),
            started_at=time.time(),
            commit=_git(root, "rev-parse", "HEAD") or os.environ.get("GITHUB_SHA"),
            branch=branch,
            ci=ci,
            shard=None if shard is None else {"index": shard[0], "total": shard[1]},
        )

    @property
    def sharded(self) -> bool:
        return self.shard is not None

    @property
    def short_commit(self) -> str:
        return self.commit[:7] if self.commit else "no-git"

    @property
    def stamp(self) -> str:
        """The start time as a name part that sorts: 20261126T180759Z."""
        return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.started_at))


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")


def _run_id(ci: dict[str, str], *, sharded: bool) -> str:
    """LLMEVAL_RUN_ID when set; for a shard, else the CI run's id, which every job of one
    CI run shares (so the shards know they belong together); else a fresh UUID."""
    given = os.environ.get("LLMEVAL_RUN_ID", "").strip()
    if given:
        if not RUN_ID.fullmatch(given):
            raise ConfigError(
                f"LLMEVAL_RUN_ID {given[:120]!r}: a run id is 1 to 100 letters, digits and "
                "._:- (starting with a letter or digit)"
            )
        return given
    if sharded and ci:
        return f"{ci['provider']}-{ci['run_id']}"
    return str(uuid.uuid4())


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None  # no git, not a repository, or a repository without commits
    return done.stdout.strip() or None


def _ci() -> tuple[dict[str, str], str | None]:
    """The CI provider and run id (nothing outside CI), and the branch CI names."""
    for provider, run_variable, branch_variables in CI_RUN_VARIABLES:
        if os.environ.get(run_variable):
            branch = next((os.environ[v] for v in branch_variables if os.environ.get(v)), None)
            return {"provider": provider, "run_id": os.environ[run_variable]}, branch
    return {}, None
