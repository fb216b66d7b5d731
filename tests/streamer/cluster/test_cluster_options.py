"""The cluster's options: `ClusterConfig` and `Pin` through the Python API, the command line, a
TOML `[cluster]` table and `streamer config --print`, and what a run with `--cluster` refuses."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from streamer.cli.build import Settings, configure, settings
from streamer.cli.main import build_parser, main
from streamer.cluster import ClusterConfig, Pin
from streamer.cluster.session import NodeInfo
from streamer.config import RunConfig
from streamer.errors import ConfigError
from streamer.outputs.options import OutputConfig

REPO = Path(__file__).resolve().parents[3]


def given(*argv: object) -> Settings:
    parsed: argparse.Namespace = build_parser().parse_args(["run", *map(str, argv)])
    return settings(parsed)


def node(resources: dict[str, float] | None = None, labels: dict[str, str] | None = None):
    return NodeInfo("n1", "10.0.0.1", True, resources or {"CPU": 2.0}, labels or {})


# --- the Python API -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address", ["auto", "AUTO", "head:6379", "10.1.2.3:6379", "ray://head:10001", "[::1]:6379"]
)
def test_the_three_address_forms_are_taken(address):
    assert ClusterConfig(address).address == ("auto" if address == "AUTO" else address)


@pytest.mark.parametrize(
    "address", ["", "head", "head:", ":6379", "head:0", "head:70000", "http://head:6379",
                "ray://head", "a b:6379", "head:63x9", "h:1:2"],
)  # fmt: skip
def test_an_address_of_no_known_form_is_refused_naming_the_forms(address):
    with pytest.raises(ConfigError, match=r"auto, ray://HOST:PORT .* or HOST:PORT") as caught:
        ClusterConfig(address)
    assert repr(address) in str(caught.value) and "(--cluster)" in str(caught.value)


def test_defaults_and_the_torch_threads_of_a_cpu_replica():
    config = ClusterConfig("auto")
    assert (config.encoders, config.encoder_cpus, config.shards_per_node) == (1, 1.0, 1)
    assert (config.in_flight, config.files_per_shard, config.pins) == (16, 2, ())
    assert ClusterConfig("auto", encoder_cpus=2.7).torch_threads == 2
    assert ClusterConfig("auto", encoder_cpus=0.5).torch_threads == 1


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [("encoders", 0, "a whole number ≥ 1"), ("encoder_cpus", 0.0, "a number of CPUs > 0"),
     ("shards_per_node", 0, "a whole number ≥ 1"), ("in_flight", 0, "a whole number ≥ 1"),
     ("files_per_shard", -1, "a whole number ≥ 1")],
)  # fmt: skip
def test_a_bad_count_is_refused_as_its_flag_would_be(field, value, words):
    with pytest.raises(ConfigError, match=words):
        ClusterConfig("auto", **{field: value})


def test_a_pin_is_a_resource_or_a_label_and_the_stream_is_before_the_first_equals():
    assert Pin.parse("door=door-cam") == Pin("door", resource="door-cam")
    assert Pin.parse(" yard = zone=east ") == Pin("yard", label=("zone", "east"))
    assert Pin.parse("lab=gpu=a=b") == Pin("lab", label=("gpu", "a=b"))
    assert str(Pin.parse("yard=zone=east")) == "yard=zone=east"


@pytest.mark.parametrize("text", ["door", "door=", "=cam", "door=zone=", "door==x", "a b=c"])
def test_a_malformed_pin_names_the_two_forms(text):
    with pytest.raises(ConfigError, match=r"STREAM=RESOURCE .* or STREAM=KEY=VALUE"):
        Pin.parse(text)


def test_a_pin_matches_the_node_with_its_resource_or_its_label():
    by_resource, by_label = Pin("door", resource="door-cam"), Pin("yard", label=("zone", "x"))
    assert by_resource.matches(node({"CPU": 1.0, "door-cam": 1.0}))
    assert not by_resource.matches(node({"CPU": 1.0}))
    assert not by_resource.matches(node({"door-cam": 0.0}))
    assert by_label.matches(node(labels={"zone": "x"}))
    assert not by_label.matches(node(labels={"zone": "y"}))
    assert not by_label.matches(node({"zone": 1.0}))  # a resource is not a label


def test_pins_are_given_as_pins_or_text_and_a_stream_is_pinned_once():
    config = ClusterConfig("auto", pins=["door=cam", Pin("yard", label=("zone", "x"))])
    assert config.pins == (Pin("door", resource="cam"), Pin("yard", label=("zone", "x")))
    assert config.pin_of("yard") == Pin("yard", label=("zone", "x"))
    assert config.pin_of("gate") is None
    with pytest.raises(ConfigError, match="both pin stream 'door'"):
        ClusterConfig("auto", pins=("door=cam", "door=zone=x"))
    with pytest.raises(ConfigError, match="must be STREAM=RESOURCE"):
        ClusterConfig("auto", pins=("door",))


def test_a_run_config_refuses_a_window_and_a_pin_of_no_stream_with_the_fix():
    outputs = OutputConfig(jsonl="out/{stream}.jsonl")
    with pytest.raises(ConfigError, match=r"--show .* with --serve \[HOST:\]PORT instead"):
        RunConfig(input="a.mp4", show=True, cluster=ClusterConfig("auto"))
    with pytest.raises(ConfigError, match=r"no stream named 'gate' \(its streams: door, b\)"):
        RunConfig(input=("door=a.mp4", "b.mp4"), outputs=outputs,
                  cluster=ClusterConfig("auto", pins=("gate=cam",)))  # fmt: skip
    run = RunConfig(input=("door=a.mp4", "b.mp4"), outputs=outputs,
                    cluster=ClusterConfig("auto", pins=("door=cam",)))  # fmt: skip
    assert run.cluster.pins == (Pin("door", resource="cam"),)
    assert RunConfig(input="a.mp4", outputs=outputs).cluster is None
    with pytest.raises(ConfigError, match=r"--jsonl - writes to this process's standard output"):
        RunConfig(input="a.mp4", outputs=OutputConfig(jsonl="-"), cluster=ClusterConfig("auto"))


# --- the command line and the configuration file ------------------------------------------------


def test_flags_make_the_cluster_section():
    config = configure(given("door=a.mp4", "b.mp4", "--jsonl", "o/{stream}.jsonl",
                             "--cluster", "ray://head:10001", "--encoders", "3",
                             "--encoder-cpus", "2.5", "--shards-per-node", "2", "--in-flight", "4",
                             "--files-per-shard", "1", "--pin", "door=zone=lobby"))  # fmt: skip
    assert config.cluster == ClusterConfig(
        "ray://head:10001", encoders=3, encoder_cpus=2.5, shards_per_node=2, in_flight=4,
        files_per_shard=1, pins=(Pin("door", label=("zone", "lobby")),),
    )  # fmt: skip
    assert configure(given("a.mp4", "--jsonl", "a.jsonl")).cluster is None


def test_a_cluster_option_without_cluster_is_refused_naming_both():
    with pytest.raises(ConfigError, match=r"--encoders needs --cluster ADDRESS"):
        configure(given("a.mp4", "--jsonl", "a.jsonl", "--encoders", "2"))
    # a default value changes nothing (a printed configuration writes every key)
    assert configure(given("a.mp4", "--jsonl", "a.jsonl", "--encoders", "1")).cluster is None


@pytest.mark.parametrize(
    ("flag", "bad", "words"),
    [("--cluster", "head", "auto, ray://HOST:PORT"), ("--pin", "door", "STREAM=RESOURCE")],
)
def test_a_bad_address_or_pin_exits_2_at_parse_time(capsys, flag, bad, words):
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["run", "a.mp4", flag, bad])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: must be" in err and repr(bad) in err and words in err


def test_cluster_with_show_exits_2_with_the_fix(capsys):
    assert main(["run", "a.mp4", "--cluster", "auto", "--show"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamer: error: --show") and "--serve" in err
    assert "Traceback" not in err


def write(tmp_path: Path, text: str, name: str = "streamer.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


CLUSTER_FILE = """
inputs = ["door=a.mp4", "yard=b.mp4"]
[outputs]
jsonl = "out/{stream}.jsonl"
[cluster]
cluster = "head:6379"
encoders = 2
encoder-cpus = 1.5
pin = ["door=door-cam", "yard=zone=east"]
"""


def test_a_cluster_table_sets_the_cluster_as_its_flags_do(tmp_path):
    config = configure(given("--config", write(tmp_path, CLUSTER_FILE)))
    assert config.cluster == ClusterConfig(
        "head:6379", encoders=2, encoder_cpus=1.5,
        pins=(Pin("door", resource="door-cam"), Pin("yard", label=("zone", "east"))),
    )  # fmt: skip
    # a flag overrides the file's value; a repeatable flag adds to the file's list
    flags = given("--config", write(tmp_path, CLUSTER_FILE.replace(', "yard=zone=east"', "")),
                  "--encoders", "4", "--pin", "yard=zone=west")  # fmt: skip
    cluster = configure(flags).cluster
    assert cluster.encoders == 4
    assert cluster.pins == (Pin("door", resource="door-cam"), Pin("yard", label=("zone", "west")))


def test_a_bad_value_in_the_cluster_table_names_its_key(tmp_path):
    bad = write(tmp_path, CLUSTER_FILE.replace('"head:6379"', '"head"'))
    with pytest.raises(ConfigError, match=r"cluster\.cluster = \"head\": must be auto"):
        configure(given("--config", bad))


def test_print_shows_the_cluster_table_and_it_loads_back(tmp_path, capsys):
    assert main(["config", "--print", "--config", str(write(tmp_path, CLUSTER_FILE)),
                 "--in-flight", "8"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    document = tomllib.loads(out)
    assert document["cluster"] == "head:6379"  # printed flat, under a comment naming [cluster]
    assert document["pin"] == ["door=door-cam", "yard=zone=east"]
    assert document["in-flight"] == 8 and document["files-per-shard"] == 2
    assert "in-flight = 8  # from the command line" in out
    again = given("--config", write(tmp_path, out, "printed.toml"))
    original = given("--config", tmp_path / "streamer.toml", "--in-flight", "8")
    keys = ["cluster", "encoders", "encoder-cpus", "shards-per-node", "in-flight",
            "files-per-shard", "pin"]  # fmt: skip
    assert {k: again.get(k) for k in keys} == {k: original.get(k) for k in keys}


# --- what importing costs -----------------------------------------------------------------------


def test_the_cluster_package_and_its_options_load_neither_ray_nor_torch():
    code = (
        "import sys, streamer.cluster, streamer.cluster.options, streamer.cluster.session\n"
        "from streamer.cluster import ClusterConfig, connect, nodes\n"
        "assert callable(connect) and callable(nodes), connect\n"
        "print(sorted(m for m in ('ray', 'torch', 'open_clip') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert out.strip() == "[]"


def test_connect_is_the_function_even_when_its_module_was_imported_first():
    code = (
        "import streamer.cluster.session\nfrom streamer.cluster import connect\n"
        "from streamer.cluster.session import connect as function\nassert connect is function\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_nothing_but_the_cluster_package_imports_ray():
    importers = []
    for path in sorted((REPO / "streamer").rglob("*.py")):
        if "cluster" in path.relative_to(REPO / "streamer").parts:
            continue
        text = path.read_text(encoding="utf-8")
        if "import ray" in text or "from ray" in text:
            importers.append(str(path.relative_to(REPO)))
    assert not importers, f"only streamer/cluster may import Ray: {importers}"
