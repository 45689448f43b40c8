"""Loading a TARGET: conventions, call forms, config autowiring, import strategy, and every load error."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from gradcheck_cli.config.specs import parse_target
from gradcheck_cli.load.target import load, package_root
from gradcheck_cli.records.errors import TargetError

WILD = Path(__file__).parent / "fixtures" / "wild"
JSON = ("--format", "json", "--device", "cpu", "--batches", "1", "--batch-size", "4")


def fails_cleanly(result, *words: str) -> str:
    """Exit 2, one message naming `words`, no traceback, nothing on stdout (the --format json contract)."""
    assert result.exit_code == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert [line.startswith("error:") for line in result.stderr.splitlines()].count(True) == 1
    assert "hint:" in result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)
    return result.stderr


def test_file_not_found(cli, tmp_path) -> None:
    fails_cleanly(cli("analyze", str(tmp_path / "nope.py"), *JSON), "nope.py", "not found")


def test_syntax_error_shows_the_line(cli, tmp_path) -> None:
    bad = tmp_path / "broken.py"
    bad.write_text("import torch\n\nclass Net(torch.nn.Module:\n    pass\n")
    fails_cleanly(
        cli("analyze", str(bad), *JSON), "syntax error", "broken.py:3", "class Net(torch.nn.Module:"
    )


def test_missing_module_names_module_and_import_line(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    fails_cleanly(
        cli("analyze", "missing_dep.py", *JSON),
        "'flash_attn_not_installed'",
        "not installed",
        "missing_dep.py:3: import flash_attn_not_installed",
        "pip install",
    )


def test_no_model_found(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    err = fails_cleanly(
        cli("analyze", "no_model.py", *JSON), "no_model.py: found no model", "no_model.py:NAME"
    )
    assert "NewGELU" not in err  # a class without parameters is not a model


def test_several_models_list_the_exact_forms(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    fails_cleanly(
        cli("analyze", "dcgan.py", *JSON), "several models", "dcgan.py:Generator", "dcgan.py:Discriminator"
    )


def test_classes_needing_arguments_and_factories_are_listed(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    fails_cleanly(
        cli("analyze", "resnet_cifar.py", *JSON),
        "'resnet_cifar.py:ResNet(BLOCK, NUM_BLOCKS)'",
        "'resnet_cifar.py:BasicBlock(IN_PLANES, PLANES)'",
        "resnet_cifar.py:ResNet18",
        "gradcheck analyze resnet_cifar.py:ResNet18",
    )


def test_constructor_needs_arguments_shows_signature_and_call_form(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    fails_cleanly(
        cli("analyze", "vgg_switch.py:VGG", *JSON),
        "VGG(vgg_name)",
        "missing a required argument: 'vgg_name'",
        "'vgg_switch.py:VGG(VGG_NAME)'",
        "--init",
    )


def test_constructor_that_raises_is_reported_with_its_line(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    fails_cleanly(
        cli("analyze", "mingpt_style.py:GPT", *JSON), "building GPT(config) failed", "set config.vocab_size"
    )


def test_argparse_at_import_time(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    fails_cleanly(
        cli("analyze", "argv_required.py", *JSON),
        "this file runs a script at import time (parse_args at line 9",
        '__name__ == "__main__"',
    )


def test_script_sees_only_its_own_path_in_argv(cli, monkeypatch) -> None:
    """gradcheck's own flags (--format ...) must not reach the file's parse_args()."""
    monkeypatch.chdir(WILD)
    assert cli("analyze", "argv_defaults.py", *JSON).exit_code in (0, 1)


def test_malformed_init(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    fails_cleanly(
        cli("analyze", "gpt_config.py:GPT", "--init", "n_layer", *JSON), "--init 'n_layer'", "KEY=VALUE"
    )


def test_unknown_config_field_suggests_the_right_one(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    fails_cleanly(
        cli("analyze", "gpt_config.py:GPT", "--init", "n_layers=1", *JSON),
        "GPTConfig has no field",
        "n_layer",
    )


def test_unknown_name_in_file(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    fails_cleanly(cli("analyze", "resnet_cifar.py:ResNet19", *JSON), "has no 'ResNet19'", "ResNet18")


# --------------------------------------------------------------------------- in-process loading


def load_file(target: str, **init):
    return load(parse_target(target), init, {})


def test_config_dataclass_autowired_with_init_fields(monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    loaded = load_file("gpt_config.py:GPT", n_layer=1, vocab_size=32)
    assert loaded.init_args["config"]["n_layer"] == 1
    assert loaded.module.lm_head.out_features == 32
    assert len(loaded.module.transformer.h) == 1


def test_get_default_config_autowired(monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    loaded = load_file("mingpt_style.py:GPT", vocab_size=10, block_size=4)
    assert loaded.module.wpe.num_embeddings == 4
    assert loaded.init_args["config"]["vocab_size"] == 10


def test_bare_file_skips_parameterless_classes_and_parts(monkeypatch) -> None:
    """gpt_config.py has NewGELU (no parameters), and Block/attention used inside GPT: GPT is the model."""
    monkeypatch.chdir(WILD)
    loaded = load_file("gpt_config.py")
    assert type(loaded.module).__name__ == "GPT"
    assert loaded.found_by == "single-subclass"


def test_call_form_with_nested_config(monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    loaded = load_file("gpt_config.py:GPT(GPTConfig(n_layer=3, n_embd=8))")
    assert len(loaded.module.transformer.h) == 3
    assert loaded.found_by == "call"


def test_call_form_takes_init_as_extra_keywords(monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    loaded = load_file("resnet_cifar.py:ResNet(BasicBlock, [1, 1])", num_classes=3)
    assert loaded.module.linear.out_features == 3
    assert loaded.init_args == {"call": "ResNet(BasicBlock, [1, 1])", "num_classes": 3}


def test_kw_only_constructor_takes_init(monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    args = dict(image_size=32, patch_size=8, num_classes=4, dim=8, depth=1, heads=2, mlp_dim=16)
    loaded = load_file("vit_kwonly.py:ViT", **args)
    assert loaded.module.head[1].out_features == 4
    assert loaded.init_args == args


def test_same_file_name_in_two_projects_loads_both(tmp_path) -> None:
    for project, width in (("a", 3), ("b", 5)):
        folder = tmp_path / project
        folder.mkdir()
        (folder / "model.py").write_text(
            textwrap.dedent(f"""
            import torch.nn as nn
            def build_model():
                return nn.Linear(2, {width})
            """)
        )
    first = load_file(str(tmp_path / "a" / "model.py"))
    second = load_file(str(tmp_path / "b" / "model.py"))
    assert (first.module.out_features, second.module.out_features) == (3, 5)


def test_package_init_is_not_run_for_a_standalone_file(tmp_path) -> None:
    pkg = tmp_path / "heavy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('the package imports something heavy')\n")
    (pkg / "net.py").write_text("import torch.nn as nn\nmodel = nn.Linear(3, 1)\n")
    assert load_file(str(pkg / "net.py")).found_by == "model-instance"


def test_relative_import_falls_back_to_package_member(monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    loaded = load_file("unet_pkg/unet_model.py:unet_carvana")
    assert type(loaded.module).__module__ == "unet_pkg.unet_model"


def test_nearest_non_package_ancestor() -> None:
    assert package_root(WILD / "proj" / "mypkg" / "models") == WILD / "proj"
    assert package_root(WILD) == WILD


def test_constructor_output_goes_to_stderr(monkeypatch, capsys) -> None:
    monkeypatch.chdir(WILD)
    load_file("noisy.py")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "building Noisy" in captured.err


def test_load_error_is_a_target_error(monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    with pytest.raises(TargetError, match="parse_args at line 9"):
        load_file("argv_required.py")


def test_report_json_of_failure_is_empty(cli, monkeypatch) -> None:
    monkeypatch.chdir(WILD)
    result = cli("analyze", "no_model.py", "--format", "json")
    assert result.stdout == ""
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.stdout)


@pytest.mark.parametrize(
    ("raw", "kind", "location", "name", "call"),
    [
        ("model.py", "file", "model.py", None, None),
        ("src/model.py:GPT", "file", "src/model.py", "GPT", None),
        (
            'model.py:RNNModel("LSTM", 10, 8, 8, 2)',
            "file",
            "model.py",
            "RNNModel",
            'RNNModel("LSTM", 10, 8, 8, 2)',
        ),
        ("model.py:GPT(GPTConfig(n_layer=4))", "file", "model.py", "GPT", "GPT(GPTConfig(n_layer=4))"),
        ('pkg.mod:Net("a:b")', "module", "pkg.mod", "Net", 'Net("a:b")'),
    ],
)
def test_call_form_parsing(raw, kind, location, name, call) -> None:
    ref = parse_target(raw)
    assert (ref.kind, ref.location, ref.name, ref.call) == (kind, location, name, call)


def test_unreadable_call_form(cli) -> None:
    result = cli("analyze", "model.py:Net(3", "--format", "json")
    assert result.exit_code == 2 and result.stdout == "" and "cannot read the call" in result.stderr
