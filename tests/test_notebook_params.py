"""Every chapter parameter is checked before any work (issue 13, item 6).

`python -m diffusion_study.book.notebook execute` checks the values against the chapter's parameters
cell, SIZES and LIMITS before a kernel starts (one line, exit status 1, well under 2 s);
`setup_notebook` runs the same check inside the kernel (plain papermill, JupyterLab). These tests
read the real chapters' parameter cells; no notebook is executed.
"""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from diffusion_study.book import notebook
from diffusion_study.book.notebook import chapter_spec, check_parameters, setup_notebook
from diffusion_study.book.parameters import ParameterError, check_chapter_parameters

ROOT = Path(__file__).resolve().parents[1]
ELBO = ROOT / "notebooks" / "01_elbo.ipynb"
TOY = ROOT / "notebooks" / "02_toy_study.ipynb"
SAMPLING = ROOT / "notebooks" / "03_sampling.ipynb"
CHAPTERS = sorted((ROOT / "notebooks").glob("[!.]*.ipynb"))

# (parameters, the start of the one-line message): every case issue 13 lists
BAD = [
    ({"profile": "fast"}, "parameter profile = 'fast': must be one of 'smoke', 'cpu', 'gpu'"),
    ({"T": -5}, "parameter T = -5: must be an integer >= 1"),
    ({"T": 0}, "parameter T = 0: must be an integer >= 1"),
    ({"T": "abc"}, "parameter T = 'abc': must be an integer >= 1"),
    ({"T": 2.5}, "parameter T = 2.5: must be an integer >= 1"),
    ({"T": float("nan")}, "parameter T = nan: must be an integer >= 1"),
    ({"seed": -1}, "parameter seed = -1: must be an integer >= 0"),
    ({"seed": "x"}, "parameter seed = 'x': must be an integer >= 0"),
    ({"n_data": 0}, "parameter n_data = 0: must be an integer >= 1"),
    ({"gap_Ts": "[0, 3]"}, "parameter gap_Ts = [0, 3]: must be a non-empty list of integers >= 1"),
    ({"gap_Ts": 16}, 'parameter gap_Ts = 16: must be a non-empty list of integers >= 1; pass a list in brackets: '
                     '-p gap_Ts "[4, 16, 64]"'),
    ({"gap_Ts": "[]"}, "parameter gap_Ts = []: must be a non-empty list"),
    ({"elbo_T": 1}, "parameter elbo_T = 1: must be an integer >= 2"),
    ({"foo": 1}, "parameter foo = 1: unknown; this chapter's parameters are profile, seed, seeds, T,"),
]
IDS = [f"{k}={v!r}" for (params, _) in BAD for k, v in params.items()]


@pytest.mark.parametrize(("params", "message"), BAD, ids=IDS)
def test_a_bad_parameter_is_named_with_its_value_and_range(params, message, tmp_path):
    with pytest.raises(ParameterError) as info:
        check_parameters(ELBO, {"out_dir": str(tmp_path), **params})
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)
    assert info.value.name == next(iter(params))


def test_gpu_without_cuda_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(notebook, "_cuda_available", lambda: False)
    with pytest.raises(ParameterError, match=r"^parameter profile = 'gpu': needs a CUDA device .*-p profile cpu"):
        check_parameters(ELBO, {"profile": "gpu", "out_dir": str(tmp_path)})
    monkeypatch.setattr(notebook, "_cuda_available", lambda: True)
    assert check_parameters(ELBO, {"profile": "gpu", "out_dir": str(tmp_path)})["profile"] == "gpu"


def test_the_fast_cuda_probe_agrees_with_torch():
    import torch

    assert notebook._cuda_available() == torch.cuda.is_available()


@pytest.mark.parametrize("where", ["under_a_file", "read_only"])
def test_an_unwritable_out_dir_is_refused_before_the_run(where, tmp_path):
    if where == "under_a_file":
        blocker = tmp_path / "file"
        blocker.write_text("")
        out_dir = blocker / "sub"
    else:
        import os

        if os.geteuid() == 0:
            pytest.skip("root writes everywhere")
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out_dir = locked / "out"
    with pytest.raises(ParameterError, match=r"^parameter out_dir = '.*': is not writable \(.*\); pass -p out_dir"):
        check_parameters(ELBO, {"out_dir": str(out_dir)})
    assert not out_dir.exists()  # the check creates nothing


def test_the_relative_default_out_dir_is_checked_from_the_kernels_folder(tmp_path):
    assert check_parameters(ELBO, {}, cwd=tmp_path / "notebooks") == {}
    blocker = tmp_path / "results"
    blocker.write_text("")  # "../results/01_elbo" from tmp_path/notebooks lies under a file
    with pytest.raises(ParameterError, match="out_dir = '../results/01_elbo'"):
        check_parameters(ELBO, {"profile": "smoke"}, cwd=tmp_path / "notebooks")


def test_lists_given_as_text_are_read_as_lists(tmp_path):
    checked = check_parameters(ELBO, {"gap_Ts": "[16, 64]", "iw_ks": "1, 4", "T": 8.0, "out_dir": str(tmp_path)})
    assert checked["gap_Ts"] == [16, 64] and checked["iw_ks"] == [1, 4]
    assert checked["T"] == 8 and isinstance(checked["T"], int)


