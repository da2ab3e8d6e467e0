"""Drives a lakeFS server with lakefs-spec, lakeFS's fsspec filesystem, as data scientists use it
(pandas and friends read and write `lakefs://` paths through it).

usage: python fsspec_client.py ENDPOINT ACCESS_KEY_ID SECRET NAMESPACE_ROOT

Every step asserts what lakeFS does; any failure raises, so the exit code is the verdict.
"""
import sys
import tempfile
import uuid
from pathlib import Path

import lakefs
from lakefs.client import Client
from lakefs_spec import LakeFSFileSystem

endpoint, key, secret, ns_root = sys.argv[1:5]
suffix = uuid.uuid4().hex[:8]
repo_id = f"fs-{suffix}"

client = Client(host=endpoint, username=key, password=secret)
lakefs.Repository(repo_id, client=client).create(
    storage_namespace=f"{ns_root}/{repo_id}", default_branch="main")
fs = LakeFSFileSystem(host=endpoint, username=key, password=secret)
root = f"lakefs://{repo_id}/main"

# Files: write, read, info, ls, exists, glob, put/get, copy, remove.
with fs.open(f"{root}/data/a.csv", "wb") as f:
    f.write(b"x,y\n1,2\n")
with fs.open(f"{root}/data/a.csv", "rb") as f:
    assert f.read() == b"x,y\n1,2\n"
assert fs.cat_file(f"{root}/data/a.csv", start=2, end=5) == b"y\n1"
info = fs.info(f"{root}/data/a.csv")
assert info["size"] == 8 and info["type"] == "file", info
assert fs.exists(f"{root}/data/a.csv") and not fs.exists(f"{root}/data/nope.csv")
assert fs.info(f"{root}/data")["type"] == "directory"
with tempfile.TemporaryDirectory() as tmp:
    local = Path(tmp) / "b.bin"
    local.write_bytes(b"\x00" * 1000)
    fs.put_file(str(local), f"{root}/data/b.bin")
    fs.get_file(f"{root}/data/b.bin", str(Path(tmp) / "back.bin"))
    assert (Path(tmp) / "back.bin").read_bytes() == b"\x00" * 1000
listed = sorted(fs.ls(f"{root}/data/", detail=False, refresh=True))
assert listed == [f"{repo_id}/main/data/a.csv", f"{repo_id}/main/data/b.bin"], listed
assert sorted(fs.glob(f"{root}/data/*.csv")) == [f"{repo_id}/main/data/a.csv"]
fs.cp_file(f"{root}/data/a.csv", f"{root}/data/c.csv")
assert fs.cat_file(f"{root}/data/c.csv") == b"x,y\n1,2\n"
fs.rm(f"{root}/data/c.csv")
assert not fs.exists(f"{root}/data/c.csv")

# lakeFS merges only into a branch without uncommitted changes: commit what is on main.
lakefs.Repository(repo_id, client=client).branch("main").commit(message="files written through fsspec")

# A transaction: an ephemeral branch, commits, a merge back into main, a tag.
with fs.transaction(repo_id, "main") as tx:
    with fs.open(f"lakefs://{repo_id}/{tx.branch.id}/data/d.csv", "wb") as f:
        f.write(b"d\n")
    tx.commit(message="add d", metadata={"who": "fsspec"})
    tx.tag(tx.rev_parse(tx.branch.id), name=f"v-{suffix}")
assert fs.cat_file(f"{root}/data/d.csv") == b"d\n"
repo = lakefs.Repository(repo_id, client=client)
assert repo.tag(f"v-{suffix}").get_commit().metadata == {"who": "fsspec"}
assert not [b.id for b in repo.branches() if b.id != "main"], list(repo.branches())

# A transaction that raises leaves main as it was.
head = repo.branch("main").get_commit().id
try:
    with fs.transaction(repo_id, "main") as tx:
        with fs.open(f"lakefs://{repo_id}/{tx.branch.id}/data/e.csv", "wb") as f:
            f.write(b"e\n")
        tx.commit(message="add e")
        raise RuntimeError("abort")
except RuntimeError:
    pass
assert repo.branch("main").get_commit().id == head
assert not fs.exists(f"{root}/data/e.csv")
print("lakefs-spec: open/read/write, cat ranges, info, exists, ls, glob, put/get, copy, rm, transaction commit/merge/tag, aborted transaction: ok")
