"""The base bundle: exact round trip, integrity checks, atomic install."""

import hashlib
import json
from functools import cached_property

import pytest
import torch
from torch import nn

from fedlora.bundle import MANIFEST, WEIGHTS, install_bundle, load_base_model, read_base_bundle, write_base_bundle
from fedlora.errors import FedloraError
from fedlora.factorize import factorize_model
from fedlora.quantize import quantize_base
from fedlora.rank import RankRule
from fedlora.tasks.base import Partition, Task
from fedlora.tasks.datasets import LabelledDataset


class TinyTask(Task):
    name = "tiny"
    default_targets = r"^(0|2)$"

    def __init__(self, num_clients=2, seed=0):
        self._clients = num_clients

    @property
    def num_clients(self):
        return self._clients

    @property
    def config(self):
        return {"width": 24}

    @property
    def fingerprint(self):
        return "0" * 64

    def build_model(self):
        return nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 12), nn.ReLU(), nn.Linear(12, 3))

    @cached_property
    def _data(self):
        g = torch.Generator().manual_seed(0)
        return LabelledDataset(torch.randn(20, 16, generator=g), torch.randint(3, (20,), generator=g))

    def client(self, index):
        return Partition(f"tiny:{index}", self._data, self._data)

    def public(self):
        return Partition("tiny:public", self._data, self._data)


@pytest.fixture
def built(tmp_path):
    task = TinyTask()
    torch.manual_seed(0)
    model = task.build_model()
    layers = factorize_model(model, task.default_targets, RankRule("fixed", 5))
    # SVD factors are often Fortran-ordered; make sure one is, to pin the serialization
    model[0].u = nn.Parameter(model[0].u.detach().t().contiguous().t())
    assert not model[0].u.is_contiguous()
    tensors = quantize_base(model)
    bundle = write_base_bundle(tmp_path / "bundle", model, tensors, task, layers, {"note": "test"})
    return task, model, bundle


def test_a_bundle_loads_back_to_exactly_the_quantized_model(built):
    task, model, bundle = built
    loaded = load_base_model(read_base_bundle(bundle.path), task)
    x = torch.randn(5, 16)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    torch.testing.assert_close(loaded(x), model(x), rtol=1e-6, atol=1e-6)  # memory layout may differ
    assert not any(p.requires_grad for p in loaded.parameters())


def test_the_manifest_pins_every_file_and_names_the_task(built):
    _, _, bundle = built
    manifest = json.loads((bundle.path / MANIFEST).read_text())
    assert manifest["task"] == {"name": "tiny", "config": {"width": 24}, "fingerprint": "0" * 64}
    assert [(layer["name"], layer["rank"]) for layer in manifest["layers"]] == [("0", 5), ("2", 5)]
    assert set(manifest["files"]) == {WEIGHTS}
    assert bundle.id == __import__("hashlib").sha256((bundle.path / MANIFEST).read_bytes()).hexdigest()


