"""Reads a dsproc dataset back from an S3 server with pyarrow, the real consumer.

    python read_s3.py s3://BUCKET/PREFIX [LOCAL_DIR]

Credentials and endpoint come from DSPROC_TEST_S3_ENDPOINT / _KEY / _SECRET.
Reads manifest.json from the server, downloads every shard it lists and checks
its size and sha256 against the manifest, reads the Parquet shards with
pyarrow.parquet through pyarrow's own S3 filesystem and checks the row counts.
With LOCAL_DIR (a committed local run of the same job), every shard must hold
the same rows (all columns) as the local one. Prints one JSON summary line.
"""

import hashlib
import json
import os
import sys
from urllib.parse import urlparse

import pyarrow.fs as pafs
import pyarrow.parquet as pq


def main() -> None:
    uri = sys.argv[1]
    local = sys.argv[2] if len(sys.argv) > 2 else None
    endpoint = urlparse(os.environ["DSPROC_TEST_S3_ENDPOINT"])
    fs = pafs.S3FileSystem(
        access_key=os.environ["DSPROC_TEST_S3_KEY"],
        secret_key=os.environ["DSPROC_TEST_S3_SECRET"],
        endpoint_override=endpoint.netloc,
        scheme=endpoint.scheme,
        region="us-east-1",
    )
    u = urlparse(uri)
    root = f"{u.netloc}{u.path}".rstrip("/")
    with fs.open_input_stream(f"{root}/manifest.json") as f:
        manifest = json.loads(f.read())
    rows = 0
    for shard in manifest["shards"]:
        path = f"{root}/{shard['path']}"
        with fs.open_input_stream(path) as f:
            body = f.read()
        assert len(body) == shard["bytes"], f"{path}: {len(body)} bytes, manifest says {shard['bytes']}"
        digest = hashlib.sha256(body).hexdigest()
        assert digest == shard["sha256"], f"{path}: sha256 {digest}, manifest says {shard['sha256']}"
        if not shard["path"].endswith(".parquet"):
            continue
        table = pq.read_table(path, filesystem=fs)
        assert table.num_rows == shard["rows"], f"{path}: {table.num_rows} rows, manifest says {shard['rows']}"
        rows += table.num_rows
        if local is not None:
            mine = pq.read_table(os.path.join(local, shard["path"]))
            assert table.equals(mine), f"{path}: rows differ from the local run's {shard['path']}"
    assert rows == manifest["rows"]["out"], f"shards hold {rows} rows, manifest says {manifest['rows']['out']}"
    print(json.dumps({"shards": len(manifest["shards"]), "rows": rows}))


if __name__ == "__main__":
    main()
