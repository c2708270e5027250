"""The CLI: help everywhere, a version, and clear errors with exit status 2."""

import re

import pytest
from typer.testing import CliRunner

from fedlora import __version__
from fedlora.cli.app import app, main

runner = CliRunner()
COMMANDS = ["pretrain", "compress", "simulate", "info", "bench compress", "bench federation", "keys generate", "run"]


def invoke(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run the real entry point (which prints FedloraError itself) and return (status, stderr)."""
    monkeypatch.setattr("sys.argv", ["fedlora", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err + captured.out


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"fedlora {__version__}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output and "--" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["simulate", "--method", "bogus"], "unknown method 'bogus'; choose one of fedit, ffa, core, fedsa, flexlora"),
        (["simulate", "--clients", "500"], "textlm cannot make 500 clients"),
        (["simulate", "--fraction", "0"], r"--fraction must be in \(0, 1\], got 0.0"),
        (["simulate", "--wire", "int4"], "unknown wire format 'int4'"),
        (["simulate", "--task", "nope"], "unknown task 'nope'"),
        (["simulate", "--corpus", "/nonexistent/corpus"], "does not exist"),
        (["compress", "--rank", "100"], "rank 100 is larger than layer 'blocks.0.attn.q' allows"),
        (["compress", "--rank", "4", "--energy", "0.9"], "at most one of --rank, --energy and --param-ratio"),
        (["compress", "--targets", "nothing"], "matches no nn.Linear layer"),
        (["bench", "compress", "--ratios", "half"], "--ratios must be numbers"),
        (["simulate", "--lr", "nan"], "--lr must be a finite number > 0, got nan"),
        (["simulate", "--alpha", "nan"], "--alpha must be a finite number > 0, got nan"),
        (["simulate", "--targets", "("], r"--targets '\(' is not a regular expression"),
        (["plan", "--profile", "rpi4", "--targets", "("], r"--targets '\(' is not a regular expression"),
        (["simulate", "--param-ratio", "5"], r"--param-ratio must be in \(0, 1\]"),
        (["simulate", "--batch-size", "100000000"], "use at most 65,536"),
        (["simulate", "--norm-bound", "nan"], "--norm-bound must be a finite number"),
        (["simulate", "--robust", "mode"], "--robust 'mode': choose one of mean, median, trimmed, krum"),
        (["export", "--run", "/nonexistent/run", "--base-only"], r"--run /nonexistent/run is not a folder \(it does not exist\)"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(monkeypatch, capsys, tmp_path, args, message):
    monkeypatch.setenv("FEDLORA_CACHE", str(tmp_path))
    status, output = invoke(monkeypatch, capsys, *args, *(["--out", str(tmp_path / "out")] if args[0] == "simulate" else []))
    assert status == 2
    assert re.search(message, " ".join(output.split())), output
    assert "Traceback" not in output
    assert not list(tmp_path.glob("pretrained/*")), "nothing was trained before the input was checked"


def test_bad_option_values_are_refused_by_the_parser():
    result = runner.invoke(app, ["simulate", "--rank", "0"])
    assert result.exit_code == 2 and "0 is not in the range x>=1" in result.output


def test_an_output_path_that_is_a_file_or_cannot_be_made_is_refused_before_any_work(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("FEDLORA_CACHE", str(tmp_path / "cache"))
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for option, value, message in [
        ("--out", a_file, "is a file; give a folder"),
        ("--out", a_file / "below", "cannot be created"),
        ("--cache-dir", a_file, "is a file; give a folder"),
    ]:
        extra = [] if option == "--out" else ["--out", str(tmp_path / "out")]
        status, output = invoke(monkeypatch, capsys, "simulate", option, str(value), *extra)
        assert status == 2 and message in " ".join(output.split()) and "Traceback" not in output, output
    assert not (tmp_path / "cache").exists(), "nothing was built before the paths were checked"


def test_a_fedlora_folder_in_the_working_folder_is_refused_not_imported_by_the_clients(monkeypatch, capsys, tmp_path):
    (tmp_path / "fedlora").mkdir()
    monkeypatch.chdir(tmp_path)
    status, output = invoke(monkeypatch, capsys, "simulate", "--clients", "2")
    assert status == 2 and "holds a fedlora/ folder" in " ".join(output.split()) and "run fedlora simulate from another folder" in " ".join(output.split())


def _earlier_invocation(out):
    (out / "fedit").mkdir(parents=True)
    (out / "fedit" / "rounds.jsonl").write_text("{}\n")
    (out / "summary.json").write_text("{}")
    (out / "client-state" / "fedit" / "fed-abc").mkdir(parents=True)
    (out / "client-state" / "fedit" / "fed-abc" / "c.safetensors").write_bytes(b"x")
    (out / "mine.txt").write_text("not fedlora's")


def test_an_earlier_invocation_in_out_is_refused_and_left_alone(monkeypatch, capsys, tmp_path):
    out = tmp_path / "out"
    _earlier_invocation(out)
    status, output = invoke(monkeypatch, capsys, "simulate", "--clients", "2", "--out", str(out))
    assert status == 2 and "holds the results of an earlier invocation" in " ".join(output.split()) and "--overwrite" in output
    assert (out / "client-state" / "fedit" / "fed-abc" / "c.safetensors").exists()


def test_clearing_an_invocation_removes_fedlora_s_files_only(tmp_path):
    from fedlora.run_layout import InvocationLayout

    out = tmp_path / "out"
    _earlier_invocation(out)
    removed = InvocationLayout(out).clear()
    assert sorted(path.name for path in removed) == ["client-state", "fedit", "summary.json"]
    assert sorted(path.name for path in out.iterdir()) == ["mine.txt"] and InvocationLayout(out).earlier() == []
