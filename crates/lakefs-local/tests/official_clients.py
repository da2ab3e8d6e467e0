"""Drives a lakeFS server with lakeFS's official Python clients, as data scientists will.

usage: python official_clients.py ENDPOINT ACCESS_KEY_ID SECRET NAMESPACE_ROOT

lakefs_sdk is the generated API client; lakefs the high-level package. Every step asserts what
lakeFS does; any failure raises, so the exit code is the verdict. Prints one line per area.
"""
import io
import sys
import tempfile
import uuid

import lakefs
import lakefs_sdk
from lakefs.client import Client
from lakefs.exceptions import ConflictException

endpoint, key, secret, ns_root = sys.argv[1:5]
suffix = uuid.uuid4().hex[:8]


def sdk_client():
    conf = lakefs_sdk.Configuration(host=endpoint.rstrip("/") + "/api/v1", username=key, password=secret)
    return lakefs_sdk.ApiClient(conf)


def generated_api():
    api = sdk_client()
    repos = lakefs_sdk.RepositoriesApi(api)
    branches = lakefs_sdk.BranchesApi(api)
    objects = lakefs_sdk.ObjectsApi(api)
    commits = lakefs_sdk.CommitsApi(api)
    refs = lakefs_sdk.RefsApi(api)
    tags = lakefs_sdk.TagsApi(api)
    config = lakefs_sdk.ConfigApi(api)

    conf = config.get_config()
    assert conf.storage_config.blockstore_type == "local", conf
    assert conf.version_config.version, conf

    repo = f"sdk-{suffix}"
    repos.create_repository(lakefs_sdk.RepositoryCreation(
        name=repo, storage_namespace=f"{ns_root}/{repo}", default_branch="main"))
    assert repo in [r.id for r in repos.list_repositories().results]
    branches.create_branch(repo, lakefs_sdk.BranchCreation(name="dev", source="main"))
    # The generated client takes a file path and sends multipart/form-data.
    with tempfile.NamedTemporaryFile(suffix=".txt") as f:
        f.write(b"hello from the sdk")
        f.flush()
        stats = objects.upload_object(repo, "dev", "data/a.txt", content=f.name)
    assert stats.size_bytes == 18, stats
    got = objects.get_object(repo, "dev", "data/a.txt")
    assert bytes(got) == b"hello from the sdk", got
    st = objects.stat_object(repo, "dev", "data/a.txt")
    assert st.checksum == stats.checksum
    c = commits.commit(repo, "dev", lakefs_sdk.CommitCreation(message="sdk commit", metadata={"k": "v"}))
    assert c.metadata == {"k": "v"}, c
    diff = refs.diff_refs(repo, "main", "dev")
    assert [d.path for d in diff.results] == ["data/a.txt"], diff
    # merge_into_branch without options: Content-Type JSON and an empty body.
    merged = refs.merge_into_branch(repo, "dev", "main")
    assert merged.reference, merged
    log = refs.log_commits(repo, "main")
    assert log.results[0].id == merged.reference, log
    # A merge commit with both parents (lakeFS never fast-forwards); ref expressions.
    assert log.results[0].parents == [log.results[0].parents[0], c.id], log.results[0]
    assert refs.log_commits(repo, "main~1").results[0].id == log.results[0].parents[0]
    assert refs.log_commits(repo, "main^2").results[0].id == c.id
    tags.create_tag(repo, lakefs_sdk.TagCreation(id="v1", ref=c.id))
    assert tags.get_tag(repo, "v1").commit_id == c.id
    try:
        branches.get_branch(repo, "no-such-branch")
        raise AssertionError("missing branch must raise")
    except lakefs_sdk.exceptions.NotFoundException:
        pass
    print("lakefs-sdk: config, repositories, branches, objects, commits, diff, merge, log, refs~N, tags: ok")


