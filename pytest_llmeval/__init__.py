"""pytest-llmeval: LLM regression testing with YAML golden cases across a model matrix."""

from __future__ import annotations

from importlib.metadata import version

from pytest_llmeval.python_api import LLM
from pytest_llmeval.scoring.verdict import Verdict

__all__ = ["LLM", "Verdict", "__version__"]
__version__ = version("pytest-llmeval")
