"""The S3 blob store (the ``s3`` extra) against a real S3-compatible HTTP server on 127.0.0.1
(moto's server mode, started by the test): content-addressed puts, checked reads, and a worker
and client whose large values go to ``s3://bucket/prefix``. Skipped without the extra."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from harness import blob_sessions as bs  # noqa: E402
from harness.session_harness import WAIT, make_settings, open_runtime  # noqa: E402

from actors import RuntimeSettings  # noqa: E402
from eventstore.blob_stores import open_blob_store  # noqa: E402
from eventstore.blobs import blob_ref  # noqa: E402
from eventstore.errors import BlobError  # noqa: E402
from eventstore.s3_blobs import S3BlobStore  # noqa: E402

BUCKET = "tether-blobs"


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()


def objects(prefix: str) -> dict[str, bytes]:
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


async def test_the_s3_store_is_content_addressed_and_checks_what_it_reads(s3_endpoint: str) -> None:
    store = open_blob_store(f"s3://{BUCKET}/ns1/blobs")
    assert isinstance(store, S3BlobStore)
    ref = await store.put(b"page")
    assert ref == blob_ref(b"page") and await store.put(b"page") == ref  # a retried write: the same object
    digest = hashlib.sha256(b"page").hexdigest()
    assert objects("ns1/") == {f"ns1/blobs/{digest[:2]}/{digest[2:]}": b"page"}
    assert await store.get(ref) == b"page"
    boto3.client("s3").put_object(Bucket=BUCKET, Key=f"ns1/blobs/{digest[:2]}/{digest[2:]}", Body=b"tampered")
    with pytest.raises(BlobError, match="corrupt"):
        await store.get(ref)
    with pytest.raises(BlobError, match="missing"):
        await store.get(blob_ref(b"never stored"))
    for bad in ("sha256:../../etc/passwd", "md5:abc"):
        with pytest.raises(BlobError, match="not a blob reference"):
            await store.get(bad)
    with pytest.raises(BlobError, match="no bucket|failed"):
        await S3BlobStore("no-such-bucket").put(b"x")
    with pytest.raises(BlobError, match="s3://bucket/prefix"):
        S3BlobStore.at("s3:///prefix")


async def test_large_values_go_to_s3_when_the_setting_names_it(
    s3_endpoint: str, namespace: str, tmp_path: Path
) -> None:
    runtime = RuntimeSettings(blob_threshold_bytes=100_000, blob_store=f"s3://{BUCKET}/{namespace}")
    settings = make_settings("embedded", tmp_path / "data", namespace, partitions=1, runtime=runtime)
    text = bs.page(5)
    async with open_runtime([bs.docs, bs.big], settings) as rt:
        reply = await rt.client.call(bs.rewrite, "d1", bs.Document(text=text), timeout=WAIT * 4)
        fetched = await rt.client.call(bs.fetch, "b1", bs.Fetch(mib=2), timeout=WAIT * 4)
    assert reply == bs.Rewritten(text=text.upper(), digest=bs.digest(text))
    assert fetched.size == len(bs.page(2))
    stored = objects(f"{namespace}/")
    # The message, the reply and the step result, each once, named by their content.
    assert len(stored) == 3
    assert all(key == f"{namespace}/{blob_ref(v)[7:9]}/{blob_ref(v)[9:]}" for key, v in stored.items())