def test_a_tampered_weights_file_is_refused(built):
    _, _, bundle = built
    data = bytearray((bundle.path / WEIGHTS).read_bytes())
    data[-1] ^= 1
    (bundle.path / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(FedloraError, match="corrupted or was tampered with"):
        read_base_bundle(bundle.path)


def test_a_truncated_weights_file_is_refused_by_its_size(built):
    _, _, bundle = built
    data = (bundle.path / WEIGHTS).read_bytes()
    (bundle.path / WEIGHTS).write_bytes(data[:-10])
    with pytest.raises(FedloraError, match=f"{WEIGHTS} is {len(data) - 10} bytes, manifest.json says {len(data)}"):
        read_base_bundle(bundle.path)


def test_a_missing_weights_file_is_refused(built):
    _, _, bundle = built
    (bundle.path / WEIGHTS).unlink()
    with pytest.raises(FedloraError, match=f"{WEIGHTS} is listed in manifest.json but missing"):
        read_base_bundle(bundle.path)


def test_an_unlisted_file_in_the_folder_is_refused(built):
    _, _, bundle = built
    (bundle.path / "extra.bin").write_bytes(b"not pinned by the manifest")
    with pytest.raises(FedloraError, match=r"holds \['extra.bin'\], which manifest.json does not list"):
        read_base_bundle(bundle.path, expected_id=bundle.id)


def test_a_tampered_manifest_changes_the_id_and_is_refused(built):
    _, _, bundle = built
    manifest = json.loads((bundle.path / MANIFEST).read_text())
    manifest["layers"][0]["rank"] = 4
    (bundle.path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(FedloraError, match="not the expected"):
        read_base_bundle(bundle.path, expected_id=bundle.id)


@pytest.mark.parametrize("garbage", [b"not json", b"[1, 2]", b'{"format": "other/1"}'])
def test_a_malformed_manifest_is_refused(built, garbage):
    _, _, bundle = built
    (bundle.path / MANIFEST).write_bytes(garbage)
    with pytest.raises(FedloraError, match="not valid JSON|not a fedlora base bundle"):
        read_base_bundle(bundle.path)


def test_install_checks_everything_before_writing(built, tmp_path):
    _, _, bundle = built
    files = bundle.files()
    cache = tmp_path / "cache"
    with pytest.raises(FedloraError, match="does not hash to the announced bundle id"):
        install_bundle(files, "f" * 64, cache)
    broken = dict(files, **{WEIGHTS: files[WEIGHTS][:-1]})
    with pytest.raises(FedloraError, match="tampered"):
        install_bundle(broken, bundle.id, cache)
    assert not (cache / bundle.id).exists()
    installed = install_bundle(files, bundle.id, cache)
    assert read_base_bundle(installed.path, expected_id=bundle.id).id == bundle.id


def test_clients_sharing_a_cache_install_the_same_bundle_at_once(built, tmp_path):
    """Simulated clients share one cache: concurrent installs of one bundle all succeed,
    and none removes the copy another is reading."""
    from concurrent.futures import ThreadPoolExecutor

    _, _, bundle = built
    files = bundle.files()
    for attempt in range(5):
        cache = tmp_path / f"cache{attempt}"
        with ThreadPoolExecutor(8) as pool:
            installed = list(pool.map(lambda _: install_bundle(files, bundle.id, cache), range(16)))
        assert {b.path for b in installed} == {cache / bundle.id}
        assert read_base_bundle(cache / bundle.id, expected_id=bundle.id).id == bundle.id
        assert [path.name for path in cache.iterdir()] == [bundle.id], "no staging folder left behind"


def test_a_damaged_cached_copy_is_replaced_by_the_received_one(built, tmp_path):
    _, _, bundle = built
    files = bundle.files()
    cache = tmp_path / "cache"
    install_bundle(files, bundle.id, cache)
    (cache / bundle.id / WEIGHTS).write_bytes(b"damaged")
    install_bundle(files, bundle.id, cache)
    assert read_base_bundle(cache / bundle.id, expected_id=bundle.id).id == bundle.id


def test_a_bundle_for_another_task_is_refused(built):
    _, _, bundle = built

    class Other(TinyTask):
        name = "other"

    with pytest.raises(FedloraError, match="built for task 'tiny', not 'other'"):
        load_base_model(bundle, Other())


def test_install_refuses_unlisted_and_missing_files(built, tmp_path):
    _, _, bundle = built
    files = bundle.files()
    cache = tmp_path / "cache"
    with pytest.raises(FedloraError, match=r"holds \['extra.bin'\], which manifest.json does not list"):
        install_bundle(dict(files, **{"extra.bin": b"smuggled"}), bundle.id, cache)
    with pytest.raises(FedloraError, match=f"{WEIGHTS} is listed in manifest.json but missing"):
        install_bundle({MANIFEST: files[MANIFEST]}, bundle.id, cache)
    assert not cache.exists()


def test_install_refuses_a_file_name_that_escapes_the_folder(built, tmp_path):
    _, _, bundle = built
    files = bundle.files()
    manifest = json.loads(files[MANIFEST])
    manifest["files"]["../escaped.bin"] = manifest["files"].pop(WEIGHTS)
    manifest_bytes = json.dumps(manifest).encode()
    bundle_id = hashlib.sha256(manifest_bytes).hexdigest()
    received = {MANIFEST: manifest_bytes, "../escaped.bin": files[WEIGHTS]}
    with pytest.raises(FedloraError, match="'../escaped.bin', which is not a plain file name"):
        install_bundle(received, bundle_id, tmp_path / "cache" / "received")
    assert not (tmp_path / "cache").exists()