def test_the_toy_study_factors_must_come_from_the_chapters_own_levels(tmp_path):
    ok = check_parameters(TOY, {"processes": "stochastic,pairing", "lr": 1, "out_dir": str(tmp_path)})
    assert ok["processes"] == ["stochastic", "pairing"] and ok["lr"] == 1.0
    with pytest.raises(ParameterError, match="processes = \\['spiral'\\]: must be a non-empty list of values from "
                                             "'stochastic', 'noise_free', 'pairing'"):
        check_parameters(TOY, {"processes": ["spiral"], "out_dir": str(tmp_path)})
    with pytest.raises(ParameterError, match="lr = 0: must be a finite number > 0"):
        check_parameters(TOY, {"lr": 0, "out_dir": str(tmp_path)})
    with pytest.raises(ParameterError, match="scales = \\[-1\\]: must be a non-empty list of finite numbers >= 0"):
        check_parameters(SAMPLING, {"scales": [-1], "out_dir": str(tmp_path)})


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_every_chapters_own_values_pass(path, profile, tmp_path):
    params, sizes, limits = chapter_spec(path)
    assert check_parameters(path, {"profile": profile, "out_dir": str(tmp_path)})["profile"] == profile
    for name, value in sizes[profile].items():  # each profile value, given explicitly
        assert name in dict((p[0], p[1]) for p in params), name
        check_chapter_parameters({name: value}, params, sizes, limits)


def test_the_elbo_chapter_declares_its_limit():
    assert chapter_spec(ELBO)[2] == {"elbo_T": (2, None)}


# ----------------------------------------------------------------------------- the command line


