"""training.store and the evidence tier: stored models reproduce their stored bits/dim (eval only, seconds)."""

import json

import pytest
import torch
from diffusion_study.studies import evidence
from diffusion_study.training import store


def test_config_hash_is_canonical():
    a = {"kind": "ddpm", "T": 10, "mults": [1, 2], "eval": {"seed": 1, "n_terms": None}}
    b = {"eval": {"n_terms": None, "seed": 1}, "mults": (1, 2), "T": 10, "kind": "ddpm"}
    assert store.config_hash(a) == store.config_hash(b)
    assert store.config_hash(a) != store.config_hash({**a, "T": 11})


def test_save_find_load_and_a_corrupt_file_is_refused(tmp_path):
    net = torch.nn.Linear(3, 2)
    config = {"what": "linear", "seed": 0}
    prov = store.provenance(steps=7, wall_time_s=1.5, command="test")
    record = store.save(tmp_path, "lin", net.state_dict(), config, results={"bits_per_dim": 1.25}, provenance=prov)
    assert record["config_hash"] == store.config_hash(config)
    found = store.find(tmp_path, config)
    assert found["results"] == {"bits_per_dim": 1.25} and found["provenance"]["steps"] == 7
    assert store.find(tmp_path, {"what": "other"}) is None
    state = store.load(found)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    (tmp_path / "lin.pt").write_bytes(b"not the weights")
    with pytest.raises(ValueError, match="sha256"):
        store.load(found)


def test_a_resumed_evidence_run_stores_a_model_that_reproduces_its_bits(tmp_path):
    config = evidence.digits_config("ndm", 10, 3, base=8, batch_size=8)
    first = evidence.run_slice(config, tmp_path / "store", tmp_path / "work", slice_seconds=0.0)  # one probe slice
    assert not first["done"] or first["steps"] == 3
    while not evidence.run_slice(config, tmp_path / "store", tmp_path / "work", slice_seconds=0.0)["done"]:
        pass
    record, = store.records(tmp_path / "store")
    assert record["provenance"]["steps"] == 3 and record["config"] == json.loads(json.dumps(config))
    again = evidence.evaluate(evidence.load_model(record), record["config"])
    assert again["bits_per_dim"] == pytest.approx(record["results"]["bits_per_dim"], abs=1e-5)
    assert evidence.run_slice(config, tmp_path / "store", tmp_path / "work")["done"]  # stored: skipped


STORED = store.records(evidence.STORE)


@pytest.mark.parametrize("record", STORED, ids=[r["name"] for r in STORED])
def test_every_stored_model_reproduces_its_stored_bits_per_dim(record):
    got = evidence.evaluate(evidence.load_model(record), record["config"])
    assert got["bits_per_dim"] == pytest.approx(record["results"]["bits_per_dim"], abs=1e-4)


def test_the_store_holds_only_complete_records():
    for record in STORED:
        assert record["config_hash"] == store.config_hash(record["config"])
        assert {"commit", "machine", "command", "created", "steps", "wall_time_s"} <= set(record["provenance"])


def test_every_stored_run_has_its_training_curve_ending_at_the_stored_bound():
    for record in STORED:
        curve = record["results"].get("curve")
        assert curve, f"{record['name']}: no training curve"
        steps = [s for s, _ in curve]
        assert steps == sorted(steps) and steps[-1] == record["provenance"]["steps"]
        assert curve[-1][1] == pytest.approx(record["results"]["bits_per_dim"], abs=1e-6)


def test_a_longer_run_continues_the_shorter_one_and_equals_a_fresh_run(tmp_path):
    short, long_ = (evidence.digits_config("ddpm", 10, n, base=8, batch_size=8) for n in (3, 6))
    for config, work in ((short, "work"), (long_, "work"), (long_, "fresh")):
        while not evidence.run_slice(config, tmp_path / work / "store", tmp_path / work, slice_seconds=0.0)["done"]:
            pass
    continued, = [r for r in store.records(tmp_path / "work" / "store") if r["config"]["steps"] == 6]
    fresh, = store.records(tmp_path / "fresh" / "store")
    assert continued["provenance"]["continued_from"] == evidence.name_of(short)
    assert fresh["provenance"]["continued_from"] is None
    assert continued["results"]["bits_per_dim"] == fresh["results"]["bits_per_dim"]  # the same run, bit for bit
