"""The documentation against the code: README length, files and commands it names, links and anchors,
and the configuration reference (every key with its default) and environment variables in docs/."""
from __future__ import annotations

import dataclasses
import json
import re
import shlex
import typing
from collections.abc import Mapping
from pathlib import Path

import pytest

from advsal_bench import cli
from advsal_bench.attacks import ADAPTIVE_ATTACKS, ATTACKS
from advsal_bench.config import SuiteConfig
from advsal_bench.detectors import DETECTORS
from advsal_bench.schema import yaml_load as _yaml_load

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
CONFIG_DOC = ROOT / "docs" / "configuration.md"
README_MAX_LINES = 260

# Paths into the repository, as the docs write them: `configs/quick.yaml`, `tests/test_x.py::test_y`.
REPO_PATH = re.compile(r"(?<![\w./-])((?:configs|benchmarks|tests|advsal_bench|csrc)/[\w./<>-]*)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
COMMAND = re.compile(r"python -m advsal_bench(?:[ \t]+[^`\n]*)?")


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_readme_stays_short() -> None:
    lines = _text(README).count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move reference material to docs/")


def _mentioned(pattern: re.Pattern[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for page in PAGES:
        for m in pattern.finditer(_text(page)):
            found.setdefault(m.group(1).rstrip(".,:;"), set()).add(_rel(page))
    return found


def test_every_suite_file_mentioned_exists() -> None:
    suites = {p: pages for p, pages in _mentioned(REPO_PATH).items() if p.startswith("configs/") and p.endswith(".yaml")}
    assert "configs/quick.yaml" in suites, "the README's quick-start command names configs/quick.yaml"
    missing = {p: sorted(pages) for p, pages in suites.items() if not (ROOT / p).is_file()}
    assert not missing, f"suite files named in the docs but absent: {missing}"


def test_every_repository_path_mentioned_exists() -> None:
    missing = {p: sorted(pages) for p, pages in _mentioned(REPO_PATH).items()
               if "<" not in p and not (ROOT / p).exists()}
    assert not missing, f"paths named in the docs but absent: {missing}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", _text(page), flags=re.M | re.S)  # no headings inside code blocks
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, re.M)}


def test_slug_matches_github_for_the_headings_used_here() -> None:
    assert _slug("Reading the output") == "reading-the-output"
    assert _slug("`epsilon_selection`") == "epsilon_selection"
    assert _slug("`classifier` (f)") == "classifier-f"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_local_links_and_anchors_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(_text(page)):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and (dest.suffix != ".md" or anchor not in _anchors(dest)):
            broken.append(f"{target} (no heading #{anchor})")
    assert not broken, f"{_rel(page)}: {broken}"


def _commands() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        for m in COMMAND.finditer(_text(page)):
            cmd = re.split(r"\s(?:&&|\|\||[|;#])", m.group(0))[0]
            out.append((_rel(page), cmd.strip()))
    return out


def test_every_cli_command_in_the_docs_has_that_subcommand_and_options() -> None:
    parser = cli._parser()
    (sub,) = [a for a in parser._actions if a.choices and isinstance(a.choices, dict)]
    commands = _commands()
    assert ("README.md", "python -m advsal_bench run configs/quick.yaml") in commands
    wrong = []
    for page, cmd in commands:
        words = shlex.split(cmd)[3:]
        if not words:
            continue
        name, *rest = words
        if name.startswith("-"):
            target, rest = parser, words
        elif name in sub.choices:
            target = sub.choices[name]
        else:
            wrong.append(f"{page}: {cmd!r}: no subcommand {name!r}")
            continue
        for word in rest:
            option = word.split("=", 1)[0]
            if option.startswith("-") and option not in target._option_string_actions:
                wrong.append(f"{page}: {cmd!r}: {name} has no option {option}")
    assert not wrong, wrong


# --- docs/configuration.md against the schema --------------------------------------------------

REQUIRED, THE_NAME = "required", "the name"
DETECTOR_TYPE = "the name if it is a kind, else `learned`"
KEY_ROW = re.compile(r"^\|\s*`([a-z_][a-z0-9_.<>]*)`\s*\|\s*(.*?)\s*\|")