def _execute(args, capsys):
    code = notebook.main(["execute", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("params", "message"), BAD, ids=IDS)
def test_execute_fails_in_one_line_before_any_kernel(params, message, tmp_path, capsys, monkeypatch):
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a kernel was started"))
    text = lambda v: v if isinstance(v, str) else ".nan" if v != v else repr(v)  # noqa: E731 (YAML's NaN)
    args = [a for k, v in params.items() for a in ("-p", k, text(v))]
    code, err = _execute(["--dest", str(tmp_path / "out"), *args, str(ELBO)], capsys)
    assert code == 1
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert err.rstrip().endswith("(01_elbo); no notebook was run")
    assert not (tmp_path / "out").exists()


def test_execute_time_to_error_is_under_two_seconds(tmp_path):
    """The whole command, interpreter start included: nothing heavy (torch, papermill) is imported first."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "diffusion_study.book.notebook", "execute", "--dest", str(tmp_path),
                           "-p", "T", "-5", str(ELBO)], capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - start
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == "error: parameter T = -5: must be an integer >= 1 (01_elbo); no notebook was run\n"
    assert elapsed < 2.0, f"{elapsed:.2f} s from command to error"


def test_the_check_command_reads_lists_and_says_ok_with_status_0(capsys, tmp_path):
    assert notebook.main(["check", "-p", "gap_Ts", "[16, 64]", "-p", "out_dir", str(tmp_path), str(ELBO)]) == 0
    assert notebook.main(["check", "-p", "T", "None", str(ELBO)]) == 0  # None: the profile's value
    assert notebook.main(["check", "-p", "elbo_T", "1", str(ELBO)]) == 1
    assert capsys.readouterr().err == "error: parameter elbo_T = 1: must be an integer >= 2 (01_elbo)\n"


def test_execute_passes_checked_values_to_papermill(tmp_path, monkeypatch):
    import shutil

    import papermill

    seen = {}

    def fake(src, out, parameters, **kwargs):
        seen.update(parameters)
        shutil.copy(src, out)

    monkeypatch.setattr(papermill, "execute_notebook", fake)
    notebook.execute(ELBO, tmp_path / "01_elbo.ipynb", {"gap_Ts": "[16, 64]", "out_dir": str(tmp_path)})
    assert seen == {"gap_Ts": [16, 64], "out_dir": str(tmp_path)}


def test_a_parameter_error_in_the_kernel_is_one_line_with_the_failed_copy(tmp_path, monkeypatch):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    def fail(src, out, **kwargs):
        Path(out).write_text("{}")
        raise PapermillExecutionError(1, 2, "cfg = setup_notebook(...)", "ParameterError",
                                      "parameter T = -5: must be an integer >= 1; the "
                                      "notebook stopped in its setup cell, before any work", ["long", "trace"])

    monkeypatch.setattr(papermill, "execute_notebook", fail)
    with pytest.raises(notebook.NotebookFailed) as info:
        notebook.execute(ELBO, tmp_path / "out" / "01_elbo.ipynb", {"out_dir": str(tmp_path)},
                         failed_dir=tmp_path / "failed")
    message = str(info.value)
    assert "\n" not in message and "trace" not in message
    failed = next((tmp_path / "failed").iterdir())
    assert message.endswith(f"setup cell, before any work (01_elbo); the executed notebook: {failed}")
    assert failed.name.startswith("01_elbo-")
    assert not list((tmp_path / "out").glob(".*running*"))


# ----------------------------------------------------------------------------- inside the kernel


def _sizes():
    _, sizes, limits = chapter_spec(ELBO)
    return sizes, limits


NONE = dict.fromkeys(["seeds", "T", "n_chains", "n_data", "elbo_T", "gap_Ts", "iw_ks", "n_step"])


@pytest.mark.parametrize(("params", "message"), [case for case in BAD if "foo" not in case[0]], ids=IDS[:-1])
def test_setup_notebook_checks_the_same_and_says_the_setup_cell_failed(params, message, tmp_path, monkeypatch):
    sizes, limits = _sizes()
    values = {"profile": "cpu", "seed": 0, **NONE, **params}
    with pytest.raises(ParameterError) as info:
        setup_notebook(values.pop("profile"), values.pop("seed"), tmp_path, sizes=sizes, limits=limits, **values)
    assert str(info.value).startswith(message)
    assert str(info.value).endswith("the notebook stopped in its setup cell, before any work")


def test_setup_notebook_refuses_gpu_without_cuda(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    sizes, limits = _sizes()
    with pytest.raises(ParameterError, match="profile = 'gpu': needs a CUDA device.*setup cell"):
        setup_notebook("gpu", 0, tmp_path, sizes=sizes, limits=limits, **NONE)


def test_setup_notebook_refuses_an_unwritable_out_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    sizes, limits = _sizes()
    with pytest.raises(ParameterError, match="out_dir = '.*sub': is not writable.*setup cell"):
        setup_notebook("smoke", 0, blocker / "sub", sizes=sizes, limits=limits, **NONE)


def test_setup_notebook_reads_a_list_given_as_text(tmp_path):
    sizes, limits = _sizes()
    cfg = setup_notebook("smoke", 3, tmp_path, sizes=sizes, limits=limits, **{**NONE, "gap_Ts": "[16, 64]"})
    assert cfg.gap_Ts == [16, 64] and cfg.seed == 3 and cfg.T == sizes["smoke"]["T"]


def test_unknown_injected_parameters_are_found_in_the_kernel_history():
    from diffusion_study.book.notebook import unknown_injected_parameters

    parameters_cell = 'profile = "cpu"  # the profile\nseed = 0\nT = None\n'
    injected = '# Parameters\nprofile = "smoke"\nfoo = 1\nT = 5\n'
    assert unknown_injected_parameters(["", parameters_cell, injected, "setup"]) == {"foo": "1"}
    assert unknown_injected_parameters(["", parameters_cell, "# Parameters\nT = 5\n"]) == {}
    assert unknown_injected_parameters(["", parameters_cell, "x = 1"]) == {}  # JupyterLab: nothing injected


def test_setup_notebook_refuses_a_parameter_the_chapter_does_not_declare(tmp_path, monkeypatch):
    monkeypatch.setattr(notebook, "_unknown_injected_parameters", lambda: {"foo": "1"})
    sizes, limits = _sizes()
    with pytest.raises(ParameterError, match="^parameter foo = 1: unknown; this chapter's parameters are profile, "
                                             "seed, out_dir, seeds, T, .*setup cell"):
        setup_notebook("smoke", 0, tmp_path, sizes=sizes, limits=limits, **NONE)


def test_papermill_style_options_are_checked_too(capsys):
    assert notebook.main(["check", "-y", "gap_Ts: [16, 64]\nT: 8", "-r", "seeds", "2", str(ELBO)]) == 0
    assert notebook.main(["check", "-p", "T", "1e3", str(ELBO)]) == 0  # papermill reads 1e3 as a number
    assert notebook.main(["check", "-y", "gap_Ts: [0]", str(ELBO)]) == 1
    assert notebook.main(["check", "-y", "[oops", str(ELBO)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "error: parameter gap_Ts = [0]: must be a non-empty list of integers >= 1 (01_elbo)"
    assert err[1].startswith("error: -y takes a YAML mapping")


def test_limits_bound_values_and_list_lengths():
    params = {"profile": "cpu", "seed": 0, "steps": None, "w": None, "rate": None}
    sizes = {p: {"steps": [5, 10], "w": 3, "rate": 0.5} for p in ("smoke", "cpu", "gpu")}
    limits = {"steps": {"min_len": 2, "high": 100}, "w": (2, 4)}
    ok = check_chapter_parameters({"steps": [1, 100], "w": "4", "rate": 2}, params, sizes, limits)
    assert ok["steps"] == [1, 100] and ok["w"] == 4 and ok["rate"] == 2.0
    for bad, message in [({"steps": [5]}, "steps = \\[5\\]: must be a list of at least 2 integers in \\[1, 100\\]"),
                         ({"steps": [5, 101]}, "in \\[1, 100\\]"),
                         ({"w": 5}, "w = 5: must be an integer in \\[2, 4\\]"),
                         ({"rate": float("inf")}, "rate = inf: must be a finite number > 0")]:
        with pytest.raises(ParameterError, match=message):
            check_chapter_parameters(bad, params, sizes, limits)
