"""attrib from another language: a Python client that knows the coordinator only through gRPC
server reflection (no .proto file, no generated code) lists its services, submits a small job
with messages built from the reflected descriptors, follows it to the end, and names every
score of its vector with GetEdgeNames; the names must be those `attrib scores` writes.

Runs a real attrib-coordinator (with --spawn-workers 1 and a client token) on 127.0.0.1, on
the tiny golden model. Run it with scripts/test-python.sh (after building the binaries).
"""

import json
import os
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("ATTRIB_BIN_DIR", REPO / "target" / "release"))
MODEL = REPO / "tests" / "fixtures" / "golden-tiny"
PROMPTS = REPO / "datasets" / "ioi" / "ioi_vanilla_template_prompts.json"
TOKEN = "python-test-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
START_LIMIT_S = 120
JOB_LIMIT_S = 300


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory):
    """A coordinator with one local worker, requiring TOKEN: yields host:port."""
    for name in ("attrib-coordinator", "attrib-worker", "attrib"):
        assert (BIN / name).exists(), f"{BIN / name} is missing: cargo build --release --workspace --bins"
    tmp = tmp_path_factory.mktemp("coordinator")
    ready = tmp / "ready"
    proc = subprocess.Popen(
        [
            BIN / "attrib-coordinator",
            "--model", MODEL,
            "--listen", "127.0.0.1:0",
            "--db", tmp / "attrib.db",
            "--ready-file", ready,
            "--spawn-workers", "1",
            "--token", TOKEN,
        ],
        stdin=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    try:
        t0 = time.monotonic()
        while not (ready.exists() and ready.read_text()):
            assert proc.poll() is None, f"the coordinator exited: {proc.returncode}"
            assert time.monotonic() - t0 < START_LIMIT_S, "the coordinator did not start"
            time.sleep(0.05)
        url = ready.read_text().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield url.removeprefix("http://")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Reflected:
    """A client of one service, every message class made from reflected descriptors."""

    def __init__(self, channel, service):
        self.channel = channel
        self.db = ProtoReflectionDescriptorDatabase(channel)
        self.pool = descriptor_pool.DescriptorPool(self.db)
        self.service = self.pool.FindServiceByName(service)

    def call(self, rpc, request, metadata=AUTH, timeout=60):
        """Calls `rpc` with a request built from the dict `request` (proto3 JSON names);
        returns the response as a message, or the list of them for a streaming RPC."""
        method = self.service.FindMethodByName(rpc)
        req_cls = message_factory.GetMessageClass(method.input_type)
        resp_cls = message_factory.GetMessageClass(method.output_type)
        req = json_format.ParseDict(request, req_cls())
        path = f"/{self.service.full_name}/{rpc}"
        if method.server_streaming:
            stub = self.channel.unary_stream(path, req_cls.SerializeToString, resp_cls.FromString)
            return list(stub(req, metadata=metadata, timeout=timeout))
        stub = self.channel.unary_unary(path, req_cls.SerializeToString, resp_cls.FromString)
        return stub(req, metadata=metadata, timeout=timeout)


def as_dict(msg):
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


@pytest.fixture(scope="module")
def attrib(coordinator):
    with grpc.insecure_channel(coordinator) as channel:
        yield Reflected(channel, "attrib.v1.Attrib")


def test_reflection_lists_the_services_without_a_token(coordinator):
    with grpc.insecure_channel(coordinator) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = set(db.get_services())
        assert {"attrib.v1.Attrib", "attrib.v1.WorkerGateway", "grpc.health.v1.Health"} <= services
        # The file comes with its comments: the auth metadata is stated where tools show it.
        proto = db.FindFileContainingSymbol("attrib.v1.Attrib")
        assert proto.package == "attrib.v1"
        comments = " ".join(
            loc.leading_comments for loc in proto.source_code_info.location
        )
        assert "authorization: Bearer <client token>" in comments
        pool = descriptor_pool.DescriptorPool(db)
        method = pool.FindEnumTypeByName("attrib.v1.Method")
        assert method.values_by_number[0].name == "METHOD_UNSPECIFIED"
        assert all(v.name.startswith("METHOD_") for v in method.values)


def test_client_calls_need_the_bearer_token(attrib):
    with pytest.raises(grpc.RpcError) as e:
        attrib.call("ListJobs", {}, metadata=())
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as e:
        attrib.call("ListJobs", {}, metadata=(("authorization", "Bearer wrong"),))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    attrib.call("ListJobs", {})


def test_edge_names_name_the_score_vector(attrib, coordinator, tmp_path):
    request = {
        "datasets": [{"files": [{"name": PROMPTS.name, "json": PROMPTS.read_text()}]}],
        "data": {"batch_size": 2, "train_size": 4, "test_size": 2, "prepend_bos": True, "seed": 42},
        "settings": {
            "grad_function": "GRAD_FUNCTION_LOGIT",
            "answer_function": "ANSWER_FUNCTION_AVG_DIFF",
            "mask_val": 0.0,
            "separate_qkv": True,
            "token_positions": True,
            "method": "METHOD_MASK_GRADIENT",
        },
        "label": "python reflection test",
    }
    job = attrib.call("SubmitJob", request).job_id
    assert job
    states = [as_dict(m.job)["state"] for m in attrib.call("WatchJob", {"job_id": job}, timeout=JOB_LIMIT_S)]
    assert states[-1] == "JOB_STATE_DONE", as_dict(attrib.call("GetJob", {"job_id": job}).job)

    chunks = attrib.call("GetEdgeNames", {"job_id": job, "chunk_size": 100})
    names = []
    for c in chunks:
        assert c.offset == len(names)
        names.extend((e.src, e.dest, e.seq if e.HasField("seq") else None) for e in c.edges)
    n_edges = chunks[0].n_edges
    assert len(names) == n_edges > 100 and len(chunks) == -(-n_edges // 100)

    parts = attrib.call("GetScores", {"job_id": job})
    header = parts[0].header
    scores = [s for p in parts[1:] for s in p.chunk.scores]
    assert header.n_edges == n_edges == len(scores)
    assert header.graph.seq_len > 0

    # The names `attrib scores` writes (the Rust client names edges from the topology).
    out = tmp_path / "scores.json"
    subprocess.run(
        [BIN / "attrib", "--coordinator", f"http://{coordinator}", "scores", job, "--out", out],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "ATTRIB_TOKEN": TOKEN},
    )
    edges = json.loads(out.read_text())["edges"]
    assert len(edges) == n_edges
    assert names == [(e["src"], e["dest"], e["seq"]) for e in edges]
    assert scores == [e["score"] for e in edges]
    assert names[0][0] == "Resid Start" and names[-1][1] == "Resid End"
    assert {n[2] for n in names} == set(range(header.graph.seq_len))


def test_edge_names_of_an_unknown_job_are_not_found(attrib):
    with pytest.raises(grpc.RpcError) as e:
        attrib.call("GetEdgeNames", {"job_id": "no-such-job"})
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