def _schema_defaults() -> dict[str, object]:
    out: dict[str, object] = {}

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{prefix}{f.name}.")
            elif f.default is not dataclasses.MISSING:
                out[prefix + f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                out[prefix + f.name] = f.default_factory()  # type: ignore[misc]
            else:
                out[prefix + f.name] = REQUIRED

    walk(SuiteConfig, "")
    del out["adaptive.params"]  # each adaptive attack's section, below
    for kind, spec in ATTACKS.items():
        walk(spec.config, f"attacks.{kind}.")
        del out[f"attacks.{kind}.type"]
    out["attacks.<name>.type"] = THE_NAME
    for kind, spec in DETECTORS.items():  # the paper's D under any name; each other kind under its own
        prefix = "detectors.<name>." if kind == "learned" else f"detectors.{kind}."
        walk(spec.config, prefix)
        del out[f"{prefix}type"]
    out["detectors.<name>.type"] = DETECTOR_TYPE
    for kind, spec in ADAPTIVE_ATTACKS.items():
        walk(spec.config, f"adaptive.{kind}.")
    return out


def _plain(value: object) -> object:
    if isinstance(value, Mapping):  # attacks / detectors: name -> settings, all defaults: {}
        return {k: {} if dataclasses.is_dataclass(v) and v == type(v)() else v for k, v in value.items()}
    if isinstance(value, tuple):
        return list(value)
    return value


def _documented() -> dict[str, str]:
    top = {f.name for f in dataclasses.fields(SuiteConfig)}
    rows = {}
    keys_section = _text(CONFIG_DOC).split("\n## Keys\n", 1)[1].split("\n## ", 1)[0]
    for line in keys_section.splitlines():
        m = KEY_ROW.match(line)
        if m and m.group(1).split(".")[0] in top:
            assert m.group(1) not in rows, f"docs/configuration.md documents {m.group(1)} twice"
            rows[m.group(1)] = m.group(2)
    return rows


def test_configuration_reference_lists_every_key_and_no_other() -> None:
    schema, documented = _schema_defaults(), _documented()
    assert not schema.keys() - documented.keys(), f"undocumented keys: {sorted(schema.keys() - documented.keys())}"
    assert not documented.keys() - schema.keys(), f"documented, not in the schema: {sorted(documented.keys() - schema.keys())}"


def test_configuration_reference_defaults_match_the_schema() -> None:
    schema, documented = _schema_defaults(), _documented()
    wrong = []
    for key, cell in documented.items():
        want = schema.get(key)
        if want in (REQUIRED, THE_NAME, DETECTOR_TYPE):
            ok = cell == want
        else:
            m = re.fullmatch(r"`([^`]*)`", cell)
            ok = m is not None and _yaml_load(m.group(1), key) == _plain(want)
        if not ok:
            wrong.append(f"{key}: documented {cell}, schema default {_plain(want)!r}")
    assert not wrong, wrong


# --- environment variables ---------------------------------------------------------------------


def _env_row(name: str) -> list[str]:
    for line in _text(CONFIG_DOC).splitlines():
        if line.startswith(f"| `{name}` |"):
            return [c.strip() for c in line.strip("|").split("|")]
    raise AssertionError(f"docs/configuration.md has no row for {name}")


def test_every_documented_environment_variable_is_read_by_the_code() -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "advsal_bench").rglob("*.py"))
    named = {m for page in PAGES for m in re.findall(r"\bADVSAL_[A-Z_]+\b", _text(page))}
    assert "ADVSAL_PAIRSEARCH_BACKEND" in named
    unread = sorted(n for n in named if f'"{n}"' not in source)
    assert not unread, f"documented but never read by advsal_bench: {unread}"


def test_pairsearch_backend_variable_takes_the_documented_values(monkeypatch) -> None:
    import advsal_bench.pairsearch as ps

    values = set(re.findall(r"`([a-z]+)`", _env_row(ps.ENV_VAR)[1]))
    assert values == set(ps.BACKENDS)
    for backend in ps.available_backends():  # reference and numpy always; native where it is built
        monkeypatch.setenv(ps.ENV_VAR, backend)
        assert ps.resolve_backend("auto") == backend
    monkeypatch.setenv(ps.ENV_VAR, "fastest")
    with pytest.raises(ValueError, match=ps.ENV_VAR):
        ps.resolve_backend("auto")


@pytest.mark.parametrize("name, default", [("ADVSAL_HEARTBEAT_TIMEOUT", "DEFAULT_HEARTBEAT_TIMEOUT_S"),
                                           ("ADVSAL_CLUSTER_TIMEOUT", "DEFAULT_CLUSTER_TIMEOUT_S")])
def test_timeout_variables_documented_defaults_and_effect(monkeypatch, name: str, default: str) -> None:
    from advsal_bench import distribute
    from advsal_bench.errors import ConfigError

    documented = float(re.search(r"default (\d+)", _env_row(name)[1]).group(1))
    assert documented == getattr(distribute, default)
    monkeypatch.setenv(name, "7.5")
    assert distribute._env_seconds(name, getattr(distribute, default)) == 7.5
    monkeypatch.setenv(name, "soon")
    with pytest.raises(ConfigError, match=name):
        distribute._env_seconds(name, getattr(distribute, default))


MNIST_RESULTS = ROOT / "docs" / "results" / "mnist"
MNIST_OVERRIDES = ["dataset.source=idx", "dataset.path=../shared/data/mnist"]


def test_committed_mnist_results_are_the_paper_scale_run():
    results = json.loads((MNIST_RESULTS / "results.json").read_text(encoding="utf-8"))
    assert (results["data"]["train"], results["data"]["test"]) == (60000, 10000)
    assert (results["data"]["adversarial_train"], results["data"]["adversarial_test"]) == (60000, 10000)
    assert set(results["attacks"]) == {"fgsm", "ifgsm_linf", "ifgsm_l2", "jsma"}
    assert {row["detector"] for row in results["table1"]} == {"image_saliency", "image_only", "saliency_only"}
    assert {"eps_generalization", "attack_generalization"} <= set(results)


def test_committed_mnist_results_still_match_configs_mnist_yaml(monkeypatch):
    """A change to configs/mnist.yaml fails here until docs/results/mnist is rerun (or the change is
    shown not to matter and config.yaml there updated, saying so in docs/results.md)."""
    from advsal_bench.config import config_to_yaml, load_config

    if not (ROOT.parent / "shared" / "data" / "mnist").is_dir():
        pytest.skip("../shared/data/mnist is absent")
    monkeypatch.chdir(ROOT)
    cfg = load_config(ROOT / "configs" / "mnist.yaml", MNIST_OVERRIDES)
    assert config_to_yaml(cfg) == (MNIST_RESULTS / "config.yaml").read_text(encoding="utf-8")