def high_level():
    client = Client(host=endpoint, username=key, password=secret)
    assert client.version, "version from GET /config"
    repo = lakefs.Repository(f"hl-{suffix}", client=client).create(
        storage_namespace=f"{ns_root}/hl-{suffix}", default_branch="main")
    main = repo.branch("main")
    dev = repo.branch("dev").create(source_reference="main")

    obj = dev.object("data/images/x.bin").upload(data=b"\x00\x01\x02" * 1000, content_type="application/octet-stream")
    assert obj.stat().size_bytes == 3000
    with dev.object("data/images/x.bin").reader(mode="rb") as r:
        assert r.read() == b"\x00\x01\x02" * 1000
    dev.object("data/notes.txt").upload(data="text data", mode="w")
    with dev.object("data/notes.txt").reader(mode="r") as r:
        assert r.read() == "text data"
    listed = sorted(o.path for o in dev.objects(prefix="data/"))
    assert listed == ["data/images/x.bin", "data/notes.txt"], listed
    prefixes = [o.path for o in dev.objects(prefix="data/", delimiter="/")]
    assert prefixes == ["data/images/", "data/notes.txt"], prefixes
    assert sorted(c.path for c in dev.uncommitted()) == listed
    ref = dev.commit(message="high-level commit", metadata={"source": "python"})
    assert ref.get_commit().metadata == {"source": "python"}
    assert not list(dev.uncommitted())
    assert [d.path for d in main.diff(other_ref=dev)] == listed
    dev.merge_into(main)
    assert main.object("data/notes.txt").exists()
    commits = list(main.log(max_amount=5))
    assert commits[0].id == main.get_commit().id
    tag = repo.tag("release").create(main)
    assert tag.get_commit().id == main.get_commit().id

    # transact: ephemeral branch, commit, merge back, branch removed.
    with main.transact(commit_message="tx commit", commit_metadata={"tx": "1"}) as tx:
        tx.object("models/m.bin").upload(data=b"model")
    assert main.object("models/m.bin").exists()
    assert main.get_commit().message == "tx commit" or main.log(max_amount=2)
    assert not [b.id for b in repo.branches() if b.id.startswith("tx-")], list(repo.branches())

    # reset_changes discards uncommitted work.
    dev.object("scratch.txt").upload(data=b"tmp")
    assert [c.path for c in dev.uncommitted()] == ["scratch.txt"]
    dev.reset_changes(path_type="object", path="scratch.txt")
    assert not list(dev.uncommitted())
    print("lakefs: Repository, Branch, Object upload/reader, objects, uncommitted, commit, diff, merge_into, tags, log, transact, reset_changes: ok")


def workflows():
    """Repository metadata (lakefs-spec's fsspec transactions read it), revert, cherry-pick."""
    client = Client(host=endpoint, username=key, password=secret)
    repo = lakefs.Repository(f"wf-{suffix}", client=client).create(
        storage_namespace=f"{ns_root}/wf-{suffix}", default_branch="main")
    assert repo.metadata == {}, repo.metadata
    internal = lakefs_sdk.InternalApi(sdk_client())
    internal.set_repository_metadata(repo.id, lakefs_sdk.RepositoryMetadataSet(metadata={"team": "vision", "x": "1"}))
    assert repo.metadata == {"team": "vision", "x": "1"}, repo.metadata
    internal.set_repository_metadata(repo.id, lakefs_sdk.RepositoryMetadataSet(metadata={"x": "2"}))
    internal.delete_repository_metadata(repo.id, lakefs_sdk.RepositoryMetadataKeys(keys=["team"]))
    assert repo.metadata == {"x": "2"}, repo.metadata

    main = repo.branch("main")
    main.object("a.txt").upload(data=b"a1")
    first = main.commit(message="add a")
    main.object("a.txt").upload(data=b"a2")
    main.object("b.txt").upload(data=b"b")
    second = main.commit(message="change a, add b", metadata={"step": "2"})
    reverted = main.revert(second.get_commit().id)
    assert reverted.message.startswith("Revert"), reverted.message
    with main.object("a.txt").reader(mode="rb") as r:
        assert r.read() == b"a1"
    assert not main.object("b.txt").exists()

    dev = repo.branch("dev").create(source_reference=first.get_commit().id)
    origin = second.get_commit()
    picked = dev.cherry_pick(origin.id)
    # The origin's message and metadata, plus where it came from (lakeFS's cherry-pick keys).
    assert picked.message == "change a, add b" and picked.metadata == {
        "step": "2", "cherry-pick-origin": origin.id, "cherry-pick-committer": origin.committer}, picked
    with dev.object("a.txt").reader(mode="rb") as r:
        assert r.read() == b"a2"
    assert dev.object("b.txt").exists()

    # A conflicting cherry-pick is refused (409) and leaves the branch as it was.
    dev.object("b.txt").upload(data=b"other")
    head = dev.commit(message="dev's own b").get_commit().id
    try:
        dev.cherry_pick(reverted.id)
        raise AssertionError("a conflicting cherry-pick was accepted")
    except ConflictException:
        pass
    assert dev.get_commit().id == head
    print("lakefs: repository metadata (get/set/delete), revert, cherry-pick, conflict: ok")


generated_api()
high_level()
workflows()
